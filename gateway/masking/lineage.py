"""Which result columns of one SQL statement carry card data, worked out from the statement's text alone.

Column rules match result columns by name, so a client can rename (``pan AS x``), transform
(``reverse(pan)``), wrap (``row_to_json(c)``) or route card data around them (CTEs, set operations,
subqueries, ``RETURNING``, ``COPY``, cursors). :func:`analyze` follows every output column back through
the statement's scopes to the base columns it is computed from, and says what the wire must do with it:

- a bare reference to a sensitive column (renamed, parenthesized, collated, cast to unbounded ``text`` or
  ``varchar``) keeps that column's rule action: the value on the wire is still the column's own value;
- any other expression over a sensitive column is ``full`` (``null`` when one of its sources is
  sensitive authentication data), and marked ``derived``;
- ``count(...)`` and predicates (``=``, ``LIKE``, ``IN``, ``IS NULL``, ``EXISTS`` ...) whose sensitive
  operands are bare references cannot carry the value and stay ``clear`` (the statement is still
  ``sensitive``); a predicate over a *computed* value (``substr(pan, 1, 1) = '4'``) is ``full``;
- a ``*`` over a table whose columns the catalog did not tell us is a marker: names survive a plain
  ``*``, so the wire applies the name rules to the RowDescription columns the marker covers.

What the analysis cannot be sure of, it reports in ``Lineage.unknown`` and the caller fails closed. It
never guesses "clear" for a construct it does not model: any unmodelled expression over a sensitive
column is ``full``. Reasons and sources hold identifiers only, never literal values (they may be card
numbers), and sqlglot's own logging of statement text is switched off.

Blind spots, by design of a SQL-only analysis: bodies of functions, procedures, views and ``DO`` blocks;
objects a session creates (a temporary view shadowing a table); values quoted back in error messages;
statements sqlglot reads differently from PostgreSQL. Content detection is the second net there. Nothing
here sees predicates used as oracles (``WHERE substr(pan, 1, 1) = '4'`` leaks a bit per row count).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from gateway.sqlast import DIALECT, Parser, parse, tokenize
from pcigate.config.models import ColumnRule, MaskingProfile

__all__ = [
    "Action",
    "ColumnRules",
    "Handle",
    "Lineage",
    "LineageAnalyzer",
    "OutputColumn",
    "SensitiveSpec",
    "analyze",
    "stricter",
]

Action = Literal["clear", "bin_last4", "last4", "full", "null"]
Handle = tuple[Literal["cursor", "statement"], str]
"""A named cursor or prepared statement: ``("cursor", "c")``, ``("statement", "p")``."""

_RANK: Final[dict[Action, int]] = {"clear": 0, "bin_last4": 1, "last4": 2, "full": 3, "null": 4}


def stricter(a: Action, b: Action) -> Action:
    """The action that hides more (``clear < bin_last4 < last4 < full < null``)."""
    return a if _RANK[a] >= _RANK[b] else b


# --- public types ---------------------------------------------------------------------------------------


class ColumnRules:
    """A masking profile's column rules: the first matching rule's action per name, remembered."""

    def __init__(self, rules: Sequence[ColumnRule]) -> None:
        self._rules = tuple(rules)
        self._actions: dict[str, Action] = {}

    def action(self, name: str) -> Action:
        """The first matching column rule's action for ``name`` ("clear" when none matches)."""
        known = self._actions.get(name)
        if known is not None:
            return known
        action: Action = next((r.action for r in self._rules if r.matches(name)), "clear")
        if len(self._actions) < 65536:
            self._actions[name] = action
        return action


@dataclass(frozen=True, slots=True)
class SensitiveSpec:
    """What is sensitive: the masking profile's column rules, configured views, and the catalog if known.

    ``views`` maps a relation (``schema.name`` or ``name``) to its sensitive output columns (``"*"``: all
    of them); those columns are treated as computed from card data (``full``, ``null`` if a ``null`` rule
    also matches), since a view's body is invisible here. ``schema`` maps a relation to its columns in
    order (user columns, no dropped ones); without it, ``*`` stays unexpanded and whole-row references
    are assumed to carry card data.
    """

    rules: tuple[ColumnRule, ...]
    views: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schema: Mapping[str, tuple[str, ...]] | None = None

    @classmethod
    def from_profile(
        cls, profile: MaskingProfile, schema: Mapping[str, tuple[str, ...]] | None = None
    ) -> SensitiveSpec:
        return cls(profile.columns, profile.views, schema)


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """What one result column carries.

    ``action`` is the bare column's rule action, ``full``/``null`` for anything computed from a sensitive
    column (then ``derived`` is true), else ``clear``. ``sources`` names the sensitive base columns
    (``"cards.pan"``, ``"cards.*"`` for a whole row of unknown columns). ``star`` marks a ``*`` of
    unknown width over the named relation(s): it covers the RowDescription columns the other entries do
    not, and the name rules decide for those. ``name`` is the column name the server will report, where
    it is certain (an alias or a plain column), else None.
    """

    action: Action
    sources: tuple[str, ...] = ()
    star: str | None = None
    derived: bool = False
    name: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Lineage:
    """The verdict on one statement.

    ``columns`` is None when the statement returns no rows of table data (DDL, plain DML, SET, SHOW, a
    statement we could not parse that names nothing sensitive: content detection is then the only net).
    ``sensitive``: the statement reads or writes a sensitive column anywhere (WHERE, JOIN, ORDER BY
    included). ``unknown``: why the lineage could not be determined; the caller must fail closed.

    ``DECLARE`` and ``PREPARE`` set ``defines``: their ``columns`` describe the rows a later ``FETCH`` or
    ``EXECUTE`` returns (the statement itself returns none). ``FETCH`` and ``EXECUTE`` set ``uses`` and
    are ``unknown`` on their own: a session that remembers the lineage of what it declared substitutes
    it; one that does not fails closed.
    """

    columns: tuple[OutputColumn, ...] | None
    sensitive: bool
    unknown: str | None = None
    defines: Handle | None = None
    uses: Handle | None = None


def analyze(sql: str, spec: SensitiveSpec) -> Lineage:
    """Lineage of one statement (uncached; the gateway uses a :class:`LineageAnalyzer` per profile)."""
    return LineageAnalyzer(spec, cache_size=0).analyze(sql)


# --- sqlglot, configured for this use ---------------------------------------------------------------------


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_UESCAPE: Final = re.compile(r"""(?<![\w$])u&["]""", re.IGNORECASE)
_WORD: Final = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)')
_LONG_DIGITS: Final = re.compile(r"\d(?:[ -]?\d){6,}")

# Functions that run SQL given as text (or dump whole tables): what they return cannot be traced.
_DYNAMIC_SQL: Final = re.compile(r"(?:query|cursor|table|schema|database)_to_xml|dblink")
# Functions that keep an argument where a later statement or another channel can read it back.
_SINKS: Final = re.compile(
    r"set_config|pg_notify|setval|pg_(?:try_)?advisory_|lo_|pg_logical_emit_message|pg_file_write"
)
# Catalog views that hold sampled column values (histogram bounds, most common values).
_BUILTIN_VIEWS: Final[dict[str, tuple[str, ...]]] = {
    "pg_catalog.pg_stats": ("most_common_vals", "histogram_bounds", "most_common_elems"),
    "pg_catalog.pg_stats_ext": ("most_common_vals",),
    "pg_catalog.pg_stats_ext_exprs": ("most_common_vals", "histogram_bounds", "most_common_elems"),
    "pg_catalog.pg_statistic": tuple(f"stavalues{i}" for i in range(1, 6)),
    "pg_catalog.pg_statistic_ext_data": ("stxdmcv",),
}
# First words of statements that return no rows of table data and read none.
_NO_ROWS: Final = frozenset(
    {
        "ABORT",
        "BEGIN",
        "CHECKPOINT",
        "CLOSE",
        "CLUSTER",
        "COMMIT",
        "DEALLOCATE",
        "DISCARD",
        "END",
        "LISTEN",
        "LOAD",
        "LOCK",
        "MOVE",
        "NOTIFY",
        "REFRESH",
        "REINDEX",
        "RELEASE",
        "RESET",
        "ROLLBACK",
        "SAVEPOINT",
        "SET",
        "SHOW",
        "START",
        "UNLISTEN",
        "VACUUM",
    }
)
_NO_ROW_NODES: Final = (
    exp.Set,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Grant,
    exp.Revoke,
    exp.Comment,
    exp.Analyze,
    exp.Create,
    exp.Refresh,
    exp.Lock,
)
_TEXT_TYPES: Final = frozenset({exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR})
_MAX_RECURSION_STEPS: Final = 16


def _safe(name: str) -> str:
    """An identifier fit for reasons and sources: a quoted identifier may itself be a card number."""
    return _LONG_DIGITS.sub(lambda m: "#" * len(m.group()), name)


@lru_cache(maxsize=8192)
def _fold(text: str, quoted: bool) -> str:
    """PostgreSQL's identifier: unquoted ones fold ASCII to lower case; all are cut to 63 bytes."""
    if not quoted:
        text = text.translate(_ASCII_LOWER)
    if len(text) > 15:  # shorter text is under 63 bytes even in four-byte characters
        raw = text.encode()
        if len(raw) > 63:
            text = raw[:63].decode(errors="ignore")
    return text


def _ident(node: object) -> str:
    if isinstance(node, exp.Identifier):
        return _fold(str(node.this), bool(node.args.get("quoted")))
    if isinstance(node, str):
        return _fold(node, False)
    if isinstance(node, exp.Expression):
        return _ident(node.this) if node.this is not None else _fold(node.name, False)
    raise _UnknownError("an identifier has an unexpected form")


def _key_parts(key: str) -> tuple[str | None, str]:
    """``schema.name`` or ``name`` of a configured relation, compared case-insensitively."""
    db, _, name = key.casefold().rpartition(".")
    return (db or None), name


# --- taints: what flows into one value --------------------------------------------------------------------


class _UnknownError(Exception):
    """The lineage cannot be determined; the message names identifiers only."""


class _OpaqueError(Exception):
    """The statement is not one we model; the mention rule decides (see ``_Walk.opaque``)."""


class _NotReadyError(Exception):
    """A recursive CTE refers to a sibling not evaluated yet."""


@dataclass(frozen=True, slots=True)
class _Taint:
    """Sensitive sources whose value flows into a value (with their actions), and those merely read."""

    sources: frozenset[tuple[str, Action]] = frozenset()
    derived: bool = False  # computed from a source, not a source's own value (only with sources)
    reads: frozenset[str] = frozenset()

    @property
    def action(self) -> Action:
        if not self.sources:
            return "clear"
        actions = [a for _, a in self.sources]
        if self.derived:
            return "null" if "null" in actions else "full"
        return max(actions, key=_RANK.__getitem__)


_CLEAR: Final = _Taint()


def _derive(taints: Iterable[_Taint]) -> _Taint:
    """A value computed from ``taints``: it carries their sources, but no longer as their own values."""
    sources: set[tuple[str, Action]] = set()
    reads: set[str] = set()
    for t in taints:
        sources |= t.sources
        reads |= t.reads
    return _Taint(frozenset(sources), bool(sources), frozenset(reads)) if sources or reads else _CLEAR


def _merge(taints: Iterable[_Taint]) -> _Taint:
    """One of ``taints``' values (a UNION column, an ambiguous name): their sources, as they were."""
    sources: set[tuple[str, Action]] = set()
    reads: set[str] = set()
    derived = False
    for t in taints:
        sources |= t.sources
        reads |= t.reads
        derived = derived or (t.derived and bool(t.sources))
    return _Taint(frozenset(sources), derived, frozenset(reads)) if sources or reads else _CLEAR


def _read_only(taints: Iterable[_Taint]) -> _Taint:
    """A result that cannot carry the values it read (a count, a predicate)."""
    reads: set[str] = set()
    for t in taints:
        reads |= t.reads
    return _Taint(reads=frozenset(reads)) if reads else _CLEAR


# --- relations --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Col:
    name: str | None
    taint: _Taint


@dataclass(frozen=True, slots=True, eq=False)
class _Star:
    """The columns of a relation whose number and names are not known here."""

    rel: _Rel


_Item = _Col | _Star


class _Rel:
    """A FROM item. ``ref`` is the name it is referred by (its alias, else its own name)."""

    label: str
    ref: str | None
    db: str | None = None

    def lookup(self, name: str) -> _Taint | None:
        """What column ``name`` carries; None when the relation certainly has no such column."""
        raise NotImplementedError

    def definite(self, name: str) -> bool:
        """Whether the relation certainly has column ``name`` (stops the search in outer scopes)."""
        raise NotImplementedError

    def whole(self) -> _Taint:
        """A whole-row reference (``c``, ``c.*`` in an expression, ``row_to_json(c)``)."""
        raise NotImplementedError

    def items(self) -> list[_Item]:
        """``c.*`` in a select list."""
        raise NotImplementedError


class _BaseRel(_Rel):
    """A table or view by name; its columns are known when the catalog schema lists it."""

    def __init__(
        self,
        walk: _Walk,
        label: str,
        ref: str,
        *,
        db: str | None,
        alias: str | None,
        columns: tuple[str, ...] | None,
        view: frozenset[str] | None,
        renames: Sequence[str],
    ) -> None:
        self.walk = walk
        self.label = label
        self.ref = alias if alias is not None else ref
        self.db = None if alias is not None else db
        self.view = view
        self.origin = columns
        self.names: list[str] | None = None
        self.renamed: frozenset[str] = frozenset()
        if columns is not None:
            self.names = [*renames[: len(columns)], *columns[len(renames) :]]
        else:
            self.renamed = frozenset(renames)
        self.overlay: dict[str, _Taint] = {}  # DML: what a column holds after the statement wrote it
        self.overlay_all: _Taint | None = None

    def copy(self, alias: str, keep_overlay: bool) -> _BaseRel:
        twin = _BaseRel(
            self.walk,
            self.label,
            self.label,
            db=None,
            alias=alias,
            columns=self.origin,
            view=self.view,
            renames=(),
        )
        twin.names, twin.renamed = self.names, self.renamed
        if keep_overlay:
            twin.overlay, twin.overlay_all = self.overlay, self.overlay_all
        return twin

    def _column(self, origin: str, name: str) -> _Taint:
        base = self.walk.base_taint(self.label, self.view, origin)
        extra = [t for t in (self.overlay.get(name), self.overlay_all) if t is not None]
        return _merge([base, *extra]) if extra else base

    def lookup(self, name: str) -> _Taint | None:
        if self.names is None or self.origin is None:
            if name in self.renamed:
                raise _UnknownError(
                    f"{_safe(self.label)} has a column alias list and its columns are not known"
                )
            return self._column(name, name)
        hits = [self._column(o, n) for o, n in zip(self.origin, self.names, strict=True) if n == name]
        return _merge(hits) if hits else None

    def definite(self, name: str) -> bool:
        return self.names is not None and name in self.names

    def whole(self) -> _Taint:
        if self.names is None or self.origin is None:
            star = f"{self.label}.*"
            unknown = _Taint(frozenset({(star, "full")}), True, frozenset({star}))
            return _derive([unknown, *self.overlay.values(), *filter(None, [self.overlay_all])])
        return _derive(self._column(o, n) for o, n in zip(self.origin, self.names, strict=True))

    def items(self) -> list[_Item]:
        if self.names is None or self.origin is None:
            if self.renamed:
                raise _UnknownError(
                    f"* over {_safe(self.label)}, which has a column alias list and unknown columns"
                )
            if self.view:
                raise _UnknownError(
                    f"* over {_safe(self.label)}, a configured view whose columns are not known"
                )
            # RETURNING * of a row this statement wrote: the names decide only if no column now holds a
            # value other than its own (`SET brand = pan` would hide a PAN under `brand`).
            moved = self.overlay_all is not None and bool(self.overlay_all.sources)
            for name, taint in self.overlay.items():
                own = self.walk.base_taint(self.label, self.view, name)
                moved = moved or _merge([own, taint]) != own
            if moved:
                raise _UnknownError(f"RETURNING * of {_safe(self.label)}, written from a sensitive column")
            return [_Star(self)]
        return [_Col(n, self._column(o, n)) for o, n in zip(self.origin, self.names, strict=True)]


class _DerivedRel(_Rel):
    """A subquery, CTE, VALUES list or aliased join: its columns are the items it produced."""

    def __init__(self, label: str, ref: str | None, items: list[_Item], renames: Sequence[str]) -> None:
        self.label = label
        self.ref = ref
        self.scrambled: str | None = None
        self.cols = list(items)
        if renames:
            first_star = next((i for i, it in enumerate(items) if isinstance(it, _Star)), len(items))
            if len(renames) > first_star:
                self.scrambled = f"{_safe(label)} renames columns of a * whose columns are not known"
                return
            for i, new in enumerate(renames):
                col = self.cols[i]
                if isinstance(col, _Col):
                    self.cols[i] = _Col(new, col.taint)

    def _check(self) -> None:
        if self.scrambled is not None:
            raise _UnknownError(self.scrambled)

    def lookup(self, name: str) -> _Taint | None:
        self._check()
        return _find_in_items(self.cols, name)

    def definite(self, name: str) -> bool:
        return any(isinstance(it, _Col) and it.name == name for it in self.cols)

    def whole(self) -> _Taint:
        return _derive(it.taint if isinstance(it, _Col) else it.rel.whole() for it in self.cols)

    def items(self) -> list[_Item]:
        self._check()
        return list(self.cols)


class _FuncRel(_Rel):
    """A function in FROM (``generate_series``, ``unnest``, ``jsonb_each`` ...): any column, one taint."""

    def __init__(self, label: str, ref: str | None, renames: Sequence[str], taint: _Taint) -> None:
        self.label = label
        self.ref = ref
        self.renames = tuple(renames)
        self.taint = _derive([taint]) if taint.sources else taint

    def lookup(self, name: str) -> _Taint | None:
        return self.taint

    def definite(self, name: str) -> bool:
        return name in self.renames or (not self.renames and name == self.ref)

    def whole(self) -> _Taint:
        return self.taint

    def items(self) -> list[_Item]:
        if self.taint.sources:
            raise _UnknownError(
                f"* over {_safe(self.label)}(), whose result is computed from a sensitive column"
            )
        return [_Star(self)]


def _find_in_items(items: Sequence[_Item], name: str) -> _Taint | None:
    hits: list[_Taint] = []
    for it in items:
        if isinstance(it, _Col):
            if it.name == name:
                hits.append(it.taint)
        else:
            found = it.rel.lookup(name)
            if found is not None:
                hits.append(found)
    return _merge(hits) if hits else None


def _merge_items(a: list[_Item], b: list[_Item]) -> list[_Item]:
    """Columns of a set operation: position by position; names come from the first branch."""
    if len(a) != len(b):
        raise _UnknownError("the branches of a set operation differ in width")
    out: list[_Item] = []
    for x, y in zip(a, b, strict=True):
        if isinstance(x, _Col) and isinstance(y, _Col):
            out.append(_Col(x.name, _merge([x.taint, y.taint])))
        elif isinstance(x, _Star) and isinstance(y, _Star) and x.rel.label == y.rel.label:
            out.append(x)
        else:
            raise _UnknownError("a set operation combines * of unknown width with other columns")
    return out


@dataclass(eq=False, slots=True)
class _Join:
    left: _Rel | _Join
    right: _Rel | _Join
    using: tuple[str, ...]
    natural: bool


_Tree = _Rel | _Join


@dataclass(eq=False, slots=True)
class _Scope:
    """The relations visible by name at one query level, its FROM list (for ``*``) and its CTEs."""

    parent: _Scope | None
    rels: list[_Rel] = field(default_factory=list)
    trees: list[_Tree] = field(default_factory=list)
    ctes: dict[str, list[_Item] | None] = field(default_factory=dict)


# --- the analyzer -----------------------------------------------------------------------------------------


class LineageAnalyzer:
    """Lineage for one :class:`SensitiveSpec`, cached per statement text.

    Built once per masking profile. ``analyze`` is safe to call from several threads; cache entries
    hold statement texts up to ``max_cached_chars`` (longer ones are analyzed every time).
    """

    def __init__(self, spec: SensitiveSpec, *, cache_size: int = 4096, max_cached_chars: int = 16384) -> None:
        self.spec = spec
        self._max_cached = max_cached_chars if cache_size > 0 else -1
        self._rules = ColumnRules(spec.rules)
        self._views: dict[tuple[str | None, str], frozenset[str]] = {}
        for key, names in (*_BUILTIN_VIEWS.items(), *spec.views.items()):
            parts = _key_parts(key)
            self._views[parts] = self._views.get(parts, frozenset()) | {n.casefold() for n in names}
        self._schema: dict[tuple[str | None, str], tuple[str, ...]] = {}
        self._schema_by_name: dict[str, list[tuple[str, ...]]] = {}
        for key, columns in (spec.schema or {}).items():
            db, name = _key_parts(key)
            self._schema[(db, name)] = tuple(columns)
            self._schema_by_name.setdefault(name, []).append(tuple(columns))
        # Relation names whose mention makes an opaque statement suspect.
        self._hot = {name for _, name in self._views} | {
            name
            for (_, name), columns in self._schema.items()
            if any(self.column_action(c) != "clear" for c in columns)
        }
        self._cached = lru_cache(maxsize=cache_size)(self._analyze) if cache_size > 0 else self._analyze

    def analyze(self, sql: str) -> Lineage:
        """The lineage of one statement (split a simple Query's text first: several give ``unknown``)."""
        if len(sql) > self._max_cached:
            return self._analyze(sql)
        return self._cached(sql)

    def column_action(self, name: str) -> Action:
        """The first matching column rule's action for ``name`` ("clear" when none matches)."""
        return self._rules.action(name)

    def relation(self, db: str | None, name: str) -> tuple[tuple[str, ...] | None, frozenset[str] | None]:
        """The catalog's columns of a relation (None: unknown) and its configured sensitive columns."""
        key = (db.casefold() if db else None, name.casefold())
        if db:
            columns = self._schema.get(key) or self._schema.get((None, key[1]))
        else:
            found = self._schema_by_name.get(key[1], [])
            # Which schema an unqualified name means depends on search_path: only a unique one is sure.
            columns = found[0] if len(set(found)) == 1 else None
        view: set[str] = set()
        for (vdb, vname), names in self._views.items():
            if vname == key[1] and (vdb is None or key[0] is None or vdb == key[0]):
                view |= names
        return columns, (frozenset(view) if view else None)

    def mentions(self, sql: str) -> bool:
        """Whether the text names (anywhere, even in a string or comment) a sensitive column or relation."""
        for m in _WORD.finditer(sql):
            quoted = m.group(1)
            word = quoted.replace('""', '"') if quoted is not None else m.group(2)
            if word.casefold() in self._hot or self.column_action(word) != "clear":
                return True
        return False

    def _analyze(self, sql: str) -> Lineage:
        if _UESCAPE.search(sql):
            return Lineage(None, True, 'a unicode-escaped identifier (U&"...") is not analyzed')
        walk = _Walk(self, sql)
        try:
            tokens = tokenize(sql)
            return walk.statement(tokens)
        except _UnknownError as exc:
            return Lineage(None, True, str(exc))
        except _OpaqueError as exc:
            return walk.opaque(str(exc))
        except SqlglotError:
            return walk.opaque("the statement cannot be parsed")
        except RecursionError:
            return Lineage(None, True, "the statement nests too deeply to analyze")
        except Exception as exc:  # a gap in this module must fail closed, never pass card data
            return Lineage(None, True, f"internal error in the lineage analysis ({type(exc).__name__})")


def _token_ident(token: Token) -> str:
    return _fold(token.text, token.token_type == TokenType.IDENTIFIER)


def _words(tokens: Sequence[Token]) -> list[str]:
    return [t.text.upper() for t in tokens]


class _Walk:
    """One analysis: walks the statement's AST, collecting what it reads."""

    def __init__(self, analyzer: LineageAnalyzer, sql: str) -> None:
        self.an = analyzer
        self.sql = sql
        self.reads: set[str] = set()

    # --- statements -------------------------------------------------------------------------------------

    def opaque(self, reason: str) -> Lineage:
        """A statement we do not model: unknown if it names anything sensitive, else content detection."""
        if self.an.mentions(self.sql):
            return Lineage(None, True, f"{reason}, and it names a sensitive column or relation")
        return Lineage(None, False)

    def statement(self, tokens: Sequence[Token]) -> Lineage:
        while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
            tokens = tokens[:-1]
        if not tokens:
            return Lineage(None, False)
        head = tokens[0].text.upper()
        if tokens[0].token_type in (TokenType.IDENTIFIER, TokenType.STRING):
            head = ""
        if head == "DECLARE":
            return self._declare(tokens)
        if head == "PREPARE":
            return self._prepare(tokens)
        if head == "EXECUTE":
            return self._execute(tokens)
        if head == "FETCH":
            name = _token_ident(tokens[-1])
            return Lineage(
                None,
                False,
                f"rows of cursor {_safe(name)}: its DECLARE's lineage applies",
                uses=("cursor", name),
            )
        if head == "EXPLAIN":
            return self._explain(tokens)
        if head in _NO_ROWS:
            return Lineage(None, False)
        parsed = [e for e in Parser(dialect=DIALECT).parse(list(tokens), self.sql) if e is not None]
        if not parsed:
            return Lineage(None, False)
        if len(parsed) > 1:
            raise _UnknownError("the text holds several statements; analyze them one by one")
        node = parsed[0]
        if not isinstance(node, exp.Expression):
            raise _OpaqueError("the statement has an unexpected form")
        return self._node(node)

    def _node(self, node: exp.Expression) -> Lineage:
        root = _Scope(None)
        if isinstance(node, exp.Command):
            raise _OpaqueError(f"{_safe(str(node.this))} statements are not analyzed")
        if isinstance(node, exp.Select) and node.args.get("into") is not None:
            self._consume_items(self._query(node, root))
            return Lineage(None, bool(self.reads))
        if isinstance(node, (exp.Query, exp.Values)):
            return self._rows(self._query(node, root))
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
            items = self._dml(node, root)
            return Lineage(None, bool(self.reads)) if items is None else self._rows(items)
        if isinstance(node, exp.Copy):
            return self._copy(node, root)
        if isinstance(node, exp.Create) and isinstance(node.args.get("expression"), (exp.Query, exp.Values)):
            try:
                self._consume_items(self._query(node.args["expression"], root))
            except _UnknownError:
                return Lineage(None, True)
            return Lineage(None, bool(self.reads) or self.an.mentions(self.sql))
        if isinstance(node, _NO_ROW_NODES):
            return Lineage(None, self.an.mentions(self.sql))
        raise _OpaqueError("the statement is not one the analysis models")

    def _rows(self, items: list[_Item]) -> Lineage:
        return Lineage(self._output(items), bool(self.reads))

    def _output(self, items: list[_Item]) -> tuple[OutputColumn, ...]:
        out: list[OutputColumn] = []
        runs = 0
        for it in items:
            if isinstance(it, _Star):
                label = _safe(it.rel.label)
                if out and out[-1].star is not None:
                    out[-1] = OutputColumn("clear", star=f"{out[-1].star},{label}")
                else:
                    runs += 1
                    out.append(OutputColumn("clear", star=label))
                continue
            t = it.taint
            self.reads |= t.reads
            sources = tuple(sorted({_safe(s) for s, _ in t.sources}))
            out.append(OutputColumn(t.action, sources, None, t.derived and bool(t.sources), it.name))
        if runs > 1 and any(c.star is None and c.action != "clear" for c in out):
            raise _UnknownError(
                "several * of unknown width surround a column computed from a sensitive column"
            )
        return tuple(out)

    def _consume_items(self, items: Iterable[_Item]) -> None:
        for it in items:
            self.reads |= (it.taint if isinstance(it, _Col) else it.rel.whole()).reads

    def _inner(self, tokens: Sequence[Token]) -> Lineage:
        """A statement embedded in DECLARE, PREPARE or EXPLAIN, with the same failure rules as a top one."""
        try:
            return self.statement(tokens)
        except _OpaqueError as exc:
            return self.opaque(str(exc))
        except SqlglotError:
            return self.opaque("the statement cannot be parsed")

    def _declare(self, tokens: Sequence[Token]) -> Lineage:
        # DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH|WITHOUT} HOLD] FOR query
        words = _words(tokens)
        if len(tokens) < 4 or "CURSOR" not in words:
            raise _OpaqueError("DECLARE has an unexpected form")
        name = _token_ident(tokens[1])
        i = words.index("CURSOR") + 1
        if words[i : i + 2] in (["WITH", "HOLD"], ["WITHOUT", "HOLD"]):
            i += 2
        if i >= len(words) or words[i] != "FOR":
            raise _OpaqueError("DECLARE has an unexpected form")
        inner = self._inner(tokens[i + 1 :])
        return Lineage(inner.columns, inner.sensitive, inner.unknown, defines=("cursor", name))

    def _prepare(self, tokens: Sequence[Token]) -> Lineage:
        # PREPARE name [(type, ...)] AS statement; PREPARE TRANSACTION 'id' returns nothing.
        if len(tokens) > 1 and tokens[1].text.upper() == "TRANSACTION":
            return Lineage(None, False)
        depth = 0
        for i, tok in enumerate(tokens[2:], start=2):
            if tok.token_type == TokenType.L_PAREN:
                depth += 1
            elif tok.token_type == TokenType.R_PAREN:
                depth -= 1
            elif depth == 0 and tok.text.upper() == "AS":
                inner = self._inner(tokens[i + 1 :])
                name = _token_ident(tokens[1])
                return Lineage(inner.columns, inner.sensitive, inner.unknown, defines=("statement", name))
        raise _OpaqueError("PREPARE has an unexpected form")

    def _execute(self, tokens: Sequence[Token]) -> Lineage:
        # EXECUTE name [(argument, ...)]: an argument computed from card data becomes a parameter the
        # prepared statement may return as is.
        if len(tokens) < 2:
            raise _OpaqueError("EXECUTE has an unexpected form")
        name = _token_ident(tokens[1])
        if len(tokens) > 2:
            if tokens[2].token_type != TokenType.L_PAREN or tokens[-1].token_type != TokenType.R_PAREN:
                raise _OpaqueError("EXECUTE has an unexpected form")
            text = "SELECT " + self.sql[tokens[3].start : tokens[-2].end + 1] if len(tokens) > 4 else "SELECT"
            parsed = parse(text)
            if len(parsed) != 1 or not isinstance(parsed[0], exp.Select):
                raise _OpaqueError("EXECUTE has an unexpected form")
            taints = [self._expr(arg, _Scope(None)) for arg in parsed[0].expressions]
            self.reads |= _read_only(taints).reads
            if any(t.sources for t in taints):
                raise _UnknownError("EXECUTE passes a value computed from a sensitive column as a parameter")
        return Lineage(
            None,
            bool(self.reads),
            f"rows of prepared statement {_safe(name)}: its PREPARE's lineage applies",
            uses=("statement", name),
        )

    def _explain(self, tokens: Sequence[Token]) -> Lineage:
        # EXPLAIN [(option, ...)] | [ANALYZE] [VERBOSE] statement: a plan holds no row values, but with
        # ANALYZE the statement runs, so what it would keep elsewhere (a sink) still counts.
        words = _words(tokens)
        i = 1
        if i < len(tokens) and tokens[i].token_type == TokenType.L_PAREN:
            depth = 0
            for j in range(i, len(tokens)):
                depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[j].token_type, 0)
                if depth == 0:
                    i = j + 1
                    break
        while i < len(words) and words[i] in ("ANALYZE", "ANALYSE", "VERBOSE"):
            i += 1
        runs = any(w in ("ANALYZE", "ANALYSE") for w in words[1:i])
        try:
            inner = self._inner(tokens[i:])
        except _UnknownError as exc:
            inner = Lineage(None, True, str(exc))
        plan = (OutputColumn("clear", name="QUERY PLAN"),)
        return Lineage(plan, inner.sensitive or inner.unknown is not None, inner.unknown if runs else None)

    def _copy(self, node: exp.Copy, scope: _Scope) -> Lineage:
        if node.args.get("kind"):  # COPY ... FROM: data goes in
            return Lineage(None, self.an.mentions(self.sql))
        target = node.this
        items: list[_Item]
        if isinstance(target, exp.Subquery):
            items = self._query(target.this, scope)
        elif isinstance(target, exp.Schema) and isinstance(target.this, exp.Table):
            rel = self._relation(target.this, scope)
            names = [_ident(c) for c in target.expressions]
            items = [_Col(n, rel.lookup(n) or self.by_name(n)) for n in names]
        elif isinstance(target, exp.Table):
            rel = self._relation(target, scope)
            items = rel.items()
            if any(isinstance(it, _Star) for it in items):
                raise _UnknownError(
                    f"COPY {_safe(rel.label)} names no columns and the table's columns are not known"
                )
        else:
            raise _OpaqueError("COPY has an unexpected form")
        if any(isinstance(it, _Star) for it in items):
            raise _UnknownError(
                "COPY of * over a table whose columns are not known (COPY announces no names)"
            )
        files = node.args.get("files") or []
        to_client = any(isinstance(f, exp.Identifier) and str(f.this).upper() == "STDOUT" for f in files)
        if not to_client:  # a server-side file or program: no rows come back
            self._consume_items(items)
            return Lineage(None, bool(self.reads))
        return self._rows(items)

    # --- queries ----------------------------------------------------------------------------------------

    def _query(self, node: exp.Expression, outer: _Scope) -> list[_Item]:
        """The output columns of a query expression, evaluated with ``outer`` visible (correlation)."""
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            outer = self._with(with_, outer)
        if isinstance(node, exp.Subquery):
            items = self._query(node.this, outer)
            self._clauses(node, outer, skip=("this", "alias", "with_"))
            return items
        if isinstance(node, exp.Select):
            return self._select(node, outer)
        if isinstance(node, exp.SetOperation):
            left = self._query(node.this, outer)
            right = self._query(node.expression, outer)
            self._clauses(node, outer, skip=("this", "expression", "with_"))
            return _merge_items(left, right)
        if isinstance(node, exp.Values):
            return self._values(node, outer)
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
            return self._dml(node, outer) or []
        raise _UnknownError(f"a query of the form {type(node).__name__} is not modelled")

    def _with(self, node: exp.With, outer: _Scope) -> _Scope:
        scope = _Scope(outer)
        ctes = [c for c in node.expressions if isinstance(c, exp.CTE)]
        if not node.args.get("recursive"):
            for cte in ctes:  # each sees the ones before it
                alias, renames = _alias(cte)
                scope.ctes[alias or ""] = self._cte_items(cte, alias or "", renames, scope, recursive=False)
            return scope
        pending = []
        for cte in ctes:
            alias, renames = _alias(cte)
            scope.ctes[alias or ""] = None
            pending.append((cte, alias or "", renames))
        while pending:  # WITH RECURSIVE: siblings may refer to each other in any order
            progress = False
            for entry in list(pending):
                cte, alias, renames = entry
                try:
                    scope.ctes[alias] = self._cte_items(cte, alias, renames, scope, recursive=True)
                except _NotReadyError:
                    continue
                pending.remove(entry)
                progress = True
            if not progress:
                raise _UnknownError("CTEs refer to each other in a way the analysis does not model")
        return scope

    def _cte_items(
        self, cte: exp.CTE, alias: str, renames: Sequence[str], scope: _Scope, *, recursive: bool
    ) -> list[_Item]:
        body = cte.this
        if (
            not recursive
            or not isinstance(body, exp.SetOperation)
            or alias not in _table_names(body.expression)
        ):
            return _DerivedRel(alias, alias, self._query(body, scope), renames).items()
        # A recursive CTE: the first branch seeds it, the second is re-evaluated until nothing changes.
        items = _DerivedRel(alias, alias, self._query(body.this, scope), renames).items()
        for _ in range(_MAX_RECURSION_STEPS):
            scope.ctes[alias] = items
            step = _DerivedRel(alias, alias, self._query(body.expression, scope), renames).items()
            merged = _merge_items(items, step)
            if merged == items:
                return merged
            items = merged
        raise _UnknownError(f"recursive CTE {_safe(alias)} does not settle")

    def _select(self, node: exp.Select, outer: _Scope) -> list[_Item]:
        scope = _Scope(outer)
        from_ = node.args.get("from_")
        if isinstance(from_, exp.From):
            scope.trees = self._join_list(from_.this, node.args.get("joins") or [], scope)
        self._clauses(node, scope, skip=("expressions", "from_", "joins", "with_", "into"))
        items: list[_Item] = []
        for e in node.expressions:
            items += self._projection(e, scope)
        return items

    def _clauses(self, node: exp.Expression, scope: _Scope, skip: Sequence[str]) -> None:
        """Every other clause (WHERE, GROUP BY, ORDER BY, LIMIT, DISTINCT ON ...) only reads."""
        for key, value in node.args.items():
            if key in skip:
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, exp.Expression):
                    self.reads |= self._expr(child, scope).reads

    def _projection(self, e: exp.Expression, scope: _Scope) -> list[_Item]:
        bare = _unparen(e)
        if isinstance(bare, exp.Column) and isinstance(bare.this, exp.Star):  # `c.*`, `(c.*)` expand
            e = bare
        if isinstance(e, exp.Star):
            items: list[_Item] = []
            for tree in scope.trees:
                items += self._expand(tree)
            return items
        if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
            return self._rel_named(scope, _qualifier(e)).items()
        if isinstance(e, exp.Dot) and isinstance(e.expression, exp.Star):  # (composite).*
            target = _unparen(e.this)
            if isinstance(target, exp.Column):
                qual = _qualifier(target) if isinstance(target.this, exp.Star) else (_ident(target.this),)
                rel = self._find(scope, qual)
                if rel is not None:
                    return rel.items()
            taint = self._expr(e.this, scope)
            if taint.sources:
                raise _UnknownError("(...).* expands a composite computed from a sensitive column")
            self.reads |= taint.reads
            return [_Star(_FuncRel("composite", None, (), _CLEAR))]
        return [_Col(_output_name(e), self._expr(e, scope))]

    def _expand(self, tree: _Tree) -> list[_Item]:
        """``*`` over a FROM item; USING and NATURAL columns come first, once (as PostgreSQL does)."""
        if isinstance(tree, _Rel):
            return tree.items()
        left, right = self._expand(tree.left), self._expand(tree.right)
        using = list(tree.using)
        if tree.natural:
            if any(isinstance(it, _Star) for it in (*left, *right)):
                # The common columns are not known: the markers cover everything, names decide.
                if any(isinstance(it, _Col) and it.taint.sources for it in (*left, *right)):
                    raise _UnknownError("NATURAL JOIN of a relation whose columns are not known")
                return [it for it in (*left, *right) if isinstance(it, _Star)]
            right_names = {it.name for it in right if isinstance(it, _Col) and it.name is not None}
            using = [it.name for it in left if isinstance(it, _Col) and it.name in right_names]
        if not using:
            return left + right
        merged: list[_Item] = [
            _Col(n, _merge(t for t in (_find_in_items(left, n), _find_in_items(right, n)) if t is not None))
            for n in using
        ]
        rest = [it for it in (*left, *right) if not (isinstance(it, _Col) and it.name in using)]
        return merged + rest

    def _values(self, node: exp.Values, scope: _Scope) -> list[_Item]:
        rows = [r.expressions if isinstance(r, exp.Tuple) else [r] for r in node.expressions]
        width = max((len(r) for r in rows), default=0)
        items: list[_Item] = [
            _Col(f"column{i + 1}", _merge(self._expr(r[i], scope) for r in rows if i < len(r)))
            for i in range(width)
        ]
        self._clauses(node, scope, skip=("expressions", "alias", "with_"))
        return items

    # --- FROM -------------------------------------------------------------------------------------------

    def _join_list(
        self, first: exp.Expression, joins: Sequence[exp.Expression], scope: _Scope
    ) -> list[_Tree]:
        """FROM items as trees: commas separate trees, JOINs nest left-deep within one."""
        trees: list[_Tree] = [self._from_item(first, scope)]
        for join in joins:
            if not isinstance(join, exp.Join):
                raise _UnknownError("a FROM clause has an unexpected form")
            right = self._from_item(join.this, scope)
            using = tuple(_ident(u) for u in join.args.get("using") or [])
            for name in using:
                self.reads |= self._unqualified(scope, name).reads
            on = join.args.get("on")
            if isinstance(on, exp.Expression):
                self.reads |= self._expr(on, scope).reads
            natural = str(join.args.get("method") or "").upper() == "NATURAL"
            if not any(join.args.get(k) for k in ("on", "using", "kind", "side", "method")):
                trees.append(right)
            else:
                trees[-1] = _Join(trees[-1], right, using, natural)
        return trees

    def _from_item(self, node: exp.Expression, scope: _Scope) -> _Tree:
        alias, renames = _alias(node)
        if isinstance(node, exp.Lateral):
            node = node.this
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            rel: _Rel = self._relation(node, scope, alias, renames)
        elif (
            isinstance(node, exp.Subquery)
            and isinstance(node.this, exp.Table)
            and node.this.args.get("joins")
        ):
            # A parenthesized join: without an alias its relations stay visible by their own names.
            inner = node.this
            sub = scope if alias is None else _Scope(scope)
            trees = self._join_list(inner, inner.args["joins"], sub)
            tree: _Tree = trees[0]
            for t in trees[1:]:
                tree = _Join(tree, t, (), False)
            if alias is None:
                return tree
            rel = _DerivedRel(alias, alias, self._expand(tree), renames)
        elif isinstance(node, exp.Query):
            rel = _DerivedRel(alias or "subquery", alias, self._query(node, scope), renames)
        elif isinstance(node, exp.Values):
            rel = _DerivedRel(alias or "values", alias, self._values(node, scope), renames)
        else:  # a function (or anything else): every column carries what its arguments carry
            func = node.this if isinstance(node, exp.Table) else node
            label = _func_name(func) if isinstance(func, exp.Expression) else "function"
            taint = _derive(
                self._expr(c, scope) for c in node.iter_expressions() if c is not node.args.get("alias")
            )
            rel = _FuncRel(alias or label, alias or label, renames, taint)
        scope.rels.append(rel)
        return rel

    def _relation(
        self, node: exp.Table, scope: _Scope, alias: str | None = None, renames: Sequence[str] = ()
    ) -> _Rel:
        """A relation by name: a CTE in scope, else a table or view."""
        if alias is None and not renames:
            alias, renames = _alias(node)
        name = _ident(node.this)
        db_node = node.args.get("db")
        db = _ident(db_node) if db_node is not None else None
        if db is None:
            s: _Scope | None = scope
            while s is not None:
                if name in s.ctes:
                    items = s.ctes[name]
                    if items is None:
                        raise _NotReadyError(name)
                    rel: _Rel = _DerivedRel(name, alias or name, items, renames)
                    scope.rels.append(rel)
                    return rel
                s = s.parent
        columns, view = self.an.relation(db, name)
        label = f"{db}.{name}" if db else name
        rel = _BaseRel(self, label, name, db=db, alias=alias, columns=columns, view=view, renames=renames)
        scope.rels.append(rel)
        return rel

    def base_taint(self, label: str, view: frozenset[str] | None, column: str) -> _Taint:
        action = self.an.column_action(column)
        if view is not None and ("*" in view or column.casefold() in view):
            action = stricter(action, "full")  # a view's body is invisible: its listed columns are computed
        if action == "clear":
            return _CLEAR
        source = f"{label}.{column}"
        return _Taint(frozenset({(source, action)}), False, frozenset({source}))

    def by_name(self, name: str) -> _Taint:
        """A column no relation in scope accounts for: the name rules decide."""
        action = self.an.column_action(name)
        if action == "clear":
            return _CLEAR
        return _Taint(frozenset({(name, action)}), False, frozenset({name}))

    # --- DML --------------------------------------------------------------------------------------------

    def _dml(self, node: exp.Expression, outer: _Scope) -> list[_Item] | None:
        """INSERT/UPDATE/DELETE/MERGE: what RETURNING returns (None without it) and what is read or written.

        RETURNING shows the row as written, so a column the statement sets carries what it was set to.
        """
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            outer = self._with(with_, outer)
        scope = _Scope(outer)
        target_node = node.this
        written: list[str] | None = None
        if isinstance(target_node, exp.Schema):
            written = [_ident(c) for c in target_node.expressions]
            target_node = target_node.this
        if not isinstance(target_node, exp.Table):
            raise _UnknownError("the target of a data-modifying statement has an unexpected form")
        target = self._relation(target_node, scope)
        if not isinstance(target, _BaseRel):
            raise _UnknownError("the target of a data-modifying statement is not a table")
        scope.trees.append(target)
        handled = ["this", "with_", "returning", "expression", "expressions", "from_", "joins", "using"]
        handled += ["conflict", "whens"]
        if isinstance(node, exp.Insert):
            self._insert_values(node, target, written, outer)
            conflict = node.args.get("conflict")
            if isinstance(conflict, exp.OnConflict):
                excluded = target.copy("excluded", keep_overlay=True)
                scope.rels.append(excluded)
                self._set_list(conflict.expressions, target, scope)
                self._clauses(conflict, scope, skip=("expressions",))
        elif isinstance(node, exp.Update):
            from_ = node.args.get("from_")
            if isinstance(from_, exp.From):
                scope.trees += self._join_list(from_.this, node.args.get("joins") or [], scope)
            self._set_list(node.expressions, target, scope)
        elif isinstance(node, exp.Delete):
            for item in node.args.get("using") or []:
                scope.trees.append(self._from_item(item, scope))
        elif isinstance(node, exp.Merge):
            using = node.args.get("using")
            if isinstance(using, exp.Expression):
                scope.trees.append(self._from_item(using, scope))
            whens = node.args.get("whens")
            for when in whens.expressions if isinstance(whens, exp.Whens) else []:
                then = when.args.get("then")
                if isinstance(then, exp.Update):
                    self._set_list(then.expressions, target, scope)
                elif isinstance(then, exp.Insert):
                    cols = then.this.expressions if isinstance(then.this, exp.Tuple) else []
                    vals = then.expression.expressions if isinstance(then.expression, exp.Tuple) else []
                    taints = [self._expr(v, scope) for v in vals]
                    if not cols:
                        target.overlay_all = _merge([*taints, *filter(None, [target.overlay_all])])
                        self.reads |= target.overlay_all.reads
                    for col, taint in zip(cols, taints, strict=False):
                        self._write(target, _column_name(col), taint)
                self._clauses(when, scope, skip=("then",))
        self._clauses(node, scope, skip=handled)
        returning = node.args.get("returning")
        if not isinstance(returning, exp.Returning):
            return None
        for alias, keep in (("new", True), ("old", False)):
            if target.ref != alias:
                scope.rels.append(target.copy(alias, keep_overlay=keep))
        items: list[_Item] = []
        for e in returning.expressions:
            items += self._projection(e, scope)
        return items

    def _write(self, target: _BaseRel, column: str, value: _Taint) -> None:
        self.reads |= value.reads
        own = self.base_taint(target.label, target.view, column)
        self.reads |= own.reads  # writing a sensitive column touches it
        previous = target.overlay.get(column)
        target.overlay[column] = _merge([value] if previous is None else [previous, value])

    def _insert_values(
        self, node: exp.Insert, target: _BaseRel, written: list[str] | None, outer: _Scope
    ) -> None:
        source = node.args.get("expression")
        if not isinstance(source, exp.Expression):
            for name in written or []:
                self._write(target, name, _CLEAR)
            return
        items = self._query(source, outer)
        columns = written if written is not None else target.names
        cols = [it for it in items if isinstance(it, _Col)]
        if columns is not None and len(cols) == len(items):
            for name, col in zip(columns, cols, strict=False):
                self._write(target, name, col.taint)
            return
        # Which value lands in which column is not known: every column may hold any of them.
        taints = [it.taint if isinstance(it, _Col) else it.rel.whole() for it in items]
        everything = _merge(taints)
        self.reads |= everything.reads
        target.overlay_all = everything
        for name in written or []:
            self._write(target, name, everything)

    def _set_list(self, assignments: Sequence[exp.Expression], target: _BaseRel, scope: _Scope) -> None:
        """``SET col = expr`` and ``SET (a, b) = (...)``."""
        for eq in assignments:
            if not isinstance(eq, exp.EQ):
                self.reads |= self._expr(eq, scope).reads
                continue
            value = self._expr(eq.expression, scope)
            lhs = eq.this
            cols = lhs.expressions if isinstance(lhs, exp.Tuple) else [lhs]
            for col in cols:
                self._write(target, _column_name(col), value)

    # --- expressions ------------------------------------------------------------------------------------

    def _expr(self, node: exp.Expression, scope: _Scope) -> _Taint:
        """What flows into the value of ``node``. Anything not modelled below is derived from its children."""
        if isinstance(node, exp.Column):
            return self._column(node, scope)
        if isinstance(node, (exp.Paren, exp.Alias, exp.Collate)):
            return self._expr(node.this, scope)
        if isinstance(node, exp.Cast):
            inner = self._expr(node.this, scope)
            to = node.args.get("to")
            keeps = isinstance(to, exp.DataType) and to.this in _TEXT_TYPES and not to.expressions
            return inner if keeps else _derive([inner])
        if isinstance(node, exp.Dot):
            return self._dot(node, scope)
        if isinstance(node, exp.Exists):  # its select list is never returned; its clauses are read
            if isinstance(node.this, exp.Expression):
                self._query(node.this, scope)
            return _CLEAR
        if isinstance(node, exp.Query):
            items = self._query(node, scope)
            return _merge(it.taint if isinstance(it, _Col) else it.rel.whole() for it in items)
        if isinstance(node, (exp.Window, exp.Filter)):
            # OVER (...) and FILTER (WHERE ...) only decide which rows the function sees.
            value = self._expr(node.this, scope)
            spec = _read_only(self._expr(c, scope) for c in node.iter_expressions() if c is not node.this)
            return _Taint(value.sources, value.derived, value.reads | spec.reads)
        if isinstance(node, exp.Binary) and not isinstance(node, (exp.Predicate, exp.Dot, exp.Collate)):
            # `a OR b OR ...`, `a || b || ...`: left-deep chains as long as ORMs make them, walked in a loop.
            chain: list[exp.Expression] = []
            link: exp.Expression = node
            while type(link) is type(node):
                chain += [c for c in link.iter_expressions() if c is not link.this]
                link = link.this
            return _derive(self._expr(c, scope) for c in [link, *chain])
        children = [self._expr(c, scope) for c in node.iter_expressions()]
        if isinstance(node, exp.Count):
            return _read_only(children)
        if isinstance(node, exp.Predicate):
            # A boolean over bare columns shows nothing of them; over a computed value it is an extractor.
            return _read_only(children) if not any(t.derived for t in children) else _derive(children)
        if isinstance(node, exp.Func):
            name = _func_name(node)
            if _DYNAMIC_SQL.match(name):
                raise _UnknownError(f"{_safe(name)}() runs SQL given as text, which the analysis cannot see")
            if _SINKS.match(name) and any(t.sources for t in children):
                raise _UnknownError(
                    f"{_safe(name)}() keeps a value computed from a sensitive column for later"
                )
        return _derive(children)

    def _column(self, node: exp.Column, scope: _Scope) -> _Taint:
        qual = _qualifier(node)
        if isinstance(node.this, exp.Star):  # t.* inside an expression: a whole row
            return self._rel_named(scope, qual).whole()
        name = _ident(node.this)
        if not qual:
            return self._unqualified(scope, name)
        rel = self._find(scope, qual)
        if rel is not None:
            found = rel.lookup(name)
            return found if found is not None else self.by_name(name)
        if len(qual) == 1:  # not a relation: a composite column's field, `col.field`
            return _merge([_derive([self._unqualified(scope, qual[0])]), self.by_name(name)])
        return self.by_name(name)

    def _dot(self, node: exp.Dot, scope: _Scope) -> _Taint:
        field_ = node.expression
        if isinstance(field_, exp.Func) and isinstance(field_, exp.Expression):  # schema.function(...)
            return self._expr(field_, scope)
        target = _unparen(node.this)
        if isinstance(target, exp.Column) and not isinstance(field_, exp.Star):
            rel = None
            if isinstance(target.this, exp.Star):  # (t.*).field
                rel = self._find(scope, _qualifier(target))
            elif not _qualifier(target):  # (t).field
                rel = self._find(scope, (_ident(target.this),))
            found = rel.lookup(_ident(field_)) if rel is not None else None
            if found is not None:
                return found
        inner = self._expr(node.this, scope) if isinstance(node.this, exp.Expression) else _CLEAR
        return _derive([inner])

    def _find(self, scope: _Scope, qual: Sequence[str]) -> _Rel | None:
        """The relation a qualifier names, innermost scope first."""
        name, db = qual[-1], (qual[-2] if len(qual) > 1 else None)
        s: _Scope | None = scope
        while s is not None:
            for rel in s.rels:
                if rel.ref == name and (db is None or rel.db == db):
                    return rel
            s = s.parent
        return None

    def _rel_named(self, scope: _Scope, qual: Sequence[str]) -> _Rel:
        rel = self._find(scope, qual)
        if rel is None:
            raise _UnknownError(f"{_safe('.'.join(qual))}.* names no relation in scope")
        return rel

    def _unqualified(self, scope: _Scope, name: str) -> _Taint:
        """A bare name: every relation that may have the column counts, until one certainly has it.

        PostgreSQL would reject an ambiguous name; taking all candidates can only over-mask.
        """
        found: list[_Taint] = []
        s: _Scope | None = scope
        while s is not None:
            definite = False
            for rel in s.rels:
                hit = rel.lookup(name)
                if hit is not None:
                    found.append(hit)
                    definite = definite or rel.definite(name)
            if not definite:
                for rel in s.rels:  # no such column: a relation's name is a whole-row reference
                    if rel.ref == name:
                        found.append(rel.whole())
                        definite = True
            if definite:
                return _merge(found)
            s = s.parent
        return _merge(found) if found else self.by_name(name)


# --- small AST helpers ------------------------------------------------------------------------------------


def _alias(node: exp.Expression) -> tuple[str | None, list[str]]:
    """The alias of a FROM item or CTE and its column alias list."""
    alias = node.args.get("alias")
    if not isinstance(alias, exp.TableAlias):
        return (_ident(alias) if isinstance(alias, exp.Identifier) else None), []
    name = alias.this
    renames = [_ident(c.this if isinstance(c, exp.ColumnDef) else c) for c in alias.args.get("columns") or []]
    return (_ident(name) if name is not None else None), renames


def _qualifier(node: exp.Column) -> tuple[str, ...]:
    parts = [node.args.get(k) for k in ("catalog", "db", "table")]
    return tuple(_ident(p) for p in parts if p is not None and (not isinstance(p, exp.Identifier) or p.this))


def _unparen(node: object) -> object:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _column_name(node: object) -> str:
    return _ident(node.this if isinstance(node, exp.Column) else node)


def _output_name(e: object) -> str | None:
    """The name PostgreSQL reports for a select-list entry, where it is certain (FigureColname)."""
    if isinstance(e, exp.Alias):
        return _ident(e.args.get("alias"))
    if isinstance(e, exp.Column) and not isinstance(e.this, exp.Star):
        return _ident(e.this)
    if isinstance(e, (exp.Paren, exp.Collate, exp.Cast)):
        return _output_name(e.this)
    if isinstance(e, exp.Dot) and isinstance(e.expression, exp.Identifier):
        return _ident(e.expression)
    return None


def _func_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).casefold()
    if isinstance(node, exp.Func):
        return node.sql_name().casefold()
    return type(node).__name__.casefold()


def _table_names(node: exp.Expression) -> set[str]:
    """Unqualified table names a query refers to (to tell a recursive CTE's recursive branch)."""
    return {
        _ident(t.this)
        for t in node.find_all(exp.Table)
        if isinstance(t.this, exp.Identifier) and not t.args.get("db")
    }

"""A statement's lineage as the wire needs it: an action per RowDescription column or COPY column.

:mod:`gateway.masking.lineage` works on SQL alone; here its verdict meets what the server announces. A
``*`` the analyzer could not expand covers as many columns as the RowDescription has left over, and those
keep the names of the table's columns, so the name rules apply to them. COPY announces no names: there
an unexpanded ``*`` means the lineage is unknown.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.masking.catalog import Catalog
from gateway.masking.lineage import Lineage, LineageAnalyzer, OutputColumn, SensitiveSpec
from gateway.masking.values import Action
from gateway.pgwire.messages import FieldDesc
from gateway.sqltext import normalize
from pcigate.config import MaskingProfile

__all__ = ["LineageView", "StatementLineage"]

log = logging.getLogger(__name__)

SadKind = Literal["cvv", "track1", "track2", "pin_block"]
_STRICTNESS: Final[dict[Action, int]] = {"clear": 0, "bin_last4": 1, "last4": 2, "full": 3, "null": 4}
_COPY: Final = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*copy\b", re.IGNORECASE | re.DOTALL)
_CSV: Final = re.compile(r"\bcsv\b", re.IGNORECASE)
_DELIMITER: Final = re.compile(r"\bdelimiter\s+(?:as\s+)?E?'([^'\\])'", re.IGNORECASE)
_CACHE_LIMIT: Final = 4096
_NOT_PLAIN: Final = re.compile(r"['$\"]|--|/\*|\\")
_MAX_ANALYZED: Final = 65536


def _strictest(actions: Sequence[Action]) -> Action:
    return max(actions, key=_STRICTNESS.__getitem__, default="clear")


@dataclass(frozen=True, slots=True)
class LineageView:
    """One statement's lineage, with the answers the masking hook asks of it."""

    lineage: Lineage
    unknown: str | None
    is_copy: bool
    copy_csv: bool
    copy_delimiter: bytes | None

    @property
    def sensitive(self) -> bool:
        return self.lineage.sensitive

    def used_as(self, defined: LineageView) -> LineageView:
        """This FETCH or EXECUTE, with the rows of the cursor or prepared statement it names."""
        return dataclasses.replace(
            self, lineage=dataclasses.replace(defined.lineage, defines=None), unknown=defined.unknown
        )

    @property
    def derived(self) -> bool:
        """Some output column is computed from a sensitive column (not the column itself)."""
        return any(c.derived for c in self.lineage.columns or ())

    def actions_for(self, fields: Sequence[FieldDesc]) -> list[Action | None]:
        """Lineage's action per RowDescription column (None: lineage has no opinion, names decide)."""
        if self.unknown is not None:  # allowed to run (unknown_lineage: mask): nothing can be placed
            return ["full"] * len(fields)
        columns = self.lineage.columns
        if not columns:
            return [None] * len(fields)
        stars = [i for i, c in enumerate(columns) if c.star is not None]
        if not stars:
            if len(columns) == len(fields):
                return [c.action for c in columns]
            return self._misaligned(fields, columns)
        if len(stars) == 1:
            width = len(fields) - (len(columns) - 1)
            if width < 0:
                return self._misaligned(fields, columns)
            k = stars[0]
            return [c.action for c in columns[:k]] + [None] * width + [c.action for c in columns[k + 1 :]]
        # Several stars of unknown width: computed columns (no table) get the strictest computed verdict.
        computed = _strictest([c.action for c in columns if c.star is None])
        return [computed if f.table_oid == 0 else None for f in fields]

    def _misaligned(
        self, fields: Sequence[FieldDesc], columns: Sequence[OutputColumn]
    ) -> list[Action | None]:
        # The server returned another shape than the analysis expected: hide by the strictest verdict.
        log.warning("lineage expected %d result columns, the server sent %d", len(columns), len(fields))
        return [_strictest([c.action for c in columns])] * len(fields)

    def sad_kind(self, index: int) -> SadKind | None:
        """For a column lineage hides as NULL: which kind of sensitive authentication data it comes from."""
        columns = self.lineage.columns
        if not columns or index >= len(columns) or columns[index].action != "null":
            return None
        for source in columns[index].sources:
            name = source.rsplit(".", 1)[-1].casefold()
            if name in ("track1",):
                return "track1"
            if name in ("track2", "track_data"):
                return "track2"
            if name == "pin_block":
                return "pin_block"
        return "cvv"

    def copy_actions(self, ncols: int) -> list[Action] | None:
        """Actions for the columns of a COPY OUT (None: lineage has none, content detection only)."""
        if self.unknown is not None:
            return ["full"] * ncols
        columns = self.lineage.columns
        if not columns:
            return None
        if len(columns) != ncols or any(c.star is not None for c in columns):
            # e.g. generated columns, which COPY table TO leaves out: hide what cannot be placed
            log.warning("COPY lineage names %d columns, the server sends %d", len(columns), ncols)
            return ["full"] * ncols
        return [c.action for c in columns]


class StatementLineage:
    """Lineage per distinct statement text, for one masking profile and the latest catalog."""

    def __init__(self, profile: MaskingProfile, catalog: Callable[[], Catalog | None]) -> None:
        self._profile = profile
        self._catalog = catalog
        self._seen: Catalog | None = None
        self._analyzer = self._build(None)
        self._cache: dict[str, LineageView] = {}

    def _build(self, catalog: Catalog | None) -> LineageAnalyzer:
        schema = None
        if catalog is not None:
            # unqualified names resolve through the default search_path: public
            schema = {**{k.split(".", 1)[1]: v for k, v in catalog.tables.items() if k.startswith("public.")}}
            schema.update(catalog.tables)
        return LineageAnalyzer(
            SensitiveSpec(rules=self._profile.columns, views=self._profile.views, schema=schema)
        )

    def analyze(self, text: str) -> LineageView:
        catalog = self._catalog()
        if catalog is not self._seen:  # a new catalog: analyses made without it may be wrong now
            self._seen = catalog
            self._analyzer = self._build(catalog)
            self._cache.clear()
        key = _cache_key(text)
        view = self._cache.get(key)
        if view is not None:
            return view
        if len(text) > _MAX_ANALYZED:
            # Parsing costs ~1 s per 20k terms on the event loop: a huge statement that names a sensitive
            # column is refused instead (fail closed); one that names none has nothing to trace.
            sensitive = self._analyzer.mentions(text)
            why = "the statement is too long to analyze" if sensitive else None
            return LineageView(Lineage(None, sensitive, why), why, False, False, None)
        lineage = self._analyzer.analyze(text)
        is_copy = _COPY.match(text) is not None
        unknown = lineage.unknown
        if unknown is None and is_copy and any(c.star is not None for c in lineage.columns or ()):
            unknown = "COPY of * names no columns, and the table's columns are not known"
        delimiter = _DELIMITER.search(text) if is_copy else None
        view = LineageView(
            lineage,
            unknown,
            is_copy,
            is_copy and _CSV.search(text) is not None,
            delimiter.group(1).encode() if delimiter else None,
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = view
        return view


def _cache_key(text: str) -> str:
    """Statements that differ only in number literals share one analysis (pgbench's simple protocol sends
    a new ``aid = N`` each time; ~0.6 ms a parse): numbers never change lineage. Strings, dollar quotes and
    comments can (an opaque statement is judged by the names it mentions anywhere, SQL in a string
    included), so a text holding any of them is its own key."""
    if _NOT_PLAIN.search(text):
        return text
    return "\x00" + normalize(text)  # cannot collide with a statement's own text

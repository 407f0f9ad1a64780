"""What a policy rule can ask of one statement: its classes, command, tables, columns, functions,
conditions and row limit, or why the gateway cannot see into it.

Two readers, and they must agree. The lexer of :mod:`gateway.sqltext` (the gateway's own, written to split
and classify the way PostgreSQL's scanner does) decides the statement's kind and first keywords; sqlglot
(:mod:`gateway.sqlast`) gives the structure of queries, DML, COPY and DDL. Where the structure matters and
sqlglot cannot parse the statement, or reads it as another kind of statement than the lexer, the statement
is *opaque*: the policy's ``opaque_action`` applies (fail closed, never "allow because nothing matched").

Unqualified table names are taken as ``public.<name>`` (the default search_path); a session can change
that with ``SET search_path``, which is the ``search_path`` condition, so a policy can hold or refuse it.

Both readers take the text as UTF-8 with ``standard_conforming_strings = on``. A statement they could read
differently from the server is opaque: bytes that are not UTF-8, a ``U&"..."`` identifier (a name behind
escapes), a backslash in a plain ``'...'`` string (its meaning depends on standard_conforming_strings; write
``E'\\\\d'`` or ``$$\\d$$``), and a statement that changes how the server reads the ones after it (``SET
client_encoding``, ``SET NAMES``, ``SET standard_conforming_strings``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from sqlglot import exp
from sqlglot.errors import SqlglotError

from gateway import sqlast
from gateway.sqltext import analyze, normalize, normalize_ex, split_statements
from pcigate.config.models import Condition, StatementClass

__all__ = ["DANGEROUS_FUNCTIONS", "Facts", "FactsCache", "statement_facts"]

# Functions that read or write the server's files, run SQL given as text, reach other servers, change
# who the session is, or stop other sessions. Matched by bare name, schema-qualified or not.
DANGEROUS_FUNCTIONS: Final = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "lo_import",
        "lo_export",
        "lo_from_bytea",
        "lo_put",
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "dblink_connect_u",
        "dblink_send_query",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_logicalmapdir",
        "pg_ls_replslotdir",
        "pg_logdir_ls",
        "pg_file_sync",
        "dblink_open",
        "dblink_fetch",
        "dblink_get_result",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        # ... and those that read a whole table, schema or database named in a string (no table rule sees
        # it), or run the query in their text argument (ts_stat, ts_rewrite(query, text)).
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "ts_rewrite",
        "set_config",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
    }
)

# A call of one by its (possibly quoted, possibly qualified) name, in lower-cased normalized text.
_DANGEROUS_CALL: Final = re.compile(rf'(?<![\w$])"?(?:{"|".join(sorted(DANGEROUS_FUNCTIONS))})"?\s*\(')
_READS: Final = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Values, exp.Subquery)
_WRITES: Final = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_NAME_PART: Final = r'(?:"(?:[^"]|"")+"|[\w$]+)'
# The statement inside EXPLAIN [options], PREPARE name [(types)] AS, DECLARE name ... CURSOR ... FOR
# (leading whitespace only: a comment in front makes the statement opaque rather than mis-read).
_INNER: Final = re.compile(
    r"\s*(?:explain\s*(?:\((?:[^()']|'[^']*')*\)|(?:(?:analy[sz]e|verbose)\s+)*)"
    rf"|prepare\s+(?P<prepared>{_NAME_PART})\s*(?:\([^()]*\))?\s*as\s"
    rf"|declare\s+{_NAME_PART}\s+(?:[a-z]+\s+)*?cursor\s+(?:(?:with|without)\s+hold\s+)?for\s)",
    re.IGNORECASE,
)
# What the statement EXPLAIN, PREPARE and DECLARE wrap can start with (PostgreSQL's ExplainableStmt,
# PreparableStmt, and the SelectStmt of DECLARE). Anything else there means _INNER stopped short (a comment
# between the wrapper's own keywords: EXPLAIN/**/ANALYZE DELETE ...) and the wrapped statement is not found.
_WRAPPABLE: Final[dict[str, frozenset[str]]] = {
    "explain": frozenset(
        {"select", "values", "table", "with", "insert", "update", "delete", "merge"}
        | {"execute", "declare", "create", "refresh"}
    ),
    "prepare": frozenset({"select", "values", "table", "with", "insert", "update", "delete", "merge"}),
    "declare": frozenset({"select", "values", "table", "with"}),
}
_EXECUTE: Final = re.compile(rf"execute\s+({_NAME_PART})", re.IGNORECASE)
_ROW_LIMIT_WORDS: Final = re.compile(r"\b(?:limit|fetch)\b")
_NOT_UTF8: Final = re.compile("[\ud800-\udfff]")  # bytes that were not UTF-8 (surrogateescape)
_UNICODE_NAME: Final = re.compile(r'u&"', re.IGNORECASE)
# Settings that change how the server reads the text of the statements after them.
_READING_SETTINGS: Final = frozenset({"client_encoding", "names", "standard_conforming_strings"})
# set_config('standard_conforming_strings' | 'client_encoding', ...): the next statements would be read
# otherwise than the gateway reads them. (A name computed at run time cannot be seen here: the session treats
# the setting as unknown while any statement runs, see StatementView.scs_on.)
_SET_CONFIG_READING: Final = re.compile(
    r"set_config\s*\(\s*'\s*(?:standard_conforming_strings|client_encoding)\s*'", re.IGNORECASE
)
_WRITTEN_NAME: Final = re.compile(rf"{_NAME_PART}")
_SESSION_AUTH: Final = ["session", "authorization"]
_WORDS: Final = re.compile(r"[a-z_]+")
_MAY_READ: Final = re.compile(r"\b(?:select|as|values|table\s+\w+\s+as)\b")
_CACHE_SIZE: Final = 4096
_CANNOT_PARSE: Final = "the SQL parser cannot read it"


@dataclass(frozen=True, slots=True)
class Facts:
    """One statement as the policy sees it. ``row_limit`` None: it may return any number of rows."""

    classes: frozenset[StatementClass]
    command: str
    tables: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    conditions: frozenset[Condition] = frozenset()
    row_limit: int | None = None
    opaque: str | None = None
    prepares: str | None = None  # PREPARE name: EXECUTE name runs this statement
    executes: str | None = None  # EXECUTE name: the facts are those of its PREPARE, known to the session


_KIND_CLASSES: Final[dict[str, frozenset[StatementClass]]] = {
    "dql": frozenset({"read"}),
    "dml": frozenset({"write"}),
    "ddl": frozenset({"ddl"}),
    "dcl": frozenset({"dcl"}),
    "tcl": frozenset({"transaction"}),
    "session": frozenset({"utility"}),
    "utility": frozenset({"utility"}),
    "call": frozenset({"function_call"}),
}


def statement_facts(text: str, *, scs_on: bool = False) -> Facts:
    """The facts of one statement (one of what :func:`gateway.sqltext.split_statements` returns).
    ``scs_on``: the session is known to read with standard_conforming_strings on (what the server reported),
    so a backslash in a '...' string is just a character; otherwise such a statement is opaque."""
    info = analyze(text)
    norm = normalize(text)
    words = _WORDS.findall(norm[:200].lower())  # the first keywords, literals and comments out
    command = " ".join(words[:3])
    conditions = _keyword_conditions(info.kind, words)
    classes = _KIND_CLASSES.get(info.kind, frozenset())
    if conditions & {"set_role", "set_session_authorization"}:
        classes = frozenset({"dcl"})  # SET LOCAL SESSION AUTHORIZATION is one the lexer takes for a plain SET
    if info.kind == "other":
        return Facts(frozenset(), command, conditions=conditions, opaque="not a statement the gateway knows")
    if len(split_statements(text)) > 1:
        # Callers pass one statement; if two ever come as one text, the first's keywords must not speak
        # for both (BEGIN; DELETE FROM cards would be a transaction statement).
        return Facts(classes, command, conditions=conditions, opaque="more than one statement")
    unreadable = _unreadable(text, norm, words, info.scs_dependent and not scs_on)
    if unreadable is not None:
        return Facts(classes, command, conditions=conditions, opaque=unreadable)
    if words[:1] == ["do"]:
        return Facts(classes, command, opaque="DO runs a code block the gateway cannot see into")
    if words[:1] == ["load"]:
        return Facts(classes, command, opaque="LOAD runs a shared library's code the gateway cannot see into")
    if info.kind == "call":
        return _call(text, classes, command, conditions)
    inner = _INNER.match(text)
    if inner is not None:
        return _wrapped(text, inner, words[0], classes, command, conditions, scs_on=scs_on)
    if words[:1] in (["explain"], ["prepare"], ["declare"]) and words[1:2] != ["transaction"]:
        return Facts(classes, command, opaque="the statement it wraps cannot be found")
    if words[:1] == ["execute"]:
        executed = _EXECUTE.match(norm)
        why = "EXECUTE of a statement PREPAREd outside what the gateway saw"
        return Facts(classes, command, opaque=why, executes=_ident(executed.group(1)) if executed else None)
    if info.kind in ("tcl", "session", "utility"):
        return Facts(classes, command, tables=_objects(info.objects), conditions=conditions)
    return _structured(text, info.kind, classes, command, conditions, info.objects)


def _unreadable(text: str, norm: str, words: list[str], scs_dependent: bool) -> str | None:
    """Why the server may read this statement, or the ones after it, otherwise than the gateway; or None."""
    if _NOT_UTF8.search(text):
        return "its text is not UTF-8, which the gateway reads it as"
    if scs_dependent:
        # With standard_conforming_strings off (a role's or database's default will do), 'a\', 1 --', f()
        # calls f(); read with it on, f() is in a comment. Which one the session has is not known here.
        return "a backslash in a '...' string: what it means depends on standard_conforming_strings"
    if _SET_CONFIG_READING.search(text):
        return "set_config of a setting that changes how the server reads SQL text"
    if _UNICODE_NAME.search(norm):
        return 'a U&"..." identifier spells a name in escapes'
    if words[:1] in (["set"], ["reset"]):
        rest = words[1:3]
        if rest[:1] in (["session"], ["local"]):
            rest = rest[1:]
        if rest[:1] and rest[0] in _READING_SETTINGS:
            return "it changes how the server reads SQL text (client encoding, string syntax)"
    return None


def _call(
    text: str, classes: frozenset[StatementClass], command: str, conditions: frozenset[Condition]
) -> Facts:
    """CALL name(args): the procedure, and what its arguments read and call (``pg_read_file(...)`` or a
    subquery in an argument runs before the procedure), read as ``SELECT name(args)``."""
    try:
        tokens = sqlast.tokenize(text)
        query = f"SELECT {text[tokens[0].end + 1 :]}" if tokens and tokens[0].text.lower() == "call" else ""
        parsed = [e for e in sqlast.parse(query) if e is not None] if query else []
    except (SqlglotError, RecursionError, ValueError):
        parsed = []
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Select):
        return Facts(classes, command, conditions=conditions, opaque=_CANNOT_PARSE)
    args = _tree_facts(parsed[0], classes, command, conditions, query)
    return Facts(classes, command, args.tables, args.columns, args.functions, args.conditions)


def _wrapped(  # noqa: PLR0917 - one call site, the lexer's findings passed on
    text: str,
    inner: re.Match[str],
    wrapper: str,
    classes: frozenset[StatementClass],
    command: str,
    conditions: frozenset[Condition],
    *,
    scs_on: bool,
) -> Facts:
    """EXPLAIN, PREPARE and DECLARE wrap a statement: theirs are its facts. EXPLAIN ANALYZE runs it;
    plain EXPLAIN only plans it (a utility); PREPARE and DECLARE define what EXECUTE and FETCH run."""
    wrapped = text[inner.end() :]
    if analyze(wrapped).first_keyword not in _WRAPPABLE[wrapper]:
        return Facts(classes, command, conditions=conditions, opaque="the statement it wraps cannot be found")
    facts = statement_facts(wrapped, scs_on=scs_on)
    head = inner.group(0).lower()
    prepares = inner.group("prepared")
    if head.lstrip().startswith("explain") and not re.search(r"\banaly[sz]e\b", head):
        planned: frozenset[StatementClass] = frozenset({"utility"})
        return Facts(planned, command, facts.tables, facts.columns, facts.functions, facts.conditions, 0)
    return Facts(
        facts.classes,
        command,
        facts.tables,
        facts.columns,
        facts.functions,
        facts.conditions | conditions,
        facts.row_limit,
        facts.opaque,
        prepares=_ident(prepares) if prepares else None,
    )


def _parse(text: str) -> list[exp.Expr]:
    try:
        return [e for e in sqlast.parse(text) if e is not None]
    except (SqlglotError, RecursionError, ValueError):
        return []


# COPY ... FROM STDIN / TO STDOUT with a trailing option list and nothing after it (no WHERE clause).
_COPY_OPTIONS: Final = re.compile(
    r"(?P<head>\s*copy\b.*\b(?:stdin|stdout))\s*(?:with\s*)?\((?:[^()'\"]|'[^']*'|\"[^\"]*\")*\)\s*;?\s*\Z",
    re.IGNORECASE | re.DOTALL,
)


def _structured(  # noqa: PLR0917 - one call site, the lexer's findings passed on
    text: str,
    kind: str,
    classes: frozenset[StatementClass],
    command: str,
    conditions: frozenset[Condition],
    objects: tuple[str, ...],
) -> Facts:
    """Queries, DML, COPY, DDL, DCL and EXPLAIN: what sqlglot's tree says, checked against the lexer."""
    parsed = _parse(text)
    if not parsed and kind == "copy":
        # sqlglot cannot read every form of COPY's option list (`(FORMAT binary)` without WITH, HEADER
        # without a value); the options name no table, column or function, so they are read without it.
        bare = _COPY_OPTIONS.match(text)
        if bare is not None:
            parsed = _parse(bare.group("head"))
    # exp.Command: a statement, or part of one, sqlglot kept as text; ExecuteAsProperty: CREATE TABLE ... AS
    # EXECUTE name, which runs a statement this one does not show.
    unread = (exp.Command, exp.ExecuteAsProperty)
    if len(parsed) != 1 or any(isinstance(n, unread) for n in parsed[0].walk()):
        if kind in ("ddl", "dcl") and not _MAY_READ.search(normalize(text).lower()):
            # The class is in the keywords and there is no data to trace: the lexer's objects suffice. A
            # dangerous function can still run now (ALTER DOMAIN ... ADD CHECK checks every stored value).
            conditions |= _dangerous_calls(text)
            return Facts(classes, command, tables=_objects(objects), conditions=conditions)
        return Facts(classes, command, conditions=conditions, opaque=_CANNOT_PARSE)
    tree = parsed[0]
    if command.startswith("explain"):
        if not isinstance(tree, _READS + _WRITES):
            return Facts(classes, command, conditions=conditions, opaque=_CANNOT_PARSE)
        # EXPLAIN ANALYZE runs the statement: it is what it explains (plain EXPLAIN only plans it).
        inner = _tree_facts(tree, classes, command, conditions, text)
        if "analyze" in command or "analyse" in command:
            return Facts(
                inner.classes | _classes_of(tree),
                command,
                inner.tables,
                inner.columns,
                inner.functions,
                inner.conditions,
                None,
            )
        return Facts(classes, command, inner.tables, inner.columns, inner.functions, inner.conditions, 0)
    disagreement = _disagreement(kind, tree)
    if disagreement is not None:
        return Facts(classes, command, conditions=conditions, opaque=disagreement)
    if isinstance(tree, exp.Copy):
        outgoing = not tree.args.get("kind")  # sqlglot: kind True for FROM
        classes = frozenset({"copy_out" if outgoing else "copy_in"})
        conditions |= _copy_target(tree)
    return _tree_facts(tree, classes | _classes_of(tree), command, conditions, text)


def _disagreement(kind: str, tree: exp.Expr) -> str | None:
    """Why the two readers disagree on what this statement is, or None."""
    writes = any(isinstance(n, _WRITES) for n in tree.walk())
    if kind == "dql" and (not isinstance(tree, _READS) or writes):
        return "the gateway's two SQL readers disagree on what it does"
    if kind == "dml" and not writes:
        return "the gateway's two SQL readers disagree on what it does"
    if kind == "copy" and not isinstance(tree, exp.Copy):
        return "the gateway's two SQL readers disagree on what it does"
    return None


def _classes_of(tree: exp.Expr) -> frozenset[StatementClass]:
    found: set[StatementClass] = set()
    for node in tree.walk():
        if isinstance(node, _WRITES):
            found.add("write")
        elif isinstance(node, exp.Select) and node.args.get("into") is not None:
            found.add("ddl")  # SELECT INTO creates a table
        # CREATE TABLE ... AS SELECT and INSERT ... SELECT read like SELECT INTO does: copying a table's rows
        # into another is a read of it, or a rule on reading it is one statement away from moot.
        query = node.expression if isinstance(node, exp.Create | exp.Insert) else None
        if isinstance(query, _READS) and not isinstance(query, exp.Values):
            found.add("read")
    if isinstance(tree, _READS) or any(isinstance(n, exp.Returning) for n in tree.walk()):
        found.add("read")
    return frozenset(found)


def _tree_facts(
    tree: exp.Expr,
    classes: frozenset[StatementClass],
    command: str,
    conditions: frozenset[Condition],
    text: str,
) -> Facts:
    """Tables, columns and functions of a parsed statement (``text``: what was parsed). Where the owner of
    a name cannot be told without the catalog, every candidate is named: rules must see too much, not less."""
    has_ctes = tree.find(exp.CTE) is not None
    aliases: dict[str, set[str]] = {}  # alias (or unaliased name) -> tables; the same alias may recur
    tables: set[str] = set()
    columns: set[str] = set()
    for t in tree.find_all(exp.Table):
        name = t.name.lower()
        if not name or (not t.db and has_ctes and not _is_target(t) and name in _visible_ctes(t)):
            continue
        qualified = _qualified(t)
        tables.add(qualified)
        aliases.setdefault((t.alias or name).lower(), set()).add(qualified)
        alias = t.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.columns:
            columns.add(f"{qualified}.*")  # FROM cards AS c(x): x is cards' first column, whatever its name
    for col in tree.find_all(exp.Column):
        name = col.name.lower()
        if not name:
            continue
        owner = col.table.lower()
        columns.update(f"{t}.{name}" for t in (aliases.get(owner) if owner else None) or tables)
        if not owner and name in aliases:
            # A bare table name or alias is also its whole row (SELECT c FROM cards c, row_to_json(c)).
            columns.update(f"{t}.*" for t in aliases[name])
    for join in tree.find_all(exp.Join):
        using = [u.name.lower() for u in join.args.get("using") or [] if isinstance(u, exp.Identifier)]
        columns.update(f"{t}.{u}" for t in tables for u in using)
    columns |= _target_columns(tree)
    if any(isinstance(s, exp.Star) for s in tree.find_all(exp.Star)):
        columns.update(f"{t}.*" for t in tables)
    # Each call by the name it is called by: schema.name, or a bare name the search_path resolves.
    functions = {name for fn in tree.find_all(exp.Func) if (name := _function_name(fn, text))}
    conditions = conditions | _dangerous(functions) | _dangerous_calls(text) | _no_where(tree)
    return Facts(
        classes,
        command,
        frozenset(tables),
        frozenset(columns),
        frozenset(functions),
        conditions,
        _row_limit(tree),
    )


def _qualified(table: exp.Table) -> str:
    return f"{(table.db or 'public').lower()}.{table.name.lower()}"


_TARGETS: Final = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Copy)


def _is_target(table: exp.Table) -> bool:
    """The table INSERT, UPDATE, DELETE, MERGE or COPY writes or reads: always a table, never a CTE
    (``WITH cards AS (SELECT 1) DELETE FROM cards`` deletes from the table cards)."""
    node: exp.Expr = table
    if isinstance(table.parent, exp.Schema) and table.parent.this is table:
        node = table.parent
    return isinstance(node.parent, _TARGETS) and node.parent.this is node


def _visible_ctes(node: exp.Expr) -> set[str]:
    """The CTE names a table reference at ``node`` would mean: those of every WITH around it, where a CTE's
    own query sees only the CTEs before it in its list (all of them under RECURSIVE). ``WITH cards AS
    (SELECT * FROM cards) ...`` reads the table cards; a name no WITH in scope defines is a table."""
    names: set[str] = set()
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = parent.expressions
            if parent.args.get("recursive"):
                seen = ctes
            else:
                seen = next((ctes[:i] for i, c in enumerate(ctes) if c is child), [])
            names.update(c.alias_or_name.lower() for c in seen)
        else:
            with_ = parent.args.get("with_")
            if isinstance(with_, exp.With) and with_ is not child:
                names.update(c.alias_or_name.lower() for c in with_.expressions)
        child, parent = parent, parent.parent
    return names


def _target_columns(tree: exp.Expr) -> set[str]:
    """The columns INSERT INTO t (cols) writes and COPY t (cols) moves; without a list, all of t's."""
    found: set[str] = set()
    for node in tree.find_all(exp.Insert, exp.Copy):
        target = node.this
        names = ["*"]
        if isinstance(target, exp.Schema):
            names = [e.name.lower() for e in target.expressions if isinstance(e, exp.Identifier)] or names
            target = target.this
        if isinstance(target, exp.Table) and target.name:
            found.update(f"{_qualified(target)}.{n}" for n in names)
    return found


def _function_name(fn: exp.Func, text: str) -> str:
    """A call's name as written (sqlglot renames some: now() is its CURRENT_TIMESTAMP), with its schema."""
    name = fn.name if isinstance(fn, exp.Anonymous) else ""
    start, end = fn.meta.get("start"), fn.meta.get("end")
    if not name and isinstance(start, int) and isinstance(end, int):
        written = text[start : end + 1]
        name = _unquote(written) if _WRITTEN_NAME.fullmatch(written) else ""
    name = name or fn.sql_name()
    parent = fn.parent
    if isinstance(parent, exp.Dot) and parent.expression is fn:
        schema = _dotted(parent.this)
        if schema is not None:
            name = f"{schema.rsplit('.', 1)[-1]}.{name}"  # db.schema.fn: the database is the current one
    return name.lower()


def _dotted(node: exp.Expr) -> str | None:
    if isinstance(node, exp.Identifier):
        return str(node.name)
    if isinstance(node, exp.Column):
        return ".".join(str(p.name) for p in node.parts)
    if isinstance(node, exp.Dot):
        left, right = _dotted(node.this), _dotted(node.expression)
        return f"{left}.{right}" if left is not None and right is not None else None
    return None


def _no_where(tree: exp.Expr) -> frozenset[Condition]:
    for node in tree.walk():
        if isinstance(node, exp.Update | exp.Delete) and node.args.get("where") is None:
            return frozenset({"no_where"})
    return frozenset()


def _row_limit(tree: exp.Expr) -> int | None:
    """The top-level query's LIMIT / FETCH FIRST as a literal, or None (no bound the text states)."""
    if not isinstance(tree, exp.Select | exp.Union | exp.Intersect | exp.Except):
        return None
    bound = tree.args.get("limit")
    if bound is None:
        return None
    if isinstance(bound, exp.Fetch):
        options = bound.args.get("limit_options")
        if options is not None and (options.args.get("percent") or options.args.get("with_ties")):
            return None  # WITH TIES returns the rows that tie with the last one too, however many
        count = bound.args.get("count")
        if count is None:
            return 1  # FETCH FIRST ROW ONLY
    else:
        count = bound.args.get("expression")
    if isinstance(count, exp.Literal) and count.is_int:
        return int(count.this)
    return None


def _copy_target(tree: exp.Copy) -> frozenset[Condition]:
    """COPY to or from a program or a file on the database server (not the client's STDIN/STDOUT).
    Anything but STDIN/STDOUT is a file: sqlglot reads E'...' and $$...$$ names as other node types."""
    files = tree.args.get("files") or []
    names = [f.name.lower() if isinstance(f, exp.Identifier) else "" for f in files]
    if "program" in names:
        return frozenset({"copy_program"})
    if not names or any(n not in ("stdin", "stdout") for n in names):
        return frozenset({"copy_file"})
    return frozenset()


def _keyword_conditions(kind: str, words: list[str]) -> frozenset[Condition]:
    found: set[Condition] = set()
    head = words[:4]
    if head[:2] == ["alter", "system"]:
        found.add("alter_system")
    if head[:2] == ["create", "extension"]:
        found.add("create_extension")
    if head[:1] in (["set"], ["reset"]):
        rest = head[1:]
        if rest[:1] in (["session"], ["local"]):
            rest = rest[1:]
        if rest[:1] == ["role"]:
            found.add("set_role")
        # SET [LOCAL | SESSION] SESSION AUTHORIZATION: SESSION is both the scope and the setting's first word.
        if rest[:1] in (["authorization"], ["session_authorization"]) or rest[:2] == _SESSION_AUTH:
            found.add("set_session_authorization")
        if rest[:1] in (["search_path"], ["schema"]):  # SET SCHEMA 'x' is SET search_path TO 'x'
            found.add("search_path")
    return frozenset(found)


def _objects(objects: tuple[str, ...]) -> frozenset[str]:
    return frozenset(o.lower() if "." in o else f"public.{o.lower()}" for o in objects)


def _unquote(name: str) -> str:
    return ".".join(p.strip().strip('"').replace('""', '"') for p in name.split("."))


def _ident(name: str) -> str:
    """A prepared statement's name as the server keeps it: lower case unless quoted ("P" is not p)."""
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _dangerous_calls(text: str) -> frozenset[Condition]:
    """The text calls a dangerous function by name: a backstop for what sqlglot's tree may drop (it keeps
    no expression of some DDL, e.g. CREATE INDEX ... ON ONLY t ((f(x))))."""
    called = _DANGEROUS_CALL.search(normalize(text).lower())
    return frozenset({"dangerous_function"}) if called else frozenset()


def _dangerous(functions: frozenset[str] | set[str]) -> frozenset[Condition]:
    hit = any(f.rsplit(".", 1)[-1] in DANGEROUS_FUNCTIONS for f in functions)
    return frozenset({"dangerous_function"}) if hit else frozenset()


@dataclass
class FactsCache:
    """Facts per distinct statement, keyed by its normalized text, so statements that differ only in
    literals share one parse (~200 µs). Where a literal matters, the key is the exact text: a LIMIT / FETCH
    count (picking it out of the raw text was fooled by ``LIMIT /**/ 10``, ``LIMIT 10e6``, ``LIMIT 0x10``,
    ``LIMIT 1_000``: a small cached limit for a large one), and a literal that makes the statement opaque
    (a backslash in a '...' string, bytes that are not UTF-8) where a harmless twin normalizes the same."""

    size: int = _CACHE_SIZE
    _items: OrderedDict[tuple[str, str, bool], Facts] = field(default_factory=OrderedDict)
    # The last answer by exact text: a session asks twice per statement (before holding it, then to judge
    # it), and the key itself costs a normalization (~2 µs).
    _last: tuple[str, bool, Facts] | None = None

    def facts(self, text: str, *, scs_on: bool = False) -> Facts:
        last = self._last
        if last is not None and last[1] == scs_on and last[0] == text:
            return last[2]
        norm, scs_dependent = normalize_ex(text)
        exact = scs_dependent or _ROW_LIMIT_WORDS.search(norm) or _NOT_UTF8.search(text)
        key = (norm, text if exact else "", scs_on)
        facts = self._items.get(key)
        if facts is not None:
            self._items.move_to_end(key)
        else:
            facts = statement_facts(text, scs_on=scs_on)
            self._items[key] = facts
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        self._last = (text, scs_on, facts)
        return facts

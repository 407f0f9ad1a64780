"""Fast-path FunctionCall messages as the audit trail and the policy see them.

A FunctionCall has no SQL text: it names its function by OID only. libpq sends them for its large-object
interface (``lo_open``, ``loread``, ``lowrite``, ...: psql's ``\\lo_import`` and ``\\lo_export``), and those
built-in functions keep the OIDs PostgreSQL's catalog gives them (``pg_proc.dat``; an integration test checks
them against the server). They are judged by name, as calls of class ``function_call`` (and ``write`` for
those that change a large object, ``read`` for ``loread``), so ``functions:`` rules and
``dangerous_function`` apply to them.

Any other OID is opaque: the gateway does not resolve it, and guessing would let ``set_config`` or
``pg_read_file`` through a rule written against its name. A FunctionCall cannot wait for a person, so
under the default ``opaque_action`` it is refused with a hint to call the function in a query.
"""

from __future__ import annotations

from typing import Final

from gateway.policy.facts import Facts
from pcigate.config.models import Condition, StatementClass

__all__ = ["LARGE_OBJECT_FUNCTIONS", "call_text", "fast_path_facts"]

_PREFIX: Final = "/* fast-path function call */ SELECT "

# OID -> (name, changes a large object or a server file). libpq's large-object interface, and the
# server-side lo_import / lo_export a client could also reach this way. ``loread`` is also a ``read``.
LARGE_OBJECT_FUNCTIONS: Final[dict[int, tuple[str, bool]]] = {
    715: ("lo_create", True),
    764: ("lo_import", True),
    765: ("lo_export", True),
    767: ("lo_import", True),
    952: ("lo_open", False),
    953: ("lo_close", False),
    954: ("loread", False),
    955: ("lowrite", True),
    956: ("lo_lseek", False),
    957: ("lo_creat", True),
    958: ("lo_tell", False),
    964: ("lo_unlink", True),
    1004: ("lo_truncate", True),
    3170: ("lo_lseek64", False),
    3171: ("lo_tell64", False),
    3172: ("lo_truncate64", True),
}
_DANGEROUS: Final = frozenset({"lo_import", "lo_export"})
_READS: Final = frozenset({"loread"})  # returns a large object's content, as a query would
_OPAQUE: Final = (
    "a fast-path function call names its function by OID only, and the gateway judges that way only "
    "libpq's large-object functions; call the function in a query instead"
)


def call_text(oid: int) -> str:
    """What the audit trail records for a FunctionCall, and what the policy reads it back from."""
    known = LARGE_OBJECT_FUNCTIONS.get(oid)
    if known is not None:
        return f"{_PREFIX}pg_catalog.{known[0]}()"
    return f"{_PREFIX}pcigate_function_oid_{oid}()"


def _facts(name: str, writes: bool) -> Facts:
    classes: set[StatementClass] = {"function_call"}
    if writes:
        classes.add("write")
    if name in _READS:
        classes.add("read")
    conditions: frozenset[Condition] = frozenset()
    if name in _DANGEROUS:
        conditions = frozenset({"dangerous_function"})
    return Facts(frozenset(classes), "", functions=frozenset({f"pg_catalog.{name}"}), conditions=conditions)


_KNOWN: Final[dict[str, Facts]] = {
    call_text(oid): _facts(name, writes) for oid, (name, writes) in LARGE_OBJECT_FUNCTIONS.items()
}
_UNKNOWN: Final = Facts(frozenset({"function_call"}), "", opaque=_OPAQUE)


def fast_path_facts(text: str) -> Facts:
    """The facts of a FunctionCall from its :func:`call_text`. The command is empty: a FunctionCall has no
    keywords, so no ``commands:`` rule matches it (and none can let it through)."""
    return _KNOWN.get(text, _UNKNOWN)

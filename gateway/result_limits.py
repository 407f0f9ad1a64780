"""How much of its results a session may still pass to the client (``limits.results`` per identity kind).

Pure counting: the session asks :meth:`ResultBudget.admit_run` for each run of data rows (or COPY TO
lines) it is about to forward, and :meth:`ResultBudget.admit` row by row only for a run that reaches a
limit; it says where a statement's results end. The first one refused names the limit it would
break; the session then withholds the rest of that statement and stops it (``PgSession._start_cut``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pcigate.config.models import IdentityKind, ResultLimit

__all__ = ["Breach", "ResultBudget"]

_NO_BOUND: Final = 1 << 63


@dataclass(frozen=True, slots=True)
class Breach:
    """The limit a row would have broken."""

    scope: Literal["statement", "session"]
    unit: Literal["rows", "bytes"]
    limit: int
    kind: str  # the identity kind the limit is set for

    @property
    def label(self) -> str:
        """The limit as ``command.blocked`` names it, e.g. ``results.agent.statement_rows=1000``."""
        return f"results.{self.kind}.{self.scope}_{self.unit}={self.limit}"

    def describe(self) -> str:
        return f"{self.limit} {self.unit} per {self.scope} for {self.kind} identities"


class ResultBudget:
    """One session's counts against its identity kind's result limits."""

    __slots__ = (
        "_kind",
        "_lifted",
        "_session_bytes",
        "_session_rows",
        "_statement_bytes",
        "_statement_rows",
        "bytes",
        "rows",
        "total_bytes",
        "total_rows",
    )

    def __init__(self, limit: ResultLimit, kind: str) -> None:
        self._kind = kind
        self._statement_rows = limit.statement_rows or _NO_BOUND
        self._statement_bytes = limit.statement_bytes or _NO_BOUND
        self._session_rows = limit.session_rows or _NO_BOUND
        self._session_bytes = limit.session_bytes or _NO_BOUND
        self.rows = self.bytes = 0  # of the statement whose results are arriving
        self._lifted = False  # its statement limits do not apply (a person approved it)
        self.total_rows = self.total_bytes = 0  # of the session, as passed to the client

    @classmethod
    def for_kind(cls, limits: Mapping[IdentityKind, ResultLimit], kind: IdentityKind) -> ResultBudget | None:
        """None when nothing bounds this kind's results (the relay then counts nothing)."""
        limit = limits.get(kind)
        if limit is None or not any(
            (limit.statement_rows, limit.statement_bytes, limit.session_rows, limit.session_bytes)
        ):
            return None
        return cls(limit, kind)

    def admit(self, size: int) -> Breach | None:
        """Count one row of ``size`` bytes; the limit it would break instead (it is then not counted)."""
        return self._count(1, size)

    def admit_run(self, rows: int, size: int) -> bool:
        """Count ``rows`` rows of ``size`` bytes in all if every limit allows all of them (else count
        nothing: :meth:`admit` then finds the row that breaks one)."""
        return self._count(rows, size) is None

    def _count(self, rows: int, size: int) -> Breach | None:
        total_rows = self.total_rows + rows
        total_bytes = self.total_bytes + size
        if total_rows > self._session_rows:
            return Breach("session", "rows", self._session_rows, self._kind)
        if total_bytes > self._session_bytes:
            return Breach("session", "bytes", self._session_bytes, self._kind)
        nrows = self.rows + rows
        nbytes = self.bytes + size
        if not self._lifted:
            if nrows > self._statement_rows:
                return Breach("statement", "rows", self._statement_rows, self._kind)
            if nbytes > self._statement_bytes:
                return Breach("statement", "bytes", self._statement_bytes, self._kind)
        self.rows, self.bytes, self.total_rows, self.total_bytes = nrows, nbytes, total_rows, total_bytes
        return None

    def lift_statement_limits(self) -> None:
        """Until the statement ends, only the session limits apply."""
        self._lifted = True

    def statement_ended(self) -> None:
        self.rows = self.bytes = 0
        self._lifted = False

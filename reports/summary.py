"""What an evidence pack says about a period, folded from the ledger's events one at a time.

Pure and bounded: :meth:`Summary.add` takes each entry as the read API streams it (index order) and keeps
counts, a few samples per requirement and one pending-approval time per open request, never the events
themselves, so a pack over millions of events runs in constant memory (the open approvals aside).
:meth:`Summary.matrix` turns the counts into the PCI DSS v4.0.1 control matrix the pack prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

__all__ = ["CONTROLS", "Control", "Decision", "Finding", "MatrixRow", "Sample", "Summary"]

Status = Literal["met", "evidenced", "no activity", "attention", "not assessed"]
SAMPLES_PER_REQUIREMENT: Final = 5
LISTED: Final = 500  # register and exception rows a pack lists in full; beyond, it counts them
WHAT_CHARS: Final = 160  # of a sample's statement or reason
LATENCY_BUCKETS: Final[tuple[tuple[float, str], ...]] = (
    (10.0, "< 10 s"), (60.0, "10 s to 1 min"), (300.0, "1 to 5 min"), (900.0, "5 to 15 min"),
    (3600.0, "15 min to 1 h"), (float("inf"), ">= 1 h"),
)  # fmt: skip
EXCEPTION_TYPES: Final = ("command.blocked", "auth.failed", "approval.expired", "audit.gap", "sad.detected")


@dataclass(frozen=True, slots=True)
class Decision:
    """One row of the approvals register."""

    request_id: str
    requester: str
    approver: str
    decision: str  # approve | deny | expired
    reason: str
    requested: datetime | None
    decided: datetime

    @property
    def latency_s(self) -> float | None:
        return None if self.requested is None else (self.decided - self.requested).total_seconds()


@dataclass(frozen=True, slots=True)
class Finding:
    """One row of the exceptions list: something refused, denied, failed or missing."""

    index: int
    time: datetime
    type: str
    who: str
    what: str


@dataclass(frozen=True, slots=True)
class Sample:
    """An event a section shows as evidence, by its ledger index (its canonical bytes and inclusion proof go
    in the pack's ``evidence.json``). ``what`` is from the event itself, which the gateway already masked."""

    index: int
    event_id: str
    type: str
    time: datetime
    who: str
    what: str


@dataclass(frozen=True, slots=True)
class Control:
    requirement: str
    title: str
    evidence: str  # which events, in words


@dataclass(frozen=True, slots=True)
class MatrixRow:
    control: Control
    count: int
    status: Status
    note: str


CONTROLS: Final[tuple[Control, ...]] = (
    Control("10.2.1.1", "individual user access to cardholder data", "statements that read or wrote CHD"),
    Control("10.2.1.2", "actions with administrative access", "statements run with superuser rights"),
    Control("10.2.1.3", "access to audit logs", "ledger.read records"),
    Control("10.2.1.4", "invalid logical access attempts", "blocked statements, failed logins"),
    Control("10.2.1.5", "changes to identification and authentication", "access granted and revoked"),
    Control("10.2.1.6", "initialization, stopping or pausing of audit logs", "ledger started and stopped"),
    Control("10.2.1.7", "creation and deletion of system-level objects", "DDL statements"),
    Control("10.2.2", "audit log details recorded", "every event: user, type, time, result, origin, target"),
    Control("10.3.2", "audit logs protected from modification", "Merkle tree and signed checkpoints"),
    Control("10.5.1", "audit log history retained", "the oldest event still available"),
    Control("10.7.2", "failures of audit logging detected", "audit gaps and failed ledger stops"),
    Control("3.4.1", "PAN masked when displayed", "masking applied to results, errors and notices"),
    Control("7.2.6", "query access restricted by role", "blocked and approved statements"),
    Control("8.2.2", "shared and agent accounts tied to a person", "sessions of agents acting for a person"),
    Control("8.6.1", "system and application accounts managed", "sessions of agent and service accounts"),
)


@dataclass(slots=True)
class Summary:
    """See the module docstring. ``complete`` is the 10.2.2 check (``evidence.api.missing_10_2_2``)."""

    complete: Callable[[Mapping[str, Any]], bool]
    events: int = 0
    first: datetime | None = None
    last: datetime | None = None
    by_type: Counter[str] = field(default_factory=Counter)
    by_requirement: Counter[str] = field(default_factory=Counter)
    per_day: Counter[str] = field(default_factory=Counter)
    identities: dict[str, set[str]] = field(
        default_factory=lambda: {"human": set(), "agent": set(), "service": set()}
    )
    incomplete: int = 0  # events missing a 10.2.2 detail
    pruned: int = 0  # entries whose payload retention removed (counted by type, not inspected)
    newest_pruned: datetime | None = None
    masked_values: int = 0
    approvals: Counter[str] = field(default_factory=Counter)  # requested, approved, denied, expired
    # decision latencies rounded to 0.1 s: exact enough for percentiles, bounded by the approval timeouts
    approval_latency: Counter[float] = field(default_factory=Counter)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing stream sequence ranges
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    register: list[Decision] = field(default_factory=list)
    exceptions: list[Finding] = field(default_factory=list)
    unlisted: Counter[str] = field(default_factory=Counter)  # register / exceptions rows over LISTED
    _requested: dict[str, datetime] = field(default_factory=dict)

    def add(
        self,
        index: int,
        event_type: str,
        time: datetime,
        pci: tuple[str, ...],
        event: Mapping[str, Any] | None,
    ) -> None:
        """One ledger entry (``event`` None: its payload was pruned; it still counts by type)."""
        self.events += 1
        self.first = time if self.first is None else min(self.first, time)
        self.last = time if self.last is None else max(self.last, time)
        self.by_type[event_type] += 1
        self.per_day[time.strftime("%Y-%m-%d")] += 1
        for requirement in pci:
            self.by_requirement[requirement] += 1
            kept = self.samples.setdefault(requirement, [])
            if event is not None and len(kept) < SAMPLES_PER_REQUIREMENT:  # a pruned one cannot be proven
                kept.append(_sample(index, event_type, time, event))
        if event is None:
            self.pruned += 1
            self.newest_pruned = time if self.newest_pruned is None else max(self.newest_pruned, time)
            return
        if not self.complete(event):
            self.incomplete += 1
        actor = event.get("actor") or {}
        kind = actor.get("kind")
        if kind in self.identities and actor.get("sub"):
            self.identities[kind].add(str(actor["sub"]))
        data = event.get("data") or {}
        if event_type == "masking.applied":
            self.masked_values += int(data.get("total_values") or 0)
        elif event_type == "approval.requested":
            self.approvals["requested"] += 1
            self._requested[str(data.get("request_id"))] = time
        elif event_type == "approval.decided" and data.get("final"):
            decision = "approved" if data.get("decision") == "approve" else "denied"
            self.approvals[decision] += 1
            asked = self._requested.pop(str(data.get("request_id")), None)
            if asked is not None:
                self.approval_latency[round((time - asked).total_seconds(), 1)] += 1
            self._decided(data, _who(actor), str(data.get("decision")), asked, time)
        elif event_type == "approval.expired":
            self.approvals["expired"] += 1
            asked = self._requested.pop(str(data.get("request_id")), None)
            self._decided(data, "-", "expired", asked, time)
        elif event_type == "audit.gap":
            self.gaps.append((int(data.get("first_missing") or 0), int(data.get("last_missing") or 0)))
        if event_type in EXCEPTION_TYPES or (
            event_type == "approval.decided" and data.get("decision") == "deny"
        ):
            self._exception(index, time, event_type, _who(actor), event)

    def _decided(
        self, data: Mapping[str, Any], approver: str, decision: str, asked: datetime | None, time: datetime
    ) -> None:
        if len(self.register) >= LISTED:
            self.unlisted["register"] += 1
            return
        requester = data.get("requester") or {}
        self.register.append(
            Decision(
                request_id=str(data.get("request_id", "")),
                requester=_who(requester),
                approver=approver,
                decision=decision,
                reason=str(data.get("reason") or ""),
                requested=asked,
                decided=time,
            )
        )

    def _exception(
        self, index: int, time: datetime, event_type: str, who: str, event: Mapping[str, Any]
    ) -> None:
        if len(self.exceptions) >= LISTED:
            self.unlisted["exceptions"] += 1
            return
        self.exceptions.append(Finding(index, time, event_type, who, _what(event, why_first=True)))

    @property
    def sessions(self) -> int:
        return self.by_type["session.opened"]

    def latency_percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0..100, nearest rank) of decision latencies in seconds."""
        total = sum(self.approval_latency.values())
        if not total:
            return None
        rank = max(1, -(-total * p // 100))
        seen = 0
        for value in sorted(self.approval_latency):
            seen += self.approval_latency[value]
            if seen >= rank:
                return value
        return max(self.approval_latency)  # pragma: no cover - rank <= total

    def latency_histogram(self) -> Counter[str]:
        """Decisions per latency bucket (:data:`LATENCY_BUCKETS`), every bucket present."""
        out: Counter[str] = Counter({label: 0 for _, label in LATENCY_BUCKETS})
        for value, n in self.approval_latency.items():
            out[next(label for bound, label in LATENCY_BUCKETS if value < bound)] += n
        return out

    @property
    def completeness(self) -> float:
        """Share of inspected events with every 10.2.2 detail, in percent (100 with none inspected)."""
        inspected = self.events - self.pruned
        return 100.0 if inspected == 0 else 100.0 * (inspected - self.incomplete) / inspected

    def matrix(
        self, *, integrity_verified: bool | None, oldest_available: datetime | None
    ) -> list[MatrixRow]:
        """The control matrix: per requirement, how many events evidence it and its status.
        ``integrity_verified``: the pack's checkpoint chain and consistency proof held (None: not checked).
        ``oldest_available``: the ledger's oldest event that still has its payload (10.5.1: a year of
        history, three months at once)."""
        rows: list[MatrixRow] = []
        for control in CONTROLS:
            count = self.by_requirement[control.requirement]
            status: Status = "evidenced" if count else "no activity"
            note = "" if count else "no such events in the period"
            if control.requirement == "10.2.2":
                status = "met" if self.incomplete == 0 else "attention"
                note = f"{self.completeness:.2f}% of {self.events - self.pruned:,} events complete"
            elif control.requirement == "10.3.2":
                if integrity_verified is None:
                    status, note = "not assessed", "checkpoint chain not checked"
                else:
                    status = "met" if integrity_verified else "attention"
                    note = (
                        "checkpoints signed and consistent"
                        if integrity_verified
                        else "NOT VERIFIED: see the Integrity section"
                    )
            elif control.requirement == "10.5.1":
                status, note = self._retention(oldest_available)
            elif control.requirement == "10.7.2":
                status = "attention" if self.gaps else "met"
                note = f"{len(self.gaps)} gap(s) recorded" if self.gaps else "no gaps recorded"
            rows.append(MatrixRow(control, count, status, note))
        return rows

    def _retention(self, oldest_available: datetime | None) -> tuple[Status, str]:
        if self.last is None or oldest_available is None:
            return "not assessed", "no events in the period"
        if self.newest_pruned is not None and (self.last - self.newest_pruned).days < 365:
            return (
                "attention",
                f"payloads pruned for events younger than a year (newest {self.newest_pruned:%Y-%m-%d})",
            )
        kept = (self.last - oldest_available).days
        return (
            "met",
            f"nothing younger than a year pruned; oldest available {oldest_available:%Y-%m-%d} ({kept} days)",
        )


def _sample(index: int, event_type: str, time: datetime, event: Mapping[str, Any]) -> Sample:
    return Sample(
        index, str(event.get("id", "")), event_type, time, _who(event.get("actor") or {}), _what(event)
    )


def _what(event: Mapping[str, Any], *, why_first: bool = False) -> str:
    """One line: the (already masked) statement, and with ``why_first`` the reason or code before it;
    without a statement, the reason, message or code. At most :data:`WHAT_CHARS` characters."""
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    outcome = event.get("outcome")
    outcome = outcome if isinstance(outcome, Mapping) else {}
    statement = data.get("statement")
    text = str(statement.get("text") or "") if isinstance(statement, Mapping) else ""
    why = str(data.get("reason") or outcome.get("message") or outcome.get("code") or "")
    what = (f"{why}: {text}" if why and text else why or text) if why_first else text or why
    what = " ".join(what.split())
    return what if len(what) <= WHAT_CHARS else what[: WHAT_CHARS - 1] + "…"


def _who(actor: Mapping[str, Any]) -> str:
    """``sub`` (and ``→ person`` for an agent acting for one), as the pack names people."""
    sub = str(actor.get("sub") or "?")
    return f"{sub} → {actor['on_behalf_of']}" if actor.get("on_behalf_of") else sub

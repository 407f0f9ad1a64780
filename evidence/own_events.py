"""Events the evidence side records about the ledger itself: started, stopped, gaps, reads.

They are written straight into the ledger in the same transaction as what they describe (a gap is
never acknowledged without its ``audit.gap`` entry, a read never returns without its ``ledger.read``), and
published on the audit stream afterwards for SIEMs; when the consumer meets them there, their event id is
already in the ledger and they are skipped. Each is built as a plain object, checked against the v1
contract and then turned into a ledger entry exactly like a message from the stream would be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from evidence.entries import SUBJECT_PREFIX, to_entry
from evidence.store import NewEntry
from schemas import new_event_id, pci_requirements, utc_now

__all__ = ["OwnEvent", "Recorder", "ServiceActor"]

STREAM: Final = "PCIGATE_AUDIT"
GapCause = Literal["unknown", "invalid_event", "stream_limit", "sequence_reset"]


@dataclass(frozen=True, slots=True)
class ServiceActor:
    """Who records: the evidence service (or a reader's identity) and where the ledger lives."""

    sub: str
    iss: str
    host: str  # the machine writing or reading, for 10.2.2 origination
    database: str | None  # the ledger database's name
    log_origin: str  # the checkpoint origin line, naming the log
    kind: Literal["human", "agent", "service"] = "service"
    name: str | None = None
    groups: tuple[str, ...] = ()
    addr: str = "local"
    client_app: str = "pcigate-evidence"


@dataclass(frozen=True, slots=True)
class OwnEvent:
    """An event ready both for the ledger (``entry``) and for the stream (``subject``, ``payload``)."""

    event_id: str
    subject: str
    payload: bytes
    entry: NewEntry


class Recorder:
    """Builds the evidence side's own events for one actor."""

    def __init__(self, actor: ServiceActor) -> None:
        self.actor = actor

    def event(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        result: Literal["success", "failure"] = "success",
        code: str | None = None,
        message: str | None = None,
        target_object: str | None = None,
        extra_pci: tuple[str, ...] = (),
        origin_port: int | None = None,
    ) -> OwnEvent:
        """A contract-valid event of ``event_type``; raises ValueError if the contract refuses it."""
        a = self.actor
        pci = list(pci_requirements(event_type))
        pci += [r for r in extra_pci if r not in pci]
        obj = {
            "id": new_event_id(),
            "type": event_type,
            "schema_version": "1.0",
            "time": utc_now(),
            "actor": {
                "sub": a.sub,
                "iss": a.iss,
                "name": a.name,
                "groups": list(a.groups),
                "kind": a.kind,
                "on_behalf_of": None,
            },
            "origin": {"addr": a.addr, "port": origin_port, "client_app": a.client_app},
            "target": {
                "connection": None,
                "protocol": "ledger",
                "host": a.host,
                "database": a.database,
                "object": target_object or a.log_origin,
            },
            "session_id": None,
            "outcome": {"result": result, "code": code, "message": message},
            "policy": None,
            "pci": pci,
            "data": dict(data),
        }
        payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        subject = SUBJECT_PREFIX + event_type
        entry = to_entry(payload, stream_seq=None, subject=subject, msg_id=str(obj["id"]))
        if not isinstance(entry, NewEntry):
            raise ValueError(f"the evidence service built an invalid {event_type} event: {entry.reason}")
        return OwnEvent(str(obj["id"]), subject, payload, entry)

    def started(
        self,
        *,
        initialized: bool,
        tree_size: int,
        root: bytes,
        signing_key_id: int,
        consumer: str,
        resume_after_sequence: int,
        software_version: str,
    ) -> OwnEvent:
        return self.event(
            "ledger.started",
            {
                "log_origin": self.actor.log_origin,
                "initialized": initialized,
                "tree_size": tree_size,
                "root_hash": root.hex(),
                "signing_key_id": f"{signing_key_id:08x}",
                "stream": STREAM,
                "consumer": consumer,
                "resume_after_sequence": resume_after_sequence,
                "software_version": software_version,
            },
        )

    def stopped(
        self,
        *,
        reason: Literal["shutdown", "paused", "maintenance", "error"],
        clean: bool,
        tree_size: int,
        root: bytes,
        last_sequence: int,
        message: str | None = None,
    ) -> OwnEvent:
        failed = reason == "error"
        return self.event(
            "ledger.stopped",
            {
                "log_origin": self.actor.log_origin,
                "reason": reason,
                "clean": clean,
                "tree_size": tree_size,
                "root_hash": root.hex(),
                "last_sequence": last_sequence,
            },
            result="failure" if failed else "success",
            code="ledger_error" if failed else None,
            message=message,
            extra_pci=("10.7.2",) if failed else (),
        )

    def gap(
        self,
        *,
        first_missing: int,
        last_missing: int,
        cause: GapCause,
        subject: str | None = None,
        last_event_id: str | None = None,
    ) -> OwnEvent:
        count = last_missing - first_missing + 1
        what = "audit record" if count == 1 else "audit records"
        verb = "refused as invalid" if cause == "invalid_event" else "missing"
        return self.event(
            "audit.gap",
            {
                "stream": STREAM,
                "subject": subject,
                "first_missing": first_missing,
                "last_missing": last_missing,
                "detected_by": "evidence_consumer",
                "cause": cause,
                "producer": None,
                "last_event_id": last_event_id,
            },
            result="failure",
            code="audit_gap",
            message=f"{count} {what} {verb} (stream sequence {first_missing}-{last_missing})",
            target_object=STREAM,
        )

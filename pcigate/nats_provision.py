"""Provisioning of the JetStream streams and KV bucket that DESIGN.md names (``pcigate nats init``).

Idempotent: missing streams are created, existing ones are checked and left alone. An existing stream whose
settings are weaker than required (memory storage, deletable or purgeable messages, discard-old, a shorter
duplicate window, ...) is refused, never "fixed" silently and never used: weakening the audit transport
would quietly weaken the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from pcigate.natsconn import connect_once

AUDIT_STREAM = "PCIGATE_AUDIT"
AUDIT_SUBJECTS = ("pcigate.audit.>",)
CHECKPOINT_STREAM = "PCIGATE_CHECKPOINTS"
CHECKPOINT_SUBJECTS = ("pcigate.checkpoints",)
RECORDING_STREAM = "PCIGATE_RECORDINGS"
RECORDING_SUBJECTS = ("pcigate.recordings.>",)
APPROVALS_BUCKET = "PCIGATE_APPROVALS"
APPROVALS_HISTORY = 16

DAY = 86400.0


class ProvisionError(RuntimeError):
    """An existing stream or bucket is weaker than required; ``problems`` lists each shortfall."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = problems
        super().__init__(
            f"NATS stream {name} exists with weaker settings than pcigate requires: "
            + "; ".join(problems)
            + f". pcigate will not use or weaken it: edit the stream to meet these settings "
            f"(e.g. `nats stream edit {name}`) or move its data away and let `pcigate nats init` create it."
        )


@dataclass(frozen=True)
class Settings:
    """What the configuration decides; everything else is fixed by the contract."""

    duplicate_window: float = 120.0
    replicas: int = 1
    audit_max_age: float = 400 * DAY
    recordings_max_age: float = 400 * DAY


@dataclass(frozen=True)
class Outcome:
    name: str
    action: Literal["created", "verified"]


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{o.action:9} {o.name}" for o in self.outcomes]


def _stream(
    name: str, subjects: Iterable[str], max_age: float, s: Settings, description: str
) -> StreamConfig:
    return StreamConfig(
        name=name,
        description=description,
        subjects=list(subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        num_replicas=s.replicas,
        duplicate_window=s.duplicate_window,
        max_age=max_age,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
    )


def required_streams(s: Settings) -> list[StreamConfig]:
    return [
        _stream(AUDIT_STREAM, AUDIT_SUBJECTS, s.audit_max_age, s, "pcigate audit events (PCI DSS 10.2)"),
        _stream(
            CHECKPOINT_STREAM, CHECKPOINT_SUBJECTS, s.audit_max_age, s, "pcigate signed ledger checkpoints"
        ),
        _stream(RECORDING_STREAM, RECORDING_SUBJECTS, s.recordings_max_age, s, "pcigate session recordings"),
    ]


def required_kv(s: Settings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=APPROVALS_BUCKET,
        description="pcigate just-in-time approval requests and decisions",
        history=APPROVALS_HISTORY,
        storage=StorageType.FILE,
        replicas=s.replicas,
    )


def kv_stream(kv: KeyValueConfig, duplicate_window: float) -> StreamConfig:
    """The KV bucket's backing stream, laid out as nats-py and the nats CLI expect a bucket to be.

    We create it ourselves rather than with ``create_key_value`` because that enables per-message TTLs
    (``allow_msg_ttl``), with which any writer could make a pending approval silently expire.
    """
    return StreamConfig(
        name=f"KV_{kv.bucket}",
        description=kv.description,
        subjects=[f"$KV.{kv.bucket}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=kv.storage,
        num_replicas=kv.replicas,
        discard=DiscardPolicy.NEW,
        duplicate_window=duplicate_window,
        max_msgs_per_subject=kv.history,
        max_consumers=-1,
        max_msgs=-1,
        allow_rollup_hdrs=True,
        allow_direct=True,
        deny_delete=True,
    )


def _enum_value(v: Any) -> Any:
    return getattr(v, "value", v)


def weaknesses(have: StreamConfig, want: StreamConfig, *, kv: bool = False) -> list[str]:
    """Every way ``have`` is weaker than ``want``; empty when it is at least as strong."""
    out: list[str] = []
    if _enum_value(have.storage) != _enum_value(want.storage):
        out.append(f"storage is {_enum_value(have.storage)} (required {_enum_value(want.storage)})")
    if _enum_value(have.retention) != _enum_value(RetentionPolicy.LIMITS):
        out.append(
            f"retention is {_enum_value(have.retention)} (required limits: acks must not delete events)"
        )
    if (have.num_replicas or 1) < (want.num_replicas or 1):
        out.append(f"num_replicas is {have.num_replicas} (required >= {want.num_replicas})")
    missing = set(want.subjects or ()) - set(have.subjects or ())
    if missing:
        out.append(f"subjects lack {', '.join(sorted(missing))}")
    if want.max_age and have.max_age and have.max_age < want.max_age:
        out.append(f"max_age is {have.max_age / DAY:g}d (required >= {want.max_age / DAY:g}d)")
    if getattr(have, "allow_msg_ttl", None):
        out.append("allow_msg_ttl is true (per-message TTLs would let records expire early)")
    persist = _enum_value(getattr(have, "persist_mode", None))
    if persist not in (None, "default"):
        out.append(f"persist_mode is {persist} (required default: writes must be durable)")
    if kv:
        if (have.max_msgs_per_subject or 0) < (want.max_msgs_per_subject or 0):
            out.append(
                f"history is {have.max_msgs_per_subject} (required >= {want.max_msgs_per_subject}: "
                "every step of a decision must stay readable)"
            )
        if have.max_age:
            out.append(f"ttl is {have.max_age:g}s (required none: decisions must not expire from KV)")
        return out
    if not have.deny_delete:
        out.append("deny_delete is false (required true)")
    if not have.deny_purge:
        out.append("deny_purge is false (required true)")
    if _enum_value(have.discard) != _enum_value(DiscardPolicy.NEW):
        out.append(
            f"discard is {_enum_value(have.discard)} (required new: a full stream must refuse, not drop)"
        )
    if (have.duplicate_window or 0) < (want.duplicate_window or 0):
        out.append(
            f"duplicate_window is {have.duplicate_window or 0:g}s (required >= {want.duplicate_window:g}s, "
            "the publisher's retry horizon)"
        )
    if have.allow_rollup_hdrs:
        out.append("allow_rollup_hdrs is true (a rollup would purge audit events)")
    return out


async def _ensure(js: JetStreamContext, want: StreamConfig, *, kv: bool = False) -> Outcome:
    assert want.name is not None
    try:
        info = await js.stream_info(want.name)
    except NotFoundError:
        await js.add_stream(want)
        return Outcome(want.name, "created")
    problems = weaknesses(info.config, want, kv=kv)
    if problems:
        raise ProvisionError(want.name, problems)
    return Outcome(want.name, "verified")


async def provision(js: JetStreamContext, settings: Settings) -> Report:
    """Create or verify every stream and bucket; raises ProvisionError on the first weaker one."""
    report = Report()
    for want in required_streams(settings):
        report.outcomes.append(await _ensure(js, want))
    bucket = kv_stream(required_kv(settings), settings.duplicate_window)
    report.outcomes.append(await _ensure(js, bucket, kv=True))
    return report


async def provision_url(servers: str | list[str], settings: Settings, **connect: Any) -> Report:
    """Connect, provision, disconnect — what ``pcigate nats init`` and service start-up call."""
    nc = await connect_once(servers, **connect)
    try:
        return await provision(nc.jetstream(), settings)
    finally:
        await nc.close()

"""What approvers' tools (``pcigate approvals``, the console) do over NATS: read the request records in KV
``PCIGATE_APPROVALS`` and send a decision to the gateway that holds the statement.

Nothing here trusts a record for more than display: the gateway that receives a decision verifies the
approver's token and judges it against its own copy. A decision names the record's ``binding`` — the
statement the approver was shown — so it can never release another statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from pydantic import ValidationError

from pcigate.natsconn import connect_once
from schemas.approvals import (
    KV_BUCKET,
    WHOAMI_SUBJECT,
    DecideReply,
    DecideRequest,
    Request,
    WhoAmIReply,
    WhoAmIRequest,
    decide_subject,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.kv import KeyValue

__all__ = ["ApprovalsClient", "ApprovalsError", "Listed", "effective_state"]

DECIDE_TIMEOUT_S = 15.0


class ApprovalsError(RuntimeError):
    """A request cannot be read or decided; the message says why and what to do. ``retryable``: the same
    call may work later (NATS or a gateway was away), so a console may try again on its own."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Listed:
    """A request record as read, or why its entry could not be read as one."""

    key: str
    request: Request | None
    problem: str | None = None


def effective_state(request: Request, now: datetime | None = None) -> str:
    """The record's state, except that a pending request past its expiry is shown as expired (its
    gateway may be gone and never write that)."""
    now = now or datetime.now(UTC)
    if request.state == "pending" and now >= request.expires:
        return "expired"
    return request.state


class ApprovalsClient:
    """One NATS connection for reading requests and sending decisions; use with ``async with``."""

    def __init__(self, servers: Sequence[str], **options: Any) -> None:
        self._servers = list(servers)
        self._options = options
        self._nc: Client | None = None
        self._kv: KeyValue | None = None

    async def __aenter__(self) -> ApprovalsClient:
        self._nc = await connect_once(self._servers, **self._options)
        try:
            self._kv = await self._nc.jetstream().key_value(KV_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            await self._nc.close()
            raise ApprovalsError(
                f"KV bucket {KV_BUCKET} does not exist: run `pcigate nats init` or start a gateway"
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    @property
    def nats(self) -> Client:
        """The connection, for a console that also follows other subjects on it."""
        assert self._nc is not None
        return self._nc

    async def requests(self) -> list[Listed]:
        """Every request in the bucket (latest revision each), oldest first.

        The snapshot ends at the entry with nothing pending after it. (nats-py's end-of-snapshot marker can
        come before entries already on their way, which would make a full bucket look empty.)"""
        assert self._kv is not None
        if (await self._kv.status()).values == 0:
            return []
        watcher = await self._kv.watchall(ignore_deletes=True)
        found: list[Listed] = []
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=10)  # type: ignore[no-untyped-call]
                except (TimeoutError, nats.errors.TimeoutError):
                    raise ApprovalsError("reading the approval requests timed out; retry") from None
                if entry is None:
                    continue
                found.append(_listed(entry.key, entry.value))
                if not entry.delta:
                    break
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(
            found, key=lambda x: x.request.created if x.request else datetime.min.replace(tzinfo=UTC)
        )

    async def watch(self, ready: asyncio.Event | None = None) -> AsyncIterator[Request]:
        """Every request record as it is written, the current ones first, until the caller stops (a live
        queue for consoles; records that do not validate are skipped). ``ready`` is set once the watch is
        in place: nothing written after that is missed."""
        assert self._kv is not None
        watcher = await self._kv.watchall(ignore_deletes=True)
        if ready is not None:
            ready.set()
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=60)  # type: ignore[no-untyped-call]
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                if entry is None:  # the end of the current records
                    continue
                listed = _listed(entry.key, entry.value)
                if listed.request is not None:
                    yield listed.request
        finally:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def get(self, request_id: str) -> Request:
        assert self._kv is not None
        try:
            entry = await self._kv.get(request_id)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.InvalidKeyError):
            raise ApprovalsError(f"no approval request {request_id}") from None
        listed = _listed(request_id, entry.value)
        if listed.request is None:
            raise ApprovalsError(f"approval request {request_id} cannot be read: {listed.problem}")
        return listed.request

    async def decide(
        self,
        request: Request,
        decision: Literal["approve", "deny"],
        *,
        reason: str,
        token: str,
        channel: Literal["tui", "cli", "api"],
        client_app: str,
    ) -> DecideReply:
        """Send a decision to the gateway holding ``request`` and return what it did with it."""
        assert self._nc is not None
        try:
            message = DecideRequest(
                id=request.id,
                decision=decision,
                binding=request.binding,
                reason=reason,
                token=token,
                channel=channel,
                origin_addr=self._local_addr(),
                client_app=client_app,
            )
        except ValidationError as exc:
            raise _unsendable("the decision", exc) from None
        try:
            msg = await self._nc.request(
                decide_subject(request.gateway), message.model_dump_json().encode(), timeout=DECIDE_TIMEOUT_S
            )
        except nats.errors.NoRespondersError:
            raise ApprovalsError(
                f"the gateway holding request {request.id} ({request.gateway}) is not running; the statement "
                "is gone with its session, so there is nothing left to decide"
            ) from None
        except nats.errors.TimeoutError:
            raise ApprovalsError(
                f"the gateway holding request {request.id} did not answer within {DECIDE_TIMEOUT_S:.0f} s; "
                "run `pcigate approvals list` to see whether the decision counted"
            ) from None
        except nats.errors.Error as exc:  # the connection closed or broke while the decision was on its way
            raise ApprovalsError(
                f"NATS went away while sending the decision ({_nats_problem(exc)}); it may or may not have "
                "reached the gateway: run `pcigate approvals list` (or wait for the console to reconnect) "
                "and decide again if the request is still pending",
                retryable=True,
            ) from None
        try:
            return DecideReply.model_validate_json(msg.data)
        except ValidationError:
            raise ApprovalsError("the gateway's answer could not be read") from None

    async def whoami(self, token: str, *, client_app: str) -> WhoAmIReply:
        """Who ``token`` is, as a running gateway verifies it, and in which approver groups."""
        assert self._nc is not None
        try:
            message = WhoAmIRequest(token=token, origin_addr=self._local_addr(), client_app=client_app)
        except ValidationError as exc:
            raise _unsendable("your token", exc) from None
        try:
            msg = await self._nc.request(
                WHOAMI_SUBJECT, message.model_dump_json().encode(), timeout=DECIDE_TIMEOUT_S
            )
        except nats.errors.NoRespondersError:
            raise ApprovalsError(
                "no gateway is running to verify your token; start one (`pcigate gateway`)", retryable=True
            ) from None
        except nats.errors.TimeoutError:
            raise ApprovalsError(
                f"no gateway verified your token within {DECIDE_TIMEOUT_S:.0f} s; retry", retryable=True
            ) from None
        except nats.errors.Error as exc:  # the connection closed or broke while asking
            raise ApprovalsError(
                f"NATS went away while verifying your token ({_nats_problem(exc)}); retry once it is back",
                retryable=True,
            ) from None
        try:
            return WhoAmIReply.model_validate_json(msg.data)
        except ValidationError:
            raise ApprovalsError("the gateway's answer could not be read") from None

    def _local_addr(self) -> str | None:
        """The address this host reaches NATS from: the decision's claimed origin."""
        for server in self._servers:
            parts = urlsplit(server if "://" in server else f"nats://{server}")
            if not parts.hostname:
                continue
            try:
                with socket.socket(socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET,
                                   socket.SOCK_DGRAM) as probe:  # fmt: skip
                    probe.connect((parts.hostname, parts.port or 4222))
                    addr = probe.getsockname()[0]
            except OSError:
                continue
            return str(addr).split("%", 1)[0]
        return None


# What each field of a decision or a whoami must be, in the words of someone who has to fix it.
_FIELD_RULES = {
    "reason": "the reason must be 1 to 1024 characters without control characters; shorten or retype it",
    "token": "the token must be 1 byte to 32 KiB (a JWT); check that --token, --token-file or "
    "PCIGATE_TOKEN holds your token and nothing else, or get a new one",
}


def _unsendable(what: str, exc: ValidationError) -> ApprovalsError:
    """``what`` cannot be sent as the contract stands: say which field and what it must be. Only field
    names and rules, never pydantic's text: that quotes the input, and the input holds a token."""
    fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    rules = [_FIELD_RULES.get(f, f"{f} is not valid") for f in fields] or ["it is not valid"]
    return ApprovalsError(f"{what} cannot be sent: {'; '.join(rules)}")


def _nats_problem(exc: nats.errors.Error) -> str:
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def _listed(key: str, value: bytes | None) -> Listed:
    if not value:
        return Listed(key, None, "empty entry")
    try:
        return Listed(key, Request.model_validate_json(value))
    except ValidationError as exc:
        return Listed(key, None, f"not a valid request record ({exc.error_count()} problem(s))")

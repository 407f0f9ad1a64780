"""The console's NATS side, without Textual: one connection that streams the request records, verifies the
approver's token with a gateway and carries decisions; when NATS goes away it says so and reconnects.

The app hands it callbacks: ``on_request`` for every record written (the current ones first, again after a
reconnect, so nothing decided meanwhile is missed) and ``on_state`` for the connection's state and a
sentence for the banner. A replay's chunks are read over the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import nats.errors
import nats.js.errors
from nats.js.api import ConsumerConfig, DeliverPolicy

from pcigate.approvals_client import ApprovalsClient, ApprovalsError
from pcigate.natsconn import NatsUnavailableError
from pcigate.recordings import stored_chunks
from schemas.approvals import DecideReply, Request, WhoAmIReply

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ["CLIENT_APP", "ConsoleLink", "NotConnectedError"]

log = logging.getLogger(__name__)

AUDIT_STREAM: Final = "PCIGATE_AUDIT"
AUDIT_SUBJECTS: Final = "pcigate.audit.>"

CLIENT_APP: Final = "pcigate-approve"


class NotConnectedError(ApprovalsError):
    """NATS is not reachable right now; the link is reconnecting (so it is worth trying again)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class ConsoleLink:
    """See the module docstring. :meth:`run` until cancelled."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        on_request: Callable[[Request], None],
        on_state: Callable[[bool, str], None],
        on_event: Callable[[bytes], None] | None = None,
        on_feed: Callable[[str], None] | None = None,
        backlog: int = 500,
        retry_every: float = 2.0,
        **options: Any,
    ) -> None:
        self._servers = list(servers)
        self._on_request = on_request
        self._on_state = on_state
        self._on_event = on_event
        self._on_feed = on_feed or (lambda _: None)
        self._backlog = backlog
        self._retry = retry_every
        self._options = options
        self._client: ApprovalsClient | None = None
        self.connected = False

    async def run(self) -> None:
        while True:
            why = await self._session()
            self._client = None
            self.connected = False
            self._on_state(False, f"NATS unreachable ({why}); reconnecting every {self._retry:g} s")
            await asyncio.sleep(self._retry)

    async def _session(self) -> str:
        """One connection's life: watch until it is lost; why it ended."""
        lost = asyncio.Event()

        async def on_lost() -> None:
            lost.set()

        try:
            async with ApprovalsClient(
                self._servers, disconnected_cb=on_lost, closed_cb=on_lost, **self._options
            ) as client:
                ready = asyncio.Event()
                pump = asyncio.ensure_future(self._pump(client, ready))
                waiting = asyncio.ensure_future(lost.wait())
                started = asyncio.ensure_future(ready.wait())
                try:
                    await asyncio.wait((pump, started, waiting), return_when=asyncio.FIRST_COMPLETED)
                    if ready.is_set() and not lost.is_set():
                        self._client = client
                        self.connected = True
                        self._on_state(True, "connected")
                        if self._on_event is not None:  # after the queue: its backlog would delay the queue
                            await self._follow(client)
                        await asyncio.wait((pump, waiting), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (pump, waiting, started):
                        task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
                if pump.done() and not pump.cancelled() and pump.exception() is not None:
                    return str(pump.exception())
                return "connection lost"
        except (NatsUnavailableError, ApprovalsError, nats.errors.Error, OSError) as exc:
            return str(exc) or exc.__class__.__name__

    async def _follow(self, client: ApprovalsClient) -> None:
        """The audit stream from its last ``backlog`` events on, as the gateways and services publish it
        (an ordered consumer: nothing stored, nothing acknowledged)."""
        js = client.nats.jetstream()
        on_event = self._on_event
        assert on_event is not None

        async def deliver(msg: Msg) -> None:
            on_event(msg.data)

        try:
            last = (await js.stream_info(AUDIT_STREAM)).state.last_seq
            start = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(1, last - self._backlog + 1)
            )
            await js.subscribe(AUDIT_SUBJECTS, cb=deliver, ordered_consumer=True, config=start)
        except nats.js.errors.NotFoundError:
            self._on_feed(
                f"stream {AUDIT_STREAM} does not exist (run `pcigate nats init`); no activity to show"
            )
        except nats.errors.Error as exc:  # the queue still works without the feed
            self._on_feed(f"the audit stream cannot be followed: {exc or exc.__class__.__name__}")
        else:
            self._on_feed(f"following {AUDIT_SUBJECTS} (the last {self._backlog} events first)")

    async def _pump(self, client: ApprovalsClient, ready: asyncio.Event) -> None:
        async for request in client.watch(ready):
            self._on_request(request)

    def _live(self) -> ApprovalsClient:
        if self._client is None or not self.connected:
            raise NotConnectedError("NATS is not reachable right now; the console is reconnecting")
        return self._client

    async def whoami(self, token: str) -> WhoAmIReply:
        return await self._live().whoami(token, client_app=CLIENT_APP)

    async def decide(
        self, request: Request, decision: Literal["approve", "deny"], *, reason: str, token: str
    ) -> DecideReply:
        return await self._live().decide(
            request, decision, reason=reason, token=token, channel="tui", client_app=CLIENT_APP
        )

    async def stored_chunks(self, session_id: str) -> dict[int, bytes]:
        """``session_id``'s recording chunks from stream ``PCIGATE_RECORDINGS`` (not yet verified)."""
        return await stored_chunks(self._live().nats, session_id)

"""The approver console when things go wrong, driven by Textual's Pilot against a real NATS server of the
test's own, with a stand-in gateway (a NATS responder) for the token check and the decisions: a reason that
is too long or holds control characters is refused in the dialog and by the client; NATS going away while
a decision or a token check is on its way shows a message; a token check that found no gateway is tried
again until one answers, and one the gateway refused is not. The console keeps running through all of it,
never ending with a traceback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from textual import events
from textual.widgets import Label

from pcigate.approvals_client import ApprovalsClient, ApprovalsError
from pcigate.devstack.ports import free_port
from schemas.approvals import (
    KV_BUCKET,
    WHOAMI_SUBJECT,
    DecideReply,
    DecideRequest,
    WhoAmIReply,
    decide_subject,
)
from tests.e2e.test_console_e2e import SIZE, _reachable, nats_server, until
from tests.unit.test_approvals_record import request
from tests.unit.test_tui_snapshots import BOB
from tui.app import ApproverApp
from tui.screens import MAX_REASON, DecisionScreen, ReasonInput

pytestmark = pytest.mark.e2e

TOKEN = "a-token-the-stand-in-gateway-accepts"
REFUSED = WhoAmIReply(refused="invalid_token", message="the token's signature does not verify")


class StandIn:
    """A gateway as the console sees it over NATS: it answers ``whoami`` (once ``verifies`` is set) and
    counts the decisions it receives on ``gw-1``'s subject, answering each as counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.whoami_asked = 0
        self.decisions: list[DecideRequest] = []
        self.reply: WhoAmIReply | None = None
        self._nc: Any = None

    async def start(self) -> None:
        self._nc = await nats.connect(self.url)
        await self._nc.subscribe(decide_subject("gw-1"), cb=self._decide)

    async def answer_whoami(self, reply: WhoAmIReply) -> None:
        self.reply = reply
        await self._nc.subscribe(WHOAMI_SUBJECT, cb=self._whoami)
        await self._nc.flush()

    async def _whoami(self, msg: Msg) -> None:
        self.whoami_asked += 1
        assert self.reply is not None
        await msg.respond(self.reply.model_dump_json().encode())

    async def _decide(self, msg: Msg) -> None:
        self.decisions.append(DecideRequest.model_validate_json(msg.data))
        reply = DecideReply(refused=None, message="approval counted", state="approved", approvals=1, quorum=1)
        await msg.respond(reply.model_dump_json().encode())

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[tuple[str, Any, Path]]:
    """A NATS server of this test's own (JetStream): its URL, its process and its store."""
    port = free_port()
    with nats_server(port, tmp_path / "js") as proc:
        yield f"nats://127.0.0.1:{port}", proc, tmp_path / "js"


@contextlib.asynccontextmanager
async def stand_in(url: str, whoami: WhoAmIReply | None = BOB) -> AsyncIterator[StandIn]:
    """The bucket with one pending request of ``gw-1`` in it, and the stand-in gateway."""
    port = int(url.rsplit(":", 1)[1])
    await until(lambda: _reachable(port), what="the NATS server")
    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket=KV_BUCKET, history=1)
    now = datetime.now(UTC)
    held = request(created=now, expires=now + timedelta(minutes=10))
    await kv.put(held.id, held.model_dump_json().encode())
    await nc.close()
    gateway = StandIn(url)
    await gateway.start()
    if whoami is not None:
        await gateway.answer_whoami(whoami)
    try:
        yield gateway
    finally:
        await gateway.close()


def notes(app: ApproverApp) -> list[str]:
    """The notifications the console shows now, as ``title: message``."""
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def ready(app: ApproverApp) -> None:
    await until(lambda: app.identity is not None and app.link.connected, what="a verified identity")
    await until(lambda: len(app._shown) == 1, what="the request in the queue")


async def test_a_reason_too_long_or_with_control_characters_is_refused_and_the_console_goes_on(
    nats_url: tuple[str, Any, Path],
) -> None:
    url, _proc, _store = nats_url
    async with stand_in(url) as gateway:
        app = ApproverApp([url], TOKEN, retry_every=0.3)
        async with app.run_test(size=SIZE) as pilot:
            await ready(app)
            await pilot.press("a")
            await until(lambda: isinstance(app.screen, DecisionScreen), what="the reason dialog")
            screen = app.screen
            box = screen.query_one(ReasonInput)
            problem = screen.query_one("#decision-problem", Label)

            box.post_message(events.Paste("x" * (MAX_REASON + 76)))  # pasted: too long, not taken
            await pilot.pause()
            assert box.value == ""
            assert f"at most {MAX_REASON} characters" in str(problem.render())

            box.post_message(events.Paste("CHG-1\x07 checked"))  # a control character, pasted
            await pilot.pause()
            await pilot.press("enter")
            assert isinstance(app.screen, DecisionScreen), "sent with a control character"
            assert "control character (U+0007)" in str(problem.render())

            box.value = ""
            box.post_message(events.Paste("y" * (MAX_REASON - 4)))
            await pilot.press(*"CHG-42")  # typed past the limit: the last two keys are not taken
            assert box.value == "y" * (MAX_REASON - 4) + "CHG-"
            assert f"at most {MAX_REASON} characters" in str(problem.render())
            await pilot.press("enter")
            await until(lambda: len(gateway.decisions) == 1, what="the decision at the gateway")
            assert gateway.decisions[0].reason == box.value

            # Past the dialog (a caller that does not check): the client refuses, the console says so.
            held = app.queue.get(app._shown[0])
            assert held is not None
            with pytest.raises(ApprovalsError, match="reason must be 1 to 1024 characters"):
                await app.link.decide(held, "approve", reason="z" * (MAX_REASON + 1), token=TOKEN)
            app.run_worker(app._send(held, "approve", "z" * (MAX_REASON + 1), TOKEN), group="decide")
            await until(lambda: any("not sent" in n for n in notes(app)), what="the message")
            assert app.is_running and len(gateway.decisions) == 1


async def test_nats_going_away_under_a_decision_or_a_token_check_shows_a_message(
    nats_url: tuple[str, Any, Path],
) -> None:
    """Between NATS closing the connection and the console noticing, a decision or a token check meets a
    closed connection (nats-py's ConnectionClosedError): here the console's link is handed such a
    connection, so that window is hit every time. Then NATS really goes: a decision says it cannot be sent.
    """
    url, proc, _store = nats_url
    async with stand_in(url) as gateway:
        app = ApproverApp([url], TOKEN, retry_every=0.3)
        async with app.run_test(size=SIZE) as pilot:
            await ready(app)
            live = app.link._client
            closed = ApprovalsClient([url])
            await closed.__aenter__()
            await closed.nats.close()
            app.link._client = closed

            await pilot.press("a")
            await pilot.press(*"CHG-9 checked", "enter")
            await until(lambda: any("NATS went away" in n for n in notes(app)), what="the message")
            assert app.is_running and not gateway.decisions

            app.identity = None  # the token check meets the closed connection too, and is tried again
            app._check_token()
            await until(lambda: "NATS went away" in (app._identity_problem or ""), what="the token message")
            assert app.is_running and app._whoami_due is not None
            app.link._client = live
            await until(lambda: app.identity is not None, within=10, what="the token check tried again")

            proc.terminate()
            proc.wait(timeout=30)
            await until(lambda: not app.link.connected, what="the outage to show")
            await pilot.press("a")
            await pilot.press(*"CHG-10 checked", "enter")
            await until(lambda: any("not reachable right now" in n for n in notes(app)), what="the message")
            assert app.is_running and app._banner.has_class("down")


async def test_the_token_check_is_tried_again_until_a_gateway_answers(
    nats_url: tuple[str, Any, Path],
) -> None:
    """No gateway when the console starts: it watches, says why, and checks the token again (backing off)
    on the same connection; once a gateway answers, the approver can decide."""
    url, _proc, _store = nats_url
    async with stand_in(url, whoami=None) as gateway:
        app = ApproverApp([url], TOKEN, retry_every=0.3)
        async with app.run_test(size=SIZE):
            await until(lambda: "no gateway is running" in (app._identity_problem or ""), what="the problem")
            assert app.identity is None and app._whoami_due is not None
            await asyncio.sleep(1.0)  # a few tries meet no responder
            assert app._whoami_wait > 0.3  # backing off
            await gateway.answer_whoami(BOB)
            await until(lambda: app.identity is not None, within=10, what="the token verified on a retry")
            assert app.identity is not None and app.identity.can_decide and app._whoami_due is None
            assert gateway.whoami_asked == 1 and app.link.connected


async def test_a_refused_or_unsendable_token_is_not_tried_again(nats_url: tuple[str, Any, Path]) -> None:
    url, _proc, _store = nats_url
    async with stand_in(url, whoami=REFUSED) as gateway:
        app = ApproverApp([url], TOKEN, retry_every=0.3)
        async with app.run_test(size=SIZE):
            await until(lambda: gateway.whoami_asked == 1, what="the token check")
            await until(lambda: "watching only" in (app._identity_problem or ""), what="the refusal")
            await asyncio.sleep(2.0)  # several ticks, past a few backoffs
            assert gateway.whoami_asked == 1 and app.identity is None and app._whoami_due is None

        app = ApproverApp([url], "t" * (32 * 1024 + 1), retry_every=0.3)  # past the contract's 32 KiB
        async with app.run_test(size=SIZE):
            await until(lambda: "watching only" in (app._identity_problem or ""), what="the token problem")
            assert "your token cannot be sent" in (app._identity_problem or "")
            await asyncio.sleep(1.0)
            assert app.is_running and app._whoami_due is None and gateway.whoami_asked == 1

"""Session recording end to end on the dev stack: a psql session and a psycopg session with masking,
a block, an error and an approval are recorded; `pcigate replay --list` lists them from the ledger and
`pcigate replay ID` plays them back as the client saw them, every chunk checked against its hash in the
ledger; no chunk holds a clear card number; a forged chunk stops the replay, naming it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import nats
import psycopg
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from pcigate.devstack.testcards import TEST_PANS
from tests.e2e.test_approvals_e2e import ADMINS, approver, connect, in_thread, unique
from tests.e2e.test_gateway_psql import psql_bin
from tests.gateway_support import GatewayEndpoint, decide, pending_requests

pytestmark = pytest.mark.e2e

SCRIPT = """\
SELECT card_id, pan FROM cards ORDER BY card_id LIMIT 3;
SELECT 1/0;
DROP TABLE cards;
SELECT 'still here' AS status;
"""


def pcigate(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pcigate", *args, "--config", config],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def recorded_session(config: str, sub: str, within: float = 40.0) -> dict[str, Any]:
    """``sub``'s session as `replay --list` shows it, once its final chunk is in the ledger."""
    deadline = time.monotonic() + within
    while True:
        listed = pcigate(config, "replay", "--list", "--json")
        assert listed.returncode == 0, listed.stderr
        mine = [s for s in json.loads(listed.stdout) if s["sub"] == sub]
        if mine and mine[0]["final"]:
            return mine[0]
        assert time.monotonic() < deadline, f"{sub}'s recording did not reach the ledger: {mine}"
        time.sleep(0.5)


def chunks_of(nats_url: str, session_id: str) -> list[bytes]:
    async def read() -> list[bytes]:
        nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
        try:
            js = nc.jetstream()
            sub = await js.subscribe(f"pcigate.recordings.{session_id}", stream="PCIGATE_RECORDINGS",
                                     ordered_consumer=True,
                                     config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))  # fmt: skip
            found: list[bytes] = []
            while True:
                try:
                    found.append((await sub.next_msg(timeout=1.0)).data)
                except (TimeoutError, nats.errors.TimeoutError):
                    return found
        finally:
            await nc.close()

    return asyncio.run(read())


async def forge_chunk(nats_url: str, session_id: str, seq: int) -> None:
    """A chunk published straight to the recordings stream: the ledger never attested it."""
    nc = await nats.connect(nats_url, connect_timeout=5)
    try:
        header = {"k": "chunk", "format": "pcigate-recording/1", "session_id": session_id, "seq": seq}
        forged = json.dumps(header) + '\n{"k":"end","t":1,"reason":"client_closed"}\n'
        headers = {"Nats-Msg-Id": f"{session_id}.{seq}"}
        await nc.jetstream().publish(f"pcigate.recordings.{session_id}", forged.encode(), headers=headers)
    finally:
        await nc.close()


def no_clear_card(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    assert not [p for ps in TEST_PANS.values() for p in ps if p.encode() in data], f"a test card in {where}"


def test_a_psql_session_replays_as_psql_showed_it(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    alice = unique("alice")
    token = gateway.token(sub=alice, groups=ADMINS)
    done = subprocess.run(
        [psql_bin(), gateway.dsn(token), "-X", "-f", "-"], input=SCRIPT, capture_output=True, text=True,
        timeout=60, check=False, env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )  # fmt: skip
    assert "still here" in done.stdout and "division by zero" in done.stderr, done.stderr
    config = dev_stack["config"]
    session = recorded_session(config, alice)
    assert session["connection"] == "payments" and session["statements"] >= 2 and session["chunks"] >= 1

    played = pcigate(config, "replay", session["session_id"], "--no-timing")
    assert played.returncode == 0, played.stderr
    out = played.stdout
    assert f"-- session of {alice} (human) on payments" in out
    assert "payments=> SELECT card_id, pan FROM cards ORDER BY card_id LIMIT 3" in out
    assert "(3 rows)" in out and "******" in out  # the rows as psql showed them: masked
    assert "ERROR:  22012: division by zero" in out
    assert "payments=> SELECT 1/0" in out
    assert "ERROR:  42501:" in out  # DROP TABLE cards, refused by the dev policy
    assert " still here" in out and out.rstrip().endswith("-- session ended (client_closed)")
    no_clear_card(out, "the replay")
    stored = chunks_of(gateway.nats_url, session["session_id"])
    assert len(stored) == session["chunks"]
    for chunk in stored:
        no_clear_card(chunk, "a recording chunk")


def test_an_approved_statement_and_a_forged_chunk(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    alice = unique("alice")
    with connect(gateway, alice, ADMINS) as conn:
        conn.execute("SELECT pan FROM cards WHERE card_id = %s", (2,)).fetchall()
        update = in_thread(lambda: conn.execute("UPDATE cards SET exp_year = exp_year WHERE card_id = 4"))
        (request,) = pending_requests(gateway, alice)
        assert decide(gateway, request, approver(gateway), reason="CHG-9 expiry fix").refused is None
        update.result(timeout=30)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
    config = dev_stack["config"]
    session = recorded_session(config, alice)
    played = pcigate(config, "replay", session["session_id"], "--no-timing")
    assert played.returncode == 0, played.stderr
    out = played.stdout
    assert "payments=> SELECT pan FROM cards WHERE card_id = $1" in out and '-- parameters: ["2"]' in out
    assert f"-- held for approval {request.id}" in out
    assert "-- approved by bob@example.com: CHG-9 expiry fix" in out and "UPDATE 1" in out
    assert "ERROR:  42P01:" in out

    asyncio.run(forge_chunk(gateway.nats_url, session["session_id"], session["chunks"] + 1))
    stopped = pcigate(config, "replay", session["session_id"], "--no-timing")
    assert stopped.returncode == 1
    assert f"chunk {session['chunks'] + 1}" in stopped.stderr and "not in the ledger" in stopped.stderr


def test_replay_refuses_bad_usage_and_unknown_sessions(dev_stack: dict[str, Any]) -> None:
    config = dev_stack["config"]
    assert pcigate(config, "replay").returncode == 2
    assert pcigate(config, "replay", "x", "--list").returncode == 2
    unknown = pcigate(config, "replay", "019aa000-0000-7000-8000-00000000dead", "--no-timing")
    assert unknown.returncode == 1 and "no recording" in unknown.stderr

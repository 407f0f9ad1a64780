"""kill -9 the real ``pcigate evidence`` process at random points while events flow (issue 4, point 9).

After every crash it is restarted; at the end every published event must be in the ledger exactly once,
in a tree that verifies, with every checkpoint a root of it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import yaml

from pcigate import nats_provision as np
from tests.evidence_support import LedgerView, PrivateNats, event, private_schema, publish, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _config(dev_config: str, nats_url: str, dsn: str, tmp: Path) -> Path:
    """The dev stack's configuration, pointed at the private NATS server and ledger schema."""
    config = yaml.safe_load(Path(dev_config).read_text())
    secret = tmp / "ledger_dsn"
    secret.write_text(dsn + "\n")
    secret.chmod(0o600)
    config["nats"]["url"] = nats_url
    config["nats"]["spool_dir"] = str(tmp / "spool")
    config["ledger"]["dsn"] = f"file:{secret}"
    config["ledger"]["checkpoint_interval"] = "1s"
    config["ledger"]["checkpoint_every"] = 200
    path = tmp / "pcigate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pcigate", "evidence", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


async def test_kill_9_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path, dev_stack: dict[str, Any]
) -> None:
    seed = int(os.environ.get("PCIGATE_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    server = PrivateNats(tmp_path / "nats")
    log = tmp_path / "evidence.log"
    try:
        await np.provision_url(server.url, np.Settings(duplicate_window=120))
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        async with private_schema(dev_stack["ledger_dsn"]) as dsn:
            config = _config(dev_stack["config"], server.url, dsn, tmp_path)
            sent: list[str] = []

            async def produce() -> None:
                for _ in range(2500):
                    obj = event(rng.choice(["command.executed", "command.executed", "session.opened"]))
                    await publish(js, obj)
                    sent.append(obj["id"])
                    if len(sent) % 50 == 0:
                        await asyncio.sleep(0.02)

            producer = asyncio.get_running_loop().create_task(produce())
            proc = _start(config, log)
            kills = 0
            while not producer.done() or kills < 5:
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
                kills += 1
                proc = _start(config, log)
            await producer

            async def drained() -> bool:
                info = await js.consumer_info("PCIGATE_AUDIT", "evidence")
                return bool(info.num_pending == 0 and info.num_ack_pending == 0)

            await wait_for(drained, within=120, what=f"the consumer to drain (seed {seed})")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]

            conn = await asyncpg.connect(dsn)
            try:
                view = LedgerView(conn)
                ids = await view.ids()
                in_ledger = [i for i in ids if i in set(sent)]
                assert sorted(in_ledger) == sorted(sent), f"seed {seed}: lost or doubled events"
                assert len(set(ids)) == len(ids)
                await view.assert_tree_intact()
                # at most one start per run (a run killed while starting records none); the last run's
                # stop is recorded and covered by the last checkpoint
                starts = await view.events("ledger.started")
                assert 1 <= len(starts) <= kills + 1
                assert [s["data"]["initialized"] for s in starts] == [True] + [False] * (len(starts) - 1)
                assert (await view.types())[-1] == "ledger.stopped"
                assert await conn.fetchval("SELECT max(size) FROM ledger_checkpoints") == len(ids)
                assert await view.count("ledger_quarantine") == 0
                assert await view.events("audit.gap") == []
            finally:
                await conn.close()
        await nc.close()
    finally:
        server.stop()

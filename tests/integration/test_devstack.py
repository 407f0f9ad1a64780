"""The dev stack against its real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest

from pcigate.config import load_config
from pcigate.devstack import stack
from pcigate.devstack.layout import Layout
from pcigate.devstack.testcards import TEST_PANS, luhn_valid

pytestmark = pytest.mark.integration

PUBLISHED = {p for group in TEST_PANS.values() for p in group}


def test_status_lists_live_endpoints(dev_stack: dict[str, Any]) -> None:
    assert dev_stack["running"] is True
    for key in ("gateway", "nats", "ledger_dsn", "target_dsn", "config", "jwks"):
        assert key in dev_stack, key
    assert dev_stack["nats"].startswith("nats://")
    assert Path(dev_stack["jwks"]).is_file()
    load_config(dev_stack["config"])  # the stack runs with a config that validates


async def test_demo_database_holds_only_published_test_cards(dev_stack: dict[str, Any]) -> None:
    conn = await asyncpg.connect(dev_stack["target_dsn"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM public.cards") >= 10_000
        assert await conn.fetchval("SELECT count(*) FROM public.transactions") >= 100_000
        assert await conn.fetchval("SELECT count(*) FROM public.customers") > 0
        pans = {r["pan"] for r in await conn.fetch("SELECT DISTINCT pan FROM public.cards")}
        brands = {r["brand"] for r in await conn.fetch("SELECT DISTINCT brand FROM public.cards")}
        cols = [
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'public.cards'::regclass"
            )
        ]
    finally:
        await conn.close()
    assert pans <= PUBLISHED
    assert all(luhn_valid(p) for p in pans)
    assert brands == {"visa", "mastercard", "amex", "discover"}
    for col in ("card_id", "holder_name", "pan", "cvv", "exp_month", "exp_year"):
        assert col in cols


async def test_read_only_role_cannot_write(dev_stack: dict[str, Any], test_layout: Layout) -> None:
    pg = stack.load_state(test_layout)["postgres"]
    password = test_layout.secret("pcigate_ro").read_text().strip()
    conn = await asyncpg.connect(
        host=pg["host"], port=pg["port"], user="pcigate_ro", password=password, database="payments"
    )
    try:
        assert await conn.fetchval("SELECT count(*) FROM public.cards") >= 10_000
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM public.cards WHERE card_id = 1")
    finally:
        await conn.close()


async def test_ledger_database_is_reachable(dev_stack: dict[str, Any]) -> None:
    conn = await asyncpg.connect(dev_stack["ledger_dsn"])
    try:
        assert await conn.fetchval("SELECT current_database()") == "pcigate_ledger"
        assert await conn.fetchval("SELECT current_user") == "pcigate_ledger"
    finally:
        await conn.close()


async def test_streams_and_bucket_are_provisioned(dev_stack: dict[str, Any]) -> None:
    nc = await nats.connect(dev_stack["nats"])
    try:
        js = nc.jetstream()
        audit = (await js.stream_info("PCIGATE_AUDIT")).config
        assert audit.subjects == ["pcigate.audit.>"]
        assert audit.deny_delete and audit.deny_purge
        assert str(getattr(audit.discard, "value", audit.discard)) == "new"
        assert str(getattr(audit.storage, "value", audit.storage)) == "file"
        assert (audit.duplicate_window or 0) >= 60
        for name in ("PCIGATE_CHECKPOINTS", "PCIGATE_RECORDINGS", "KV_PCIGATE_APPROVALS"):
            await js.stream_info(name)
        kv = await js.key_value("PCIGATE_APPROVALS")
        await kv.create(f"test-{id(kv)}", b"held")  # create-if-absent works on the bucket
    finally:
        await nc.close()


def test_secrets_are_private(dev_stack: dict[str, Any], test_layout: Layout) -> None:
    files = [*test_layout.secrets_dir.iterdir(), test_layout.signing_key, test_layout.config_file]
    assert files
    for f in files:
        assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"


def test_up_twice_is_harmless(dev_stack: dict[str, Any], test_layout: Layout) -> None:
    before = stack.load_state(test_layout)
    again = stack.up(test_layout).status
    after = stack.load_state(test_layout)
    assert again["running"]
    assert after["nats"] == before["nats"]  # same server (pid, ports) when it was already running
    assert after["postgres"]["port"] == before["postgres"]["port"]
    assert again["target_dsn"] == dev_stack["target_dsn"]

    async def count() -> int:
        conn = await asyncpg.connect(again["target_dsn"])
        try:
            return int(await conn.fetchval("SELECT count(*) FROM public.cards"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 10_000  # seeding did not run twice

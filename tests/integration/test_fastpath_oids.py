"""The large-object functions the policy judges by OID are the ones the server names so: an OID that meant
another function would let a call through a rule written against that function's name."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from gateway.policy.fastpath import LARGE_OBJECT_FUNCTIONS

pytestmark = pytest.mark.integration


async def test_each_oid_names_its_function_in_pg_catalog(dev_stack: dict[str, Any]) -> None:
    conn = await asyncpg.connect(dev_stack["target_dsn"])
    try:
        rows = await conn.fetch(
            "SELECT p.oid::int AS oid, p.proname FROM pg_catalog.pg_proc p"
            " WHERE p.oid = ANY($1::oid[]) AND p.pronamespace = 'pg_catalog'::regnamespace",
            list(LARGE_OBJECT_FUNCTIONS),
        )
    finally:
        await conn.close()
    assert {r["oid"]: r["proname"] for r in rows} == {
        oid: name for oid, (name, _) in LARGE_OBJECT_FUNCTIONS.items()
    }

"""When a statement waits for a fresh catalog: a read that began after it asked, shared by everyone waiting
meanwhile, and no more than one read start per FRESH_INTERVAL however many statements ask.

The loader is replaced by a counter (the real query runs in tests/e2e/test_masking_e2e.py, against a table
created behind the gateway's back); what is tested here is only the scheduling."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.masking import catalog as catalog_module
from gateway.masking.catalog import FRESH_INTERVAL, Catalog, CatalogCache
from pcigate.config import Upstream


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """(begin, end) loop times of each catalog read; a read takes 50 ms."""
    log: list[tuple[float, float]] = []

    async def fake_load(*_args: object) -> Catalog:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await asyncio.sleep(0.05)
        log.append((begin, loop.time()))
        return Catalog({}, {f"public.t{len(log)}": ("id",)})

    monkeypatch.setattr(catalog_module, "load_catalog", fake_load)
    return log


def cache() -> CatalogCache:
    return CatalogCache(Upstream(host="127.0.0.1", port=5432, database="x"), "role", "pw", None)


async def test_waits_for_a_read_that_began_after_it_asked(reads: list[tuple[float, float]]) -> None:
    c = cache()
    await c.refresh()
    loop = asyncio.get_running_loop()
    asked = loop.time()
    await c.fresh()
    assert len(reads) == 2 and reads[1][0] >= asked
    assert c.current is not None and "public.t2" in c.current.tables


async def test_concurrent_waiters_share_reads_and_reads_are_spaced(reads: list[tuple[float, float]]) -> None:
    c = cache()
    await c.refresh()
    loop = asyncio.get_running_loop()
    start = loop.time()
    waiters = []
    for _ in range(40):  # 40 statements over ~0.4 s
        waiters.append(asyncio.ensure_future(c.fresh()))
        await asyncio.sleep(0.01)
    await asyncio.gather(*waiters)
    begins = [b for b, _ in reads[1:]]
    assert 1 <= len(begins) <= 1 + (loop.time() - start) / FRESH_INTERVAL + 1
    assert all(b2 - b1 >= FRESH_INTERVAL - 0.01 for b1, b2 in itertools.pairwise(begins))


async def test_a_read_in_flight_when_asked_is_not_enough(reads: list[tuple[float, float]]) -> None:
    c = cache()
    first = asyncio.ensure_future(c.refresh())
    await asyncio.sleep(0.02)  # that read began before the statement asked
    asked = asyncio.get_running_loop().time()
    await c.fresh()
    await first
    assert len(reads) == 2 and reads[1][0] >= asked

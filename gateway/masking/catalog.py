"""The upstream database's table columns, so masking can see through ``*``, aliases and COPY.

A RowDescription names a column as the query renamed it (``SELECT pan AS x``) but also carries its table
OID and column number: with this catalog the real name, and so its column rule, is recovered. Lineage
uses the column lists to expand ``*``, whole-row references and ``COPY table TO``.

One query over the gateway's own upstream connection (with the connection's first vaulted role), at start,
every ``REFRESH`` seconds, soon after a session runs DDL, and when a statement names what the catalog does
not know (:meth:`CatalogCache.fresh`: a read that begins after the statement arrived, shared by the
sessions waiting meanwhile, at most four a second). What is still unknown after that, the masking hook
fails closed for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.pgwire import messages as m
from gateway.upstream import UpstreamError, connect_upstream
from pcigate.config import Upstream

__all__ = ["Catalog", "CatalogCache"]

log = logging.getLogger(__name__)

REFRESH: Final = 60.0
FRESH_INTERVAL: Final = 0.25  # reads for statements that wait for the catalog start at most this often
FRESH_WAIT: Final = 5.0  # and such a statement waits at most this long
_QUERY: Final = (
    "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname "
    "FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
    "ORDER BY c.oid, a.attnum"
)
_MAX_MESSAGE: Final = 1 << 20


@dataclass(frozen=True)
class Catalog:
    """Column names by (table OID, column number) and column lists by qualified table name."""

    names: Mapping[tuple[int, int], str] = field(default_factory=dict)
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def column(self, table_oid: int, attnum: int) -> str | None:
        return self.names.get((table_oid, attnum)) if table_oid else None


def build_catalog(rows: list[tuple[int, str, str, int, str]]) -> Catalog:
    names: dict[tuple[int, int], str] = {}
    tables: dict[str, list[str]] = {}
    for oid, schema, table, attnum, column in rows:
        names[(oid, attnum)] = column
        tables.setdefault(f"{schema}.{table}", []).append(column)
    return Catalog(names, {k: tuple(v) for k, v in tables.items()})


async def load_catalog(upstream: Upstream, user: str, password: str, tls: ssl.SSLContext | None) -> Catalog:
    conn = await connect_upstream(
        upstream, user, password, {"application_name": "pcigate-catalog"}, tls_context=tls
    )
    endpoint = conn.endpoint
    try:
        endpoint.write(m.query(_QUERY))
        rows: list[tuple[int, str, str, int, str]] = []
        error: str | None = None
        while True:
            typ, body = await endpoint.read_message(_MAX_MESSAGE)
            if typ == m.DATA_ROW:
                v = m.parse_data_row(body)
                if all(x is not None for x in v):
                    oid, nsp, rel, att, name = (x.decode("utf-8", "replace") for x in v if x is not None)
                    rows.append((int(oid), nsp, rel, int(att), name))
            elif typ == m.ERROR_RESPONSE:
                error = m.parse_error_fields(body).get("M", "error")
            elif typ == m.READY_FOR_QUERY:
                break
        if error is not None:
            raise UpstreamError(f"catalog query failed: {error}", error)
        endpoint.write(m.terminate())
        return build_catalog(rows)
    finally:
        endpoint.close()


class CatalogCache:
    """The latest catalog of one connection's database, refreshed in the background."""

    def __init__(self, upstream: Upstream, user: str, password: str, tls: ssl.SSLContext | None) -> None:
        self._args = (upstream, user, password, tls)
        self.current: Catalog | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_start = -FRESH_INTERVAL  # loop time the latest read began
        self._read_since = -1.0  # the latest begin of a read that has ended, loaded or not
        self._next: asyncio.Future[None] | None = None  # the read statements waiting for a catalog share

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="pcigate-catalog")

    def changed(self) -> None:
        """A session ran DDL: refresh soon instead of at the next interval."""
        self._wake.set()

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        started = self._last_start = loop.time()
        try:
            async with asyncio.timeout(15):
                self.current = await load_catalog(*self._args)
        except (UpstreamError, OSError, TimeoutError, m.ProtocolError) as exc:
            log.warning("masking catalog of %s not loaded: %s", self._args[0].host, exc)
        finally:
            self._read_since = max(self._read_since, started)

    async def fresh(self) -> None:
        """Return once a catalog read that began after this call has ended (or after ``FRESH_WAIT``): a
        statement names a table the catalog may not know, perhaps created a moment ago. Reads start at
        most every ``FRESH_INTERVAL`` seconds and serve every session waiting meanwhile, so a burst of such
        statements costs the database a few catalog queries, not one each."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FRESH_WAIT):
                while self._read_since < asked:
                    if self._next is None or self._next.done():
                        delay = self._last_start + FRESH_INTERVAL - loop.time()
                        self._next = asyncio.ensure_future(self._refresh_after(delay))
                    await asyncio.shield(self._next)

    async def _refresh_after(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await self.refresh()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.2)  # one refresh for a burst of DDL
            await self.refresh()

    async def stop(self) -> None:
        for task in (self._task, self._next):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

"""One way to open a short-lived NATS connection for commands: bounded, quiet, with a clean error.

nats-py's defaults retry forever (``max_reconnect_attempts=0`` means unlimited on the initial connect)
and print a traceback per attempt; a CLI must instead fail within seconds with one readable line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.aio.client import Client


class NatsUnavailableError(RuntimeError):
    """No server in the list accepted a connection in time."""


async def _quiet(_: Exception) -> None:
    return None


async def connect_once(servers: str | list[str], within: float = 5.0, **options: Any) -> Client:
    """Connect, trying each server at most twice, within ``within`` seconds overall."""
    urls = [servers] if isinstance(servers, str) else servers
    try:
        return await asyncio.wait_for(
            nats.connect(
                urls,
                connect_timeout=min(within, 2.0),
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                allow_reconnect=False,
                error_cb=_quiet,
                **options,
            ),
            within,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        detail = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        raise NatsUnavailableError(f"no NATS server reachable at {', '.join(urls)} ({detail})") from exc

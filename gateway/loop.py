"""The event loop the gateway's processes run on: uvloop when installed (a dependency on Linux), because
its transports cost a fraction of asyncio's per read and write; the standard loop otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["loop_factory"]


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """For ``asyncio.Runner(loop_factory=...)``; None means asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional outside Linux
    except ImportError:
        return None
    return uvloop.new_event_loop

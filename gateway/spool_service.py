"""``python -m gateway.spool_service``: the audit spool's own process, started by ``gateway.spool_link``.

It owns the spool directory (``gateway.spool.Spool``) and the publisher to NATS JetStream
(``gateway.publisher.Publisher``). The gateway writes encoded records to the data pipe; this process
appends them, flushes each batch with one data sync on its event loop (records arriving meanwhile queue in
the pipe and share the next flush), and reports on the status pipe what is durable. It stops when the data
pipe closes — the gateway stopping or dying — after a bounded drain to NATS; SIGINT is ignored (a terminal's
Ctrl-C reaches the gateway, which closes the pipe), SIGTERM stops it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time

from gateway.loop import loop_factory
from gateway.publisher import Publisher
from gateway.spool import Spool, SpoolCorruptError, SpoolLockedError
from gateway.spool_format import HEADER, MAX_BODY
from gateway.spool_link import (
    DURABLE,
    FAILED,
    FATAL,
    READY,
    RECLAIMED,
    RECOVERED,
    SEQ,
    status_frame,
)
from gateway.spool_waits import SpoolUnavailable
from pcigate.config import Config
from pcigate.settings import nats_connect_options, nats_servers

log = logging.getLogger("gateway.spool_service")

_LOCK_WAIT = 15.0  # a previous service may still be draining to NATS after its gateway stopped
_DRAIN_TIMEOUT = 5.0
_READ_BYTES = 65536  # below malloc's mmap threshold: a 1 MiB read costs mmap+mremap+munmap each time


class _Status:
    """Status frames to the gateway (SpoolObserver). A gateway that is gone is noticed on the data pipe."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.broken = False

    def send(self, kind: int, payload: bytes) -> None:
        if self.broken:
            return
        data = memoryview(status_frame(kind, payload))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            self.broken = True

    def durable(self, seq: int) -> None:
        self.send(DURABLE, SEQ.pack(seq))

    def failed(self, reason: str) -> None:
        self.send(FAILED, reason.encode())

    def recovered(self, seq: int) -> None:
        self.send(RECOVERED, SEQ.pack(seq))

    def reclaimed(self, freed: int) -> None:
        self.send(RECLAIMED, SEQ.pack(freed))


class _Records:
    """Splits the data pipe into records and appends them; EOF or a malformed record ends the service."""

    def __init__(self, spool: Spool, fd: int, done: asyncio.Future[str]) -> None:
        self._spool = spool
        self._fd = fd
        self._done = done
        self._buf = b""

    def on_readable(self) -> None:
        try:
            chunk = os.read(self._fd, _READ_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            if self._buf:
                log.error("the gateway closed the data pipe in the middle of a record")
            self.finish("data pipe closed")
            return
        buf = self._buf + chunk if self._buf else chunk
        pos, n = 0, len(buf)
        try:
            while n - pos >= HEADER.size:
                length = HEADER.unpack_from(buf, pos)[0]
                if not 0 < length <= MAX_BODY:
                    raise SpoolCorruptError(f"a record from the gateway has an impossible length {length}")
                end = pos + HEADER.size + length
                if end > n:
                    break
                self._spool.append_record(buf[pos:end])
                pos = end
        except SpoolCorruptError as exc:
            if not self._done.done():
                self._done.set_exception(exc)
            return
        self._buf = buf[pos:]
        self._spool.flush()  # before the publisher or anything else this iteration has queued

    def finish(self, why: str) -> None:
        if not self._done.done():
            self._done.set_result(why)


async def _open(spool: Spool) -> None:
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            spool.open(loop)
            return
        except SpoolLockedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def serve(config: Config, data_fd: int, status: _Status) -> int:
    loop = asyncio.get_running_loop()
    spool = Spool(config.nats.spool_dir, max_bytes=config.nats.spool_max_bytes)
    try:
        await _open(spool)
    except (SpoolUnavailable, OSError) as exc:
        text = (
            exc.reason
            if isinstance(exc, SpoolUnavailable)
            else f"nats.spool_dir {config.nats.spool_dir}: {exc}"
        )
        status.send(FATAL, text.encode())
        return 1
    spool.set_observer(status)
    ready = {"next_seq": spool.next_seq, "durable_seq": spool.durable_seq, "used_bytes": spool.used_bytes}
    status.send(READY, json.dumps(ready).encode())
    publisher = Publisher(
        spool,
        nats_servers(config),
        connect_options=nats_connect_options(config),
        max_in_flight=config.nats.max_in_flight,
    )
    publishing = loop.create_task(publisher.run(), name="pcigate-publisher")
    done: asyncio.Future[str] = loop.create_future()
    records = _Records(spool, data_fd, done)
    os.set_blocking(data_fd, False)
    loop.add_reader(data_fd, records.on_readable)
    loop.add_signal_handler(signal.SIGTERM, records.finish, "SIGTERM")
    code = 0
    try:
        why = await done
        log.info("audit spool stopping (%s)", why)
    except SpoolCorruptError as exc:
        status.send(FATAL, exc.reason.encode())
        log.error("audit spool: %s", exc.reason)
        code = 2
    finally:
        loop.remove_reader(data_fd)
    await asyncio.sleep(0)  # the flush scheduled by the last records
    if not await publisher.drain(_DRAIN_TIMEOUT):
        log.warning(
            "audit spool: %d event(s) not yet in NATS JetStream; they are published at the next start",
            spool.unpublished,
        )
    publishing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publishing
    spool.close()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.spool_service")
    parser.add_argument("--data-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    start = json.loads(sys.stdin.buffer.read())
    logging.basicConfig(
        level=int(start.get("log_level", logging.INFO)),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = Config.model_validate(start["config"])
    status = _Status(args.status_fd)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(config, args.data_fd, status))


if __name__ == "__main__":
    sys.exit(main())

"""The gateway's side of the audit spool, which runs in its own process (``gateway.spool_service``).

Why a process: the spool's flush blocks for the length of an fsync, and NATS publishing costs CPU per
event. In a thread of the gateway either one competes with the sessions for the GIL, and under load every
commit then waited 0.2-1.2 ms for it (strace of the gateway). Here the sessions' event loop only encodes
records (it assigns their sequence numbers, so appends stay synchronous), writes everything appended in one
loop iteration to a pipe with one ``writev``, and reads back which sequence number is durable.

Status frames from the service are ``[u8 type][u32 length][payload]``. Sequence numbers follow the store's:
the service reports its next one when it is ready, and checks every record is the next in sequence.

If the service dies, records it had not made durable are lost, so a statement waiting for one must not run
or answer: every waiter is failed, :attr:`on_lost` lets the gateway end the sessions with records in flight,
appends are refused, and the service is started again (it recovers the directory like a gateway restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import struct
import sys
from collections.abc import Callable
from typing import Any, Final

from gateway.spool_format import EVENT, INTENT
from gateway.spool_limits import SpoolLimits
from gateway.spool_waits import DurableWaits, SpoolUnavailable

log = logging.getLogger(__name__)

STATUS: Final = struct.Struct("<BI")
SEQ: Final = struct.Struct("<Q")
READY: Final = 1  # json {"next_seq", "durable_seq", "used_bytes"}
DURABLE: Final = 2  # u64 seq
FAILED: Final = 3  # utf-8 reason
RECOVERED: Final = 4  # u64 seq
RECLAIMED: Final = 5  # u64 bytes freed
FATAL: Final = 6  # utf-8 message; the service exits

_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_LAZY_DELAY = 0.002  # a completion event nobody waits for rides along with the next urgent record
_START_TIMEOUT = 60.0
_RESTART_MIN = 0.5
_RESTART_MAX = 10.0
_STOP_TIMEOUT = 15.0
_IOV_MAX = 1024


def status_frame(kind: int, payload: bytes) -> bytes:
    return STATUS.pack(kind, len(payload)) + payload


def widen_pipe(fd: int) -> None:
    """A 1 MiB pipe lets a burst of records queue while the service flushes (the default is 64 KiB)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)


class SpoolLink(DurableWaits):
    """Loop-thread API used by sessions: append_*, durable_seq, when_durable, wait_durable."""

    def __init__(self, config: dict[str, Any], *, max_bytes: int, spool_dir: str) -> None:
        self._config = config
        self.max_bytes = max_bytes
        self.spool_dir = spool_dir
        self._limits = SpoolLimits(max_bytes)
        self.durable_seq = 0
        self._next_seq = 1
        self._used = 0
        self._failed: str | None = "the audit spool is not running"
        self._open_intents: set[str] = set()
        self._init_waits()
        self._out: list[bytes] = []
        self._out_urgent = False
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._blocked = False  # the pipe is full: waiting for it to drain
        self._data_fd = -1
        self._status_fd = -1
        self._status_buf = b""
        self._proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stopping = False
        self._restart_delay = _RESTART_MIN
        self._restart_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_lost: Callable[[int, str], None] | None = None
        self.restarts = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the service and wait until it has recovered the directory; raises SpoolUnavailable."""
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        data_r, data_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        widen_pipe(data_w)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.spool_service",
                "--data-fd",
                str(data_r),
                "--status-fd",
                str(status_w),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(data_r, status_w),
            )
        except BaseException:
            os.close(data_w)
            os.close(status_r)
            raise
        finally:
            os.close(data_r)
            os.close(status_w)
        self._proc = proc
        os.set_blocking(data_w, False)
        os.set_blocking(status_r, False)
        self._data_fd, self._status_fd = data_w, status_r
        self._status_buf = b""
        self._ready = loop.create_future()
        loop.add_reader(status_r, self._on_status)
        try:
            assert proc.stdin is not None
            proc.stdin.write(
                json.dumps(
                    {"config": self._config, "log_level": logging.getLogger().getEffectiveLevel()}
                ).encode()
            )
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
            proc.stdin.close()
            async with asyncio.timeout(_START_TIMEOUT):
                await self._ready
        except TimeoutError:
            self._teardown()
            proc.kill()
            await proc.wait()
            raise SpoolUnavailable(
                f"the audit spool process did not become ready within {_START_TIMEOUT:g}s"
            ) from None
        except SpoolUnavailable:
            self._teardown()
            await proc.wait()
            raise
        except asyncio.CancelledError:
            # the gateway is stopping while the service starts: never leave it running behind us
            self._teardown()
            proc.kill()
            raise

    async def close(self) -> None:
        """Send what is pending, then let the service drain to NATS (bounded) and exit."""
        self._stopping = True
        if self._restart_task is not None:
            # a restart may be half-way through spawning: let it finish unwinding first
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart_task
        proc = self._proc
        if self._data_fd >= 0:
            self._flush()
            if self._out:
                os.set_blocking(self._data_fd, True)
                with contextlib.suppress(OSError):
                    _write_all(self._data_fd, self._out)
                self._out = []
            assert self._loop is not None
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self._data_fd)
            os.close(self._data_fd)
            self._data_fd = -1
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
            except TimeoutError:
                log.error("audit spool process did not stop in %gs; killing it", _STOP_TIMEOUT)
                proc.kill()
                await proc.wait()
        self._lose("the audit spool is closed", final=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def failed(self) -> bool:
        return self._failed is not None

    def stats(self) -> dict[str, object]:
        return {
            "next_seq": self._next_seq,
            "durable_seq": self.durable_seq,
            "used_bytes": self._used,
            "open_intents": len(self._open_intents),
            "failed": self._failed,
            "restarts": self.restarts,
        }

    # ------------------------------------------------------------------ appends (hot path)

    def append_event(self, subject: str, msg_id: str, payload: bytes, *, lazy: bool = False) -> int:
        """Append an event; ``lazy`` when nobody waits for it, so it may wait ~2 ms for company."""
        return self._append(EVENT, subject, msg_id, payload, lazy)

    def append_intent(self, subject: str, msg_id: str, fallback_payload: bytes) -> int:
        return self._append(INTENT, subject, msg_id, fallback_payload, False)

    def _append(self, kind: int, subject: str, msg_id: str, payload: bytes, lazy: bool) -> int:
        if self._failed is not None:
            raise SpoolUnavailable(self._failed)
        seq = self._next_seq
        data = self._limits.encode(kind, seq, subject, msg_id, payload, self._used, self._open_intents)
        self._next_seq = seq + 1
        self._used += len(data)
        if kind == EVENT:
            self._open_intents.discard(msg_id)
        else:
            self._open_intents.add(msg_id)
        self._out.append(data)
        if not lazy and not self._out_urgent:
            self._out_urgent = True
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
        if self._flush_handle is None and not self._blocked:
            assert self._loop is not None
            if self._out_urgent:
                self._flush_handle = self._loop.call_soon(self._flush)
            else:
                self._flush_handle = self._loop.call_later(_LAZY_DELAY, self._flush)
        return seq

    def _flush(self) -> None:
        self._flush_handle = None
        self._out_urgent = False
        out = self._out
        if not out or self._blocked or self._data_fd < 0:
            return
        try:
            sent = os.writev(self._data_fd, out if len(out) <= _IOV_MAX else [b"".join(out)])
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            # the service is gone; its status pipe reports the loss
            log.debug("audit spool pipe write failed: %s", exc)
            return
        total = sum(map(len, out))
        if sent == total:
            out.clear()
            return
        rest = b"".join(out)[sent:]
        self._out = [rest]
        self._blocked = True
        assert self._loop is not None
        self._loop.add_writer(self._data_fd, self._on_writable)

    def _on_writable(self) -> None:
        assert self._loop is not None
        self._loop.remove_writer(self._data_fd)
        self._blocked = False
        self._flush()

    # ------------------------------------------------------------------ durability

    def _durable(self, seq: int) -> None:
        if seq <= self.durable_seq:
            return
        self.durable_seq = seq
        self._release_waiters(seq)

    # ------------------------------------------------------------------ status from the service

    def _on_status(self) -> None:
        try:
            chunk = os.read(self._status_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._service_exited()
            return
        buf = self._status_buf + chunk if self._status_buf else chunk
        pos, n = 0, len(buf)
        durable = 0
        while n - pos >= STATUS.size:
            kind, length = STATUS.unpack_from(buf, pos)
            end = pos + STATUS.size + length
            if end > n:
                break
            body = buf[pos + STATUS.size : end]
            pos = end
            if kind == DURABLE:
                durable = SEQ.unpack(body)[0]  # only the newest matters
                continue
            if durable:
                self._durable(durable)
                durable = 0
            self._on_frame(kind, body)
        if durable:
            self._durable(durable)
        self._status_buf = buf[pos:]

    def _on_frame(self, kind: int, body: bytes) -> None:
        if kind == READY:
            info = json.loads(body)
            self._next_seq = int(info["next_seq"])
            self.durable_seq = int(info["durable_seq"])
            self._used = int(info["used_bytes"])
            self._open_intents.clear()
            self._failed = None
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif kind == FAILED:
            self._failed = body.decode(errors="replace")
            self._fail_waiters(self._failed)
        elif kind == RECOVERED:
            self._durable(SEQ.unpack(body)[0])
            self._failed = None
        elif kind == RECLAIMED:
            self._used -= SEQ.unpack(body)[0]
        elif kind == FATAL:
            message = body.decode(errors="replace")
            log.error("audit spool process: %s", message)
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(SpoolUnavailable(message))
        else:
            log.error("audit spool process sent an unknown status frame %d", kind)

    def _service_exited(self) -> None:
        self._teardown()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(SpoolUnavailable("the audit spool process exited while starting"))
            return
        if self._stopping:
            return
        proc = self._proc
        code = proc.returncode if proc is not None else None
        log.error(
            "audit spool process exited unexpectedly (%s); refusing statements until it is back",
            "exit code unknown" if code is None else f"exit code {code}",
        )
        self._lose("the audit spool process exited; the gateway is restarting it", final=False)
        assert self._loop is not None
        self._restart_task = self._loop.create_task(self._restart())

    def _teardown(self) -> None:
        assert self._loop is not None
        if self._status_fd >= 0:
            self._loop.remove_reader(self._status_fd)
            os.close(self._status_fd)
            self._status_fd = -1
        if self._data_fd >= 0:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self._data_fd)
            os.close(self._data_fd)
            self._data_fd = -1
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out = []
        self._out_urgent = False
        self._blocked = False

    def _lose(self, reason: str, *, final: bool) -> None:
        """Records not reported durable are gone: fail their waiters and tell the gateway."""
        durable = self.durable_seq
        in_flight = self._next_seq - 1 > durable
        self._failed = reason
        self._fail_waiters(reason)
        if in_flight and not final and self.on_lost is not None:
            self.on_lost(durable, reason)

    async def _restart(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
        while not self._stopping:
            await asyncio.sleep(self._restart_delay)
            try:
                await self._spawn()
            except (SpoolUnavailable, OSError) as exc:
                self._restart_delay = min(self._restart_delay * 2, _RESTART_MAX)
                self._failed = f"the audit spool cannot start: {exc}"
                log.error("audit spool process could not be restarted: %s", exc)
                continue
            self.restarts += 1
            self._restart_delay = _RESTART_MIN
            log.warning("audit spool process restarted; statements are accepted again")
            return


def _write_all(fd: int, chunks: list[bytes]) -> None:
    data = memoryview(b"".join(chunks))
    while data:
        n = os.write(fd, data)
        data = data[n:]

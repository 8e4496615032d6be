"""Control server: the daemon end of the ``tipc`` CLI's JSON-lines protocol.

Protocol (docs/HACKING.md): a Unix stream socket ``$RUN_DIR/ctl.sock``; one JSON object per
line each way. Request ``{"op": "bearer.enable", "args": {...}}``; answer
``{"ok": true, "result": ...}`` or ``{"ok": false, "errno": N, "error": "..."}``. A handler
may return an async iterator, which makes the op *streaming*: one ``{"ok": true, "event": ...}``
line per item until the client closes.

Access: the socket is created 0660 (group ``tipc`` if that group exists) and every peer is
checked with SO_PEERCRED — root, the daemon's own user, and members of group ``tipc`` are
served; anyone else gets one EACCES answer and is disconnected. Checking credentials as
well as file modes matters because the run dir may be shared or mis-permissioned.

Robustness: a malformed line, an unknown op, a bad argument or a bug in a handler gives
that client an error answer; it never takes the daemon down. A request line is at most
MAX_LINE bytes and its JSON at most MAX_DEPTH deep: the depth is counted before the JSON
parser (which recurses) sees the line, so 100,000 nested ``[`` are one EINVAL answer and
the connection stays usable.

Budgets (each refusal is an answer line with the kernel's errno, a log line once per
kind, and a counter in :class:`ControlStats`): at most ``MAX_CONNS`` connections at once
(EMFILE), at most ``IN_BUDGET`` bytes of unanswered request text over all connections
(the connection that pushes the total over it gets ENOBUFS and is closed), and a line
longer than MAX_LINE gets EMSGSIZE (its bytes are discarded as they arrive, never
buffered). At the connection cap, the connection idle longest (over IDLE_EVICT s, no
request in progress) is closed (ETIMEDOUT) to make room: clients holding connections
open cannot lock the administrator out. The server is a plain ``asyncio.Protocol`` so
that every byte it holds is accounted; a request is answered by one task per
connection, and a closed connection costs one callback, however many close at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .guard import Guard, clock

log = logging.getLogger("tipcpy.control")

MAX_LINE = 1 << 16        # the largest real request (bearer.enable) is ~250 bytes
MAX_DEPTH = 8             # {"op", "args": {...}}: 2 is all a valid request needs
TIPC_GROUP = "tipc"
MAX_CONNS = 1024
"""Control connections served at once (``tipc`` holds one for a moment; ``tipc events``
one per stream)."""
IN_BUDGET = 8 << 20
"""Bytes of request text held for all control connections together."""
MAX_QUEUED_LINES = 32
STREAM_SLICE = 8
"""Events one stream writes before it lets the loop serve others."""
IDLE_EVICT = 1.0
"""At the connection cap, a connection idle this long (seconds) makes room for a new one."""
"""Complete request lines queued on one connection before its reading pauses."""

Handler = Callable[[str, dict[str, Any]], Any | Awaitable[Any]]


class ControlError(Exception):
    """An op failed in a way the client should see: errno + a sentence saying what to do."""

    def __init__(self, errno_: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class ControlStats:
    """What the control server counts (shown by ``tipc node get stats``)."""

    conns_total: int = 0
    conns_now: int = 0
    requests: int = 0
    refused_credentials: int = 0
    refused_too_many: int = 0           # EMFILE: MAX_CONNS reached
    refused_in_budget: int = 0          # ENOBUFS: IN_BUDGET exhausted
    refused_too_long: int = 0           # EMSGSIZE: a line over MAX_LINE
    evicted_idle: int = 0               # ETIMEDOUT: idle, closed to make room at the cap
    in_bytes: int = 0                   # request bytes held now, all connections

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _tipc_gid() -> int | None:
    try:
        return grp.getgrnam(TIPC_GROUP).gr_gid
    except KeyError:
        return None


def peer_allowed(uid: int, gid: int) -> bool:
    """root, our own user, or a member (primary or supplementary) of group ``tipc``."""
    if uid == 0 or uid == os.geteuid():
        return True
    tgid = _tipc_gid()
    if tgid is None:
        return False
    if gid == tgid:
        return True
    try:
        name = pwd.getpwuid(uid).pw_name
        return name in grp.getgrgid(tgid).gr_mem
    except KeyError:
        return False


def _peercred(transport: asyncio.BaseTransport) -> tuple[int, int, int] | None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", raw)  # pid, uid, gid


def json_depth(line: bytes, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of the JSON text ``line`` (brackets inside strings skipped), counted
    up to just past ``limit``: linear, without recursion, and skipped outright when the
    line holds too few brackets to be that deep."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return min(line.count(b"[") + line.count(b"{"), limit)
    depth = top = 0
    in_str = escaped = False
    for c in line:
        if in_str:
            if escaped:
                escaped = False
            elif c == 0x5C:                     # backslash
                escaped = True
            elif c == 0x22:                     # quote
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x5B, 0x7B):                 # [ {
            depth += 1
            if depth > top:
                top = depth
                if top > limit:
                    break
        elif c in (0x5D, 0x7D):                 # ] }
            depth -= 1
    return top


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """One request line -> (op, args); ValueError says what is wrong with it."""
    if json_depth(line) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        req = json.loads(line)
    except RecursionError:          # not reachable after the depth check; belt and braces
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise ValueError("expected an object with a string 'op'")
    args = req.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError("'args' must be an object")
    unknown = set(req) - {"op", "args"}
    if unknown:
        raise ValueError(f"unknown request key(s) {', '.join(sorted(unknown))[:80]}")
    return req["op"], args


def _encode(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()


class _Conn(asyncio.Protocol):
    """One control connection: accounted input buffer, complete lines, flow control."""

    def __init__(self, srv: ControlServer) -> None:
        self.srv = srv
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.scanned = 0                 # bytes of buf known to hold no newline
        self.lines: deque[bytes] = deque()
        self.held = 0                    # bytes accounted in srv.stats.in_bytes
        self.eof = False
        self.too_long = False            # discarding the rest of an over-long line
        self.closed = False
        self.wake = asyncio.Event()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.task: asyncio.Task[None] | None = None
        self.reading_paused = False
        self.busy = False                # a request is being answered (or streaming)
        self.deferred: tuple[str, Any] | None = None    # op started inline, to finish
        self.last_active = time.monotonic()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.srv._connected(self)

    def data_received(self, data: bytes) -> None:
        t0 = clock()
        try:
            self._data(data)
        except Exception as e:
            self.srv._failed("control read", e)
            self.abort()
        finally:
            self.srv._timed("control read", t0)

    def _data(self, data: bytes) -> None:
        if self.closed:
            return
        srv = self.srv
        self.last_active = time.monotonic()
        if self.too_long:
            i = data.find(b"\n")
            if i < 0:
                return                   # still inside the over-long line: dropped
            data = data[i + 1:]
            self.too_long = False
            self._push(b"\x00too-long")  # answered EMSGSIZE in order with the others
        self.buf += data
        self._account(len(data))
        buf = self.buf
        start = 0
        while True:
            i = buf.find(b"\n", max(start, self.scanned))
            if i < 0:
                break
            if i + 1 - start > MAX_LINE:
                srv.stats.refused_too_long += 1
                self._account(-(i + 1 - start))
                self.lines.append(b"\x00too-long")
            else:
                self.lines.append(bytes(buf[start:i + 1]))
            start = i + 1
            self.scanned = 0
        if start:
            del buf[:start]
        self.scanned = len(buf)
        if len(buf) > MAX_LINE:
            srv.stats.refused_too_long += 1
            self._account(-len(buf))
            self.buf = bytearray()
            self.scanned = 0
            if not self.lines and not self.busy:
                # nothing before it to answer first: refuse now, read no more of it
                self.refuse(errno.EMSGSIZE, f"request longer than {MAX_LINE} bytes")
                return
            self.too_long = True
            self._push(b"\x00too-long")
            if not self.reading_paused and self.transport is not None:
                self.reading_paused = True      # the answer comes, then the close
                self.transport.pause_reading()
        if srv.stats.in_bytes > IN_BUDGET and self.held > MAX_LINE // 4:
            srv.stats.refused_in_budget += 1
            srv.refusal("in budget", f"control client: {srv.stats.in_bytes} bytes of "
                        f"requests held (budget {IN_BUDGET}); refusing")
            self.refuse(errno.ENOBUFS, "tipcd's control buffer budget is exhausted; "
                        "try again")
            return
        if len(self.lines) > MAX_QUEUED_LINES and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        if self.lines and self.task is None:
            srv._inline(self)
        if self.lines or self.deferred is not None:
            if self.task is None:
                srv._start_session(self)
            else:
                self.wake.set()
        elif self.eof and self.task is None:
            self.close()

    def _push(self, marker: bytes) -> None:
        self.lines.append(marker)
        self.wake.set()

    def _account(self, n: int) -> None:
        self.held += n
        self.srv.stats.in_bytes += n

    def eof_received(self) -> bool:
        self.eof = True
        if self.task is None and not self.lines and self.deferred is None:
            self.close()                 # all answered inline: nothing more to do
        self.wake.set()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.closed = True
        self._release()
        self.wake.set()
        self.can_write.set()
        self.srv._disconnected(self)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    # -- for the session -----------------------------------------------------------------
    async def readline(self) -> bytes | None:
        """The next complete line (None at end of input)."""
        while not self.lines:
            if self.deferred is not None:
                return b"\x00deferred"
            if self.eof or self.closed:
                return None
            self.wake.clear()
            await self.wake.wait()
        line = self.lines.popleft()
        if line[:1] != b"\x00":
            self._account(-len(line))
        if self.reading_paused and len(self.lines) <= MAX_QUEUED_LINES // 2 \
                and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        return line

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if not self.closed:
            await self.can_write.wait()
        if self.closed:
            raise ConnectionResetError("control client went away")

    async def wait_eof(self) -> None:
        """Returns when the client closes (anything it sends meanwhile is discarded)."""
        while not (self.eof or self.closed):
            self.wake.clear()
            self._discard()
            await self.wake.wait()

    def _discard(self) -> None:
        self._account(-len(self.buf))
        self.buf = bytearray()
        self.scanned = 0
        for line in self.lines:
            if line[:1] != b"\x00":
                self._account(-len(line))
        self.lines.clear()
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def refuse(self, err: int, message: str) -> None:
        self.write(_encode({"ok": False, "errno": err, "error": message}))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._release()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._release()

    def _release(self) -> None:
        if self.held:
            self._account(-self.held)
        self.buf = bytearray()
        self.lines.clear()


class ControlServer:
    """Serves ``handler(op, args)`` on a Unix socket; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], handler: Handler,
                 guard: Guard | None = None) -> None:
        self.path = Path(path)
        self.handler = handler
        self.guard = guard
        self.stats = ControlStats()
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[_Conn] = set()
        self._clients: set[asyncio.Task[Any]] = set()
        self._refusals_logged: set[str] = set()
        self._closing = False

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()          # stale socket of a dead daemon (caller checked pid)
        loop = asyncio.get_running_loop()
        old = os.umask(0o117)
        try:
            # a deep backlog: a burst of `tipc` commands waits in the kernel, not EAGAIN
            self._server = await loop.create_unix_server(lambda: _Conn(self),
                                                         path=str(self.path), backlog=1024)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        gid = _tipc_gid()
        if gid is not None:
            with contextlib.suppress(OSError):
                os.chown(self.path, -1, gid)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._clients):
            t.cancel()
        for t in list(self._clients):
            with contextlib.suppress(BaseException):
                await t
        for c in list(self._conns):
            c.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- containment and accounting -------------------------------------------------------
    def _failed(self, site: str, exc: BaseException) -> None:
        if self.guard is not None:
            self.guard.failed(site, exc)
        else:
            log.error("unexpected %s in %s", type(exc).__name__, site, exc_info=exc)

    def _timed(self, site: str, t0: tuple[float, float]) -> None:
        if self.guard is not None:
            self.guard.timed(site, t0)

    def refusal(self, kind: str, message: str) -> None:
        """Log a refusal once per kind (they come in floods); the caller counts it."""
        if kind not in self._refusals_logged:
            self._refusals_logged.add(kind)
            log.warning("%s (further refusals of this kind are only counted)", message)

    # -- connections ----------------------------------------------------------------------
    def _connected(self, c: _Conn) -> None:
        t0 = clock()
        try:
            assert c.transport is not None
            cred = _peercred(c.transport)
            if cred is not None and not peer_allowed(cred[1], cred[2]):
                self.stats.refused_credentials += 1
                log.warning("refused control client pid=%d uid=%d gid=%d", *cred)
                c.refuse(errno.EACCES, "permission denied: only root and members of "
                         f"group '{TIPC_GROUP}' may control tipcd")
                return
            if len(self._conns) >= MAX_CONNS and not self._closing:
                self._evict_idle()
            if len(self._conns) >= MAX_CONNS or self._closing:
                self.stats.refused_too_many += 1
                self.refusal("too many", f"refused a control client: {MAX_CONNS} "
                             "control connections open")
                c.refuse(errno.EMFILE, f"tipcd serves at most {MAX_CONNS} control "
                         "connections at once; try again")
                return
            self._conns.add(c)
            self.stats.conns_total += 1
            self.stats.conns_now += 1
            # no task yet: most requests are answered inline (see _inline); a task is
            # made only for what must wait (a stream, a full write buffer)
        except Exception as e:
            self._failed("control connect", e)
            c.abort()
        finally:
            self._timed("control connect", t0)

    def _evict_idle(self) -> None:
        """At the connection cap, close the connection idle longest (nothing asked for
        IDLE_EVICT seconds, no request or stream in progress), so that clients holding
        connections open cannot lock the administrator's `tipc` out."""
        limit = time.monotonic() - IDLE_EVICT
        idle = [c for c in self._conns if not c.busy and c.last_active < limit
                and not c.lines]
        if not idle:
            return
        victim = min(idle, key=lambda c: c.last_active)
        self.stats.evicted_idle += 1
        self.refusal("evict", "closing idle control connections to make room (the "
                     f"{MAX_CONNS} connection limit is reached)")
        victim.refuse(errno.ETIMEDOUT, "closed: idle while tipcd was at its control "
                      "connection limit")
        self._disconnected(victim)

    def _start_session(self, c: _Conn) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(c))
        c.task = task
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    def _disconnected(self, c: _Conn) -> None:
        if c in self._conns:
            self._conns.discard(c)
            self.stats.conns_now -= 1

    async def _serve(self, c: _Conn) -> None:
        try:
            await self._session(c)
        except (ConnectionError, asyncio.CancelledError):
            pass                        # client gone, or the daemon stopping
        except Exception as e:
            self._failed("control session", e)
        finally:
            c.close()

    async def _session(self, c: _Conn) -> None:
        while True:
            line = await c.readline()
            if line is None:
                return
            if line == b"\x00too-long":
                c.write(_encode({"ok": False, "errno": errno.EMSGSIZE,
                                 "error": f"request longer than {MAX_LINE} bytes"}))
                await c.drain()
                return
            if line == b"\x00deferred":
                assert c.deferred is not None
                op, result = c.deferred
                c.deferred = None
                c.busy = True
                try:
                    answer = await self._finish(op, result, c)
                finally:
                    c.busy = False
                    c.last_active = time.monotonic()
                if answer is None:
                    return
                c.write(_encode(answer))
                await c.drain()
                continue
            if not line.strip():
                continue
            self.stats.requests += 1
            c.busy = True
            try:
                answer = await self._answer(line, c)
            finally:
                c.busy = False
                c.last_active = time.monotonic()
            if answer is None:      # streaming op finished (client went away)
                return
            c.write(_encode(answer))
            await c.drain()

    async def answer(self, line: bytes) -> dict[str, Any] | None:
        """The answer to one request line, as the socket would carry it (in-process: for
        tests and tools); a streaming op's iterator is closed at once."""
        return await self._answer(line, None)

    def _inline(self, c: _Conn) -> None:
        """Answer the lines of a connection without a task right in the read callback:
        no task per connection (a burst of 1,000 connects costs 1,000 callbacks, not
        3,000) and no loop turn to wake one. What must wait -- a stream, an awaited
        result, a full write buffer, a marker -- gets a task (_start_session)."""
        while c.lines and c.task is None and c.deferred is None and not c.closed:
            line = c.lines[0]
            if line[:1] == b"\x00":
                return                               # a marker: the task's business
            c.lines.popleft()
            c._account(-len(line))
            if not line.strip():
                continue
            self.stats.requests += 1
            answer, pending = self._call(line)
            c.last_active = time.monotonic()
            if pending is not None:
                c.deferred = pending
                return
            c.write(_encode(answer))
            if not c.can_write.is_set():
                return                               # the task drains before more

    def _call(self, line: bytes) -> tuple[dict[str, Any], tuple[str, Any] | None]:
        """The synchronous part of a request: (answer, None), or ({}, (op, result)) when
        the result must still be awaited or streamed (see _finish)."""
        try:
            op, args = parse_request(line)
        except ValueError as e:
            return {"ok": False, "errno": errno.EINVAL,
                    "error": f"malformed request: {e}"}, None
        t0 = clock()
        try:
            result: Any = self.handler(op, args)
        except Exception as e:
            return self._error(op, e), None
        finally:
            self._timed("control request", t0)
        if (asyncio.iscoroutine(result) or isinstance(result, asyncio.Future)
                or hasattr(result, "__aiter__")):
            return {}, (op, result)
        return {"ok": True, "result": result}, None

    def _error(self, op: str, e: Exception) -> dict[str, Any]:
        if isinstance(e, ControlError):
            return {"ok": False, "errno": e.errno, "error": e.message}
        if isinstance(e, OSError):
            return {"ok": False, "errno": e.errno or errno.EIO, "error": str(e.strerror or e)}
        self._failed(f"control op {op[:40]}", e)     # a bug in a handler: contained
        return {"ok": False, "errno": errno.EIO, "error": f"internal error in {op}: {e!r}"}

    async def _answer(self, line: bytes, conn: _Conn | None) -> dict[str, Any] | None:
        answer, pending = self._call(line)
        if pending is None:
            return answer
        return await self._finish(pending[0], pending[1], conn)

    async def _finish(self, op: str, result: Any, conn: _Conn | None
                      ) -> dict[str, Any] | None:
        """Await a coroutine result, or stream an iterator (None: the stream ended)."""
        try:
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            if hasattr(result, "__aiter__"):
                if conn is None:
                    await result.aclose()
                    return {"ok": True, "result": "stream"}
                await self._stream(result, conn)
                return None
            return {"ok": True, "result": result}
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return self._error(op, e)

    async def _stream(self, it: AsyncIterator[Any], conn: _Conn) -> None:
        """Write one line per item until the iterator ends or the client goes away.

        The client closing is noticed at once (EOF on the connection), not only at the
        next write, so an idle stream (``tipc events`` with nothing happening) does not
        keep its subscription alive after Ctrl-C. An error raised by the iterator (a
        ControlError: the stream overflowed its budget) becomes the last answer line; the
        daemon stopping ends the stream without a traceback."""
        async def pump() -> None:
            # a queue full of events is there without awaiting anything: hand the loop
            # back every STREAM_SLICE events, or a few dozen streams catching up at once
            # would hold it for hundreds of milliseconds
            n = 0
            async for item in it:
                conn.write(_encode({"ok": True, "event": item}))
                await conn.drain()
                n += 1
                if n >= STREAM_SLICE:
                    n = 0
                    await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(conn.wait_eof())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            first = tasks[0]
            if first in done and not first.cancelled() and first.exception() is not None:
                exc = first.exception()
                if not isinstance(exc, ConnectionError):
                    raise exc  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()

"""tipcd's client server: application sockets reach the SocketLayer over ``$RUN_DIR/tipc.sock``.

Why a separate, binary protocol (not the JSON control socket): this is the data path. Every
``sendto``/``recv`` of every application crosses it, so frames are length-prefixed binary
(``tipcpy._uds``), a read is parsed for as many frames as it holds, and everything queued
for one client during one loop iteration leaves in one ``write``.

Model: one Unix stream connection = one application socket = one SocketLayer port. The
first frame is OPEN (a new port) or CLAIM (take over a port the layer created for an
accepted connection; the listener's client got an E_ACCEPTED with a one-time token).
Closing the connection closes the port.

Backpressure, never loss: when ``SocketLayer.sendto`` answers False (link or connection
congested) we stop parsing that client's frames and stop reading its connection until the
layer's ``Wakeup(port)`` (or a 50 ms retry, in case a wakeup is missed). The client's own
socket write then blocks (or returns EAGAIN if it is non-blocking), exactly where a kernel
TIPC sender would sleep. If the client closes while frames are held back, they are still
handed to the layer (the application saw them accepted) before the port closes.

Misbehaving clients (garbage, a frame cut by a disconnect, floods of requests whose answers
they never read) are disconnected or throttled -- the output queued for one client is
capped at ``MAX_OUTPUT`` -- and counted in :class:`ClientStats`; the daemon and its other
clients carry on. A client that floods requests whose answers it does not read is
throttled (its requests wait while more than ``OUTPUT_HIGH`` of its output is unread).
Access control is the control socket's: mode 0660, group ``tipc`` where it
exists, and SO_PEERCRED must be root, tipcd's own user or a member of ``tipc``.

The loop always breathes: one read is parsed for at most ``FRAMES_PER_TURN`` frames, the
rest waits for the next loop turn (reading paused meanwhile); a run of SENDs that fail
costs one layer call per frame, not one per remaining frame; closing a port with many
bindings withdraws them ``WITHDRAW_CHUNK`` per turn. Global budgets: at most
``MAX_CLIENTS`` connections (more are refused with EMFILE), at most ``IN_BUDGET`` bytes
of partial frames and ``OUT_BUDGET`` bytes of unread output over all clients (the client
that pushes a total over its budget is disconnected with ENOBUFS); each refusal is
logged once per kind and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from time import perf_counter
from typing import Any, cast

from tipcpy import _uds as P
from tipcpy.core.group import GroupReq

from .control import TIPC_GROUP, _tipc_gid, peer_allowed
from .guard import clock, release_memory
from .runtime import Runtime

log = logging.getLogger("tipcpy.clientsrv")

MAX_OUTPUT = 64 << 20
"""Bytes queued for one client before we give up on it (SocketLayer rcvbuf limits keep a
well-behaved client far below this: at most 16 MiB << importance of unread data)."""
CLAIM_TIMEOUT = 30.0
"""An accepted connection nobody claims within this many seconds is closed."""
RETRY_BLOCKED = 0.05
OUTPUT_HIGH = 4 << 20
"""A client with this much output unread gets no more *answered* requests processed
until it reads (a flood of requests whose answers it never reads is throttled)."""
MAX_PENDING_EVENTS = 8 << 20
FRAMES_PER_TURN = 256
"""Frames of one client handled in one loop turn; the rest is handled on the next turn."""
TURN_BUDGET = 0.004
"""Seconds of one client's frames per loop turn (checked every 8 frames): a frame can
cost much more than usual (a BIND watched by many event streams), and everything else
the loop serves -- `tipc` included -- waits a few turns for an answer."""
WITHDRAW_CHUNK = 32
"""Bindings withdrawn at a time when a port closes (25-80 us each), as many chunks per
loop turn as fit in TURN_BUDGET."""
TRIM_AFTER = 64 * 1024
"""A client dropped with a partial frame this big has its heap pages handed back
(see ClientServer._trim_soon)."""
MAX_CLIENTS = 4096
"""Client connections (= application sockets) served at once."""
IN_BUDGET = 32 << 20
"""Bytes of not yet complete request frames held for all clients together."""
OUT_BUDGET = 128 << 20
"""Bytes of unread output held for all clients together (a client above OUTPUT_HIGH
is disconnected when the total is over this)."""

HDR_SIZE = P.HDR_SIZE
HDR_UNPACK = P.HDR.unpack_from
ADDR_UNPACK = P.ADDR.unpack_from
MAX_FRAME = P.MAX_FRAME
SEND = P.SEND
SEND_SYNC = P.SEND_SYNC
SEND_NOWAIT = P.SEND_NOWAIT
SEND_MIN = 2 + P.ADDR_SIZE          # kind + flags + address (the data may be empty)
DATA_FRAME_PACK = P.DATA_FRAME.pack
DATA_BODY = 1 + P.DATA_HDR.size     # kind + E_DATA header: the length field's fixed part
E_DATA = P.E_DATA
DATA_RETURNED, DATA_SYN, DATA_HAS_DEST = P.DATA_RETURNED, P.DATA_SYN, P.DATA_HAS_DEST


@dataclass
class ClientStats:
    """Counters for `tipc`/tests: what the client server did and whom it threw out."""

    clients_total: int = 0
    clients_now: int = 0
    refused_credentials: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    sends: int = 0
    sends_blocked: int = 0
    wakeups: int = 0
    throttled: int = 0
    async_errors: int = 0
    accepted: int = 0
    claimed: int = 0
    claims_expired: int = 0
    claims_refused: int = 0
    disconnect_garbage: int = 0
    disconnect_midframe: int = 0
    disconnect_slow_reader: int = 0
    internal_errors: int = 0
    events_dropped_no_client: int = 0
    yields: int = 0                     # reads cut at FRAMES_PER_TURN, resumed next turn
    withdraw_chunks: int = 0            # loop turns spent withdrawing a closing port
    refused_too_many: int = 0           # connections refused: MAX_CLIENTS reached (EMFILE)
    refused_in_budget: int = 0          # disconnected: IN_BUDGET exhausted (ENOBUFS)
    refused_out_budget: int = 0         # disconnected: OUT_BUDGET exhausted (ENOBUFS)
    in_bytes: int = 0                   # partial request bytes held now (all clients)
    out_bytes: int = 0                  # unread output bytes held now (all clients)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# ------------------------------------------------------------------ address conversion
# The SocketLayer takes struct sockaddr_tipc word order: (1, type, lower, upper, scope),
# (2, type, instance, domain, scope), (3, ref, node, 0, scope).

def to_layer(atype: int, scope: int, a: int, b: int, c: int) -> tuple[int, ...] | None:
    if atype == 0:
        return None
    if atype == 3:
        return (3, a, b, 0, scope)
    return (atype, a, b, c, scope)


def from_layer(addr: Any) -> bytes:
    """A layer tuple (or None) -> 14 wire bytes."""
    if not addr:
        return P.NO_ADDR
    t = tuple(int(x) for x in addr)
    atype = t[0]
    if atype == 3:
        ref, node = t[1], t[2]
        scope = t[4] if len(t) > 4 else 0
        return P.ADDR.pack(3, _s8(scope), ref & 0xFFFFFFFF, node & 0xFFFFFFFF, 0)
    scope = t[4] if len(t) > 4 else 0
    return P.ADDR.pack(atype, _s8(scope), t[1] & 0xFFFFFFFF, t[2] & 0xFFFFFFFF,
                       t[3] & 0xFFFFFFFF)


def _s8(v: int) -> int:
    v &= 0xFF
    return v - 256 if v > 127 else v


class _Client(asyncio.Protocol):
    """One application socket's connection (see the module docstring)."""

    __slots__ = ("srv", "transport", "inbuf", "port", "out", "outlen", "blocked", "closed",
                 "eof", "retry", "name", "tokens", "opened", "wq")

    def __init__(self, srv: ClientServer) -> None:
        self.srv = srv
        self.transport: asyncio.Transport | None = None
        self.inbuf = bytearray()
        self.port: int | None = None
        self.out: list[bytes] = []
        self.outlen = 0
        self.blocked = False
        self.closed = False
        self.eof = False
        self.retry: asyncio.TimerHandle | None = None
        self.name = "?"
        self.tokens: set[int] = set()      # accepted connections announced to this listener
        self.opened = False
        self.wq = 0                        # transport write buffer, last seen (OUT_BUDGET)

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t0 = clock()
        try:
            self._made(transport)
        except Exception as e:
            self.srv.runtime.guard.failed("client connect", e)
            self.closed = True
            transport.abort()    # type: ignore[attr-defined]
        finally:
            self.srv.runtime.guard.timed("client connect", t0)

    def _made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is no subclass of asyncio.Transport, but has its methods
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        srv = self.srv
        sock = transport.get_extra_info("socket")
        cred = None
        if sock is not None:
            with contextlib.suppress(OSError):
                cred = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET,
                                                           socket.SO_PEERCRED, 12))
        if cred is not None:
            self.name = f"pid {cred[0]}"
            if not peer_allowed(cred[1], cred[2]):
                srv.stats.refused_credentials += 1
                log.warning("refused client pid=%d uid=%d gid=%d", *cred)
                transport.write(P.frame(P.R_ERR, P.err_body(
                    errno.EACCES, "permission denied: only root and members of group "
                    f"'{TIPC_GROUP}' may use tipcd")))
                transport.close()
                self.closed = True
                return
        if srv.stats.clients_now >= MAX_CLIENTS:
            srv.stats.refused_too_many += 1
            srv.refusal("too many", f"refused client {self.name}: {MAX_CLIENTS} client "
                        "sockets open")
            transport.write(P.frame(P.R_ERR, P.err_body(
                errno.EMFILE, f"tipcd serves at most {MAX_CLIENTS} sockets at once")))
            transport.close()
            self.closed = True
            return
        srv.stats.clients_total += 1
        srv.stats.clients_now += 1
        srv.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.srv.guarded_frame(self, self._take, data)

    def _take(self, data: bytes) -> None:
        srv = self.srv
        stats = srv.stats
        stats.bytes_in += len(data)
        stats.in_bytes += len(data)
        self.inbuf += data
        if stats.in_bytes > IN_BUDGET and len(self.inbuf) > HDR_SIZE + MAX_FRAME // 4:
            stats.refused_in_budget += 1
            srv.refusal("in budget", f"client {self.name}: {stats.in_bytes} bytes of "
                        f"partial requests held (budget {IN_BUDGET}); disconnecting")
            srv._drop(self, "tipcd's request buffer budget is exhausted", errno.ENOBUFS)
            return
        srv.process(self)

    def eof_received(self) -> bool:
        self.eof = True
        self._guarded_eof()
        return True            # keep our half open: queued answers may still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._guarded_eof()

    def _guarded_eof(self) -> None:
        t0 = clock()
        try:
            self.srv.client_eof(self)
        except Exception as e:
            self.srv.runtime.guard.failed("client close", e)
        finally:
            self.srv.runtime.guard.timed("client close", t0)

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            with contextlib.suppress(Exception):     # bookkeeping only
                self.srv.note_output(self, self.transport.get_write_buffer_size())


class ClientServer:
    """Serves ``$RUN_DIR/tipc.sock`` for the SocketLayer of ``runtime.stack``.

    ``runtime`` is the daemon's Runtime (``.stack``, ``.now()``, ``.pump()``,
    ``.loop``); the SocketLayer is looked up as ``runtime.stack.sockets`` when a client
    opens a socket, so a daemon without one answers EAFNOSUPPORT instead of failing to start.
    """

    def __init__(self, path: str | os.PathLike[str], runtime: Runtime) -> None:
        self.path = Path(path)
        self.runtime = runtime
        self.loop: asyncio.AbstractEventLoop = runtime.loop
        self.stats = ClientStats()
        self.clients: set[_Client] = set()
        self.by_port: dict[int, _Client] = {}
        # accepted, not yet claimed: token -> [new_port, peer, listener, events, deadline]
        self.unclaimed: dict[int, list[Any]] = {}
        self.unclaimed_port: dict[int, int] = {}     # new_port -> token
        self._dirty: list[_Client] = []
        self._flush_scheduled = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.closing_ports: set[int] = set()        # withdrawing bindings, then close()
        self._trim_pending = False
        self._refusals_logged: set[str] = set()
        self._handlers: dict[int, Callable[[_Client, memoryview], bool]] = {
            P.OPEN: self._op_open, P.CLAIM: self._op_claim, P.BIND: self._op_bind,
            P.CONNECT: self._op_connect, P.LISTEN: self._op_listen, P.SEND: self._op_send,
            P.CONSUMED: self._op_consumed, P.SHUTDOWN: self._op_shutdown,
            P.SETOPT: self._op_setopt, P.GETOPT: self._op_getopt,
            P.SOCKNAME: self._op_sockname, P.PEERNAME: self._op_peername,
            P.PING: self._op_ping, P.GROUPJOIN: self._op_group_join,
            P.GROUPLEAVE: self._op_group_leave,
        }

    # ------------------------------------------------------------------ lifecycle
    @property
    def layer(self) -> Any:
        return self.runtime.stack.sockets

    async def start(self) -> None:
        """Listen on the socket path (0660, group tipc) and start draining layer events."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()           # stale socket of a dead daemon (caller checked pid)
        old = os.umask(0o117)
        try:
            self._server = await self.loop.create_unix_server(
                lambda: _Client(self), path=str(self.path), backlog=1024)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        gid = _tipc_gid()
        if gid is not None:
            with contextlib.suppress(OSError):
                os.chown(self.path, -1, gid)
        self.runtime.after_pump.append(self.drain_events)
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def close(self) -> None:
        """Stop listening; close every client connection and its port."""
        if self.drain_events in self.runtime.after_pump:
            self.runtime.after_pump.remove(self.drain_events)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in list(self.clients):
            self._drop(c, "daemon stopping")
        for token in list(self.unclaimed):
            self._expire(token)
        layer = self.layer
        for port in list(self.closing_ports):
            self.closing_ports.discard(port)
            with contextlib.suppress(Exception):
                layer.close(port, self.runtime.now())
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # ------------------------------------------------------------------ input path
    def process(self, c: _Client) -> None:
        """Parse and execute every complete frame in ``c.inbuf`` (unless blocked).

        One ``now`` and one Stack pump per read, one write per client at the end. SEND
        frames -- the data path -- are handled inline (no handler dispatch, no per-frame
        clock read); every other kind goes through its ``_op_*`` handler.
        """
        if c.blocked or c.closed:
            return
        buf = c.inbuf
        n = len(buf)
        off = 0
        touched = False
        if n >= HDR_SIZE:
            mv = memoryview(buf)
            try:
                off, touched = self._frames(c, buf, mv, n)
            finally:
                mv.release()
                if off > 0 and not c.closed:
                    del buf[:off]
                    self.stats.in_bytes -= off
                if touched:
                    self._pump()
            if off < 0:
                return                 # dropped (garbage)
        if not c.blocked and c.eof and not c.closed:
            self._finish_eof(c)
        if self._dirty:
            self._flush()          # one write per client for everything this read caused

    def _frames(self, c: _Client, buf: bytearray, mv: memoryview, n: int) -> tuple[int, bool]:
        """The loop of :meth:`process`: (bytes consumed, or -1 if ``c`` was dropped;
        whether any frame reached the layer)."""
        off = 0
        touched = False
        handlers = self._handlers
        stats = self.stats
        hdr_unpack = HDR_UNPACK
        addr_unpack = ADDR_UNPACK
        layer: Any = None
        many: Any = None
        now = 0.0
        port = c.port
        nsend = 0
        left = FRAMES_PER_TURN            # frames this turn may still handle
        t_end = perf_counter() + TURN_BUDGET
        check = left - 8                  # look at the clock again when left gets here
        try:
            while n - off >= HDR_SIZE:
                if left <= check:
                    check = left - 8
                    if perf_counter() > t_end:
                        left = 0
                if left <= 0:
                    # the rest on the next loop turn: timers and other clients go first
                    self._yield(c)
                    break
                left -= 1
                length, kind = hdr_unpack(buf, off)
                if length == 0 or length > MAX_FRAME:
                    self._garbage(c, f"frame length {length}")
                    return -1, touched
                end = off + 4 + length
                if end > n:
                    break
                if kind == SEND and port is not None:
                    # ---- the data path, inline (see _op_send for the slow twin)
                    if length < SEND_MIN:
                        raise _Garbage(f"SEND of {length - 1} bytes")
                    sflags = buf[off + 5]
                    if (sflags & SEND_SYNC and c.transport is not None
                            and c.transport.get_write_buffer_size() > OUTPUT_HIGH):
                        stats.throttled += 1
                        self._hold(c)
                        break
                    nsend += 1
                    if layer is None:
                        layer = self.layer
                        now = self.runtime.now()
                        many = getattr(layer, "sendto_many", None)
                    if buf[off + 6]:
                        atype, scope, a, b, cc = addr_unpack(buf, off + 6)
                        addr: Any = ((3, a, b, 0, scope) if atype == 3
                                     else (atype, a, b, cc, scope))
                    else:
                        addr = None
                    touched = True
                    if (not sflags & SEND_SYNC and many is not None and n - end > HDR_SIZE
                            and buf[end + 4] == SEND):
                        # unanswered SENDs back to back (same address): one layer call
                        off, stop = self._send_run(c, many, buf, mv, n, off, end, sflags,
                                                   port, addr, now, left)
                        nsend += stop[0]
                        left -= stop[0]
                        if stop[1]:
                            break
                        if c.closed:
                            return -1, touched
                        continue
                    try:
                        ok = layer.sendto(port, addr, bytes(mv[off + 20:end]), now)
                    except OSError as e:
                        msg = str(e.strerror or e) if e.strerror else str(e)
                        self._send_error(c, sflags, e.errno or errno.EIO, msg)
                        ok = True
                    except Exception as e:
                        stats.internal_errors += 1
                        log.exception("sendto failed for client %s", c.name)
                        self._send_error(c, sflags, errno.EIO,
                                         f"internal error in tipcd: {e!r}")
                        ok = True
                    else:
                        if not ok and sflags & SEND_NOWAIT:
                            # a non-blocking sender: EAGAIN now instead of waiting
                            stats.sends_blocked += 1
                            self._send_error(c, sflags, errno.EAGAIN,
                                             "the destination cannot take more now")
                        elif not ok:
                            stats.sends_blocked += 1
                            self._hold(c)
                            break
                        elif sflags & SEND_SYNC:
                            self._reply(c)
                    if c.closed:
                        return -1, touched
                    off = end
                    continue
                fn = handlers.get(kind)
                if fn is None:
                    self._garbage(c, f"unknown request kind 0x{kind:02x}")
                    return -1, touched
                if (kind != P.CONSUMED
                        and not (kind == SEND and length > 1 and not buf[off + 5] & 1)
                        and c.transport is not None
                        and c.transport.get_write_buffer_size() > OUTPUT_HIGH):
                    # it asks but does not read the answers: take nothing more from it
                    # until it does (a SEND without answer or CONSUMED never waits here)
                    stats.throttled += 1
                    self._hold(c)
                    break
                if c.port is None and kind not in (P.OPEN, P.CLAIM, P.PING):
                    self._garbage(c, f"{P.NAMES.get(kind)} before OPEN/CLAIM")
                    return -1, touched
                stats.frames_in += 1
                touched = True
                try:
                    done = fn(c, mv[off + HDR_SIZE:end])
                except _Garbage:
                    raise
                except Exception:
                    stats.internal_errors += 1
                    log.exception("request %s of client %s", P.NAMES.get(kind), c.name)
                    self._error(c, errno.EIO, f"internal error in tipcd handling "
                                f"{P.NAMES.get(kind)}")
                    done = True
                if not done:
                    # held back (congestion): keep this frame, stop reading the client
                    self._hold(c)
                    break
                if c.closed:
                    return -1, touched
                port = c.port
                off = end
        except _Garbage as e:
            self._garbage(c, str(e))
            return -1, touched
        finally:
            if nsend:
                stats.frames_in += nsend
                stats.sends += nsend
        return off, touched

    def _send_run(self, c: _Client, many: Any, buf: bytearray, mv: memoryview, n: int,
                  off: int, end: int, sflags: int, port: int, addr: Any, now: float,
                  limit: int) -> tuple[int, tuple[int, bool]]:
        """The SEND at ``off`` and up to ``limit`` SENDs right behind it with the same flags
        and address, through ``SocketLayer.sendto_many``. Returns (new offset, (extra
        frames counted, stop parsing)); outcome per message as with one sendto each.

        Linear in the run: a message the layer refuses with an error gets its E_ASYNCERR
        and the layer is called again for the rest of the *same* collected run (an
        ``islice``), never re-collecting it (that was quadratic: 4,000 SENDs to a missing
        name kept the loop 3.3 s)."""
        key = buf[off + 5:off + 20]              # flags + address
        datas = [bytes(mv[off + 20:end])]
        ends = [end]
        j = end
        hdr_unpack = HDR_UNPACK
        while n - j >= HDR_SIZE and len(datas) <= limit:
            l2, k2 = hdr_unpack(buf, j)
            e2 = j + 4 + l2
            if (k2 != SEND or l2 < SEND_MIN or l2 > MAX_FRAME or e2 > n
                    or buf[j + 5:j + 20] != key):
                break
            datas.append(bytes(mv[j + 20:e2]))
            ends.append(e2)
            j = e2
        stats = self.stats
        total = len(datas)
        i = 0                                    # messages done (accepted or failed)
        while i < total:
            try:
                sent, err = many(port, addr, islice(datas, i, None) if i else datas, now)
            except Exception as e:
                stats.internal_errors += 1
                self.runtime.guard.failed("client sendto_many", e)
                self._send_error(c, sflags, errno.EIO, f"internal error in tipcd: {e!r}")
                return ends[-1], (total - 1, False)
            i += sent
            if i >= total:
                break
            if err is None:
                # congested at message number i: keep it and the rest, wait for Wakeup
                stats.sends_blocked += 1
                self._hold(c)
                return (ends[i - 1] if i else off), (max(i - 1, 0), True)
            msg = str(err.strerror or err) if err.strerror else str(err)
            self._send_error(c, sflags, err.errno or errno.EIO, msg)
            i += 1
        return ends[-1], (total - 1, False)

    def _yield(self, c: _Client) -> None:
        """Stop reading ``c`` and go on with its frames on the next loop turn."""
        self.stats.yields += 1
        c.blocked = True
        if c.transport is not None and not c.eof:
            c.transport.pause_reading()
        self.loop.call_soon(self._unblock_guarded, c)

    def _unblock_guarded(self, c: _Client) -> None:
        self.guarded_frame(c, self._unblock, c)

    def guarded_frame(self, c: _Client, fn: Callable[..., None], *args: Any) -> None:
        """Run frame work for ``c``: a failure in it drops that client only (never the
        daemon), and its time counts under "client frame"."""
        t0 = clock()
        try:
            fn(*args)
        except Exception as e:
            self.runtime.guard.failed("client frame", e)
            self._drop(c, "internal error in tipcd")
        finally:
            self.runtime.guard.timed("client frame", t0)

    def refusal(self, kind: str, message: str) -> None:
        """Log a refusal once per kind (they come in floods); the caller counts it."""
        if kind not in self._refusals_logged:
            self._refusals_logged.add(kind)
            log.warning("%s (further refusals of this kind are only counted)", message)

    def note_output(self, c: _Client, size: int) -> None:
        """Track the unread output of ``c`` in the global OUT_BUDGET."""
        self.stats.out_bytes += size - c.wq
        c.wq = size

    def _hold(self, c: _Client) -> None:
        c.blocked = True
        if c.transport is not None and not c.eof:
            c.transport.pause_reading()
        c.retry = self.loop.call_later(RETRY_BLOCKED, self._retry, c)

    def _retry(self, c: _Client) -> None:
        c.retry = None
        self._unblock_guarded(c)

    def _unblock(self, c: _Client) -> None:
        if not c.blocked or c.closed:
            return
        c.blocked = False
        if c.retry is not None:
            c.retry.cancel()
            c.retry = None
        self.process(c)
        if not c.blocked and not c.closed and c.transport is not None and not c.eof:
            c.transport.resume_reading()

    def client_eof(self, c: _Client) -> None:
        if c.closed:
            return
        if c.blocked:
            return                # linger: held-back sends go first (see _unblock)
        self._finish_eof(c)

    def _finish_eof(self, c: _Client) -> None:
        if c.inbuf and not c.blocked:
            # the client went away in the middle of a frame
            self.stats.disconnect_midframe += 1
            log.info("client %s (port %s) disconnected mid-frame (%d bytes)", c.name,
                     c.port, len(c.inbuf))
        self._drop(c, None)

    def _garbage(self, c: _Client, why: str) -> None:
        self.stats.disconnect_garbage += 1
        log.warning("client %s (port %s) sent garbage: %s; disconnecting", c.name, c.port, why)
        self._drop(c, why)

    def _drop(self, c: _Client, why: str | None, err: int = errno.EPROTO) -> None:
        """Close the client's connection and its port (and unclaimed accepts it owns)."""
        if c.closed:
            return
        c.closed = True
        self.stats.in_bytes -= len(c.inbuf)
        big = len(c.inbuf) >= TRIM_AFTER
        c.inbuf = bytearray()           # free it now, not when the last reference goes
        if big:
            self._trim_soon()
        self.note_output(c, 0)
        if c.retry is not None:
            c.retry.cancel()
            c.retry = None
        if c in self.clients:
            self.clients.discard(c)
            self.stats.clients_now -= 1
        if c.transport is not None:
            if c.out:
                with contextlib.suppress(Exception):
                    c.transport.write(b"".join(c.out))
                c.out.clear()
                c.outlen = 0
            if why is not None:
                with contextlib.suppress(Exception):
                    c.transport.write(P.frame(P.R_ERR, P.err_body(err, why)))
            c.transport.close()
        for token in list(c.tokens):
            self._expire(token)
        port = c.port
        if port is not None and self.by_port.get(port) is c:
            del self.by_port[port]
            self._close_port(port)

    def _trim_soon(self) -> None:
        """Clients dropped with big partial frames (hundreds at once in an attack)
        leave glibc's heap at its high-water mark: once glibc's dynamic mmap
        threshold has grown, 128 kB buffers come from the heap, and RSS stayed 20 MB
        up after the clients were gone.  One trim per burst, a moment after it."""
        if not self._trim_pending:
            self._trim_pending = True
            self.loop.call_later(0.05, self._trim)

    def _trim(self) -> None:
        self._trim_pending = False
        release_memory()

    def _close_port(self, port: int) -> None:
        """close() the layer's port, first withdrawing its bindings WITHDRAW_CHUNK per
        loop turn (65,531 bindings withdrawn in one go kept the loop 1.5-1.8 s, past the
        link tolerance)."""
        layer = self.layer
        if layer is None:
            return
        now = self.runtime.now()
        try:
            some = getattr(layer, "withdraw_some", None)
            left = 0
            if some is not None:
                t_end = perf_counter() + TURN_BUDGET
                left = some(port, WITHDRAW_CHUNK, now)
                while left and perf_counter() < t_end:
                    left = some(port, WITHDRAW_CHUNK, now)
            if left:
                self.stats.withdraw_chunks += 1
                self.closing_ports.add(port)
                self.loop.call_soon(self._close_port_step, port)
            else:
                layer.close(port, now)
                if port in self.closing_ports:
                    self.closing_ports.discard(port)
                    release_memory()          # thousands of bindings just went
        except OSError:
            self.closing_ports.discard(port)
            log.debug("close of port %d failed", port, exc_info=True)
        self._pump()

    def _close_port_step(self, port: int) -> None:
        if port not in self.closing_ports:
            return              # the daemon stopped meanwhile and closed it
        t0 = clock()
        try:
            self._close_port(port)
        except Exception as e:
            self.closing_ports.discard(port)
            self.runtime.guard.failed("port close", e)
        finally:
            self.runtime.guard.timed("port close", t0)

    # ------------------------------------------------------------------ output path
    def _send(self, c: _Client, data: bytes) -> None:
        if c.closed:
            return
        c.out.append(data)
        c.outlen += len(data)
        if len(c.out) == 1:
            self._dirty.append(c)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush_guarded)

    def _reply(self, c: _Client, body: bytes = b"") -> None:
        self._send(c, P.HDR.pack(len(body) + 1, P.R_OK) + body)

    def _error(self, c: _Client, err: int, message: str) -> None:
        self._send(c, P.frame(P.R_ERR, P.err_body(err, message)))

    def _flush_guarded(self) -> None:
        t0 = clock()
        try:
            self._flush()
        except Exception as e:
            self.runtime.guard.failed("client write", e)
        finally:
            self.runtime.guard.timed("client write", t0)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for c in dirty:
            if c.closed or not c.out:
                continue
            data = b"".join(c.out) if len(c.out) > 1 else c.out[0]
            self.stats.frames_out += len(c.out)
            self.stats.bytes_out += len(data)
            c.out.clear()
            c.outlen = 0
            t = c.transport
            if t is None or t.is_closing():
                continue
            t.write(data)
            size = t.get_write_buffer_size()
            self.note_output(c, size)
            if size > MAX_OUTPUT:
                self.stats.disconnect_slow_reader += 1
                log.warning("client %s (port %s) does not read; %d bytes queued; "
                            "disconnecting", c.name, c.port, size)
                t.abort()
                self._drop(c, None)
            elif size > OUTPUT_HIGH and self.stats.out_bytes > OUT_BUDGET:
                self.stats.refused_out_budget += 1
                self.refusal("out budget", f"client {c.name} (port {c.port}) does not "
                             f"read; {self.stats.out_bytes} bytes of output held for all "
                             f"clients (budget {OUT_BUDGET}); disconnecting")
                t.abort()
                self._drop(c, None)

    # ------------------------------------------------------------------ layer events
    def _pump(self) -> None:
        self.runtime.pump()          # its after_pump hook drains the layer's events

    def drain_events(self) -> None:
        """Move SocketLayer events to the clients' output (called after every pump)."""
        layer = self.layer
        if layer is None:
            return
        events = layer.take_events()
        if events:
            self.handle_events(events)

    def handle_events(self, events: list[Any]) -> None:
        """Move these SocketLayer events to the clients' output (an embedded node hands
        over the events that are not its own sockets' here: tipcpy/node.py)."""
        by_port = self.by_port
        pack = DATA_FRAME_PACK
        for ev in events:
            kind = type(ev).__name__
            try:
                if kind == "Deliver":
                    data = ev.data
                    src = ev.src or (0, 0)
                    dest = ev.dest
                    flags = ((DATA_RETURNED if ev.returned else 0)
                             | (DATA_SYN if ev.syn else 0))
                    if dest is not None:
                        frame = pack(len(data) + DATA_BODY, E_DATA, src[0], src[1],
                                     ev.errcode or 0, dest[0], dest[1], dest[2],
                                     flags | DATA_HAS_DEST) + data
                    else:
                        frame = pack(len(data) + DATA_BODY, E_DATA, src[0], src[1],
                                     ev.errcode or 0, 0, 0, 0, flags) + data
                    c = by_port.get(ev.port)
                    if c is not None and not c.closed:
                        out = c.out
                        if not out:
                            # flushed below, no loop turn in between (self._dirty, not a
                            # local: a nested pump may have swapped the list)
                            self._dirty.append(c)
                        out.append(frame)
                        c.outlen += len(frame)
                    else:
                        self._to_port(ev.port, frame, by_port)
                elif kind == "GroupData":
                    data = ev.data
                    frame = pack(len(data) + DATA_BODY, E_DATA, ev.src[0], ev.src[1], 0,
                                 ev.member[0], ev.member[1], ev.evt, P.DATA_GROUP) + data
                    self._to_port(ev.port, frame, by_port)
                elif kind == "Connected":
                    self._to_port(ev.port, P.frame(P.E_CONNECTED, P.II.pack(*ev.peer[:2])),
                                  by_port)
                elif kind == "ConnError":
                    self._to_port(ev.port, P.frame(P.E_CONNERR, P.I32.pack(ev.errno)), by_port)
                elif kind == "Accepted":
                    self._accepted(ev)
                elif kind == "Wakeup":
                    c = by_port.get(ev.port)
                    if c is not None and c.blocked:
                        self.stats.wakeups += 1
                        self.loop.call_soon(self._unblock_guarded, c)
                else:
                    log.debug("unhandled socket event %r", ev)
            except Exception:
                self.stats.internal_errors += 1
                log.exception("socket event %r", ev)
        if self._dirty:
            self._flush()          # one write per client per batch of events

    def _to_port(self, port: int, frame: bytes, by_port: dict[int, _Client]) -> None:
        c = by_port.get(port)
        if c is not None:
            self._send(c, frame)
            return
        token = self.unclaimed_port.get(port)
        if token is not None:
            ent = self.unclaimed[token]
            ent[3].append(frame)
            ent[5] += len(frame)
            if ent[5] > MAX_PENDING_EVENTS:
                self._expire(token)
            return
        self.stats.events_dropped_no_client += 1

    def _accepted(self, ev: Any) -> None:
        self.stats.accepted += 1
        listener = self.by_port.get(ev.listen_port)
        now = self.runtime.now()
        if listener is None or listener.closed:
            layer = self.layer
            if layer is not None:
                with contextlib.suppress(Exception):
                    layer.close(ev.new_port, now)
            return
        token = secrets.randbits(63) or 1
        peer = tuple(ev.peer[:2])
        # [new_port, peer, listener, pending frames, deadline, pending bytes]
        self.unclaimed[token] = [ev.new_port, peer, listener, [], now + CLAIM_TIMEOUT, 0]
        self.unclaimed_port[ev.new_port] = token
        listener.tokens.add(token)
        self._send(listener, P.frame(P.E_ACCEPTED, P.QII.pack(token, peer[0], peer[1])))

    def _expire(self, token: int) -> None:
        ent = self.unclaimed.pop(token, None)
        if ent is None:
            return
        self.unclaimed_port.pop(ent[0], None)
        ent[2].tokens.discard(token)
        self.stats.claims_expired += 1
        layer = self.layer
        if layer is not None:
            with contextlib.suppress(Exception):
                layer.close(ent[0], self.runtime.now())
            self._pump()

    def _sweep(self) -> None:
        try:
            now = self.runtime.now()
            for token, ent in list(self.unclaimed.items()):
                if ent[4] < now:
                    self._expire(token)
        except Exception as e:
            self.runtime.guard.failed("client sweep", e)
        finally:
            self._sweeper = self.loop.call_later(1.0, self._sweep)

    # ------------------------------------------------------------------ request handlers
    # Each returns True when the frame is done, False to hold it back (congestion).
    def _call(self, c: _Client, fn: Callable[[], Any], reply: bool = True) -> Any:
        """Run a layer call; OSError -> R_ERR with the layer's errno and message."""
        try:
            result = fn()
        except OSError as e:
            msg = str(e.strerror or e) if e.strerror else str(e)
            self._error(c, e.errno or errno.EIO, msg)
            return _FAILED
        except (TypeError, ValueError) as e:
            self._error(c, errno.EINVAL, f"invalid argument: {e}")
            return _FAILED
        except Exception as e:
            self.stats.internal_errors += 1
            log.exception("socket layer call failed for client %s", c.name)
            self._error(c, errno.EIO, f"internal error in tipcd: {e!r}")
            return _FAILED
        if reply:
            self._reply(c)
        return result

    def _op_open(self, c: _Client, body: memoryview) -> bool:
        if c.opened:
            raise _Garbage("second OPEN/CLAIM on one connection")
        sotype = _unpack(P.U8, body, "OPEN")[0]
        layer = self.layer
        if layer is None:
            self._error(c, errno.EAFNOSUPPORT, "this tipcd has no socket layer")
            return True
        port = self._call(c, lambda: layer.open(sotype, self.runtime.now()), reply=False)
        if port is _FAILED:
            return True
        c.opened = True
        c.port = int(port)
        self.by_port[c.port] = c
        self._reply(c, P.II.pack(c.port, self.runtime.stack.own_addr))
        return True

    def _op_claim(self, c: _Client, body: memoryview) -> bool:
        if c.opened:
            raise _Garbage("second OPEN/CLAIM on one connection")
        token = _unpack(P.U64, body, "CLAIM")[0]
        ent = self.unclaimed.pop(token, None)
        if ent is None:
            self.stats.claims_refused += 1
            self._error(c, errno.ECONNABORTED,
                        "no accepted connection for this token (expired or already taken)")
            return True
        new_port, peer, listener, pending = ent[0], ent[1], ent[2], ent[3]
        self.unclaimed_port.pop(new_port, None)
        listener.tokens.discard(token)
        self.stats.claimed += 1
        c.opened = True
        c.port = new_port
        self.by_port[new_port] = c
        self._reply(c, P.IIII.pack(new_port, self.runtime.stack.own_addr, peer[0], peer[1]))
        for frame in pending:
            self._send(c, frame)
        return True

    def _op_bind(self, c: _Client, body: memoryview) -> bool:
        addr = to_layer(*_unpack(P.ADDR, body, "BIND"))
        self._call(c, lambda: self.layer.bind(c.port, addr, self.runtime.now()))
        return True

    def _op_connect(self, c: _Client, body: memoryview) -> bool:
        addr = to_layer(*_unpack(P.ADDR, body, "CONNECT"))
        self._call(c, lambda: self.layer.connect(c.port, addr, self.runtime.now()))
        return True

    def _op_listen(self, c: _Client, body: memoryview) -> bool:
        backlog = _unpack(P.I32, body, "LISTEN")[0]
        self._call(c, lambda: self.layer.listen(c.port, backlog))
        return True

    def _op_send(self, c: _Client, body: memoryview) -> bool:
        if len(body) < 1 + P.ADDR_SIZE:
            raise _Garbage(f"SEND of {len(body)} bytes")
        flags = body[0]
        atype, scope, a, b, cc = P.ADDR.unpack_from(body, 1)
        addr = to_layer(atype, scope, a, b, cc) if atype else None
        data = bytes(body[1 + P.ADDR_SIZE:])
        self.stats.sends += 1
        try:
            ok = self.layer.sendto(c.port, addr, data, self.runtime.now())
        except OSError as e:
            msg = str(e.strerror or e) if e.strerror else str(e)
            self._send_error(c, flags, e.errno or errno.EIO, msg)
            return True
        except Exception as e:
            self.stats.internal_errors += 1
            log.exception("sendto failed for client %s", c.name)
            self._send_error(c, flags, errno.EIO, f"internal error in tipcd: {e!r}")
            return True
        if not ok:
            self.stats.sends_blocked += 1
            if flags & P.SEND_NOWAIT:
                self._send_error(c, flags, errno.EAGAIN, "the destination cannot take more now")
                return True
            return False
        if flags & P.SEND_SYNC:
            self._reply(c)
        return True

    def _send_error(self, c: _Client, flags: int, err: int, msg: str) -> None:
        if flags & P.SEND_SYNC:
            self._error(c, err, msg)
        else:
            self.stats.async_errors += 1
            self._send(c, P.frame(P.E_ASYNCERR, P.err_body(err, msg)))

    def _op_consumed(self, c: _Client, body: memoryview) -> bool:
        nbytes, nmsgs = _unpack(P.II, body, "CONSUMED")
        try:
            self.layer.consumed(c.port, nbytes, self.runtime.now(), nmsgs)
        except OSError:
            pass
        except Exception:
            self.stats.internal_errors += 1
            log.exception("consumed failed")
        return True

    def _op_shutdown(self, c: _Client, body: memoryview) -> bool:
        how = _unpack(P.I32, body, "SHUTDOWN")[0]
        self._call(c, lambda: self.layer.shutdown(c.port, how, self.runtime.now()))
        return True

    def _op_setopt(self, c: _Client, body: memoryview) -> bool:
        opt, value = _unpack(P.IQ, body, "SETOPT")
        self._call(c, lambda: self.layer.setsockopt(c.port, opt, value))
        return True

    def _op_getopt(self, c: _Client, body: memoryview) -> bool:
        opt = _unpack(P.U32, body, "GETOPT")[0]
        v = self._call(c, lambda: self.layer.getsockopt(c.port, opt), reply=False)
        if v is not _FAILED:
            self._reply(c, P.Q64.pack(int(v)))
        return True

    def _op_sockname(self, c: _Client, body: memoryview) -> bool:
        v = self._call(c, lambda: self.layer.getsockname(c.port), reply=False)
        if v is not _FAILED:
            self._reply(c, from_layer(v))
        return True

    def _op_peername(self, c: _Client, body: memoryview) -> bool:
        v = self._call(c, lambda: self.layer.getpeername(c.port), reply=False)
        if v is not _FAILED:
            self._reply(c, from_layer(v))
        return True

    def _op_group_join(self, c: _Client, body: memoryview) -> bool:
        """setsockopt(TIPC_GROUP_JOIN): the struct's four words, as the client read
        them from the application's host-order struct."""
        words = _unpack(P.IIII_GROUP, body, "GROUPJOIN")
        req = GroupReq(*words)
        self._call(c, lambda: self.layer.join_group(c.port, req, self.runtime.now()))
        return True

    def _op_group_leave(self, c: _Client, body: memoryview) -> bool:
        self._call(c, lambda: self.layer.leave_group(c.port, self.runtime.now()))
        return True

    def _op_ping(self, c: _Client, body: memoryview) -> bool:
        self._reply(c, bytes(body[:64]))
        return True


class _Garbage(Exception):
    pass


_FAILED = object()


def _unpack(st: struct.Struct, body: memoryview, what: str) -> tuple[Any, ...]:
    if len(body) != st.size:
        raise _Garbage(f"{what} body of {len(body)} bytes, expected {st.size}")
    return st.unpack(body)

"""A TIPC node inside the application: the stack tipcd runs, in the caller's asyncio loop.

Why: through tipcd every message crosses four event loops (client -> tipcd -> UDP ->
tipcd -> client), each hop paying a wake-up, a frame encoding and a copy. An application
that is alone in its container (or that simply wants its own node) can run the node
itself: its sockets call the core :class:`~tipcpy.core.socket.SocketLayer` directly and
receive its events as Python objects -- no Unix socket, no second process, no frames::

    async with tipcpy.aio.Node(identity="n1", bearers=[
            "media udp name b0 localip 127.0.0.1 localport 7001 "
            "remoteip 127.0.0.1 remoteport 7002"]) as node:
        s = node.socket(SOCK_RDM)
        s.bind((TIPC_ADDR_NAMESEQ, 18888, 0, 99))
        data, addr = await s.recvfrom()

The socket methods and address tuples are those of :class:`tipcpy.aio.AsyncSocket`
(CPython's AF_TIPC tuples). The node can also serve a run dir (``serve_run_dir=``): then
other local processes (``tipcpy.socket``) and the ``tipc`` command use it exactly as
they use tipcd -- it *is* what tipcd runs (runtime/daemon.py builds one).

Trade-offs (also in tipcpy(7)): one process owns the node, so the node lives and dies
with the application (a crash takes the links down; peers see the node leave); protocol
timers share the GIL and the loop with the application (a loop blocked for longer than
the link tolerance loses the links); no privilege separation (a raw Ethernet bearer
needs CAP_NET_RAW in the application itself).

Scheduling: a socket call runs the layer at once and only *marks* the node dirty; the
transmits and events are flushed once per loop iteration (``loop.call_soon``), so a
burst of sends in one coroutine step becomes one flush, and received messages reach the
sockets in the callback that read the datagrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import shlex
import socket as _stdsocket
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from tipcpy import socket as tsocket
from tipcpy._topology import TopologyEvent, topology_events
from tipcpy.core.assembly import build_node
from tipcpy.core.socket import Accepted, Connected, ConnError, Deliver, SocketLayer, Wakeup
from tipcpy.core.stack import Stack
from tipcpy.runtime.clientsrv import ClientServer, to_layer
from tipcpy.runtime.config import DaemonConfig
from tipcpy.runtime.control import ControlServer
from tipcpy.runtime.ops import NodeOps
from tipcpy.runtime.ops.validate import parse_identity, parse_netid
from tipcpy.runtime.runtime import Runtime
from tipcpy.runtime.words import parse_media
from tipcpy.wire.consts import (
    TIPC_GROUP_JOIN,
    TIPC_GROUP_LEAVE,
    TIPC_IMPORTANCE,
    TIPC_SOCK_RECVQ_DEPTH,
    TIPC_SOCK_RECVQ_USED,
)

__all__ = ["Node", "NodeSocket", "build_stack"]

log = logging.getLogger("tipcpy.node")

_CONN_TYPES = (tsocket.SOCK_STREAM, tsocket.SOCK_SEQPACKET)
_SOL_TIPC = tsocket.SOL_TIPC
_SOL_SOCKET = tsocket.SOL_SOCKET
_SO_RCVBUF = tsocket.SO_RCVBUF
_ADDR_ID = tsocket.TIPC_ADDR_ID
_CONN_SHUTDOWN = 5                      # TIPC_CONN_SHUTDOWN error code
_ERRINFO = tsocket._ERRINFO
_DESTNAME = tsocket._DESTNAME
_parse_addr = tsocket.parse_addr
_LITTLE = sys.byteorder == "little"


def build_stack(config: DaemonConfig, rng: random.Random) -> Stack:
    """The protocol core of a node for ``config`` (raises ControlError for a bad identity
    or network id, before anything is built)."""
    netid = parse_netid(config.netid)
    node_id = parse_identity(config.identity) if config.identity else None
    stack = build_node(node_id, netid, rng)
    stack.probe_idle = config.probing != "silent"
    return stack


def _bearer_args(spec: str | dict[str, Any]) -> dict[str, Any]:
    """``tipc bearer enable`` words (as ``tipcd --bearer``) or the control-op dict."""
    if isinstance(spec, dict):
        return dict(spec)
    return parse_media(shlex.split(spec))


class Node:
    """One TIPC node run by this process's asyncio loop (see the module docstring).

    ``identity``/``netid``/``bearers`` are tipcd's ``--identity``/``--netid``/``--bearer``
    (bearers as ``tipc bearer enable`` words or control-op dicts); ``link`` the
    ``[link]`` defaults (priority, tolerance, window); ``seed`` makes port ids and the
    address trial reproducible. ``config`` gives all of that as a DaemonConfig instead.
    ``serve_run_dir``: also serve ``tipc.sock`` and ``ctl.sock`` there (what tipcd does).
    """

    def __init__(self, identity: str | None = None, netid: int = 4711,
                 bearers: Iterable[str | dict[str, Any]] = (), *,
                 serve_run_dir: str | os.PathLike[str] | None = None,
                 link: dict[str, int] | None = None, seed: int | None = None,
                 config: DaemonConfig | None = None) -> None:
        if config is None:
            config = DaemonConfig(identity=identity, netid=netid,
                                  bearers=[_bearer_args(b) for b in bearers],
                                  link=dict(link or {}), seed=seed)
            if serve_run_dir is not None:
                config.run_dir = Path(serve_run_dir)
        self.config = config
        self.serve_run_dir = Path(serve_run_dir) if serve_run_dir is not None else None
        self.runtime: Runtime | None = None
        self.ops: NodeOps | None = None
        self.clients: ClientServer | None = None
        self.control: ControlServer | None = None
        self._layer: SocketLayer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socks: dict[int, NodeSocket] = {}
        self._credit: set[NodeSocket] = set()
        self._flush_pending = False
        self._pumping = False
        self._sent_now = False      # a send pumped at once in this loop iteration
        self._dirty = False
        self._closed = False
        self.events_dropped = 0
        """Socket-layer events for a port nobody owns any more (a socket closed while
        messages were on the way); counted, dropped."""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Node:
        """Build the stack, enable the bearers, serve the run dir if asked."""
        if self.runtime is not None:
            raise RuntimeError("node already started")
        loop = self._loop = asyncio.get_running_loop()
        stack = build_stack(self.config, random.Random(self.config.seed))
        self._layer = stack.sockets
        rt = self.runtime = Runtime(stack, loop)
        rt.after_pump.append(self._on_pump)
        try:
            self.ops = NodeOps(self.config, rt)
            self.ops.apply_startup_config()
            if self.serve_run_dir is not None:
                await self._serve(self.serve_run_dir)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _serve(self, run_dir: Path) -> None:
        ctl = run_dir / "ctl.sock"
        if _in_use(ctl):
            raise OSError(errno.EADDRINUSE, f"a node already serves {run_dir} "
                          "(its ctl.sock answers)")
        assert self.runtime is not None and self.ops is not None
        # before ctl.sock: whoever sees ctl.sock can also open sockets
        self.clients = ClientServer(run_dir / "tipc.sock", self.runtime)
        await self.clients.start()
        # we take the layer's events and hand the client server those not ours
        with contextlib.suppress(ValueError):
            self.runtime.after_pump.remove(self.clients.drain_events)
        self.control = ControlServer(ctl, self.ops.dispatch, self.runtime.guard)
        self.runtime.stats_sources["clients"] = self.clients.stats.as_dict
        self.runtime.stats_sources["control"] = self.control.stats.as_dict
        await self.control.start()

    async def aclose(self) -> None:
        """Close every socket, stop serving, disable the bearers politely (peers see
        RESET with peer_stopping) and let those last packets go out."""
        if self._closed:
            return
        self._closed = True
        for s in list(self._socks.values()):
            s.close()
        if self.clients is not None:
            await self.clients.close()
        if self.control is not None:
            await self.control.close()
        if self.runtime is not None:
            self._flush()
            self.runtime.close()
            await asyncio.sleep(0)

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the node
    @property
    def stack(self) -> Stack:
        if self.runtime is None:
            raise RuntimeError("node not started")
        return self.runtime.stack

    @property
    def address(self) -> int:
        """The node's 32-bit address (0 until the address trial committed one)."""
        return int(self.stack.own_addr)

    def control_op(self, op: str, **args: Any) -> Any:
        """A ``tipc`` control op (``"link.list"``, ``"nametable.show"``,
        ``"bearer.enable"`` ...) with the arguments the CLI would send; the JSON value
        the CLI would format."""
        if self.ops is None:
            raise RuntimeError("node not started")
        try:
            return self.ops.dispatch(op, args)
        finally:
            self._touch()

    def enable_bearer(self, spec: str | dict[str, Any]) -> None:
        """``tipc bearer enable`` words (or the op's dict) on the running node."""
        self.control_op("bearer.enable", **_bearer_args(spec))

    def socket(self, type: int = tsocket.SOCK_RDM) -> NodeSocket:
        """A new socket (port) of this node."""
        if self._layer is None or self._closed:
            raise OSError(errno.ENETDOWN, "node is not running")
        port = self._layer.open(int(type), self._now())
        s = NodeSocket(self, port, int(type))
        self._socks[port] = s
        return s

    async def subscribe(self, type: int, lower: int = 0, upper: int = 0xFFFFFFFF, *,
                        filter: int = tsocket.TIPC_SUB_PORTS,
                        timeout_ms: int = tsocket.TIPC_WAIT_FOREVER, handle: bytes = b""
                        ) -> AsyncIterator[TopologyEvent]:
        """As :func:`tipcpy.aio.subscribe`, from this node's topology server."""
        async for ev in topology_events(self.socket(tsocket.SOCK_SEQPACKET), type, lower,
                                        upper, filter, timeout_ms, handle):
            yield ev

    # ------------------------------------------------------------------ plumbing
    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _touch(self) -> None:
        """The layer was called: flush its transmits and events once, soon."""
        self._dirty = True
        if not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _touch_credit(self) -> None:
        """A read: its credit goes to the layer with the flush at the end of this loop
        iteration (which pumps only if a connection socket was credited)."""
        if not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _touch_send(self) -> None:
        """A send: the first of a loop iteration goes out at once (a request or an
        answer does not wait for the next iteration); the ones after it in the same
        iteration are flushed together by the scheduled flush."""
        if not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_soon(self._flush)
        if self._sent_now or self._pumping:
            self._dirty = True
            return
        rt = self.runtime
        if rt is not None:
            self._sent_now = True
            self._pumping = True
            try:
                rt.pump()
            finally:
                self._pumping = False

    def _flush(self) -> None:
        self._flush_pending = False
        self._sent_now = False
        rt = self.runtime
        if rt is None:
            return
        if self._credit and self._give_credit():
            self._dirty = True
        if self._dirty:
            self._dirty = False
            rt.pump()

    def _give_credit(self) -> bool:
        """What the application read since the last flush, one consumed() per socket
        (frees receive buffer; CONN_ACK on connections). True if a connection socket
        was credited: only those can have something to send now (a CONN_ACK)."""
        layer = self._layer
        assert layer is not None
        now = self._now()
        socks, self._credit = self._credit, set()
        conn = False
        for s in socks:
            nb, nm = s._cbytes, s._cmsgs
            s._cbytes = s._cmsgs = 0
            if s.port in self._socks and (nb or nm):
                with contextlib.suppress(OSError):
                    layer.consumed(s.port, nb, now, nm)
                if s.type in _CONN_TYPES:
                    conn = True
        return conn

    def _on_pump(self) -> None:
        """Runtime.after_pump: the layer's events to our sockets; the rest to the client
        server (serving a run dir) or counted as dropped."""
        layer = self._layer
        if layer is None:
            return
        events: list[Any] = layer.take_events()
        if not events:
            return
        socks = self._socks
        if not socks and self.clients is not None:
            self.clients.handle_events(events)      # tipcd: every port is a client's
            return
        rest: list[Any] = []
        for ev in events:
            cls = type(ev)
            if cls is Deliver:
                s = socks.get(ev.port)
                if s is None:
                    rest.append(ev)
                    continue
                s._rx.append(ev)
                w = s._rwait
                if w is not None and not w.done():
                    w.set_result(None)
            elif cls is Accepted:
                s = socks.get(ev.listen_port)
                if s is None:
                    rest.append(ev)
                    continue
                ns = NodeSocket(self, ev.new_port, s.type)
                ns._state = "connected"
                ns._peer = (int(ev.peer[0]), int(ev.peer[1]))
                socks[ev.new_port] = ns
                s._accepts.append(ns)
                s._wake()
            else:
                s = socks.get(ev.port)
                if s is None:
                    rest.append(ev)
                    continue
                if cls is Connected:
                    s._state = "connected"
                    s._peer = (int(ev.peer[0]), int(ev.peer[1]))
                    s._wake()
                elif cls is ConnError:
                    s._on_connerr(int(ev.errno))
                elif cls is Wakeup:
                    w = s._wwait
                    if w is not None and not w.done():
                        w.set_result(None)
        if rest:
            if self.clients is not None:
                self.clients.handle_events(rest)
            else:
                for ev in rest:
                    if type(ev) is Accepted:
                        with contextlib.suppress(OSError):
                            layer.close(ev.new_port, self._now())
                self.events_dropped += len(rest)

    def _forget(self, s: NodeSocket) -> None:
        if self._socks.get(s.port) is s:
            del self._socks[s.port]
        self._credit.discard(s)


def _in_use(path: Path) -> bool:
    """Does a live node answer on this Unix socket?"""
    if not path.exists():
        return False
    c = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    try:
        c.settimeout(1.0)
        c.connect(str(path))
    except OSError:
        return False
    finally:
        c.close()
    return True


def _id_addr(src: tuple[int, int]) -> tuple[int, int, int, int, int]:
    """Layer (port, node) -> CPython's (TIPC_ADDR_ID, node, ref, 0, 0)."""
    return (_ADDR_ID, src[1], src[0], 0, 0)


class NodeSocket:
    """An AF_TIPC socket of an embedded :class:`Node`: the methods of
    :class:`tipcpy.aio.AsyncSocket`, calling the node's SocketLayer directly.

    Calls the kernel answers at once (bind, listen, options, a send that is not
    congested) are plain or never suspend; a send suspends only while the link or the
    connection window is congested, a receive only while nothing is queued.
    """

    __slots__ = ("node", "port", "type", "_layer", "_rx", "_off", "_rwait", "_wwait",
                 "_accepts", "_state", "_peer", "_err", "_eof", "_closed", "_cbytes",
                 "_cmsgs", "_last_dest", "_last_addr", "_local_opts")

    def __init__(self, node: Node, port: int, type: int) -> None:
        self.node = node
        self.port = port
        self.type = type
        assert node._layer is not None
        self._layer: SocketLayer = node._layer
        self._rx: deque[Deliver] = deque()
        self._off = 0                      # STREAM: bytes of _rx[0] already read
        self._rwait: asyncio.Future[None] | None = None
        self._wwait: asyncio.Future[None] | None = None
        self._accepts: deque[NodeSocket] = deque()
        self._state = "open"   # open, connecting, connected, listening, disconnected
        self._peer: tuple[int, int] | None = None
        self._err = 0          # connection error to raise once
        self._eof = False
        self._closed = False
        self._cbytes = 0
        self._cmsgs = 0
        self._last_dest: Any = None
        self._last_addr: Any = None
        self._local_opts: dict[tuple[int, int], int] = {}

    def __repr__(self) -> str:
        return f"<NodeSocket port={self.port} type={self.type} state={self._state}>"

    # -- plumbing -----------------------------------------------------------------------
    def _check(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "socket is closed")
        if self.node._closed:
            raise OSError(errno.ENETDOWN, "node is closed")

    def _addr(self, addr: Any, caller: str) -> tuple[int, ...] | None:
        if addr is self._last_dest and addr is not None:
            return self._last_addr    # type: ignore[no-any-return]
        atype, scope, a, b, c = _parse_addr(addr, caller)
        la = to_layer(atype, scope, a, b, c)
        self._last_dest, self._last_addr = addr, la
        return la

    def _wake(self) -> None:
        for w in (self._rwait, self._wwait):
            if w is not None and not w.done():
                w.set_result(None)

    async def _wait_read(self) -> None:
        loop = self.node._loop
        assert loop is not None
        fut = self._rwait = loop.create_future()
        try:
            await fut
        finally:
            self._rwait = None

    async def _wait_write(self) -> None:
        loop = self.node._loop
        assert loop is not None
        fut = self._wwait = loop.create_future()
        try:
            # a Wakeup is normally sent; the timeout only guards against a lost one
            await asyncio.wait_for(fut, 0.05)
        except TimeoutError:
            pass
        finally:
            self._wwait = None

    def _on_connerr(self, err: int) -> None:
        was = self._state
        self._state = "disconnected"
        if was == "connecting":
            self._err = err or errno.ECONNREFUSED
        elif err:
            self._err = err
        else:
            self._eof = True
        self._wake()

    # -- synchronous calls --------------------------------------------------------------
    def fileno(self) -> int:
        """-1: an embedded socket has no file descriptor (await its methods instead)."""
        return -1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        node = self.node
        node._forget(self)
        if not node._closed or node.runtime is not None:
            with contextlib.suppress(OSError):
                self._layer.close(self.port, node._now())
            node._touch()
        for s in self._accepts:
            s.close()
        self._accepts.clear()
        self._wake()

    async def __aenter__(self) -> NodeSocket:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def bind(self, addr: tuple[int, ...]) -> None:
        self._check()
        atype, scope, a, b, c = _parse_addr(addr, "bind")
        self._layer.bind(self.port, to_layer(atype, scope, a, b, c), self.node._now())
        self.node._touch()

    def listen(self, backlog: int = 128) -> None:
        self._check()
        self._layer.listen(self.port, backlog)
        self._state = "listening"

    def getsockname(self) -> tuple[int, ...]:
        self._check()
        _, ref, node, _ = self._layer.getsockname(self.port)
        return (_ADDR_ID, node, ref, 0, 0)

    def getpeername(self) -> tuple[int, ...]:
        self._check()
        _, ref, node, _ = self._layer.getpeername(self.port)
        return (_ADDR_ID, node, ref, 0, 0)

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        self._check()
        if isinstance(value, bytes | bytearray | memoryview):
            if len(value) < 4:
                raise OSError(errno.EINVAL, "option value must be at least 4 bytes")
            v = int.from_bytes(bytes(value)[:4], "little" if _LITTLE else "big")
        else:
            v = int(value)
        if level == _SOL_TIPC:
            if opt == TIPC_IMPORTANCE and not 0 <= v <= 3:
                raise OSError(errno.EINVAL, "importance must be 0..3")
            if opt in (TIPC_GROUP_JOIN, TIPC_GROUP_LEAVE):
                raise OSError(errno.ENOPROTOOPT, "communication groups are not available "
                              "on embedded sockets yet (use tipcpy.socket through "
                              "serve_run_dir)")
            self._layer.setsockopt(self.port, opt, v)
        elif level == _SOL_SOCKET:
            if opt == _SO_RCVBUF:
                self._layer.setsockopt(self.port, opt, v)
            self._local_opts[(level, opt)] = v
        else:
            raise OSError(errno.ENOPROTOOPT, f"AF_TIPC has no option level {level}")

    def getsockopt(self, level: int, opt: int) -> int:
        self._check()
        if level == _SOL_TIPC:
            if opt in (TIPC_SOCK_RECVQ_DEPTH, TIPC_SOCK_RECVQ_USED) \
                    and self in self.node._credit:
                self.node._give_credit()
            return int(self._layer.getsockopt(self.port, opt))
        if level == _SOL_SOCKET:
            if opt == _SO_RCVBUF:
                return int(self._layer.getsockopt(self.port, opt))
            if opt == tsocket.SO_TYPE:
                return self.type
            if opt == tsocket.SO_ERROR:
                v, self._err = self._err, 0
                return v
            return self._local_opts.get((level, opt), 0)
        raise OSError(errno.ENOPROTOOPT, f"AF_TIPC has no option level {level}")

    def shutdown(self, how: int = tsocket.SHUT_RDWR) -> None:
        self._check()
        self._layer.shutdown(self.port, tsocket.SHUT_RDWR, self.node._now())
        self.node._touch()
        if self.type in _CONN_TYPES:
            self._eof = True             # as tipcpy.socket: later reads give b""
            self._wake()

    # -- connections --------------------------------------------------------------------
    async def connect(self, addr: tuple[int, ...]) -> None:
        """RDM/DGRAM: default destination; SEQPACKET/STREAM: until connected (or
        ECONNREFUSED, ETIMEDOUT after TIPC_CONN_TIMEOUT)."""
        self._check()
        la = self._addr(addr, "connect")
        self._layer.connect(self.port, la, self.node._now())
        self.node._touch()
        if self.type not in _CONN_TYPES:
            return
        self._state = "connecting"
        while self._state == "connecting":
            await self._wait_read()
            self._check()
        if self._state != "connected":
            err, self._err = self._err or errno.ECONNREFUSED, 0
            raise OSError(err, f"connect: {os.strerror(err)}")

    async def accept(self) -> tuple[NodeSocket, tuple[int, ...]]:
        self._check()
        if self._state != "listening":
            raise OSError(errno.EINVAL, "accept() on a socket that is not listening")
        while not self._accepts:
            await self._wait_read()
            self._check()
        s = self._accepts.popleft()
        assert s._peer is not None
        return s, _id_addr(s._peer)

    # -- sending ------------------------------------------------------------------------
    async def sendto(self, data: Any, addr: tuple[int, ...]) -> int:
        self._check()
        la = self._addr(addr, "sendto")
        return await self._send(data, la)

    async def send(self, data: Any) -> int:
        self._check()
        return await self._send(data, None)

    async def sendall(self, data: Any) -> None:
        await self.send(data)

    async def _send(self, data: Any, la: tuple[int, ...] | None) -> int:
        node = self.node
        layer = self._layer
        while True:
            ok = layer.sendto(self.port, la, data, node._now())
            node._touch_send()
            if ok:
                if self.type in _CONN_TYPES and la is not None and self._state == "open":
                    self._state = "connecting"       # implicit connect (SYN + data)
                return len(data)
            await self._wait_write()
            self._check()

    # -- receiving ----------------------------------------------------------------------
    async def _next(self) -> Deliver | None:
        """The message to read from (None = orderly end of a connection)."""
        while not self._rx:
            self._check()
            if self.type in _CONN_TYPES:
                if self._err and self._state != "connecting":
                    err, self._err = self._err, 0
                    self._eof = True
                    raise OSError(err, os.strerror(err))
                if self._eof:
                    return None
                if self._state == "listening":
                    raise OSError(errno.ENOTCONN, "recv on a listening socket")
                if self._state == "open":
                    raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
            await self._wait_read()
        return self._rx[0]

    def _consume(self, ev: Deliver) -> None:
        self._rx.popleft()
        self._off = 0
        self._cbytes += len(ev.data)
        self._cmsgs += 1
        node = self.node
        node._credit.add(self)
        node._touch_credit()

    async def recvmsg(self, bufsize: int = 66000, ancbufsize: int = 2048
                      ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """(data, [(SOL_TIPC, TIPC_ERRINFO|TIPC_RETDATA|TIPC_DESTNAME, bytes)], flags,
        address), as :meth:`tipcpy.socket.socket.recvmsg`."""
        ev = await self._next()
        if ev is None:
            return b"", [], 0, None
        addr = _id_addr(ev.src)
        anc: list[tuple[int, int, bytes]] = []
        if ev.errcode:
            anc.append((_SOL_TIPC, tsocket.TIPC_ERRINFO,
                        _ERRINFO.pack(ev.errcode, len(ev.data))))
            if ev.data:
                anc.append((_SOL_TIPC, tsocket.TIPC_RETDATA, ev.data))
            if ev.dest is not None:
                anc.append((_SOL_TIPC, tsocket.TIPC_DESTNAME, _DESTNAME.pack(*ev.dest)))
            self._consume(ev)
            if self.type in _CONN_TYPES:
                self._eof = True
                self._state = "disconnected"
            return b"", anc if ancbufsize > 0 else [], 0, addr
        if ev.dest is not None and ancbufsize > 0:
            anc.append((_SOL_TIPC, tsocket.TIPC_DESTNAME, _DESTNAME.pack(*ev.dest)))
        data, flags = self._take(ev, bufsize)
        return data, anc, flags, addr

    def _take(self, ev: Deliver, bufsize: int) -> tuple[bytes, int]:
        if self.type == tsocket.SOCK_STREAM:
            off = self._off
            data = ev.data[off:off + bufsize]
            self._off = off + len(data)
            if self._off >= len(ev.data):
                self._consume(ev)
            return data, 0
        self._consume(ev)
        if len(ev.data) > bufsize:
            return ev.data[:bufsize], int(tsocket.MSG_TRUNC)
        return ev.data, 0

    async def recvfrom(self, bufsize: int = 66000) -> tuple[bytes, tuple[int, ...] | None]:
        rx = self._rx
        if rx:
            ev = rx[0]
            if not ev.errcode and self.type != tsocket.SOCK_STREAM:
                # the plain datagram: no ancillary, no stream offset
                rx.popleft()
                self._cbytes += len(ev.data)
                self._cmsgs += 1
                node = self.node
                node._credit.add(self)
                node._touch_credit()
                src = ev.src
                data = ev.data
                return (data if len(data) <= bufsize else data[:bufsize],
                        (_ADDR_ID, src[1], src[0], 0, 0))
        ev2 = await self._next()
        if ev2 is None:
            return b"", None
        if ev2.errcode:
            if self.type in _CONN_TYPES:
                self._consume(ev2)
                self._eof = True
                self._state = "disconnected"
                if ev2.errcode == _CONN_SHUTDOWN:
                    return b"", _id_addr(ev2.src)
                raise OSError(errno.ECONNRESET, "Connection reset by peer")
            self._consume(ev2)
            return b"", _id_addr(ev2.src)
        data, _ = self._take(ev2, bufsize)
        return data, _id_addr(ev2.src)

    async def recv(self, bufsize: int = 66000) -> bytes:
        rx = self._rx
        if rx and self.type != tsocket.SOCK_STREAM and not rx[0].errcode:
            ev = rx.popleft()               # recvfrom's plain-datagram case, inline
            data = ev.data
            self._cbytes += len(data)
            self._cmsgs += 1
            node = self.node
            node._credit.add(self)
            node._touch_credit()
            return data if len(data) <= bufsize else data[:bufsize]
        return (await self.recvfrom(bufsize))[0]

    def pending(self) -> int:
        """Messages queued for this socket (received, not yet read)."""
        return len(self._rx)


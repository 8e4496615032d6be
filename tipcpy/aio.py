"""asyncio TIPC sockets and topology subscriptions.

Why: TIPC's model (services come and go, you react to events) suits asyncio, and a
Python TIPC without an asyncio API would push everyone into threads. These are thin
wrappers over :mod:`tipcpy.socket` in non-blocking mode: every call first tries the
operation, and only when it would block waits for the connection to tipcd to become
readable/writable (``loop.add_reader``/``add_writer``) -- no threads, no polling. Calls
the local tipcd answers at once (bind, listen, options, the first send to a new
destination) wait for that answer in place, like a fast syscall (~0.1 ms)::

    s = tipcpy.aio.socket(SOCK_RDM)
    s.bind((TIPC_ADDR_NAMESEQ, 18888, 0, 99))
    data, addr = await s.recvfrom(1024)

    async for ev in tipcpy.aio.subscribe(18888, 0, 99):
        print(ev.event_name, ev.found_lower, ev.found_upper, hex(ev.node))

Communication groups (see tipcpy(7), GROUPS)::

    g = await tipcpy.aio.join_group(4711, 1)         # TIPC_GROUP_MEMBER_EVTS on
    async for ev in g.member_events():               # GroupMessage, event 1/2
        print("joined" if ev.joined else "left", ev.instance, hex(ev.node), ev.port)
    await g.send_bcast(b"to all")                   # and send_unicast/anycast/mcast
    msg = await g.recv_group()                      # data (or an event) in order
"""

from __future__ import annotations

import asyncio
import errno
import struct
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tipcpy import socket as tsocket
from tipcpy._topology import EVENT, SUBSCR, TopologyEvent, topology_events

if TYPE_CHECKING:
    from tipcpy.node import Node, NodeSocket

__all__ = ["AsyncSocket", "GroupMessage", "TopologyEvent", "join_group", "socket",
           "subscribe", "SUBSCR", "EVENT", "Node", "NodeSocket"]


class AsyncSocket:
    """An AF_TIPC socket for asyncio (wraps a non-blocking :class:`tipcpy.socket.socket`)."""

    def __init__(self, type: int = tsocket.SOCK_RDM, *, run_dir: str | None = None,
                 sock: tsocket.socket | None = None) -> None:
        self.sock = sock if sock is not None else tsocket.socket(tsocket.AF_TIPC, type,
                                                                 run_dir=run_dir)
        self.sock.setblocking(False)
        self.sock._group_pipelined = True
        self._run_dir = run_dir
        self._gbuf: deque[GroupMessage] = deque()  # group data read past by member_events

    # -- plumbing ----------------------------------------------------------------------
    async def _wait(self, write: bool) -> None:
        """Until tipcd's connection is readable (or writable); also flushes our unsent
        bytes meanwhile so a half-written message never sits still."""
        loop = asyncio.get_running_loop()
        fd = self.sock.fileno()
        if fd < 0:
            raise OSError(errno.EBADF, "socket is closed")
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        chan = self.sock._chan
        want_write = write or (chan is not None and chan.has_unsent())
        if want_write:
            loop.add_writer(fd, ready)
        if not write:
            loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            if want_write:
                loop.remove_writer(fd)
            if not write:
                loop.remove_reader(fd)
        if chan is not None and chan.has_unsent():
            chan.flush_nowait()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    async def __aenter__(self) -> AsyncSocket:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    # -- synchronous bits (answered by the local tipcd at once) -------------------------
    def bind(self, addr: tuple[int, ...]) -> None:
        self.sock.bind(addr)

    def listen(self, backlog: int = 128) -> None:
        self.sock.listen(backlog)

    def getsockname(self) -> tuple[int, ...]:
        return self.sock.getsockname()

    def getpeername(self) -> tuple[int, ...]:
        return self.sock.getpeername()

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        self.sock.setsockopt(level, opt, value)

    def getsockopt(self, level: int, opt: int) -> Any:
        return self.sock.getsockopt(level, opt)

    def shutdown(self, how: int = tsocket.SHUT_RDWR) -> None:
        self.sock.shutdown(how)

    # -- awaitables --------------------------------------------------------------------
    async def connect(self, addr: tuple[int, ...]) -> None:
        """RDM/DGRAM: default destination; SEQPACKET/STREAM: until Connected (or the
        kernel's errors: ECONNREFUSED, ETIMEDOUT after TIPC_CONN_TIMEOUT)."""
        err = self.sock.connect_ex(addr)
        while err == errno.EINPROGRESS:
            await self._wait(False)
            err = self.sock._wait_connected()
        if err:
            raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")

    async def accept(self) -> tuple[AsyncSocket, tuple[int, ...]]:
        while True:
            try:
                s, addr = self.sock.accept()
                return AsyncSocket(sock=s, run_dir=self._run_dir), addr
            except BlockingIOError:
                await self._wait(False)

    async def sendto(self, data: Any, addr: tuple[int, ...]) -> int:
        delay = 0.001
        while True:
            try:
                return self.sock.sendto(data, addr)
            except tsocket.GroupCongested:
                # a group send's first try to a destination, answered EAGAIN: the fd
                # is writable, so back off instead of spinning on it
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            except BlockingIOError:
                await self._wait(True)

    async def send(self, data: Any) -> int:
        delay = 0.001
        while True:
            try:
                return self.sock.send(data)
            except tsocket.GroupCongested:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            except BlockingIOError:
                await self._wait(True)

    async def sendall(self, data: Any) -> None:
        mv = memoryview(data).cast("B")
        if self.sock.type != tsocket.SOCK_STREAM:
            await self.send(mv)
            return
        off = 0
        while off < len(mv):
            off += await self.send(mv[off:])

    async def recv(self, bufsize: int = 66000) -> bytes:
        while True:
            try:
                return self.sock.recv(bufsize)
            except BlockingIOError:
                await self._wait(False)

    async def recvfrom(self, bufsize: int = 66000) -> tuple[bytes, tuple[int, ...] | None]:
        while True:
            try:
                return self.sock.recvfrom(bufsize)
            except BlockingIOError:
                await self._wait(False)

    async def recvmsg(self, bufsize: int = 66000, ancbufsize: int = 2048
                      ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        while True:
            try:
                return self.sock.recvmsg(bufsize, ancbufsize)
            except BlockingIOError:
                await self._wait(False)


    # -- communication groups ----------------------------------------------------------
    def join(self, type: int, instance: int, scope: int = tsocket.TIPC_CLUSTER_SCOPE,
             flags: int = tsocket.TIPC_GROUP_MEMBER_EVTS) -> None:
        """setsockopt(SOL_TIPC, TIPC_GROUP_JOIN, struct tipc_group_req)."""
        self.sock.setsockopt(tsocket.SOL_TIPC, tsocket.TIPC_GROUP_JOIN,
                             struct.pack("=IIII", type, instance, scope, flags))

    def leave(self) -> None:
        self.sock.setsockopt(tsocket.SOL_TIPC, tsocket.TIPC_GROUP_LEAVE, 0)

    async def _recv_group_raw(self) -> GroupMessage:
        while True:
            try:
                data, _anc, flags, addr = self.sock.recvmsg(66000)
            except BlockingIOError:
                await self._wait(False)
                continue
            member = getattr(addr, "member", None)
            if addr is None or member is None:
                raise OSError(errno.EINVAL, "not a group socket (join first)")
            evt = 0
            if flags & tsocket.MSG_OOB:
                evt = 2 if flags & tsocket.MSG_EOR else 1
            return GroupMessage(data, addr[1], addr[2], member[1], member[2], evt)

    async def recv_group(self) -> GroupMessage:
        """The next group message or member event, in the order the group delivers
        them (data that :meth:`member_events` read past first)."""
        if self._gbuf:
            return self._gbuf.popleft()
        return await self._recv_group_raw()

    async def member_events(self) -> AsyncIterator[GroupMessage]:
        """Member joins and leaves (needs TIPC_GROUP_MEMBER_EVTS, the default of
        :meth:`join`); group data arriving meanwhile waits for :meth:`recv_group`."""
        while True:
            for i, m in enumerate(self._gbuf):
                if m.event:
                    del self._gbuf[i]
                    yield m
                    break
            else:
                m = await self._recv_group_raw()
                if m.event:
                    yield m
                else:
                    self._gbuf.append(m)

    async def send_bcast(self, data: Any) -> int:
        """Group broadcast: every other member (send() without an address)."""
        return await self.send(data)

    async def send_unicast(self, addr: tuple[int, ...], data: Any) -> int:
        """Group unicast to a member's socket address (TIPC_ADDR_ID tuple)."""
        return await self.sendto(data, addr)

    async def send_anycast(self, instance: int, data: Any) -> int:
        """Group anycast: one member with ``instance`` (round robin)."""
        t = self.sock.getsockopt(tsocket.SOL_TIPC, tsocket.TIPC_GROUP_JOIN)
        return await self.sendto(data, (tsocket.TIPC_ADDR_NAME, t, instance, 0))

    async def send_mcast(self, lower: int, upper: int, data: Any) -> int:
        """Group multicast: as the kernel, the members whose instance is ``lower``."""
        t = self.sock.getsockopt(tsocket.SOL_TIPC, tsocket.TIPC_GROUP_JOIN)
        return await self.sendto(data, (tsocket.TIPC_ADDR_NAMESEQ, t, lower, upper))


@dataclass(frozen=True)
class GroupMessage:
    """A message or member event on a group socket: ``event`` 0 = data, 1 = the
    member joined, 2 = it left; ``node``/``port`` its socket, ``type``/``instance`` its
    service (the two addresses of the kernel's recvmsg)."""

    data: bytes
    node: int
    port: int
    type: int
    instance: int
    event: int = 0

    @property
    def joined(self) -> bool:
        return self.event == 1

    @property
    def left(self) -> bool:
        return self.event == 2


async def join_group(type: int, instance: int, scope: int = tsocket.TIPC_CLUSTER_SCOPE,
                     flags: int = tsocket.TIPC_GROUP_MEMBER_EVTS, *,
                     run_dir: str | None = None) -> AsyncSocket:
    """A new RDM socket that joined group ``type`` as ``instance``."""
    s = AsyncSocket(tsocket.SOCK_RDM, run_dir=run_dir)
    try:
        s.join(type, instance, scope, flags)
    except BaseException:
        s.close()
        raise
    return s


def socket(type: int = tsocket.SOCK_RDM, *, run_dir: str | None = None) -> AsyncSocket:
    """A new asyncio AF_TIPC socket of ``type`` on the local tipcd."""
    return AsyncSocket(type, run_dir=run_dir)




async def subscribe(type: int, lower: int = 0, upper: int = 0xFFFFFFFF, *,
                    filter: int = tsocket.TIPC_SUB_PORTS,
                    timeout_ms: int = tsocket.TIPC_WAIT_FOREVER, handle: bytes = b"",
                    run_dir: str | None = None) -> AsyncIterator[TopologyEvent]:
    """Events for bindings of ``{type, lower..upper}`` (existing ones first), from the
    topology server ``{TIPC_TOP_SRV, TIPC_TOP_SRV}`` over SEQPACKET.

    ``type=0`` (TIPC_NODE_STATE) reports nodes, ``type=2`` (TIPC_LINK_STATE) links. Ends
    after a TIPC_SUBSCR_TIMEOUT event or when the server closes the connection.
    """
    async for ev in topology_events(AsyncSocket(tsocket.SOCK_SEQPACKET, run_dir=run_dir),
                                    type, lower, upper, filter, timeout_ms, handle):
        yield ev


def __getattr__(name: str) -> Any:
    """``tipcpy.aio.Node``/``NodeSocket``: the embedded node (tipcpy/node.py), imported on
    first use (it imports this module for the topology structs)."""
    if name in ("Node", "NodeSocket"):
        from tipcpy import node

        return getattr(node, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

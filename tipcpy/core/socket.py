"""Sockets (ports) inside the node: the kernel's net/tipc/socket.c without the syscalls.

Why this module exists: applications talk to tipcd over a Unix socket (the client
transport, ``tipcpy/runtime/clientsrv.py``); every application socket is a *port* here.
This layer turns socket calls into TIPC data messages that are byte-for-byte what a
Linux kernel socket sends (§2.13 of the reference), and turns arriving messages into
small events for the client transport. It is sans-IO: ``now`` comes in, nothing sleeps,
port ids come from the stack's ``random.Random``.

Driving contract (see docs/HACKING.md, "Socket layer contract"):

* every call the kernel fails synchronously raises ``OSError(errno, text)``;
* ``sendto()`` returns False when the port cannot take more now (link congested or the
  connection's send window full); a :class:`Wakeup` follows when it can. As the kernel
  ("oversubscription of one message per source"), a send that *starts* while the port is
  free is always accepted whole - also a STREAM write split into several messages or a
  multicast to many nodes - and the parts that do not fit wait in the port's queue;
* the client reports what the application has read with ``consumed()``: that frees the
  receive buffer (``rcvbuf`` limits) and drives the connection flow control (CONN_ACK);
* ``take_events()`` returns :class:`Deliver`, :class:`Connected`, :class:`Accepted`,
  :class:`ConnError`, :class:`Wakeup` and (group members) :class:`GroupData` in the
  order they happened;
* groups (``join_group``/``leave_group`` or setsockopt TIPC_GROUP_JOIN/LEAVE): the
  protocol is :mod:`tipcpy.core.group`'s; this layer feeds it the name table's
  changes (an observer: its output is carried out at the next call or tick, never
  inside the table's update), GROUP_PROTOCOL and group data, and carries out what it
  decides.

Addresses are the AF_TIPC tuples in ``struct sockaddr_tipc`` word order:
``(TIPC_ADDR_NAMESEQ, type, lower, upper[, scope])``, ``(TIPC_ADDR_NAME, type, instance,
domain[, scope])`` and ``(TIPC_ADDR_ID, ref, node[, scope])`` (a 5-tuple
``(TIPC_ADDR_ID, ref, node, 0, scope)`` is accepted too). CPython's own tuple for
TIPC_ADDR_ID is ``(3, node, ref, 0, scope)``; the client library converts.

Deliberate differences from the kernel (all invisible on the wire):

* a SYN arriving on a listening port creates the connection at once (:class:`Accepted`,
  and the ACK goes out) instead of waiting for ``accept()``; the client keeps the
  accepted connections until the application asks;
* multicast goes on the broadcast link or by replicast (one copy per node) as the
  node's method selection says (core/bcast.py; TIPC_MCAST_BROADCAST /
  TIPC_MCAST_REPLICAST mandate one per socket);
* no Nagle, no hourly connection probing (probes from kernel peers are answered);
* communication groups (TIPC_GROUP_JOIN, :mod:`tipcpy.core.group`) only on RDM/DGRAM
  ports (EINVAL on connection sockets); group data and member events come out as
  :class:`GroupData` events; a group broadcast always goes by replicast;
* the receive buffer counts payload bytes not yet ``consumed()``, not skb truesize.
"""

from __future__ import annotations

import errno
import heapq
import random
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from tipcpy.core._event import SlotEvent
from tipcpy.core.bcast import McMethod, build_mcast_sync
from tipcpy.core.group import (
    Group,
    GroupDeliver,
    GroupReq,
    GroupWakeup,
    MemberEvent,
)
from tipcpy.core.link import LinkWakeup
from tipcpy.core.name_table import NameTable, Publication, check_bind
from tipcpy.core.node import NodeDown
from tipcpy.core.topsrv import TopSrv
from tipcpy.wire.consts import (
    FLOWCTL_BLK_SZ,
    FLOWCTL_MSG_WIN,
    MAX_FORWARD_SIZE,
    RCVBUF_DEF,
    RCVBUF_MAX,
    RCVBUF_MIN,
    TIPC_ACK_RATE,
    TIPC_CLUSTER_SCOPE,
    TIPC_CONN_TIMEOUT,
    TIPC_CONN_TIMEOUT_MS,
    TIPC_DEST_DROPPABLE,
    TIPC_GROUP_JOIN,
    TIPC_GROUP_LEAVE,
    TIPC_IMPORTANCE,
    TIPC_MAX_USER_MSG_SIZE,
    TIPC_MCAST_BROADCAST,
    TIPC_MCAST_REPLICAST,
    TIPC_NODE_RECVQ_DEPTH,
    TIPC_NODE_SCOPE,
    TIPC_NODELAY,
    TIPC_SOCK_RECVQ_DEPTH,
    TIPC_SOCK_RECVQ_USED,
    TIPC_SRC_DROPPABLE,
    TIPC_TOP_SRV,
    Cap,
    ConnMgrType,
    DataType,
    ErrCode,
    User,
)
from tipcpy.wire.msg import ConnMgrMsg, DataMsg, Msg

DeliverFn = Callable[[int, Msg, float], None]
ListenerFn = Callable[[object, float], None]


class Timed(Protocol):
    def next_deadline(self) -> float | None: ...

    def tick(self, now: float) -> None: ...


class NodeServices(Protocol):
    """What the socket layer uses of the node below it - all of it.  The Stack
    satisfies it; the layer never names the Stack, so either can be built and tested
    without the other (tests/unit/test_socket_core.py fakes parts of it)."""

    @property
    def rng(self) -> random.Random: ...
    @property
    def own_addr(self) -> int: ...
    @property
    def name_table(self) -> NameTable: ...
    @property
    def topsrv(self) -> TopSrv: ...

    def register_user(self, users: int | Iterable[int], fn: DeliverFn) -> None: ...
    def add_listener(self, fn: ListenerFn) -> None: ...
    def add_timer(self, owner: Timed) -> None: ...
    def touch_upper(self) -> None: ...
    def send_to_node(self, node_addr: int, msg: Msg, selector: int, now: float) -> bool: ...
    def node_is_up(self, addr: int) -> bool: ...
    def node_caps(self, addr: int) -> int: ...
    def publish(self, publ: Publication, now: float) -> None: ...
    def withdraw(self, publ: Publication, now: float) -> None: ...

__all__ = [
    "SocketLayer",
    "Deliver",
    "Connected",
    "Accepted",
    "ConnError",
    "Wakeup",
    "GroupData",
    "SockEvent",
    "SOCK_STREAM",
    "SOCK_DGRAM",
    "SOCK_RDM",
    "SOCK_SEQPACKET",
    "TIPC_ADDR_NAMESEQ",
    "TIPC_ADDR_NAME",
    "TIPC_ADDR_ID",
    "TIPC_IMPORTANCE",
    "TIPC_SRC_DROPPABLE",
    "TIPC_DEST_DROPPABLE",
    "TIPC_CONN_TIMEOUT",
    "TIPC_NODE_RECVQ_DEPTH",
    "TIPC_SOCK_RECVQ_DEPTH",
    "TIPC_MCAST_BROADCAST",
    "TIPC_MCAST_REPLICAST",
    "TIPC_GROUP_JOIN",
    "TIPC_GROUP_LEAVE",
    "TIPC_SOCK_RECVQ_USED",
    "TIPC_NODELAY",
    "SO_RCVBUF",
    "SHUT_RDWR",
    "State",
]

# ---------------------------------------------------------------- numbers (uapi, Linux)
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RDM = 4
SOCK_SEQPACKET = 5
TIPC_ADDR_NAMESEQ = 1  # = TIPC_SERVICE_RANGE
TIPC_ADDR_NAME = 2  # = TIPC_SERVICE_ADDR
TIPC_ADDR_ID = 3  # = TIPC_SOCKET_ADDR

SO_RCVBUF = 8  # SOL_SOCKET level; the only non-SOL_TIPC option this layer keeps
SHUT_RDWR = 2

_CONN_TYPES = (SOCK_STREAM, SOCK_SEQPACKET)
_ALL_TYPES = (SOCK_STREAM, SOCK_DGRAM, SOCK_RDM, SOCK_SEQPACKET)
_TOP_SRV_CAPS = 0xFFF  # tipc_node_get_capabilities(own node) = TIPC_NODE_CAPABILITIES
_CONN, _MCAST, _NAMED, _DIRECT = DataType.CONN, DataType.MCAST, DataType.NAMED, DataType.DIRECT
_NO_NAME = int(ErrCode.TIPC_ERR_NO_NAME)
_NO_PORT = int(ErrCode.TIPC_ERR_NO_PORT)
_OVERLOAD = int(ErrCode.TIPC_ERR_OVERLOAD)
_SHUTDOWN = int(ErrCode.TIPC_CONN_SHUTDOWN)
_CONN_MANAGER = int(User.CONN_MANAGER)
_GROUP_PROTOCOL = int(User.GROUP_PROTOCOL)
_GRP_EVT, _GRP_BCAST, _GRP_MCAST, _GRP_UCAST = 4, 5, 6, 7
_VER = 2 << 29
_D_BIT = 1 << 19  # dest_droppable
_S_BIT = 1 << 18  # src_droppable / is_rcast
_BCAST_DEST = -1  # a txq entry for the broadcast link (no node address is negative)
_Y_BIT = 1 << 17  # syn
_U32 = 0xFFFFFFFF
FLOWCTL_MSG_LIM = FLOWCTL_MSG_WIN * 2048  # legacy peers: receive limit of a connection


class State:
    """Kernel socket states (TIPC_OPEN ... TIPC_DISCONNECTING), as names."""

    OPEN = "OPEN"
    LISTEN = "LISTEN"
    CONNECTING = "CONNECTING"
    ESTABLISHED = "ESTABLISHED"
    DISCONNECTING = "DISCONNECTING"


# ---------------------------------------------------------------- events
# Plain slots classes rather than frozen dataclasses: one Deliver per received message
# (see core/_event.py); same names, fields, defaults, equality and repr.
class Deliver(SlotEvent):
    """A message for the application on ``port``.

    ``src`` = ``(port, node)`` of the sender (for a returned message: the port it was
    sent to and the node that returned it). ``dest`` = the service name it was sent to
    (``(type, instance, instance)`` for anycast and named connections, the range for
    multicast) -> TIPC_DESTNAME; None for socket-addressed messages. ``errcode`` != 0
    with ``returned`` = our own message came back undelivered -> TIPC_ERRINFO and
    TIPC_RETDATA (``data``, at most 1024 bytes). ``syn`` marks the data that came with
    a connection's SYN (first message of an accepted connection)."""

    __slots__ = ("port", "data", "src", "dest", "errcode", "returned", "syn")
    port: int
    data: bytes
    src: tuple[int, int]
    dest: tuple[int, int, int] | None
    errcode: int
    returned: bool
    syn: bool

    def __init__(self, port: int, data: bytes, src: tuple[int, int],
                 dest: tuple[int, int, int] | None = None, errcode: int = 0,
                 returned: bool = False, syn: bool = False) -> None:
        self.port = port
        self.data = data
        self.src = src
        self.dest = dest
        self.errcode = errcode
        self.returned = returned
        self.syn = syn


class Connected(SlotEvent):
    """connect() (or an implicit connect by sendto) completed: ``peer`` = (port, node)."""

    __slots__ = ("port", "peer")

    def __init__(self, port: int, peer: tuple[int, int]) -> None:
        self.port = port
        self.peer = peer


class Accepted(SlotEvent):
    """A SYN reached listening port ``listen_port``; ``new_port`` is the connected port
    the application gets from accept()."""

    __slots__ = ("listen_port", "new_port", "peer")

    def __init__(self, listen_port: int, new_port: int, peer: tuple[int, int]) -> None:
        self.listen_port = listen_port
        self.new_port = new_port
        self.peer = peer


class ConnError(SlotEvent):
    """The connection on ``port`` ended: ECONNREFUSED (SYN rejected), ECONNRESET (peer
    closed, peer node lost, message rejected), ETIMEDOUT (connect timeout), or 0 = EOF
    (peer did shutdown(SHUT_RDWR))."""

    __slots__ = ("port", "errno")

    def __init__(self, port: int, errno: int) -> None:
        self.port = port
        self.errno = errno


class Wakeup(SlotEvent):
    """``port`` can send again after sendto() returned False."""

    __slots__ = ("port",)

    def __init__(self, port: int) -> None:
        self.port = port


class GroupData(SlotEvent):
    """A group message or member event for ``port`` (a port that joined a group).

    ``src`` = the member's socket ``(port, node)``; ``member`` = its ``(type,
    instance)`` (recvmsg's second address). ``evt`` 0 = data; 1 = the member joined,
    2 = it left: the kernel delivers those as empty messages with MSG_OOB (and MSG_EOR
    for a leave)."""

    __slots__ = ("port", "data", "src", "member", "evt")

    def __init__(self, port: int, data: bytes, src: tuple[int, int],
                 member: tuple[int, int], evt: int = 0) -> None:
        self.port = port
        self.data = data
        self.src = src
        self.member = member
        self.evt = evt


SockEvent = Deliver | Connected | Accepted | ConnError | Wakeup | GroupData


# ---------------------------------------------------------------- port
class _Port:
    """One socket (kernel ``struct tipc_sock``)."""

    __slots__ = (
        "port", "sotype", "conn", "state", "imp", "flags", "conn_timeout", "rcvbuf",
        "publs", "pub_count", "peer_port", "peer_node", "conn_name", "default_dest",
        "rcvq", "rcv_used", "rcv_unacked", "rcv_win", "snd_win", "snt_unacked", "block",
        "txq", "want_wakeup", "link_cong", "syn_clone", "conn_deadline", "retry_at",
        "closing", "fin_err", "drops", "role", "shut", "grp", "grp_blocked", "mc_method",
    )  # fmt: skip

    def __init__(self, port: int, sotype: int) -> None:
        self.port = port
        self.mc_method = McMethod()  # kernel tsk->mc_method: broadcast link or replicast
        self.sotype = sotype
        self.conn = sotype in _CONN_TYPES
        self.state = State.OPEN
        self.imp = 0
        # RDM/DGRAM are unreturnable (dest_droppable); DGRAM also unreliable
        self.flags = 0 if self.conn else _D_BIT | (_S_BIT if sotype == SOCK_DGRAM else 0)
        self.conn_timeout = TIPC_CONN_TIMEOUT_MS
        self.rcvbuf = RCVBUF_DEF
        self.publs: list[Publication] = []
        self.pub_count = 0
        self.peer_port = 0
        self.peer_node = 0
        self.conn_name: tuple[int, int] | None = None
        self.default_dest: tuple[Any, ...] | None = None
        self.rcvq: deque[list[int]] = deque()  # [undelivered bytes left, blocks]
        self.rcv_used = 0
        # kernel: snd_win = rcv_win = tsk_adv_blocks(RCVBUF_MIN) until the first CONN_ACK
        self.rcv_win = RCVBUF_MIN // FLOWCTL_BLK_SZ // 4
        self.snd_win = self.rcv_win
        self.rcv_unacked = 0
        self.snt_unacked = 0
        self.block = True  # peer has TIPC_BLOCK_FLOWCTL
        self.txq: deque[tuple[int, Msg, int]] = deque()  # (dnode, msg, blocks)
        self.want_wakeup = False
        self.link_cong = False
        self.syn_clone: tuple[int, Msg] | None = None
        self.conn_deadline: float | None = None
        self.retry_at: float | None = None
        self.closing = False
        self.fin_err = -1  # FIN to send once txq drained (-1: none)
        self.drops = 0
        self.role = ""  # "", "topsrv" (listening server port) or "topsrv-conn"
        self.shut = False
        self.grp: Group | None = None  # TIPC_GROUP_JOIN (kernel tsk->group)
        self.grp_blocked = False  # a group send waits for a GroupWakeup

    def blocks(self, nbytes: int) -> int:
        """kernel tsk_inc(): flow-control units for a message of nbytes (hdr + data)."""
        return nbytes // FLOWCTL_BLK_SZ + 1 if self.block else 1


def _reverse(msg: Msg, err: int, own: int) -> Msg | None:
    """kernel tipc_msg_reverse(): the rejected message turned back to its sender with
    ``err``; None when it must just be dropped (dest_droppable, or already an error)."""
    w = msg.w
    if w[0] & _D_BIT or (w[1] >> 25) & 0xF:
        return None
    data = msg.data[:MAX_FORWARD_SIZE]
    if w[0] & _Y_BIT and err == _OVERLOAD:
        data = b""  # the SYN+ sender keeps a clone
    nw = list(w)
    if len(nw) < 8:  # never return a SHORT header (nor a 28-byte one: no destnode word)
        nw += [0] * (8 - len(nw))
        nw[0] = (nw[0] & ~(0xF << 21)) | (8 << 21)
    hs = len(nw) * 4
    nw[0] = (nw[0] & ~0x1FFFF & ~(1 << 20)) | (hs + len(data))  # size, non_seq 0
    nw[1] = (nw[1] & ~(0xF << 25)) | (err << 25)
    nw[4], nw[5] = w[5], w[4]  # origport <-> destport
    nw[7] = w[3]  # destnode = prevnode
    nw[3] = own
    nw[6] = own
    return type(msg)(nw, data)


# ---------------------------------------------------------------- the layer
class SocketLayer:
    """All ports of one node, on top of the node's :class:`NodeServices` (built by
    ``tipcpy.core.assembly.build_node``); registers itself for data users 0-3,
    CONN_MANAGER and GROUP_PROTOCOL, as a name-table observer (groups), as a listener
    for NodeDown / LinkWakeup, and for the node's timer."""

    fast_local = True
    """RDM/DGRAM to a port of this node skip building the TIPC message when nothing
    observable depends on it (see _send_connless); False = always the message path
    (tests compare the two)."""

    def __init__(self, stack: NodeServices) -> None:
        self.stack = stack
        self.rng = stack.rng
        self.table = stack.name_table
        self._ports: dict[int, _Port] = {}
        self._events: list[SockEvent] = []
        self._lq: deque[Msg] = deque()  # node-local deliveries, processed by _run()
        self._running = False
        self._now = 0.0
        self._timers: list[tuple[float, int, int]] = []  # (deadline, seq, port)
        self._tseq = 0
        self._conns: dict[int, set[int]] = {}  # peer node -> connected ports
        self._cong: set[int] = set()  # ports waiting for a link to drain
        self._ua_cache: dict[tuple[Any, ...], tuple[int, int, int, int]] = {}
        self.counters: dict[str, int] = {
            "rx": 0, "tx": 0, "rejected": 0, "dropped": 0, "rerouted": 0,
            "overload": 0, "no_port": 0, "link_cong": 0, "unreachable": 0, "errors": 0,
            "grp_join_refused": 0, "grp_not_joined": 0, "grp_no_group": 0,
            "grp_not_member": 0,
        }  # fmt: skip
        self._grp_types: dict[int, set[int]] = {}  # group type -> member ports here
        self._gdirty: set[int] = set()  # ports whose Group has output or events
        self._grp_own = stack.own_addr  # the node address the groups were told
        self.swallowed: dict[str, int] = {}
        """Exceptions _stack_rcv caught, by kind: each is a bug (the simulator tests
        assert this stays empty); counted so that one bad message cannot stop the node."""
        self.last_error: Exception | None = None
        stack.register_user((0, 1, 2, 3, _CONN_MANAGER, _GROUP_PROTOCOL), self._stack_rcv)
        self.table.add_observer(self._name_obs)
        stack.add_listener(self._stack_event)
        stack.add_timer(self)
        # the topology server core is the node's (it ticks it and keeps its address);
        # we own its connections
        self.topsrv: TopSrv = stack.topsrv
        self.topsrv_port = 0
        self._open_topsrv()

    # ============================================================ public API
    def open(self, sotype: int, now: float) -> int:
        """socket(AF_TIPC, sotype): a new port with a random id (kernel tipc_sk_insert)."""
        if sotype not in _ALL_TYPES:
            raise OSError(errno.EPROTOTYPE, f"socket type {sotype} not supported by TIPC")
        self._now = now
        port = self._new_port_id()
        self._ports[port] = _Port(port, sotype)
        return port

    def close(self, port: int, now: float) -> None:
        """close(): FIN to a connected (or connecting) peer, bindings withdrawn. Data
        already accepted by sendto() still goes out first (the kernel's close waits for
        the window too), for at most the connect timeout."""
        p = self._port(port)
        self._now = now
        if p.grp is not None:
            self._leave(p, now)
        for pub in p.publs:
            self.stack.withdraw(pub, now)
        p.publs.clear()
        if p.fin_err >= 0:  # shutdown() is still waiting for queued data: linger on
            p.closing = True
            self._run(now)
            return
        if p.state in (State.CONNECTING, State.ESTABLISHED) and not p.shut:
            if p.txq and p.state == State.ESTABLISHED:
                p.closing = True
                p.fin_err = _NO_PORT
                self._arm(p, now + TIPC_CONN_TIMEOUT_MS / 1000.0, conn=True)
                self._run(now)
                return
            self._send_fin(p, _NO_PORT, now)
        self._remove(p)
        self._run(now)

    def withdraw_some(self, port: int, limit: int, now: float) -> int:
        """Withdraw up to ``limit`` of the port's bindings (the oldest first) and
        return how many remain: lets the runtime spread the withdrawals of a port with
        tens of thousands of bindings over several loop turns before close()."""
        p = self._port(port)
        self._now = now
        publs = p.publs
        chunk = publs[:limit]            # in bind order, as close() withdraws them
        del publs[:limit]
        for pub in chunk:
            self.stack.withdraw(pub, now)
        self._run(now)
        return len(publs)

    def bind(self, port: int, addr: tuple[Any, ...] | None, now: float) -> None:
        """bind(): publish a service range; negative scope = unbind that range; None or
        ``()`` = unbind everything (alen 0)."""
        p = self._port(port)
        self._now = now
        if p.grp is not None:
            raise OSError(errno.EACCES, "a group member cannot bind (kernel tipc_bind)")
        if not addr:
            self._withdraw(p, None, now)
            return
        atype = addr[0]
        if atype == TIPC_ADDR_ID:
            raise OSError(errno.EAFNOSUPPORT, "cannot bind to a socket address")
        if atype == TIPC_ADDR_NAMESEQ:
            typ, lower, upper = self._words(addr)
        elif atype == TIPC_ADDR_NAME:
            typ, lower, _ = self._words(addr)
            upper = lower
        else:
            raise OSError(errno.EINVAL, f"bad address type {atype!r}")
        scope = addr[4] if len(addr) > 4 else TIPC_CLUSTER_SCOPE
        if not isinstance(scope, int) or not -255 <= scope <= 255:
            raise OSError(errno.EINVAL, f"bad scope {scope!r}")
        if lower > upper:
            raise OSError(errno.EINVAL, f"bind: lower {lower} > upper {upper}")
        if typ < 64 and p.role != "topsrv":
            raise OSError(errno.EACCES, f"bind: service type {typ} is reserved (< 64)")
        unbind = scope < 0
        scope = -scope if unbind else scope
        if scope != TIPC_NODE_SCOPE:
            scope = TIPC_CLUSTER_SCOPE  # 0, zone (1) and anything else: cluster
        if unbind:
            self._withdraw(p, (scope, typ, lower, upper), now)
            return
        self._publish(p, typ, lower, upper, scope, now)

    def connect(self, port: int, addr: tuple[Any, ...] | None, now: float) -> None:
        """connect(): SEQPACKET/STREAM send an empty SYN (result: Connected/ConnError);
        RDM/DGRAM only remember a default destination (None = forget it)."""
        p = self._port(port)
        self._now = now
        if p.grp is not None:
            raise OSError(errno.EINVAL, "a group member cannot connect")
        if not p.conn:
            if not addr:
                p.default_dest = None
                return
            p.default_dest = self._check_addr(addr)
            return
        if not addr:
            raise OSError(errno.EINVAL, "connection sockets need an address")
        ua = self._check_addr(addr)
        if ua[0] == TIPC_ADDR_NAMESEQ:
            raise OSError(errno.EINVAL, "cannot connect to a service range")
        if p.state == State.CONNECTING:
            raise OSError(errno.EALREADY, "connection already in progress")
        if p.state == State.ESTABLISHED:
            raise OSError(errno.EISCONN, "already connected")
        if p.state != State.OPEN:
            raise OSError(errno.EINVAL, f"cannot connect in state {p.state}")
        self._send_syn(p, ua, b"", now)
        self._run(now)

    def listen(self, port: int, backlog: int = 0) -> None:
        """listen(): only from OPEN, only connection sockets."""
        p = self._port(port)
        if not p.conn:
            raise OSError(errno.EOPNOTSUPP, "listen() needs SOCK_STREAM or SOCK_SEQPACKET")
        if p.state != State.OPEN:
            raise OSError(errno.EINVAL, f"cannot listen in state {p.state}")
        p.state = State.LISTEN

    def sendto(self, port: int, addr: tuple[Any, ...] | None, data: bytes, now: float) -> bool:
        """send()/sendto(). True = accepted (maybe still queued behind a congested link
        or a full connection window); False = not accepted, retry after Wakeup(port)."""
        p = self._port(port)
        self._now = now
        data = bytes(data)
        if p.grp is not None:
            return self._send_group(p, addr, data, now)
        if p.conn:
            st = p.state
            if st == State.OPEN:
                if not addr:
                    raise OSError(errno.ENOTCONN, "not connected")
                if p.txq:
                    p.want_wakeup = True
                    return False
                ua = self._check_addr(addr)
                if ua[0] == TIPC_ADDR_NAMESEQ:
                    raise OSError(errno.EINVAL, "cannot connect to a service range")
                if len(data) > TIPC_MAX_USER_MSG_SIZE:
                    raise OSError(errno.EMSGSIZE, f"message > {TIPC_MAX_USER_MSG_SIZE} bytes")
                self._send_syn(p, ua, data, now)  # implicit connect: SYN + data
                self._run(now)
                return True
            if st == State.LISTEN:
                if addr:
                    raise OSError(errno.EPIPE, "socket is listening")
                raise OSError(errno.ENOTCONN, "socket is listening")
            if st == State.DISCONNECTING or p.shut or p.closing:
                raise OSError(errno.EPIPE, "connection is closed")
            if st == State.CONNECTING:
                raise OSError(errno.ENOTCONN, "connection not yet established")
            if p.sotype == SOCK_SEQPACKET and len(data) > TIPC_MAX_USER_MSG_SIZE:
                raise OSError(errno.EMSGSIZE, f"message > {TIPC_MAX_USER_MSG_SIZE} bytes")
            if p.txq or p.snt_unacked > p.snd_win:
                p.want_wakeup = True
                return False
            self._send_conn(p, data, now)
            self._run(now)
            return True
        return self._send_connless(p, self._connless_dest(p, addr), data, now)

    def sendto_many(self, port: int, addr: tuple[Any, ...] | None,
                    datas: Iterable[bytes], now: float) -> tuple[int, OSError | None]:
        """``sendto(port, addr, d, now)`` for each ``d`` of ``datas`` in order, stopping at
        the first that is not accepted.  Returns ``(accepted, error)``: ``error`` is the
        OSError that sendto() would have raised for message number ``accepted`` (None if
        it stopped because of congestion - retry the rest after Wakeup(port) - or sent
        them all).  Same outcome, events and bytes as the loop of sendto() calls; for
        RDM/DGRAM the port and address are checked once for the batch (so a bad port or
        address gives ``(0, error)`` even for an empty ``datas``)."""
        sent = 0
        try:
            p = self._port(port)
            if p.conn or p.grp is not None:
                for data in datas:
                    if not self.sendto(port, addr, data, now):
                        break
                    sent += 1
                return sent, None
            self._now = now
            ua = self._connless_dest(p, addr)
            send = self._send_connless
            for data in datas:
                if not send(p, ua, bytes(data), now):
                    break
                sent += 1
        except OSError as e:
            return sent, e
        return sent, None

    def _connless_dest(self, p: _Port, addr: tuple[Any, ...] | None
                       ) -> tuple[int, int, int, int]:
        if not addr:
            if p.default_dest is None:
                raise OSError(errno.EDESTADDRREQ, "destination address required")
            return p.default_dest
        return self._check_addr(addr)

    def _send_connless(self, p: _Port, ua: tuple[int, int, int, int], data: bytes,
                       now: float) -> bool:
        """The RDM/DGRAM part of sendto() once the destination is checked."""
        if len(data) > TIPC_MAX_USER_MSG_SIZE:
            raise OSError(errno.EMSGSIZE, f"message > {TIPC_MAX_USER_MSG_SIZE} bytes")
        if p.txq:
            p.want_wakeup = True
            return False
        atype, a, b, c = ua
        if atype == TIPC_ADDR_NAMESEQ:
            if p.link_cong:  # kernel tipc_sendmcast waits for !cong_link_cnt
                p.want_wakeup = True
                return False
            self._send_mcast(p, ua, data, now)
            self._run(now)
            return True
        dnode, dport = self._resolve_dgram(atype, a, b, c)
        own = self.stack.own_addr
        if (not dnode or dnode == own) and self.fast_local and not (
                p.link_cong or p.want_wakeup or p.fin_err >= 0 or self._lq or self._running):
            # node-local fast path: what _send_dgram -> _run -> _dispatch -> _filter_rcv
            # -> _deliver does with the message, without building it. Only for the plain
            # case (an existing connectionless port, data that fits its rcvbuf); anything
            # else (no such port, OVERLOAD, a connection port) goes the slow way below.
            dp = self._ports.get(dport)
            if dp is not None and not dp.conn and not dp.role and dp.grp is None:
                n = len(data)
                counters = self.counters
                if not n or dp.rcv_used + n < dp.rcvbuf << p.imp:
                    counters["tx"] += 1
                    counters["rx"] += 1
                    if atype == TIPC_ADDR_NAME:
                        dest: tuple[int, int, int] | None = (a, b, b)
                        hs = 40
                    else:
                        dest = None
                        hs = 32
                    dp.rcvq.append([n, (hs + n) // FLOWCTL_BLK_SZ + 1 if dp.block else 1])
                    dp.rcv_used += n
                    self._events.append(Deliver(dport, data, (p.port, own), dest, 0,
                                                False, False))
                    if not self.topsrv._out:
                        return True
                    self._run(now)
                    return True
                if p.flags & _D_BIT:
                    # OVERLOAD of an unreturnable message: _reject() would just drop it
                    counters["tx"] += 1
                    counters["rx"] += 1
                    counters["overload"] += 1
                    counters["dropped"] += 1
                    dp.drops += 1
                    self._run(now)
                    return True
        msg = self._dgram_msg(p, atype, a, b, c, dnode, dport, data, 0)
        if p.link_cong or p.want_wakeup or p.fin_err >= 0:
            p.txq.append((dnode, msg, 0))
            self._push(p, now)
        else:
            self._send_dgram(p, dnode, msg, now)
        self._run(now)
        return True

    def _send_dgram(self, p: _Port, dnode: int, msg: Msg, now: float) -> None:
        """_push() of a one-message queue with nothing pending on the port: the RDM/DGRAM
        per-message path without the queue round trip (same counters and outcome).
        Called right after _build_dgram(), which refused an unreachable node."""
        stack = self.stack
        if dnode == 0 or dnode == stack.own_addr:
            self._lq.append(msg)
        elif not stack.send_to_node(dnode, msg, p.port, now):
            self.counters["link_cong"] += 1
            p.link_cong = True
            self._cong.add(p.port)
            p.txq.append((dnode, msg, 0))
            return
        self.counters["tx"] += 1

    def consumed(self, port: int, nbytes: int, now: float, messages: int | None = None) -> None:
        """The application read ``nbytes`` of payload (and, if the client knows it,
        ``messages`` whole messages - needed only to count empty messages exactly).
        Frees receive buffer and sends CONN_ACK every rcv_win/4 blocks (tipc_recvmsg)."""
        p = self._ports.get(port)
        if p is None:
            return
        self._now = now
        q = p.rcvq
        n = max(0, int(nbytes))
        done = 0
        if messages is None:
            while q:
                e = q[0]
                if e[0] > n:
                    e[0] -= n
                    p.rcv_used -= n
                    n = 0
                    break
                n -= e[0]
                p.rcv_used -= e[0]
                done += e[1]
                q.popleft()
                if len(e) > 2:
                    self._grp_consumed(p, e, now)
        else:
            for _ in range(min(int(messages), len(q))):
                e = q.popleft()
                p.rcv_used -= e[0]
                n -= e[0]
                done += e[1]
                if len(e) > 2:
                    self._grp_consumed(p, e, now)
            if n > 0 and q:
                k = min(n, q[0][0])
                q[0][0] -= k
                p.rcv_used -= k
        if not q or p.rcv_used < 0:
            p.rcv_used = 0
        if done and p.state == State.ESTABLISHED:
            p.rcv_unacked += done
            if p.rcv_unacked >= p.rcv_win // TIPC_ACK_RATE:
                self._send_ack(p, now)
        self._run(now)

    def shutdown(self, port: int, how: int, now: float) -> None:
        """shutdown(): only SHUT_RDWR; a connection sends FIN with TIPC_CONN_SHUTDOWN and
        the peer sees EOF. ENOTCONN unless a connection was (being) set up."""
        p = self._port(port)
        self._now = now
        if how != SHUT_RDWR:
            raise OSError(errno.EINVAL, "TIPC only supports shutdown(SHUT_RDWR)")
        if p.shut:
            raise OSError(errno.ENOTCONN, "already shut down")
        if p.state not in (State.CONNECTING, State.ESTABLISHED):
            p.shut = True
            raise OSError(errno.ENOTCONN, "not connected")
        p.shut = True
        if p.txq and p.state == State.ESTABLISHED:
            p.fin_err = _SHUTDOWN  # after the queued data
            self._arm(p, now + TIPC_CONN_TIMEOUT_MS / 1000.0, conn=True)
        else:
            self._send_fin(p, _SHUTDOWN, now)
            self._disconnect(p)
        self._run(now)

    def setsockopt(self, port: int, opt: int, value: int | bytes) -> None:
        """SOL_TIPC options (and SO_RCVBUF), kernel errnos. TIPC_GROUP_JOIN takes the
        16-byte ``struct tipc_group_req`` (host order) as ``value``."""
        p = self._port(port)
        if opt == TIPC_GROUP_JOIN:
            if not isinstance(value, bytes | bytearray | memoryview):
                self.counters["grp_join_refused"] += 1
                raise OSError(errno.EINVAL, "TIPC_GROUP_JOIN needs a struct tipc_group_req")
            self.join_group(port, bytes(value), self._now)
            return
        if opt == TIPC_GROUP_LEAVE:
            self.leave_group(port, self._now)
            return
        if isinstance(value, bytes | bytearray | memoryview):
            if len(value) < 4:
                raise OSError(errno.EINVAL, "option value must be at least 4 bytes")
            value = int.from_bytes(bytes(value[:4]), sys.byteorder)
        value = int(value)
        if opt == TIPC_IMPORTANCE:
            if not 0 <= value <= 3:
                raise OSError(errno.EINVAL, "importance must be 0..3")
            p.imp = value
        elif opt == TIPC_SRC_DROPPABLE:
            if p.sotype == SOCK_STREAM:
                raise OSError(errno.ENOPROTOOPT, "not for SOCK_STREAM")
            p.flags = (p.flags | _S_BIT) if value else (p.flags & ~_S_BIT)
        elif opt == TIPC_DEST_DROPPABLE:
            p.flags = (p.flags | _D_BIT) if value else (p.flags & ~_D_BIT)
        elif opt == TIPC_CONN_TIMEOUT:
            p.conn_timeout = value & _U32
        elif opt in (TIPC_MCAST_BROADCAST, TIPC_MCAST_REPLICAST):
            # the socket mandates its multicast method (kernel tsk->mc_method); the
            # bearers' abilities still win (tipc_bcast_select_xmit_method)
            p.mc_method.rcast = opt == TIPC_MCAST_REPLICAST
            p.mc_method.mandatory = True
        elif opt == TIPC_NODELAY:
            pass  # we never use Nagle
        elif opt == SO_RCVBUF:
            p.rcvbuf = min(max(value, RCVBUF_MIN), RCVBUF_MAX)
        else:
            raise OSError(errno.EINVAL, f"unknown socket option {opt}")

    def getsockopt(self, port: int, opt: int) -> int:
        p = self._port(port)
        if opt == TIPC_IMPORTANCE:
            return p.imp
        if opt == TIPC_SRC_DROPPABLE:
            return 1 if p.flags & _S_BIT else 0
        if opt == TIPC_DEST_DROPPABLE:
            return 1 if p.flags & _D_BIT else 0
        if opt == TIPC_CONN_TIMEOUT:
            return p.conn_timeout
        if opt == TIPC_NODE_RECVQ_DEPTH:
            return 0
        if opt == TIPC_SOCK_RECVQ_DEPTH:
            return len(p.rcvq)
        if opt == TIPC_SOCK_RECVQ_USED:
            return p.rcv_used
        if opt == TIPC_GROUP_JOIN:
            return p.grp.type if p.grp is not None else 0
        if opt == SO_RCVBUF:
            return p.rcvbuf
        raise OSError(errno.EINVAL, f"unknown socket option {opt}")

    def getsockname(self, port: int) -> tuple[int, int, int, int]:
        """``(TIPC_ADDR_ID, port, own node, 0)`` (struct order, scope 0)."""
        self._port(port)
        return (TIPC_ADDR_ID, port, self.stack.own_addr, 0)

    def getpeername(self, port: int) -> tuple[int, int, int, int]:
        p = self._port(port)
        if p.state != State.ESTABLISHED or p.closing:
            raise OSError(errno.ENOTCONN, "not connected")
        return (TIPC_ADDR_ID, p.peer_port, p.peer_node, 0)

    def sock_list(self) -> list[dict[str, Any]]:
        """``tipc socket list``: port; peer node:port (and the name connected via); the
        bindings ``{type, lower, upper}``."""
        out: list[dict[str, Any]] = []
        for port in sorted(self._ports):
            p = self._ports[port]
            if p.closing:
                continue
            con = None
            if p.state == State.ESTABLISHED:
                con = {"node": p.peer_node, "port": p.peer_port,
                       "name": list(p.conn_name) if p.conn_name else None}
            out.append({
                "port": port, "type": p.sotype, "state": p.state, "connected": con,
                "bound": [{"type": b.type, "lower": b.lower, "upper": b.upper,
                           "scope": b.scope} for b in p.publs],
                "group": self.group_info(port) if p.grp is not None else None,
            })
        return out

    # ============================================================ groups
    def join_group(self, port: int, req: bytes | GroupReq, now: float) -> None:
        """setsockopt(TIPC_GROUP_JOIN) = kernel tipc_sk_join(): checks, the group's
        binding {type, instance, instance}, JOIN to every member already bound."""
        self._now = now
        try:
            p = self._port(port)
            r = req if isinstance(req, GroupReq) else GroupReq.unpack(req)
            if p.conn:
                raise OSError(errno.EINVAL, "groups need a SOCK_RDM or SOCK_DGRAM socket")
            if p.grp is not None:
                raise OSError(errno.EACCES, "the socket is already in a group")
            g = Group(self.stack.own_addr, port, r, p.imp)  # EACCES type < 64, EINVAL scope
            self._publish(p, r.type, r.instance, r.instance, g.scope, now)
        except OSError:
            self.counters["grp_join_refused"] += 1
            raise
        if self._grp_own != self.stack.own_addr:
            self._grp_readdress(self.stack.own_addr)
        p.grp = g
        p.flags |= _D_BIT
        # the table now holds our own binding too: build_group after publish (join()
        # skips ourselves unless TIPC_GROUP_LOOPBACK)
        snap = self.table.subscription_snapshot(r.type, 0, _U32, True)
        self._grp_types.setdefault(r.type, set()).add(port)
        p.rcvbuf = g.join(snap, now)
        self._gdirty.add(port)
        self._run(now)

    def leave_group(self, port: int, now: float) -> None:
        """setsockopt(TIPC_GROUP_LEAVE) = kernel tipc_sk_leave(): LEAVE to every member,
        then the group's binding is withdrawn. EINVAL when not in a group."""
        self._now = now
        p = self._port(port)
        if p.grp is None:
            self.counters["grp_not_joined"] += 1
            raise OSError(errno.EINVAL, "the socket is not in a group")
        self._leave(p, now)
        self._run(now)

    def group_info(self, port: int) -> dict[str, Any]:
        """The port's group for ``tipc socket list`` and tests: type, instance, scope,
        flags and the members with their kernel state names."""
        g = self._port(port).grp
        if g is None:
            raise OSError(errno.EINVAL, "the socket is not in a group")
        return {
            "type": g.type, "instance": g.instance, "scope": g.scope,
            "loopback": g.loopback, "events": g.events,
            "members": [{"node": m.node, "port": m.port, "instance": m.instance,
                         "state": m.state.name.lower()} for m in g.member_list()],
            "counters": dict(g.counters),
        }

    def _leave(self, p: _Port, now: float) -> None:
        g = p.grp
        assert g is not None
        g.leave(now)
        self._grp_flush(p, now)  # the LEAVEs, before the withdrawal
        p.grp = None
        p.grp_blocked = False
        ports = self._grp_types.get(g.type)
        if ports is not None:
            ports.discard(p.port)
            if not ports:
                del self._grp_types[g.type]
        self._gdirty.discard(p.port)
        for i, pub in enumerate(p.publs):
            if pub.type == g.type and pub.lower == g.instance and pub.upper == g.instance \
                    and pub.scope == g.scope:
                del p.publs[i]
                self.stack.withdraw(pub, now)
                break

    def _send_group(self, p: _Port, addr: tuple[Any, ...] | None, data: bytes,
                    now: float) -> bool:
        """kernel __tipc_sendmsg() for a group member: no address = broadcast,
        service address = anycast, socket address = unicast, range = multicast.
        False = the destination's window (or a link) is full: retry after Wakeup."""
        g = p.grp
        assert g is not None
        if p.txq:
            p.want_wakeup = True
            return False
        if not addr:
            ok = g.send_bcast(data, now, p.imp)
        else:
            atype, a, b, c = self._check_addr(addr)
            if atype == TIPC_ADDR_ID:
                ok = g.send_unicast(b or self.stack.own_addr, a, data, now, p.imp)
            elif a != g.type:
                raise OSError(errno.EHOSTUNREACH, f"type {a} is not this group's ({g.type})")
            elif atype == TIPC_ADDR_NAME:
                ok = g.send_anycast(b, data, now, p.imp)
            else:
                ok = g.send_mcast(b, c, data, now, p.imp)
        if not ok:
            p.grp_blocked = True
            self._gdirty.add(p.port)  # an ADV may have been sent
            self._run(now)
            return False
        self._grp_flush(p, now)
        self._run(now)
        return True

    def _grp_bcast_plan(self, p: _Port, out: list[tuple[int, Msg]]
                        ) -> list[tuple[int, Msg]]:
        """A group broadcast/multicast goes by the socket's multicast method, as
        kernel tipc_send_group_bcast -> tipc_mcast_xmit: the Group makes one
        replicast copy per member node; when the method says broadcast the remote
        copies become one packet on the broadcast link.  A broadcast that asks for
        acks (the one after a unicast) stays replicast, as the kernel forces it."""
        plan = getattr(self.stack, "mcast_plan", None)
        if plan is None or len(out) < 2:
            return out
        res: list[tuple[int, Msg]] = []
        i = 0
        while i < len(out):
            node, msg = out[i]
            w = msg.w
            if (msg.user > 3 or (w[1] >> 29) not in (_GRP_BCAST, _GRP_MCAST)
                    or len(w) < 11 or not (w[0] & _S_BIT) or w[10] & 1):
                res.append((node, msg))
                i += 1
                continue
            j = i  # the copies of one broadcast: same group bc seqno, consecutive
            while (j < len(out) and out[j][1].user <= 3 and len(out[j][1].w) > 10
                   and (out[j][1].w[1] >> 29) == (w[1] >> 29)
                   and out[j][1].w[10] == w[10]):
                j += 1
            batch = out[i:j]
            remote = [n for n, _ in batch if not self._local(n)]
            rcast = True
            if remote:
                rcast, _sync = plan(p.mc_method, len(remote), self._now)
            if rcast:
                res.extend(batch)
            else:
                res.extend((n, m) for n, m in batch if self._local(n))
                c = list(w)
                c[0] &= ~_S_BIT
                c[7] = 0
                res.append((_BCAST_DEST, type(msg)(c, msg.data)))
            i = j
        return res

    def _grp_flush(self, p: _Port, now: float) -> None:
        """Carry out what the port's Group decided: messages to their nodes (data in
        the port's queue, behind a congested link if need be; GROUP_PROTOCOL directly,
        unless data waits: it must not overtake it), events to the application."""
        g = p.grp
        if g is None:
            return
        self._gdirty.discard(p.port)
        push = False
        for node, msg in self._grp_bcast_plan(p, g.take_outgoing()):
            if node == _BCAST_DEST:
                p.txq.append((node, msg, 0))
                push = True
            elif self._local(node):
                self._lq.append(msg)
                self.counters["tx"] += 1
            elif msg.user == _GROUP_PROTOCOL and not p.txq:
                self._xmit_sys(node, msg, p.port, now)
            else:
                p.txq.append((node, msg, 0))
                push = True
        if push:
            self._push(p, now)
        evs = self._events
        for ev in g.take_events():
            if isinstance(ev, GroupDeliver):
                m = ev.msg
                w = m.w
                data = m.data
                n = len(data)
                hs = 4 * len(w)
                p.rcvq.append([n, 1, w[6], w[4], hs + n])
                p.rcv_used += n
                evs.append(GroupData(p.port, data, (w[4], w[6]), (w[8], ev.instance), 0))
            elif isinstance(ev, MemberEvent):
                if ev.deliver:
                    p.rcvq.append([0, 0])
                    evs.append(GroupData(p.port, b"", (ev.port, ev.node),
                                         (ev.type, ev.instance), 1 if ev.up else 2))
            elif isinstance(ev, GroupWakeup):
                if p.grp_blocked:
                    p.grp_blocked = False
                    if p.txq:
                        p.want_wakeup = True
                    else:
                        evs.append(Wakeup(p.port))

    def _grp_readdress(self, own: int) -> None:
        """The node got its address after sockets joined (kernel: tipc_net_finalize
        re-addresses everything): members known by the old address (or 0, local ones)
        are the same sockets under the new one."""
        old, self._grp_own = self._grp_own, own
        for ports in self._grp_types.values():
            for port in ports:
                p = self._ports.get(port)
                if p is None or p.grp is None:
                    continue
                g = p.grp
                g.own_node = own
                for key in [k for k in g.members if k[0] in (0, old)]:
                    m = g.members.pop(key)
                    m.node = own
                    g.members[(own, m.port)] = m

    def _grp_consumed(self, p: _Port, e: list[int], now: float) -> None:
        """The application read a group message: reopen that member's window."""
        if p.grp is not None:
            p.grp.consumed(e[2], e[3], e[4], now)
            self._gdirty.add(p.port)

    def _grp_flush_all(self, now: float) -> None:
        while self._gdirty:
            port = self._gdirty.pop()
            p = self._ports.get(port)
            if p is not None:
                self._grp_flush(p, now)

    def _name_obs(self, publ: Publication, published: bool, edge: bool) -> None:
        """Name table observer: the kernel's internal topology subscription of every
        group (TIPC_SUB_PORTS on the group's type). Output is carried out later
        (_run/tick): this runs inside the name table's own update."""
        ports = self._grp_types.get(publ.type)
        if not ports:
            return
        own = self.stack.own_addr
        up = publ.node in (0, own) or self.stack.node_is_up(publ.node)
        for port in list(ports):
            p = self._ports.get(port)
            if p is None or p.grp is None:
                continue
            r = p.grp.name_event(publ, published, up, self._now)
            if r is not None:
                p.rcvbuf = r
                self._gdirty.add(port)

    def _grp_rcv(self, msg: Msg, now: float) -> None:
        """Group data (user 0-3, mtype 4-7). GRP_BCAST/GRP_MCAST are for every local
        port bound to the group's type with the message's lookup scope (kernel
        tipc_sk_mcast_rcv); GRP_UCAST (and a forged GRP_MEMBER_EVT) to destport."""
        w = msg.w
        mtype = w[1] >> 29
        if mtype in (_GRP_BCAST, _GRP_MCAST):
            if len(w) < 11:
                self.counters["dropped"] += 1
                return
            scope = (w[1] >> 19) & 3
            onode, oport = w[6], w[4]
            own = self.stack.own_addr
            cls = type(msg)
            for port in self.table.lookup_mcast_local(w[8], 0, _U32, scope):
                p = self._ports.get(port)
                if p is None or p.grp is None or p.grp.type != w[8]:
                    self.counters["grp_no_group"] += 1
                    continue
                if port == oport and onode in (0, own) and not p.grp.loopback:
                    continue  # our own broadcast's local copy
                c = list(w)
                c[5] = port
                p.grp.filter_msg(cls(c, msg.data), now)  # type: ignore[arg-type]
                self._gdirty.add(port)
            return
        p = self._ports.get(w[5])
        if p is None or p.grp is None:
            self.counters["grp_no_group"] += 1
            self.counters["dropped"] += 1
            return
        if not isinstance(msg, DataMsg) or len(w) < 11:
            self.counters["dropped"] += 1
            return
        p.grp.filter_msg(msg, now)
        self._gdirty.add(p.port)

    def take_events(self) -> list[SockEvent]:
        """Events in order; also flushes the topology server's pending output. Group
        output waits for the next call or tick (next_deadline says "now"): messages
        sent from here could sit in the node until its next pump."""
        self._run(self._now, groups=False)
        ev, self._events = self._events, []
        return ev

    def tick(self, now: float) -> None:
        """Connect timeouts, SYN retries, lingering closes, topology timeouts, and the
        group work that name-table changes caused."""
        self._now = now
        if self._gdirty:
            self._run(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            d, _, port = heapq.heappop(timers)
            p = self._ports.get(port)
            if p is None:
                continue
            if p.conn_deadline is not None and p.conn_deadline <= now:
                p.conn_deadline = None
                self._conn_timeout(p, now)
            if p.retry_at is not None and p.retry_at <= now:
                p.retry_at = None
                if p.state == State.CONNECTING and p.syn_clone is not None:
                    dnode, m = p.syn_clone
                    p.txq.append((dnode, m.copy(), 0))
                    self._push(p, now)
        self._run(now)

    def next_deadline(self) -> float | None:
        if self._gdirty:
            return self._now
        timers = self._timers
        while timers:
            d, _, port = timers[0]
            p = self._ports.get(port)
            if p is not None and d in (p.conn_deadline, p.retry_at):
                break
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # ---- introspection
    def ports(self) -> list[int]:
        return sorted(self._ports)

    def state(self, port: int) -> str:
        return self._port(port).state

    # ============================================================ sending
    def _new_port_id(self) -> int:
        port = self.rng.randrange(1, 1 << 32)
        while port in self._ports:  # linear probe as tipc_sk_insert
            port = port + 1 if port < _U32 else 1
        return port

    def _port(self, port: int) -> _Port:
        p = self._ports.get(port)
        if p is None or p.closing:
            raise OSError(errno.EBADF, f"no socket with port {port}")
        return p

    @staticmethod
    def _words(addr: tuple[Any, ...]) -> tuple[int, int, int]:
        try:
            a, b, c = int(addr[1]), int(addr[2]), int(addr[3]) if len(addr) > 3 else 0
        except (IndexError, TypeError, ValueError):
            raise OSError(errno.EINVAL, f"bad TIPC address {addr!r}") from None
        for v in (a, b, c):
            if not 0 <= v <= _U32:
                raise OSError(errno.EINVAL, f"bad TIPC address {addr!r}")
        return a, b, c

    def _check_addr(self, addr: tuple[Any, ...]) -> tuple[int, int, int, int]:
        """kernel tipc_sockaddr_is_sane / tipc_uaddr_valid; returns the address as
        ``(atype, w1, w2, w3)`` ints (TIPC_ADDR_ID: ``(3, ref, node, 0)``). Validated
        tuples are cached: applications send to the same few addresses again and again."""
        cache = self._ua_cache
        try:
            ua = cache.get(addr)
        except TypeError:  # a list: not hashable, not cached
            ua = None
        if ua is not None:
            return ua
        if not isinstance(addr, tuple | list) or len(addr) < 3:
            raise OSError(errno.EINVAL, f"bad TIPC address {addr!r}")
        atype = addr[0]
        if atype not in (TIPC_ADDR_NAMESEQ, TIPC_ADDR_NAME, TIPC_ADDR_ID):
            raise OSError(errno.EINVAL, f"bad address type {atype!r}")
        if atype != TIPC_ADDR_ID and len(addr) < 4:
            raise OSError(errno.EINVAL, f"bad TIPC address {addr!r}")
        a, b, c = self._words(addr)
        if atype == TIPC_ADDR_NAMESEQ and b > c:
            raise OSError(errno.EINVAL, f"range lower {b} > upper {c}")
        ua = (int(atype), a, b, 0 if atype == TIPC_ADDR_ID else c)
        if isinstance(addr, tuple):
            if len(cache) >= 4096:
                cache.clear()
            cache[addr] = ua
        return ua

    def _own(self) -> int:
        return self.stack.own_addr

    def _local(self, node: int) -> bool:
        return node == 0 or node == self.stack.own_addr

    def _hdr(self, p: _Port, mtype: int, hwords: int, dnode: int, dport: int,
             size: int, flags: int) -> list[int]:
        """kernel tipc_msg_init() + the socket's header template (phdr)."""
        own = self.stack.own_addr
        w = [0] * hwords
        w[0] = _VER | (p.imp << 25) | (hwords << 21) | flags | (size & 0x1FFFF)
        w[1] = mtype << 29
        w[3] = own
        w[4] = p.port
        w[5] = dport
        if hwords > 6:
            w[6] = own
            w[7] = dnode
        return w

    def _resolve(self, ua: tuple[int, int, int, int]) -> tuple[int, int, int, int, int]:
        """(dnode, dport, mtype, type, inst) for an anycast/direct destination."""
        atype, a, b, c = ua
        if atype == TIPC_ADDR_NAME:
            r = self.table.lookup_anycast(a, b, c)
            if r is None:
                raise OSError(errno.EHOSTUNREACH, f"no binding for {{{a},{b}}}")
            return r[0], r[1], _NAMED, a, b
        return b, a, _DIRECT, 0, 0

    def _reachable(self, dnode: int) -> None:
        if not self._local(dnode) and not self.stack.node_is_up(dnode):
            self.counters["unreachable"] += 1
            raise OSError(errno.EHOSTUNREACH, f"node {dnode:08x} is not reachable")

    def _resolve_dgram(self, atype: int, a: int, b: int, c: int) -> tuple[int, int]:
        """(node, port) of a service address (anycast lookup, kernel policy) or a socket
        address; EHOSTUNREACH when nothing matches or the node is not reachable."""
        if atype == TIPC_ADDR_NAME:
            r = self.table.lookup_anycast(a, b, c)
            if r is None:
                raise OSError(errno.EHOSTUNREACH, f"no binding for {{{a},{b}}}")
            dnode, dport = r
        else:
            dnode, dport = b, a
        if dnode and dnode != self.stack.own_addr:
            self._reachable(dnode)
        return dnode, dport

    def _build_dgram(self, p: _Port, ua: tuple[int, int, int, int], data: bytes,
                     syn: bool) -> tuple[int, Msg]:
        """NAMED (40 B, lookup scope, resolved port) or DIRECT (32 B) data message."""
        atype, a, b, c = ua
        dnode, dport = self._resolve_dgram(atype, a, b, c)
        return dnode, self._dgram_msg(p, atype, a, b, c, dnode, dport, data,
                                      _Y_BIT if syn else 0)

    def _dgram_msg(self, p: _Port, atype: int, a: int, b: int, c: int, dnode: int,
                   dport: int, data: bytes, syn: int) -> Msg:
        """The message of _build_dgram() once the destination is resolved and checked."""
        own = self.stack.own_addr
        # the header words of _hdr() + the NAMED/DIRECT fields, in one list display
        w0 = _VER | (p.imp << 25) | p.flags | syn
        if atype == TIPC_ADDR_NAME:
            w = [w0 | (10 << 21) | ((40 + len(data)) & 0x1FFFF),
                 _NAMED << 29 | (TIPC_NODE_SCOPE if c else TIPC_CLUSTER_SCOPE) << 19,
                 0, own, p.port, dport, own, dnode, a, b]
        else:
            w = [w0 | (8 << 21) | ((32 + len(data)) & 0x1FFFF), _DIRECT << 29,
                 0, own, p.port, dport, own, dnode]
        return DataMsg(w, data)

    def _send_mcast(self, p: _Port, ua: tuple[int, int, int, int], data: bytes,
                    now: float) -> None:
        """kernel tipc_sendmcast(): MCAST (44 B) to every node with a matching binding;
        our own node's copy is fanned out locally, remote ones by replicast or one
        copy on the broadcast link, as the node's method selection says
        (tipc_mcast_xmit)."""
        _, typ, lower, upper = ua
        nodes = self.table.lookup_mcast_nodes(typ, lower, upper)
        if not nodes:
            raise OSError(errno.EHOSTUNREACH, f"no binding in {{{typ},{lower},{upper}}}")
        w = self._hdr(p, _MCAST, 11, 0, 0, 44 + len(data), p.flags)
        w[1] |= TIPC_CLUSTER_SCOPE << 19
        w[8], w[9], w[10] = typ, lower, upper
        if any(self._local(n) for n in nodes):
            self._lq.append(DataMsg(list(w), data))
        remote = [n for n in sorted(nodes)
                  if not self._local(n) and self.stack.node_is_up(n)]
        plan = getattr(self.stack, "mcast_plan", None)
        rcast = True
        if remote and plan is not None:
            old = p.mc_method.rcast
            rcast, sync = plan(p.mc_method, len(remote), now)
            if sync:  # bridge the switch: a SYN dummy by the old method first
                dummy = build_mcast_sync(DataMsg(list(w), data))
                self._mcast_copies(p, dummy.w, b"", remote, old)
                w[0] |= 1 << 17  # the real message carries SYN too
        self._mcast_copies(p, w, data, remote, rcast)
        self._push(p, now)

    def _mcast_copies(self, p: _Port, w: list[int], data: bytes, remote: list[int],
                      rcast: bool) -> None:
        if not remote:
            return
        if not rcast:
            c = list(w)
            c[0] &= ~_S_BIT
            c[7] = 0
            p.txq.append((_BCAST_DEST, DataMsg(c, data), 0))
            return
        for n in remote:
            c = list(w)
            c[0] |= _S_BIT  # is_rcast
            c[7] = n
            p.txq.append((n, DataMsg(c, data), 0))

    def _send_syn(self, p: _Port, ua: tuple[int, int, int, int], data: bytes,
                  now: float) -> None:
        """kernel __tipc_sendmsg() with syn: NAMED/DIRECT message with the SYN bit."""
        if p.publs:
            raise OSError(errno.EOPNOTSUPP, "a socket with bindings cannot connect")
        dnode, msg = self._build_dgram(p, ua, data, True)
        p.state = State.CONNECTING
        p.peer_node, p.peer_port = msg.w[7], msg.w[5]
        if ua[0] == TIPC_ADDR_NAME:
            p.conn_name = (msg.w[8], msg.w[9])
        p.syn_clone = (dnode, msg.copy())
        p.block = bool(self._peer_caps(dnode) & Cap.BLOCK_FLOWCTL)
        if data:
            p.snt_unacked = p.blocks(len(data) + msg.hsize)
        if p.conn_timeout:
            self._arm(p, now + p.conn_timeout / 1000.0, conn=True)
        p.txq.append((dnode, msg, 0))
        self._push(p, now)

    def _send_conn(self, p: _Port, data: bytes, now: float) -> None:
        """Connected data: 24-byte CONN_MSG headers; STREAM splits at 66000 bytes."""
        chunks = [data] if len(data) <= TIPC_MAX_USER_MSG_SIZE else [
            data[i:i + TIPC_MAX_USER_MSG_SIZE] for i in range(0, len(data), TIPC_MAX_USER_MSG_SIZE)
        ]
        dnode, dport = p.peer_node, p.peer_port
        for c in chunks:
            w = self._hdr(p, _CONN, 6, dnode, dport, 24 + len(c), p.flags)
            p.txq.append((dnode, DataMsg(w, c), p.blocks(len(c) + 24)))
        self._push(p, now)

    def _push(self, p: _Port, now: float) -> None:
        """Send what the port's queue may send now (link and connection window allow)."""
        q = p.txq
        stack = self.stack
        while q:
            dnode, msg, blocks = q[0]
            if blocks and p.snt_unacked > p.snd_win:
                break
            if dnode == _BCAST_DEST:  # one copy on the broadcast link: always queued
                q.popleft()
                self.counters["tx"] += 1
                if not stack.bcast_xmit(msg, now):  # type: ignore[attr-defined]
                    self.counters["link_cong"] += 1
                    p.link_cong = True
                    self._cong.add(p.port)
                    return
                continue
            if self._local(dnode):
                self._lq.append(msg)
            elif not stack.node_is_up(dnode):
                self.counters["unreachable"] += 1  # node lost meanwhile: like the kernel
            elif not stack.send_to_node(dnode, msg, p.port, now):
                self.counters["link_cong"] += 1
                p.link_cong = True
                self._cong.add(p.port)
                return
            q.popleft()
            p.snt_unacked += blocks
            self.counters["tx"] += 1
        if p.link_cong:
            p.link_cong = False
            self._cong.discard(p.port)
        if not q:
            if p.fin_err >= 0:
                err, p.fin_err = p.fin_err, -1
                self._send_fin(p, err, now)
                if p.closing:
                    self._remove(p)
                    return
                self._disconnect(p)
                return
            if p.want_wakeup and not p.closing and not (
                p.state == State.ESTABLISHED and p.snt_unacked > p.snd_win
            ):
                p.want_wakeup = False
                self._events.append(Wakeup(p.port))

    def _xmit_sys(self, dnode: int, msg: Msg, selector: int, now: float) -> None:
        """Protocol replies (ACK, CONN_ACK, FIN, returned messages): never blocked."""
        if self._local(dnode):
            self._lq.append(msg)
        elif self.stack.node_is_up(dnode):
            self.stack.send_to_node(dnode, msg, selector, now)
        else:
            self.counters["unreachable"] += 1

    def _send_fin(self, p: _Port, err: int, now: float) -> None:
        """kernel __tipc_shutdown(): 24-byte CRITICAL CONN_MSG carrying ``err``."""
        own = self.stack.own_addr
        w = [_VER | (3 << 25) | (6 << 21) | 24, (err << 25), 0, own, p.port, p.peer_port]
        self._xmit_sys(p.peer_node, DataMsg(w, b""), p.port, now)
        self._drop_conn(p)

    def _send_ack(self, p: _Port, now: float) -> None:
        """kernel tipc_sk_build_ack(): CONN_MANAGER/CONN_ACK, 40 bytes."""
        own = self.stack.own_addr
        if p.block:
            p.rcv_win = p.rcvbuf // FLOWCTL_BLK_SZ // 4
            adv = p.rcv_win
        else:
            adv = 0
        w = [_VER | (_CONN_MANAGER << 25) | (10 << 21) | 40, ConnMgrType.CONN_ACK << 29, 0,
             own, p.port, p.peer_port, own, p.peer_node, 0,
             ((p.rcv_unacked & 0xFFFF) << 16) | (adv & 0xFFFF)]
        p.rcv_unacked = 0
        self._xmit_sys(p.peer_node, ConnMgrMsg(w, b""), p.port, now)

    # ============================================================ binding
    def _publish(self, p: _Port, typ: int, lower: int, upper: int, scope: int,
                 now: float) -> None:
        """kernel tipc_sk_publish(): key = port + pub_count + 1."""
        if p.state == State.ESTABLISHED:
            raise OSError(errno.EINVAL, "a connected socket cannot bind")
        key = (p.port + p.pub_count + 1) & _U32
        if key == p.port:
            raise OSError(errno.EADDRINUSE, "publication keys of this socket exhausted")
        check_bind(typ, lower, upper, scope, local_count=self.table.local_count,
                   internal=p.role == "topsrv")
        pub = Publication(typ, lower, upper, scope, self.stack.own_addr, p.port, key)
        self.stack.publish(pub, now)  # raises OSError(EINVAL) at the limit
        p.publs.append(pub)
        p.pub_count += 1

    def _withdraw(self, p: _Port, which: tuple[int, int, int, int] | None, now: float) -> None:
        """kernel tipc_sk_withdraw(): all, or the first binding with this scope/type/
        lower (EINVAL if its upper differs or none matches)."""
        if which is None:
            for pub in p.publs:
                self.stack.withdraw(pub, now)
            p.publs.clear()
            self._run(now)
            return
        scope, typ, lower, upper = which
        for i, pub in enumerate(p.publs):
            if pub.scope != scope or pub.type != typ or pub.lower != lower:
                continue
            if pub.upper != upper:
                break
            del p.publs[i]
            self.stack.withdraw(pub, now)
            self._run(now)
            return
        if p.publs:
            raise OSError(errno.EINVAL, f"not bound to {{{typ},{lower},{upper}}}")

    # ============================================================ receiving
    def _stack_rcv(self, src: int, msg: Msg, now: float) -> None:
        """Messages from the stack (remote nodes; the stack's own loopback too). Bad
        input never takes the node down: anything unexpected is counted and dropped."""
        self._now = now
        try:
            self._dispatch(msg, now)
            self._run(now)
        except Exception as e:  # a bug: counted by kind (see swallowed), never silent
            self.counters["errors"] += 1
            kind = type(e).__name__
            self.swallowed[kind] = self.swallowed.get(kind, 0) + 1
            self.last_error = e
            self._running = False
            self._lq.clear()

    def _stack_event(self, ev: object, now: float) -> None:
        self._now = now
        if self._grp_types and self.stack.own_addr != self._grp_own:
            self._grp_readdress(self.stack.own_addr)
        if isinstance(ev, NodeDown):
            self._node_down(ev.addr, now)
        elif isinstance(ev, LinkWakeup):
            for port in list(self._cong):
                p = self._ports.get(port)
                if p is None:
                    self._cong.discard(port)
                else:
                    self._push(p, now)
        self._run(now)

    def _run(self, now: float, groups: bool = True) -> None:
        """Deliver node-local messages (kernel loopback), the topology server's and the
        groups' output until all are quiet. Re-entry safe: nested calls return at once."""
        if self._running:
            return
        lq = self._lq
        # quiet (the usual case, once per call into the layer): nothing to loop over.
        # TopSrv.take_outgoing() just swaps its ``_out`` list, so peeking is the same.
        if not lq and not self.topsrv._out and not (groups and self._gdirty):
            return
        self._running = True
        try:
            while True:
                while lq:
                    self._dispatch(lq.popleft(), now)
                if groups and self._gdirty:
                    self._grp_flush_all(now)
                    if lq:
                        continue
                out = self.topsrv.take_outgoing()
                if not out:
                    if lq or (groups and self._gdirty):
                        continue
                    break
                for conn_id, data in out:
                    srv = self._ports.get(cast(int, conn_id))
                    if srv is not None and srv.state == State.ESTABLISHED:
                        self._send_conn(srv, data, now)
        finally:
            self._running = False

    def _dispatch(self, msg: Msg, now: float) -> None:
        """kernel tipc_sk_rcv(): demultiplex by destination port."""
        w = msg.w
        self.counters["rx"] += 1
        user = (w[0] >> 25) & 0xF
        if user <= 3:
            mt = w[1] >> 29
            if mt == _MCAST:
                self._mcast_rcv(msg, now)
                return
            if mt >= _GRP_EVT:
                self._grp_rcv(msg, now)
                return
        p = self._ports.get(w[5])
        if user == _GROUP_PROTOCOL:
            if p is None or p.grp is None:
                self.counters["grp_no_group"] += 1
                self.counters["dropped"] += 1
                return
            p.grp.proto_rcv(msg, now)
            self._gdirty.add(p.port)
            return
        if p is None:
            self._no_port(msg, now)
            return
        if user == _CONN_MANAGER:
            self._conn_proto_rcv(p, msg, now)
        elif user <= 3:
            self._filter_rcv(p, msg, now)
        else:
            self.counters["dropped"] += 1

    def _reject(self, msg: Msg, err: int, now: float) -> None:
        r = _reverse(msg, err, self.stack.own_addr)
        if r is None:
            self.counters["dropped"] += 1
            return
        self.counters["rejected"] += 1
        self._xmit_sys(r.w[7], r, r.w[4], now)

    def _no_port(self, msg: Msg, now: float) -> None:
        """No such port: secondary lookup for named messages (once), else reject."""
        self.counters["no_port"] += 1
        w = msg.w
        err = _NO_PORT
        if (w[0] >> 25) & 0xF <= 3 and (w[1] >> 29) == _NAMED and not (w[1] >> 25) & 0xF:
            err = _NO_NAME
            if not (w[1] >> 21) & 0xF:  # reroute_cnt
                scope = (w[1] >> 19) & 3
                own = self.stack.own_addr
                r = self.table.lookup_anycast(w[8], w[9], own if scope == TIPC_NODE_SCOPE else 0)
                if r is not None and (self._local(r[0]) or self.stack.node_is_up(r[0])):
                    nw = list(w)
                    nw[1] += 1 << 21
                    if not self._local(r[0]):
                        nw[3] = own
                    nw[7], nw[5] = r
                    self.counters["rerouted"] += 1
                    self._xmit_sys(r[0], type(msg)(nw, msg.data), nw[4], now)
                    return
        self._reject(msg, err, now)

    def _mcast_rcv(self, msg: Msg, now: float) -> None:
        """kernel tipc_sk_mcast_rcv(): one copy per local port with a matching binding
        (node-scope bindings only for our own node's messages)."""
        w = msg.w
        if (w[1] >> 25) & 0xF:
            self.counters["dropped"] += 1  # method-switch dummy / returned mcast
            return
        own = self.stack.own_addr
        onode = w[6]
        scope = 10 if (onode == own or onode == 0) else TIPC_CLUSTER_SCOPE  # ANY/cluster
        ports = self.table.lookup_mcast_local(w[8], w[9], w[10], scope)
        cls = type(msg)
        for port in ports:
            p = self._ports.get(port)
            c = list(w)
            c[5] = port
            m = cls(c, msg.data)
            if p is None:
                self._reject(m, _NO_PORT, now)
            else:
                self._filter_rcv(p, m, now)

    def _filter_rcv(self, p: _Port, msg: Msg, now: float) -> None:
        """kernel tipc_sk_filter_rcv(): connection filter, rcvbuf, deliver or reject."""
        w = msg.w
        mtype = w[1] >> 29
        if p.grp is not None:  # kernel tipc_group_filter_msg: only group messages
            self.counters["grp_not_member"] += 1  # dropped, as the kernel does
            self.counters["dropped"] += 1
            return
        if p.conn:
            act = self._filter_connect(p, msg, now)
            if act is None:
                return
            if not act:
                self._reject(msg, _NO_PORT, now)
                return
        elif mtype == _CONN:
            self._reject(msg, _NO_PORT, now)
            return
        data = msg.data
        if mtype != _CONN:  # kernel rcvbuf_limit(): rcvbuf << msg_importance()
            limit = p.rcvbuf << ((w[0] >> 25) & 0xF if not (w[1] >> 25) & 0xF else 4)
        elif p.block:
            limit = p.rcvbuf
        else:
            limit = FLOWCTL_MSG_LIM
        if p.rcv_used + len(data) >= limit and data:
            p.drops += 1
            self.counters["overload"] += 1
            self._reject(msg, _OVERLOAD, now)
            return
        self._deliver(p, msg, False)

    def _deliver(self, p: _Port, msg: Msg, returned: bool) -> None:
        if p.role == "topsrv-conn":
            self._topsrv_rcv(p, msg, now=self._now)
            return
        w = msg.w
        data = msg.data
        mtype = w[1] >> 29
        if mtype == _NAMED:
            dest: tuple[int, int, int] | None = (w[8], w[9], w[9])
        elif mtype == _MCAST:
            dest = (w[8], w[9], w[10])
        elif mtype == _CONN and p.conn_name is not None:
            dest = (p.conn_name[0], p.conn_name[1], p.conn_name[1])
        else:
            dest = None
        nw = len(w)
        src = (w[4], w[6] if nw > 6 else w[3])
        err = (w[1] >> 25) & 0xF
        n = len(data)
        # p.blocks(hsize + n), inline
        p.rcvq.append([n, (4 * nw + n) // FLOWCTL_BLK_SZ + 1 if p.block else 1])
        p.rcv_used += n
        self._events.append(Deliver(p.port, data, src, dest, err, returned or bool(err),
                                    bool(w[0] & _Y_BIT)))

    # ---- connections
    def _filter_connect(self, p: _Port, msg: Msg, now: float) -> bool | None:
        """kernel tipc_sk_filter_connect(): True = queue for the application, False =
        reject (NO_PORT), None = handled here."""
        w = msg.w
        mtype = w[1] >> 29
        if mtype == _MCAST:
            return False
        con_msg = mtype == _CONN
        err = (w[1] >> 25) & 0xF
        oport = w[4]
        onode = w[6] if len(w) > 6 else w[3]
        st = p.state
        if p.closing:
            if con_msg and not err and oport == p.peer_port and onode == p.peer_node:
                self.counters["dropped"] += 1
                return None
            return False
        if st == State.CONNECTING:
            if con_msg:
                if not err:
                    self._finish_conn(p, oport, onode)
                    p.imp = (w[0] >> 25) & 0xF
                    self._events.append(Connected(p.port, (oport, onode)))
                    if msg.data:
                        return True
                    return None  # empty ACK: dropped
            else:
                if oport != p.peer_port or onode != p.peer_node:
                    return False
                if err == _OVERLOAD and p.syn_clone is not None:
                    delay = self.rng.getrandbits(16) % max(1, p.conn_timeout // 4)
                    p.retry_at = now + (delay + 100) / 1000.0
                    self._arm(p, p.retry_at)
                    return None
            # abort the connection attempt: refused
            p.state = State.DISCONNECTING
            p.syn_clone = None
            p.conn_deadline = None
            if msg.data:
                self._deliver(p, msg, True)
            self._events.append(ConnError(p.port, errno.ECONNREFUSED))
            return None
        if st in (State.OPEN, State.DISCONNECTING):
            return False
        if st == State.LISTEN:
            if not w[0] & _Y_BIT and self._peer_caps(onode) & Cap.SYN_BIT:
                return False
            if not con_msg and not err:
                self._accept(p, msg, oport, onode, now)
                return None
            return False
        # ESTABLISHED
        if con_msg and not err and oport == p.peer_port and onode == p.peer_node:
            return True
        if not self._peer_msg(p, msg):
            return False
        if not err:
            return True
        self._disconnect(p)
        if p.role == "topsrv-conn":
            self._topsrv_gone(p)
            return None
        if msg.data:
            self._deliver(p, msg, True)
        self._events.append(ConnError(p.port, 0 if err == _SHUTDOWN else errno.ECONNRESET))
        return None

    def _peer_msg(self, p: _Port, msg: Msg) -> bool:
        """kernel tsk_peer_msg(): from our connected peer?"""
        if p.state != State.ESTABLISHED or msg.w[4] != p.peer_port:
            return False
        w = msg.w
        onode = w[6] if len(w) > 6 else w[3]
        own = self.stack.own_addr
        return onode == p.peer_node or (not onode and p.peer_node == own) or (
            not p.peer_node and onode == own)

    def _peer_caps(self, node: int) -> int:
        if self._local(node):
            return _TOP_SRV_CAPS
        return self.stack.node_caps(node)

    def _finish_conn(self, p: _Port, port: int, node: int) -> None:
        """kernel tipc_sk_finish_conn()."""
        p.state = State.ESTABLISHED
        p.peer_port = port
        p.peer_node = node
        p.syn_clone = None
        p.conn_deadline = None
        p.retry_at = None
        self._conns.setdefault(node, set()).add(p.port)
        p.block = bool(self._peer_caps(node) & Cap.BLOCK_FLOWCTL)
        if not p.block:
            p.rcv_win = p.snd_win = FLOWCTL_MSG_WIN

    def _drop_conn(self, p: _Port) -> None:
        s = self._conns.get(p.peer_node)
        if s is not None:
            s.discard(p.port)
            if not s:
                del self._conns[p.peer_node]

    def _disconnect(self, p: _Port) -> None:
        if p.state in (State.CONNECTING, State.ESTABLISHED):
            p.state = State.DISCONNECTING
        self._drop_conn(p)
        p.txq.clear()
        self._cong.discard(p.port)
        p.link_cong = False
        p.conn_deadline = None
        p.retry_at = None

    def _accept(self, lp: _Port, syn: Msg, oport: int, onode: int, now: float) -> None:
        """A SYN on a listening port: new connected port, ACK back (tipc_accept)."""
        w = syn.w
        port = self._new_port_id()
        np = _Port(port, lp.sotype)
        self._ports[port] = np
        np.conn_timeout = lp.conn_timeout
        np.rcvbuf = lp.rcvbuf
        self._finish_conn(np, oport, onode)
        np.imp = (w[0] >> 25) & 0xF
        if (w[1] >> 29) == _NAMED:
            np.conn_name = (w[8], w[9])
        if lp.role == "topsrv":
            np.role = "topsrv-conn"
            self.topsrv.open(port)
        else:
            self._events.append(Accepted(lp.port, port, (oport, onode)))
        if syn.data:
            c = syn.copy()
            c.w[5] = port
            self._deliver(np, c, False)
        self._send_conn(np, b"", now)  # the empty ACK (__tipc_sendstream with 0 bytes)

    def _conn_proto_rcv(self, p: _Port, msg: Msg, now: float) -> None:
        """kernel tipc_sk_conn_proto_rcv(): CONN_ACK, CONN_PROBE, aborts."""
        if not self._peer_msg(p, msg):
            self.counters["dropped"] += 1
            return
        w = msg.w
        if (w[1] >> 25) & 0xF:
            self._disconnect(p)
            if p.role == "topsrv-conn":
                self._topsrv_gone(p)
            elif p.closing:
                self._remove(p)
            else:
                self._events.append(ConnError(p.port, errno.ECONNRESET))
            return
        mtype = w[1] >> 29
        if mtype == ConnMgrType.CONN_PROBE:
            r = _reverse(msg, 0, self.stack.own_addr)
            if r is not None:
                r.w[1] = (r.w[1] & ~(7 << 29)) | (ConnMgrType.CONN_PROBE_REPLY << 29)
                self._xmit_sys(r.w[7], r, p.port, now)
        elif mtype == ConnMgrType.CONN_ACK and len(w) > 9:
            p.snt_unacked = max(0, p.snt_unacked - (w[9] >> 16))
            if p.block:
                p.snd_win = w[9] & 0xFFFF
            self._push(p, now)

    def _conn_timeout(self, p: _Port, now: float) -> None:
        if p.state == State.CONNECTING:
            p.state = State.DISCONNECTING
            p.syn_clone = None
            p.retry_at = None
            p.txq.clear()
            self._events.append(ConnError(p.port, errno.ETIMEDOUT))
        elif p.fin_err >= 0:  # linger over: give up on the queued data
            err, p.fin_err = p.fin_err, -1
            p.txq.clear()
            self._send_fin(p, err, now)
            if p.closing:
                self._remove(p)
            else:
                self._disconnect(p)

    def _node_down(self, node: int, now: float) -> None:
        """kernel node_lost_contact(): every connection to the node gets NO_NODE ->
        ECONNRESET."""
        for port in sorted(self._conns.pop(node, ())):
            p = self._ports.get(port)
            if p is None or p.state != State.ESTABLISHED:
                continue
            self._disconnect(p)
            if p.role == "topsrv-conn":
                self._topsrv_gone(p)
            elif p.closing:
                self._remove(p)
            else:
                self._events.append(ConnError(port, errno.ECONNRESET))
        for port in list(self._cong):  # queued copies for the lost node go nowhere
            p = self._ports.get(port)
            if p is not None:
                self._push(p, now)

    def _arm(self, p: _Port, when: float, conn: bool = False) -> None:
        if conn:
            p.conn_deadline = when
        self._tseq += 1
        heapq.heappush(self._timers, (when, self._tseq, p.port))

    def _remove(self, p: _Port) -> None:
        self._drop_conn(p)
        self._cong.discard(p.port)
        self._ports.pop(p.port, None)
        if p.role == "topsrv-conn":
            self.topsrv.close(p.port)

    # ============================================================ topology server
    def _open_topsrv(self) -> None:
        """The topology server is a listening SEQPACKET port bound to {1,1,1}, node
        scope (kernel tipc_topsrv_create_listener)."""
        port = self._new_port_id()
        p = _Port(port, SOCK_SEQPACKET)
        p.role = "topsrv"
        p.imp = 3  # CRITICAL
        p.state = State.LISTEN
        self._ports[port] = p
        self.topsrv_port = port
        self._publish(p, TIPC_TOP_SRV, 1, 1, TIPC_NODE_SCOPE, 0.0)

    def _topsrv_rcv(self, p: _Port, msg: Msg, now: float) -> None:
        """A subscription from a local client: feed TopSrv, consume at once (the server
        reads everything), close on CloseConn."""
        hs = len(msg.w) * 4
        p.rcv_unacked += p.blocks(hs + len(msg.data))
        if not msg.data:
            return
        res = self.topsrv.receive(p.port, msg.data, now)
        self.stack.touch_upper()  # re-arm the node's timer for subscription timeouts
        if p.rcv_unacked >= p.rcv_win // TIPC_ACK_RATE and p.state == State.ESTABLISHED:
            self._send_ack(p, now)
        if res is not None:
            self._send_fin(p, _NO_PORT, now)
            self._remove(p)

    def _topsrv_gone(self, p: _Port) -> None:
        self._remove(p)

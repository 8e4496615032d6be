"""Communication groups: the kernel's net/tipc/group.c without the sockets.

Why this module exists: a socket that joins a group (``setsockopt(SOL_TIPC,
TIPC_GROUP_JOIN, struct tipc_group_req)``) gets a :class:`Group` object that keeps the
member table, runs the GROUP_PROTOCOL handshake and the per-member flow control, and
orders what arrives so that every receiver sees each sender's messages (broadcast,
multicast and unicast alike) and its join/leave events in the order they were sent.
The socket layer owns the syscalls, the name table and the links; this object only
decides. It is sans-IO and deterministic: decoded messages and name-table events come
in, ``(dest_node, Msg)`` pairs and ordered events for the socket go out.

Driving contract (what the socket layer calls, in kernel terms):

* ``Group(own_node, port, req)`` then ``join(existing_publications)``
  = ``tipc_group_create`` + ``tipc_nametbl_build_group`` + ``tipc_group_join``;
  ``leave()`` = ``tipc_group_delete`` (LEAVE to every member);
* ``name_event(publ, published, node_up)`` for every publication of the group's type
  (= the kernel's internal topology subscription, TIPC_SUB_PORTS|NO_STATUS);
* ``proto_rcv(GroupProtoMsg)`` for user GROUP_PROTOCOL addressed to the port;
* ``filter_msg(DataMsg)`` for data messages of types GRP_BCAST/GRP_MCAST/GRP_UCAST;
* ``consumed(node, port, nbytes)`` when the application read a group data message
  (``hsize + len(data)`` bytes, = ``tipc_group_update_rcv_win`` from recvmsg);
* ``send_unicast/send_anycast/send_mcast/send_bcast`` return False when the
  destination's window is too small: nothing was sent, wait for :class:`GroupWakeup`
  and call again (the kernel blocks in ``tipc_wait_for_cond``). They raise
  ``OSError(EHOSTUNREACH)`` when there is no destination member;
* ``take_outgoing()`` -> ``[(dest_node, Msg)]``; ``take_events()`` ->
  :class:`GroupDeliver`, :class:`MemberEvent` (in delivery order) and
  :class:`GroupWakeup`.

Integration in the socket layer (kernel socket.c, what calls what):

* setsockopt(SOL_TIPC, TIPC_GROUP_JOIN=135, 16-byte ``struct tipc_group_req``,
  host order, ``GroupReq.unpack``) on an RDM/DGRAM port = tipc_sk_join: EACCES if
  the port is already in a group; ``Group(...)`` (GroupReq.check: EACCES type < 64,
  EINVAL scope > 3); snapshot the name table's publications of the type; bind
  ``{type, instance, instance}`` with the group's scope (failure: drop the group,
  return the bind errno); ``join(snapshot)``; socket rcvbuf = its result.
  The port's header template gets nametype = type, lookup scope, dest_droppable.
* TIPC_GROUP_LEAVE=136 (no value) and close() = tipc_sk_leave: EINVAL without a
  group; ``leave()``, send its LEAVEs, then withdraw the publication.
  getsockopt(TIPC_GROUP_JOIN) returns the group type (0 when not in a group).
* bind()/connect()/a non-group sendto range on a group port: EACCES / EINVAL.
* name table observer: every insert/remove of the group's type -> ``name_event``
  with ``node_up = stack.node_is_up(p.node) or p.node is own``.
* arriving user GROUP_PROTOCOL (destport = the port) -> ``proto_rcv``; data of type
  GRP_UCAST (destport set) -> ``filter_msg``; GRP_BCAST/GRP_MCAST arrive with
  destport 0: give a copy (destport = that port) to every local port whose
  publication of ``nametype`` has scope == the message's lookup scope (kernel
  tipc_sk_mcast_rcv), its group's ``filter_msg``; group data for a port without a
  group is rejected (dest_droppable: dropped).
* sendto by address kind: none -> send_bcast, TIPC_ADDR_NAME -> send_anycast,
  TIPC_ADDR_ID -> send_unicast, TIPC_ADDR_NAMESEQ -> send_mcast.
* recv: GroupDeliver -> data with addresses ``(sock = orignode:origport, member =
  {nametype, instance})``; MemberEvent (when ``deliver``) -> 0 bytes, MSG_OOB, plus
  MSG_EOR when not ``up``; then ``consumed(node, port, hsize + len(data))`` for data.

Deliberate differences from the kernel (none visible on the wire):

* a GRP_MEMBER_EVT data message arriving from the network is dropped and counted (the
  kernel only ever makes them locally; it would let a forged one delete a member);
* a GRP_ACK_MSG while no broadcast ack is awaited is counted and ignored (the kernel's
  u16 counter would wrap and block broadcasts for good);
* when a member whose broadcast ack was awaited goes away and it was the last one,
  a :class:`GroupWakeup` follows (the kernel only decrements the count);
* windows are Python ints (never wrap); the wire fields are masked to 16 bits;
* the destinations of anycast/multicast come from the member table (members whose
  publication was seen), not from a second name-table lookup: the same set.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterable
from enum import IntEnum

from tipcpy.core._event import SlotEvent
from tipcpy.core.name_table import Publication
from tipcpy.wire.consts import (
    FLOWCTL_BLK_SZ,
    GROUP_H_SIZE,
    INT_H_SIZE,
    MAX_H_SIZE,
    MAX_MSG_SIZE,
    TIPC_CLUSTER_SCOPE,
    TIPC_CRITICAL_IMPORTANCE,
    TIPC_MAX_USER_MSG_SIZE,
    TIPC_NODE_SCOPE,
    TIPC_PUBLISHED,
    TIPC_RESERVED_TYPES,
    TIPC_WITHDRAWN,
    GroupType,
    User,
)
from tipcpy.wire.items import DecodeError, Event, Subscr
from tipcpy.wire.msg import DataMsg, GroupProtoMsg, Msg

__all__ = [
    "ADV_ACTIVE",
    "ADV_IDLE",
    "ADV_UNIT",
    "TIPC_GROUP_LOOPBACK",
    "TIPC_GROUP_MEMBER_EVTS",
    "Group",
    "GroupDeliver",
    "GroupReq",
    "GroupWakeup",
    "Member",
    "MemberEvent",
    "MemberState",
    "blocks",
    "check_proto",
    "member_event_msg",
]

#: Data message types of a group (msg.h TIPC_GRP_*).
GRP_MEMBER_EVT = 4
GRP_BCAST = 5
GRP_MCAST = 6
GRP_UCAST = 7

#: struct tipc_group_req flags (include/uapi/linux/tipc.h).
TIPC_GROUP_LOOPBACK = 0x1
TIPC_GROUP_MEMBER_EVTS = 0x2

#: Flow-control units: one unit can always carry the largest message.
ADV_UNIT = (MAX_MSG_SIZE + MAX_H_SIZE) // FLOWCTL_BLK_SZ + 1
ADV_IDLE = ADV_UNIT
ADV_ACTIVE = ADV_UNIT * 12

_M16 = 0xFFFF


def _less_eq(a: int, b: int) -> bool:
    return ((b - a) & _M16) < 0x8000


def _less(a: int, b: int) -> bool:
    return _less_eq(a, b) and (a & _M16) != (b & _M16)


def _more(a: int, b: int) -> bool:
    return not _less_eq(a, b)


def blocks(nbytes: int) -> int:
    """Kernel tsk_blocks()/msg_blocks(): flow-control blocks of header + data bytes."""
    return nbytes // FLOWCTL_BLK_SZ + 1


class MemberState(IntEnum):
    """enum mbr_state of group.c, same order."""

    JOINING = 0  # their JOIN arrived, their publication not yet
    PUBLISHED = 1  # their publication seen, our JOIN sent, theirs not yet
    JOINED = 2  # both: member in service, idle window
    PENDING = 3  # wants to go active, over the active limit
    ACTIVE = 4  # sending to us, large window advertised
    RECLAIMING = 5  # we asked for the large window back (RECLAIM sent)
    REMITTED = 6  # they gave it back, in-flight messages still to read
    LEAVING = 7  # LEAVE or withdrawal seen; deleted after its event


class GroupReq:
    """struct tipc_group_req {u32 type, instance, scope, flags} (16 bytes, host order)."""

    __slots__ = ("type", "instance", "scope", "flags")
    SIZE = 16

    def __init__(self, type: int, instance: int, scope: int = TIPC_CLUSTER_SCOPE,
                 flags: int = 0) -> None:
        self.type = type
        self.instance = instance
        self.scope = scope
        self.flags = flags

    @classmethod
    def unpack(cls, buf: bytes, byteorder: str = sys.byteorder) -> GroupReq:
        """setsockopt's option value (host byte order, as the application packed it);
        EINVAL when shorter than the struct, extra bytes ignored (kernel)."""
        if len(buf) < cls.SIZE:
            raise OSError(errno.EINVAL, f"struct tipc_group_req needs {cls.SIZE} bytes")
        v = [int.from_bytes(buf[i:i + 4], byteorder) for i in range(0, 16, 4)]  # type: ignore[arg-type]
        return cls(v[0], v[1], v[2], v[3])

    def pack(self, byteorder: str = sys.byteorder) -> bytes:
        return b"".join(
            (x & 0xFFFFFFFF).to_bytes(4, byteorder)  # type: ignore[arg-type]
            for x in (self.type, self.instance, self.scope, self.flags)
        )

    def check(self) -> int:
        """tipc_sk_join()'s checks; returns the effective scope (cluster unless node)."""
        if self.type < TIPC_RESERVED_TYPES:
            raise OSError(errno.EACCES, f"group type {self.type} is reserved (< 64)")
        if self.scope > TIPC_NODE_SCOPE:
            raise OSError(errno.EINVAL, f"group scope {self.scope} is not 1..3")
        return TIPC_NODE_SCOPE if self.scope == TIPC_NODE_SCOPE else TIPC_CLUSTER_SCOPE


class Member:
    """struct tipc_member: our view of one other member (or of ourselves, loopback)."""

    __slots__ = ("node", "port", "instance", "state", "advertised", "window",
                 "bc_rcv_nxt", "bc_syncpt", "bc_acked", "deferred")

    def __init__(self, node: int, port: int, instance: int, state: MemberState,
                 bc_acked: int) -> None:
        self.node = node
        self.port = port
        self.instance = instance
        self.state = state
        self.advertised = 0  # blocks we let them send us, not yet read
        self.window = 0  # blocks they let us send them
        self.bc_rcv_nxt = 0
        self.bc_syncpt = 0
        self.bc_acked = bc_acked
        self.deferred: list[DataMsg | _EvtMarker] = []

    @property
    def is_receiver(self) -> bool:
        return self.state not in (MemberState.JOINING, MemberState.LEAVING)

    @property
    def is_sender(self) -> bool:
        return self.state not in (MemberState.JOINING, MemberState.PUBLISHED)

    def __repr__(self) -> str:
        return (f"Member({self.node:#x}:{self.port} inst={self.instance} {self.state.name}"
                f" win={self.window} adv={self.advertised} rcv_nxt={self.bc_rcv_nxt})")


class _EvtMarker:
    """A member event waiting in the member's deferred queue (kernel: an empty
    GRP_MEMBER_EVT skb sorted like a unicast, so it follows that member's traffic)."""

    __slots__ = ("event", "seqno")

    def __init__(self, event: int, seqno: int) -> None:
        self.event = event
        self.seqno = seqno


# ---------------------------------------------------------------- events
class GroupDeliver(SlotEvent):
    """A group data message for the application, in the order the group guarantees.
    ``instance`` is the sending member's instance (recvmsg's second address)."""

    __slots__ = ("msg", "instance")

    def __init__(self, msg: DataMsg, instance: int) -> None:
        self.msg = msg
        self.instance = instance


class MemberEvent(SlotEvent):
    """A member joined (``up``) or left. The kernel delivers it as an empty message with
    MSG_OOB (plus MSG_EOR when it left); recvmsg's addresses are the member's socket
    ``{node, port}`` and its service ``{type, instance}``. ``deliver`` is False when the
    socket did not ask for events (TIPC_GROUP_MEMBER_EVTS): the membership still changed."""

    __slots__ = ("node", "port", "type", "instance", "up", "deliver")

    def __init__(self, node: int, port: int, type: int, instance: int, up: bool,
                 deliver: bool = True) -> None:
        self.node = node
        self.port = port
        self.type = type
        self.instance = instance
        self.up = up
        self.deliver = deliver


def member_event_msg(g: Group, ev: MemberEvent) -> DataMsg:
    """The event as the kernel queues it on the socket (tipc_group_create_event): an
    empty-to-the-user GRP_MEMBER_EVT, CRITICAL importance, from the member's socket
    to ours, with grp_evt 1/2 and a struct tipc_event (host order) as payload. For a
    socket layer that wants one receive queue of messages; recvmsg copies 0 bytes,
    sets MSG_OOB (and MSG_EOR when ``grp_evt`` is 2)."""
    evt = TIPC_PUBLISHED if ev.up else TIPC_WITHDRAWN
    sub = Subscr(ev.type, ev.instance, ev.instance, 0, 0)
    body = Event(evt, ev.instance, ev.instance, ev.port, ev.node, sub).pack(
        sys.byteorder == "big")
    m = Msg.build(TIPC_CRITICAL_IMPORTANCE, GRP_MEMBER_EVT, GROUP_H_SIZE, body,
                  prevnode=ev.node, orignode=ev.node, origport=ev.port,
                  destnode=g.own_node, destport=g.port, nametype=ev.type,
                  dest_droppable=1)
    assert isinstance(m, DataMsg)
    m.grp_evt = evt
    return m


class GroupWakeup(SlotEvent):
    """A window opened (or broadcast acks completed): a blocked send may retry."""

    __slots__ = ()

    def __init__(self) -> None:
        pass


GroupEvent = GroupDeliver | MemberEvent | GroupWakeup


def check_proto(m: Msg) -> GroupProtoMsg:
    """Structural checks on an arriving GROUP_PROTOCOL message; DecodeError if bad."""
    if not isinstance(m, GroupProtoMsg):
        raise DecodeError("user", 0, "not a GROUP_PROTOCOL message", m.user)
    if len(m.w) * 4 < INT_H_SIZE:
        raise DecodeError("hsize", 0, f"GROUP_PROTOCOL needs a {INT_H_SIZE}-byte header",
                          len(m.w) * 4)
    if m.mtype > GroupType.REMIT:
        raise DecodeError("mtype", 4, "GROUP_PROTOCOL type must be 0..5", m.mtype)
    return m


# ---------------------------------------------------------------- the group
class Group:
    """struct tipc_group: one per socket that joined a group."""

    def __init__(self, own_node: int, port: int, req: GroupReq,
                 importance: int = 0) -> None:
        self.scope = req.check()
        self.own_node = own_node
        self.port = port
        self.type = req.type
        self.instance = req.instance
        self.loopback = bool(req.flags & TIPC_GROUP_LOOPBACK)
        self.events = bool(req.flags & TIPC_GROUP_MEMBER_EVTS)
        self.importance = importance
        self.members: dict[tuple[int, int], Member] = {}
        self.small_win: list[Member] = []  # receivers with window < ADV_IDLE, smallest first
        self.pending: list[Member] = []
        self.active: list[Member] = []
        self.active_cnt = 0
        self.max_active = 0
        self.bc_snd_nxt = 0
        self.bc_ackers = 0
        self.open = False  # kernel tsk->group_is_open: poll() says writable
        #: kernel mc_method "rcast && mandatory": the next broadcast must go by
        #: replicast and asks for acks (set at join and by every unicast).
        self.bc_ack_next = True
        self.closed = False
        self._rr = 0
        self._out: list[tuple[int, Msg]] = []
        self._events: list[GroupEvent] = []
        self.counters: dict[str, int] = {
            "bad_proto": 0, "proto_no_member": 0, "proto_scope": 0, "not_member": 0,
            "old_seqno": 0, "evt_from_wire": 0, "unexpected_ack": 0,
            "unexpected_remit": 0, "not_group": 0, "mcast_not_for_us": 0,
        }

    # ------------------------------------------------------------ contract
    def take_outgoing(self) -> list[tuple[int, Msg]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[GroupEvent]:
        ev, self._events = self._events, []
        return ev

    def next_deadline(self) -> float | None:
        """Groups have no timers (the links retransmit)."""
        return None

    def tick(self, now: float) -> None:
        return None

    def rcvbuf_limit(self) -> int:
        """Kernel tipc_group_rcvbuf_limit(): receive buffer (bytes) the socket should
        get, sized for max_active active and the rest idle members; sets max_active."""
        mcnt = len(self.members) + 1
        self.max_active = max(min(mcnt // 8, 64), 16)
        active_pool = self.max_active * ADV_ACTIVE
        idle_pool = (mcnt - self.max_active) * ADV_IDLE
        return (active_pool + idle_pool) * FLOWCTL_BLK_SZ * 4

    def member_list(self) -> list[Member]:
        return [self.members[k] for k in sorted(self.members)]

    # ------------------------------------------------------------ join / leave
    def join(self, existing: Iterable[Publication], now: float = 0.0) -> int:
        """Take the group's existing publications (kernel build_group: same type, same
        scope), send JOIN to each; returns the receive buffer size to set."""
        for p in existing:
            if p.type != self.type or p.scope != self.scope:
                continue
            node = p.node or self.own_node
            if self._is_self(node, p.port) and not self.loopback:
                continue
            if (node, p.port) not in self.members:
                self._create_member(node, p.port, p.lower, MemberState.PUBLISHED)
        for m in self.member_list():
            self._proto_xmit(m, GroupType.JOIN)
            self._update_member(m, 0)
        self.bc_ack_next = True
        return self.rcvbuf_limit()

    def leave(self, now: float = 0.0) -> None:
        """Kernel tipc_group_delete(): LEAVE to every member, forget everything.
        The socket then withdraws its publication."""
        if self.closed:
            raise OSError(errno.EINVAL, "group already left")
        for m in self.member_list():
            self._proto_xmit(m, GroupType.LEAVE)
        self.members.clear()
        self.small_win.clear()
        self.pending.clear()
        self.active.clear()
        self.active_cnt = 0
        self.closed = True

    # ------------------------------------------------------------ name table events
    def name_event(self, p: Publication, published: bool, node_up: bool = True,
                   now: float = 0.0) -> int | None:
        """One publication of any type was inserted (``published``) or removed.
        ``node_up``: can a LEAVE still come from that node (kernel tipc_node_is_up;
        True for the own node). Returns the new receive buffer size, or None when the
        event is not about this group."""
        if self.closed or p.type != self.type or p.scope != self.scope:
            return None
        node, port = p.node or self.own_node, p.port
        if not self.loopback and self._is_self(node, port):
            return None
        m = self.members.get((node, port))
        if published:
            if m is None:
                m = self._create_member(node, port, p.lower, MemberState.PUBLISHED)
                self._update_member(m, 0)
                self._proto_xmit(m, GroupType.JOIN)
            elif m.state == MemberState.JOINING:
                m.instance = p.lower
                m.state = MemberState.JOINED
                self._open(m)
                self._update_member(m, 0)
                self._proto_xmit(m, GroupType.JOIN)
                self._create_event(m, TIPC_PUBLISHED, m.bc_syncpt)
        elif m is not None:
            self._decr_active(m)
            m.state = MemberState.LEAVING
            self._unlist(m)
            self._open(m)
            if not node_up:  # no LEAVE message will come
                self._create_event(m, TIPC_WITHDRAWN, m.bc_rcv_nxt)
        return self.rcvbuf_limit()

    # ------------------------------------------------------------ GROUP_PROTOCOL in
    def proto_rcv(self, msg: Msg, now: float = 0.0) -> None:
        """A GROUP_PROTOCOL message addressed to this socket."""
        try:
            hdr = check_proto(msg)
        except DecodeError:
            self.counters["bad_proto"] += 1
            return
        if self.closed:
            self.counters["proto_no_member"] += 1
            return
        node, port = hdr.orignode, hdr.origport
        if self.scope == TIPC_NODE_SCOPE and node != self.own_node:
            self.counters["proto_scope"] += 1
            return
        m = self.members.get((node, port))
        mt = hdr.mtype
        if mt == GroupType.JOIN:
            if m is None:
                m = self._create_member(node, port, 0, MemberState.JOINING)
            m.bc_syncpt = hdr.bc_syncpt
            m.bc_rcv_nxt = m.bc_syncpt
            m.window += hdr.adv_win
            if m.state != MemberState.PUBLISHED:
                return  # wait for the publication
            m.state = MemberState.JOINED
            self._open(m)
            self._update_member(m, 0)
            self._proto_xmit(m, GroupType.ADV)
            self._create_event(m, TIPC_PUBLISHED, m.bc_syncpt)
            return
        if m is None:
            self.counters["proto_no_member"] += 1
            return
        if mt == GroupType.LEAVE:
            m.bc_syncpt = hdr.bc_syncpt
            self._unlist(m)
            self._open(m)
            self._decr_active(m)
            m.state = MemberState.LEAVING
            self._create_event(m, TIPC_WITHDRAWN, m.bc_syncpt)
        elif mt == GroupType.ADV:
            m.window += hdr.adv_win
            self._open(m)
        elif mt == GroupType.ACK:
            m.bc_acked = hdr.bc_acked
            if self.bc_ackers == 0:
                self.counters["unexpected_ack"] += 1
                return
            self.bc_ackers -= 1
            if self.bc_ackers:
                return
            self._unsmall(m)
            self._wakeup()
            self._update_member(m, 0)
        elif mt == GroupType.RECLAIM:
            self._proto_xmit(m, GroupType.REMIT)
            m.window = ADV_IDLE
            self._open(m)
        elif mt == GroupType.REMIT:
            if m.state != MemberState.RECLAIMING:
                self.counters["unexpected_remit"] += 1
                return
            remitted = hdr.remitted
            if m.advertised > remitted:  # messages before the REMIT still unread
                m.state = MemberState.REMITTED
                m.advertised = ADV_IDLE + (m.advertised - remitted)
                return
            if m.advertised < remitted:
                self.counters["unexpected_remit"] += 1
            m.state = MemberState.JOINED
            self.active_cnt -= 1
            m.advertised = ADV_IDLE
            if self.pending:
                pm = self.pending.pop(0)
                pm.state = MemberState.ACTIVE
                self.active.append(pm)
                self.active_cnt += 1
                if pm.advertised <= ADV_ACTIVE * 3 // 4:
                    self._proto_xmit(pm, GroupType.ADV)

    # ------------------------------------------------------------ data in
    def filter_msg(self, msg: DataMsg, now: float = 0.0) -> None:
        """A group data message (GRP_BCAST/MCAST/UCAST) for this socket: sort it into
        the sender's deferred queue and deliver what is now in order."""
        mt = msg.mtype
        if msg.user > TIPC_CRITICAL_IMPORTANCE or mt < GRP_MEMBER_EVT:
            self.counters["not_group"] += 1
            return
        if mt == GRP_MEMBER_EVT:
            self.counters["evt_from_wire"] += 1
            return
        m = self.members.get((msg.orignode, msg.origport))
        if m is None or not m.is_sender:
            self.counters["not_member"] += 1
            return
        if _less(msg.grp_bc_seqno, m.bc_rcv_nxt):
            self.counters["old_seqno"] += 1
            return
        self._sort_in(m, msg)
        self._drain(m)

    def consumed(self, node: int, port: int, nbytes: int, now: float = 0.0) -> None:
        """The application read a group data message of ``nbytes`` (header + data)
        from member ``{node, port}``: reopen its window as the kernel's recvmsg does."""
        self._update_rcv_win(blocks(nbytes), node, port)

    # ------------------------------------------------------------ send side
    def cong(self, dnode: int, dport: int, blks: int) -> tuple[bool, Member | None]:
        """Kernel tipc_group_cong(): (congested, member). Member None = no such
        receiver. When congested and the member's advertisement is not full, ask it
        (ADV) so two blocked members cannot wait for each other forever."""
        m = self.members.get((dnode, dport))
        if m is None or not m.is_receiver:
            return False, None
        if m.window >= blks:
            return False, m
        self.open = False
        adv, st = m.advertised, m.state
        if (st == MemberState.JOINED and adv == ADV_IDLE) or \
                (st == MemberState.ACTIVE and adv == ADV_ACTIVE) or \
                (st == MemberState.PENDING and adv == ADV_IDLE):
            return True, m
        self._proto_xmit(m, GroupType.ADV)
        return True, m

    def bc_cong(self, blks: int) -> bool:
        """Kernel tipc_group_bc_cong(): a broadcast waits for the acks of a previous
        replicast, and for the smallest window among the receivers."""
        if self.bc_ackers:
            self.open = False
            return True
        if not self.small_win:
            return False
        m = self.small_win[0]
        if m.window >= blks:
            return False
        return self.cong(m.node, m.port, blks)[0]

    def send_unicast(self, dnode: int, dport: int, data: bytes, now: float = 0.0,
                     importance: int | None = None) -> bool:
        """Group unicast to a member's socket address (sendto TIPC_ADDR_ID)."""
        self._check_send(data)
        blks = blocks(GROUP_H_SIZE + len(data))
        congested, m = self.cong(dnode, dport, blks)
        if m is None:
            raise OSError(errno.EHOSTUNREACH, f"{dnode:#x}:{dport} is not a group member")
        if congested:
            return False
        self._send_msg(m, data, importance)
        return True

    def send_anycast(self, instance: int, data: bytes, now: float = 0.0,
                     importance: int | None = None) -> bool:
        """Group anycast to one member with ``instance`` (sendto TIPC_ADDR_NAME):
        round robin over the receivers, skipping congested ones; False when all are."""
        self._check_send(data)
        blks = blocks(GROUP_H_SIZE + len(data))
        cands = [m for m in self.member_list()
                 if m.instance == instance and m.state != MemberState.JOINING
                 and (self.loopback or not self._is_self(m.node, m.port))]
        if not cands:
            raise OSError(errno.EHOSTUNREACH, f"no member with instance {instance}")
        k = self._rr % len(cands)
        cands = cands[k:] + cands[:k]
        seen = False
        for m in cands:
            congested, mb = self.cong(m.node, m.port, blks)
            if mb is None:
                continue
            seen = True
            if not congested:
                self._rr += 1
                self._send_msg(mb, data, importance)
                return True
        if not seen:
            raise OSError(errno.EHOSTUNREACH, f"no member with instance {instance} in service")
        return False

    def send_mcast(self, lower: int, upper: int, data: bytes, now: float = 0.0,
                   importance: int | None = None) -> bool:
        """Group multicast (sendto TIPC_ADDR_NAMESEQ). As the kernel (lookup_group with
        the address's instance = ``lower``; ``upper`` plays no part): the members with
        instance ``lower`` are the destinations; one -> a plain group unicast, more ->
        a GRP_MCAST to every member node, kept only by the members of that instance."""
        self._check_send(data)
        dsts = [m for m in self.member_list()
                if m.instance == lower and m.state != MemberState.JOINING
                and (self.loopback or not self._is_self(m.node, m.port))]
        if not dsts:
            raise OSError(errno.EHOSTUNREACH, f"no member with instance {lower}")
        if len(dsts) == 1:
            return self.send_unicast(dsts[0].node, dsts[0].port, data, now, importance)
        return self._send_bc(GRP_MCAST, lower, data, importance, None)

    def send_bcast(self, data: bytes, now: float = 0.0, importance: int | None = None,
                   ack: bool | None = None) -> bool:
        """Group broadcast (send() without address). ``ack`` overrides the kernel's
        rule (ask for acks when the method is forced to replicast)."""
        self._check_send(data)
        return self._send_bc(GRP_BCAST, 0, data, importance, ack)

    # ------------------------------------------------------------ internals
    def _is_self(self, node: int, port: int) -> bool:
        return port == self.port and node in (self.own_node, 0)

    def _check_send(self, data: bytes) -> None:
        if self.closed:
            raise OSError(errno.EINVAL, "group already left")
        if len(data) > TIPC_MAX_USER_MSG_SIZE:
            raise OSError(errno.EMSGSIZE, f"message of {len(data)} bytes exceeds 66000")

    def _create_member(self, node: int, port: int, instance: int,
                       state: MemberState) -> Member:
        m = Member(node, port, instance, state, (self.bc_snd_nxt - 1) & _M16)
        self.members[(node, port)] = m
        return m

    def _delete_member(self, m: Member) -> None:
        self.members.pop((m.node, m.port), None)
        if self.bc_ackers and _less(m.bc_acked, (self.bc_snd_nxt - 1) & _M16):
            self.bc_ackers -= 1
            if not self.bc_ackers:
                self._wakeup()
        self._unlist(m)
        self._unsmall(m)
        self._decr_active(m)
        m.deferred.clear()

    def _unlist(self, m: Member) -> None:
        for lst in (self.active, self.pending):
            if m in lst:
                lst.remove(m)

    def _unsmall(self, m: Member) -> None:
        if m in self.small_win:
            self.small_win.remove(m)

    def _decr_active(self, m: Member) -> None:
        if m.state in (MemberState.ACTIVE, MemberState.RECLAIMING, MemberState.REMITTED):
            self.active_cnt -= 1

    def _wakeup(self) -> None:
        self.open = True
        self._events.append(GroupWakeup())

    def _open(self, m: Member) -> None:
        """Kernel tipc_group_open(): a member left the small-window list."""
        if m in self.small_win:
            self.small_win.remove(m)
            self._wakeup()

    def _update_member(self, m: Member, blks: int) -> None:
        """Kernel tipc_group_update_member(): spend window, keep small_win sorted."""
        if not m.is_receiver:
            return
        m.window -= blks
        if m.window >= ADV_IDLE:
            return
        self._unsmall(m)
        for i, o in enumerate(self.small_win):
            if o.window > m.window:
                self.small_win.insert(i, m)
                break
        else:
            self.small_win.append(m)

    def _proto_xmit(self, m: Member, mtype: int) -> None:
        hdr = Msg.build(User.GROUP_PROTOCOL, mtype, INT_H_SIZE,
                        prevnode=self.own_node, orignode=self.own_node,
                        origport=self.port, destnode=m.node, destport=m.port)
        assert isinstance(hdr, GroupProtoMsg)
        adv = 0
        if m.state == MemberState.ACTIVE:
            adv = ADV_ACTIVE - m.advertised
        elif m.state in (MemberState.JOINED, MemberState.PENDING):
            adv = ADV_IDLE - m.advertised
        if mtype == GroupType.JOIN:
            hdr.bc_syncpt = self.bc_snd_nxt
            hdr.adv_win = adv
            m.advertised += adv
        elif mtype == GroupType.LEAVE:
            hdr.bc_syncpt = self.bc_snd_nxt
        elif mtype == GroupType.ADV:
            hdr.adv_win = adv
            m.advertised += adv
        elif mtype == GroupType.ACK:
            hdr.bc_acked = m.bc_rcv_nxt
        elif mtype == GroupType.REMIT:
            hdr.remitted = max(m.window, 0)
        hdr.dest_droppable = 1
        self._out.append((m.node, hdr))

    def _data_hdr(self, mtype: int, dnode: int, dport: int, inst: int, data: bytes,
                  importance: int | None) -> DataMsg:
        imp = self.importance if importance is None else importance
        m = Msg.build(imp, mtype, GROUP_H_SIZE, data, prevnode=self.own_node,
                      orignode=self.own_node, origport=self.port, destnode=dnode,
                      destport=dport, nametype=self.type, nameinst=inst,
                      lookup_scope=self.scope, dest_droppable=1)
        assert isinstance(m, DataMsg)
        m.grp_bc_seqno = self.bc_snd_nxt
        return m

    def _send_msg(self, m: Member, data: bytes, importance: int | None) -> None:
        """Kernel tipc_send_group_msg(): one GRP_UCAST, window spent, and the next
        broadcast forced onto the same (replicast) path."""
        msg = self._data_hdr(GRP_UCAST, m.node, m.port, 0, data, importance)
        self._out.append((m.node, msg))
        self._update_member(m, blocks(GROUP_H_SIZE + len(data)))
        self.bc_ack_next = True

    def _send_bc(self, mtype: int, inst: int, data: bytes, importance: int | None,
                 ack: bool | None) -> bool:
        nodes = sorted({m.node for m in self.members.values()})
        if not nodes:
            raise OSError(errno.EHOSTUNREACH, "the group has no other member")
        blks = blocks(GROUP_H_SIZE + len(data))
        if self.bc_cong(blks):
            return False
        want_ack = self.bc_ack_next if ack is None else ack
        tmpl = self._data_hdr(mtype, 0, 0, inst, data, importance)
        tmpl.grp_bc_ack_req = 1 if want_ack else 0
        for n in nodes:  # replicast: one copy per node with members (kernel dests)
            c = DataMsg(list(tmpl.w), tmpl.data)
            c.destnode = n
            c.is_rcast = 1
            self._out.append((n, c))
        self._update_bc_members(blks, want_ack)
        self.bc_ack_next = False
        return True

    def _update_bc_members(self, blks: int, ack: bool) -> None:
        prev = (self.bc_snd_nxt - 1) & _M16
        ackers = 0
        for m in self.member_list():
            if m.is_receiver:
                self._update_member(m, blks)
                m.bc_acked = prev
                ackers += 1
        if ack:
            self.bc_ackers = ackers
        self.bc_snd_nxt = (self.bc_snd_nxt + 1) & _M16

    def _create_event(self, m: Member, event: int, seqno: int) -> None:
        self._sort_in(m, _EvtMarker(event, seqno & _M16))
        self._drain(m)

    @staticmethod
    def _sort_in(m: Member, item: DataMsg | _EvtMarker) -> None:
        """Kernel tipc_group_sort_msg(): broadcasts may have been overtaken by
        unicasts or later broadcasts, so they go before the first later seqno;
        unicasts and events are never overtaken: to the tail."""
        q = m.deferred
        if isinstance(item, DataMsg) and item.mtype in (GRP_BCAST, GRP_MCAST):
            seq = item.grp_bc_seqno
            for i, o in enumerate(q):
                oseq = o.seqno if isinstance(o, _EvtMarker) else o.grp_bc_seqno
                if _less(seq, oseq):
                    q.insert(i, item)
                    return
        q.append(item)

    def _drain(self, m: Member) -> None:
        """The delivery loop of tipc_group_filter_msg()."""
        q = m.deferred
        while q:
            item = q[0]
            seq = item.seqno if isinstance(item, _EvtMarker) else item.grp_bc_seqno
            if _more(seq, m.bc_rcv_nxt):
                break
            q.pop(0)
            if isinstance(item, _EvtMarker):
                leave = m.state == MemberState.LEAVING
                self._events.append(MemberEvent(
                    m.node, m.port, self.type, m.instance, item.event == TIPC_PUBLISHED,
                    self.events))
                if leave:
                    self._delete_member(m)
                    return
                continue
            mt = item.mtype
            deliver, update, ack = True, False, False
            if mt in (GRP_MCAST, GRP_BCAST):
                if mt == GRP_MCAST and item.nameinst != self.instance:
                    deliver, update = False, True
                    self.counters["mcast_not_for_us"] += 1
                m.bc_rcv_nxt = (m.bc_rcv_nxt + 1) & _M16
                ack = bool(item.grp_bc_ack_req)
            if deliver:
                self._events.append(GroupDeliver(item, m.instance))
            if ack:
                self._proto_xmit(m, GroupType.ACK)
            if update:
                self._update_rcv_win(blocks(item.size), m.node, m.port)

    def _update_rcv_win(self, blks: int, node: int, port: int) -> None:
        """Kernel tipc_group_update_rcv_win(): what we read from a member reopens its
        window; a busy member goes active (bigger window), and when too many are
        active the oldest is asked to give its big window back (RECLAIM)."""
        m = self.members.get((node, port))
        if m is None:
            return
        m.advertised -= blks
        max_active = self.max_active
        reclaim_limit = max_active * 3 // 4
        active_cnt = self.active_cnt
        st = m.state
        if st == MemberState.JOINED:
            if active_cnt <= max_active:
                m.state = MemberState.ACTIVE
                self.active.append(m)
                self.active_cnt += 1
                self._proto_xmit(m, GroupType.ADV)
            else:
                m.state = MemberState.PENDING
                self.pending.append(m)
            if active_cnt < reclaim_limit:
                return
            if self.active:
                rm = self.active.pop(0)
                rm.state = MemberState.RECLAIMING
                self._proto_xmit(rm, GroupType.RECLAIM)
                return
            pm = self.pending.pop(0)
            pm.state = MemberState.JOINED
            self._proto_xmit(pm, GroupType.ADV)
        elif st == MemberState.ACTIVE:
            if m in self.active and self.active[-1] is not m:
                self.active.remove(m)
                self.active.append(m)
            if m.advertised > ADV_ACTIVE * 3 // 4:
                return
            self._proto_xmit(m, GroupType.ADV)
        elif st == MemberState.REMITTED:
            if m.advertised > ADV_IDLE:
                return
            m.state = MemberState.JOINED
            self.active_cnt -= 1
            if m.advertised < ADV_IDLE:
                self._proto_xmit(m, GroupType.ADV)
            if not self.pending:
                return
            pm = self.pending.pop(0)
            pm.state = MemberState.ACTIVE
            self.active.append(pm)
            self.active_cnt += 1
            self._proto_xmit(pm, GroupType.ADV)

"""One peer node: its (up to two) links, the node FSM, and its broadcast receive side.

Mirrors the kernel's ``net/tipc/node.c`` (facts, not code):

* The node FSM (:data:`NODE_FSM`) with the kernel's states.  A new peer starts in
  ``SELF_DOWN_PEER_LEAVING``: until the peer shows it has no contact with us either
  (a RESET/ACTIVATE with ``redundant_link`` 0), nothing it sends is accepted.  This is
  what makes both sides purge each other's bindings before they link up again.
* The node is *up* while at least one link is active.  Active links by priority: a
  higher priority link is the sole active one (the other is standby); equal priorities
  are both active and a message picks ``active[selector & 1]``.
* Broadcast receive, minimal (§6.4, §9.3): the peer's ``BCAST_PROTOCOL`` init sets our
  broadcast ``rcv_nxt`` = ``last_bcast`` + 1; in-order ``non_seq`` packets from the peer
  (single NAME_DISTRIBUTOR updates, bundles, multicast data) are delivered and acked via
  ``bcast_ack`` in our unicast traffic.  We never broadcast: ``last_bcast`` stays 0 and
  multicast goes by replicast over the unicast links.

* Failover and synch (TUNNEL_PROTOCOL, user 10), as node.c / link.c do them:

  - a link going down while a parallel one stays up tunnels everything it still
    owed the peer in FAILOVER_MSGs over the survivor (:meth:`Link.tnl_xmit` with the
    :class:`~tipcpy.core.link.LinkResidue` its LinkDown carries), goes
    FAILINGOVER, and the node NODE_FAILINGOVER; the survivor delivers the tunnelled
    packets once and in the failed link's order (its ``drop_point``).  The peer,
    seeing a FAILOVER_MSG while its end of the failed link still looks up, takes
    that end down the same way.  Failover ends when the tunnel link has received
    everything up to the synch point (the tunnelled packet count).
  - a second link coming up sends a SYNCH_MSG as its first packet, carrying the
    synch point (last seqno of the old link); the receiver holds the new link's
    traffic (node NODE_SYNCHING, link SYNCHING) until the old link has delivered up
    to it, so moving a port to the other link never reorders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from tipcpy.core._event import SlotEvent
from tipcpy.core.link import (
    FAILOVER_MSG,
    SYNCH_MSG,
    Delivered,
    Link,
    LinkDown,
    LinkEvent,
    LinkResidue,
    LinkState,
    LinkUp,
)
from tipcpy.wire import BundleMsg, DecodeError
from tipcpy.wire.consts import Cap, ErrCode, LinkProtoType, User
from tipcpy.wire.msg import (
    DEST_DROPPABLE_BIT,
    ERRCODE_MASK,
    ERRCODE_SHIFT,
    MTYPE_SHIFT,
    SEQNO_MASK,
    USER_MASK,
    USER_SHIFT,
)

__all__ = [
    "NodeState",
    "NodeEvt",
    "NODE_FSM",
    "node_fsm",
    "PeerNode",
    "NodeUp",
    "NodeDown",
    "LinkStateChanged",
    "NodeReceived",
    "LinkEntry",
    "BcastRcv",
]


class NodeState(IntEnum):
    """Node FSM states, values as in the kernel (node.c)."""

    SELF_DOWN_PEER_DOWN = 0xDD
    SELF_UP_PEER_UP = 0xAA
    SELF_DOWN_PEER_LEAVING = 0xD1
    SELF_UP_PEER_COMING = 0xAC
    SELF_COMING_PEER_UP = 0xCA
    SELF_LEAVING_PEER_DOWN = 0x1D
    NODE_FAILINGOVER = 0xF0
    NODE_SYNCHING = 0xCC


class NodeEvt(IntEnum):
    SELF_ESTABL_CONTACT_EVT = 0xECE
    SELF_LOST_CONTACT_EVT = 0x1CE
    PEER_ESTABL_CONTACT_EVT = 0x9ECE
    PEER_LOST_CONTACT_EVT = 0x91CE
    NODE_FAILOVER_BEGIN_EVT = 0xFBE
    NODE_FAILOVER_END_EVT = 0xFEE
    NODE_SYNCH_BEGIN_EVT = 0xCBE
    NODE_SYNCH_END_EVT = 0xCEE


S, E = NodeState, NodeEvt
NODE_FSM: dict[tuple[NodeState, NodeEvt], NodeState] = {
    # (state, event): next state, the kernel's tipc_node_fsm_evt().  A legal event that
    # changes nothing maps to its own state; absent pairs are illegal: counted
    # (PeerNode.illegal_evts) and the state left alone, as the kernel does.
    (S.SELF_DOWN_PEER_DOWN, E.SELF_ESTABL_CONTACT_EVT): S.SELF_UP_PEER_COMING,
    (S.SELF_DOWN_PEER_DOWN, E.PEER_ESTABL_CONTACT_EVT): S.SELF_COMING_PEER_UP,
    (S.SELF_DOWN_PEER_DOWN, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_DOWN,
    (S.SELF_DOWN_PEER_DOWN, E.PEER_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_DOWN,
    (S.SELF_UP_PEER_UP, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_LEAVING,
    (S.SELF_UP_PEER_UP, E.PEER_LOST_CONTACT_EVT): S.SELF_LEAVING_PEER_DOWN,
    (S.SELF_UP_PEER_UP, E.NODE_SYNCH_BEGIN_EVT): S.NODE_SYNCHING,
    (S.SELF_UP_PEER_UP, E.NODE_FAILOVER_BEGIN_EVT): S.NODE_FAILINGOVER,
    (S.SELF_UP_PEER_UP, E.SELF_ESTABL_CONTACT_EVT): S.SELF_UP_PEER_UP,
    (S.SELF_UP_PEER_UP, E.PEER_ESTABL_CONTACT_EVT): S.SELF_UP_PEER_UP,
    (S.SELF_UP_PEER_UP, E.NODE_SYNCH_END_EVT): S.SELF_UP_PEER_UP,
    (S.SELF_UP_PEER_UP, E.NODE_FAILOVER_END_EVT): S.SELF_UP_PEER_UP,
    (S.SELF_DOWN_PEER_LEAVING, E.PEER_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_DOWN,
    (S.SELF_DOWN_PEER_LEAVING, E.SELF_ESTABL_CONTACT_EVT): S.SELF_DOWN_PEER_LEAVING,
    (S.SELF_DOWN_PEER_LEAVING, E.PEER_ESTABL_CONTACT_EVT): S.SELF_DOWN_PEER_LEAVING,
    (S.SELF_DOWN_PEER_LEAVING, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_LEAVING,
    (S.SELF_UP_PEER_COMING, E.PEER_ESTABL_CONTACT_EVT): S.SELF_UP_PEER_UP,
    (S.SELF_UP_PEER_COMING, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_DOWN,
    (S.SELF_UP_PEER_COMING, E.SELF_ESTABL_CONTACT_EVT): S.SELF_UP_PEER_COMING,
    (S.SELF_UP_PEER_COMING, E.PEER_LOST_CONTACT_EVT): S.SELF_UP_PEER_COMING,
    (S.SELF_UP_PEER_COMING, E.NODE_SYNCH_END_EVT): S.SELF_UP_PEER_COMING,
    (S.SELF_UP_PEER_COMING, E.NODE_FAILOVER_BEGIN_EVT): S.SELF_UP_PEER_COMING,
    (S.SELF_COMING_PEER_UP, E.SELF_ESTABL_CONTACT_EVT): S.SELF_UP_PEER_UP,
    (S.SELF_COMING_PEER_UP, E.PEER_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_DOWN,
    (S.SELF_COMING_PEER_UP, E.SELF_LOST_CONTACT_EVT): S.SELF_COMING_PEER_UP,
    (S.SELF_COMING_PEER_UP, E.PEER_ESTABL_CONTACT_EVT): S.SELF_COMING_PEER_UP,
    (S.SELF_LEAVING_PEER_DOWN, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_DOWN,
    (S.SELF_LEAVING_PEER_DOWN, E.SELF_ESTABL_CONTACT_EVT): S.SELF_LEAVING_PEER_DOWN,
    (S.SELF_LEAVING_PEER_DOWN, E.PEER_ESTABL_CONTACT_EVT): S.SELF_LEAVING_PEER_DOWN,
    (S.SELF_LEAVING_PEER_DOWN, E.PEER_LOST_CONTACT_EVT): S.SELF_LEAVING_PEER_DOWN,
    (S.NODE_FAILINGOVER, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_LEAVING,
    (S.NODE_FAILINGOVER, E.PEER_LOST_CONTACT_EVT): S.SELF_LEAVING_PEER_DOWN,
    (S.NODE_FAILINGOVER, E.NODE_FAILOVER_END_EVT): S.SELF_UP_PEER_UP,
    (S.NODE_FAILINGOVER, E.NODE_FAILOVER_BEGIN_EVT): S.NODE_FAILINGOVER,
    (S.NODE_FAILINGOVER, E.SELF_ESTABL_CONTACT_EVT): S.NODE_FAILINGOVER,
    (S.NODE_FAILINGOVER, E.PEER_ESTABL_CONTACT_EVT): S.NODE_FAILINGOVER,
    (S.NODE_SYNCHING, E.SELF_LOST_CONTACT_EVT): S.SELF_DOWN_PEER_LEAVING,
    (S.NODE_SYNCHING, E.PEER_LOST_CONTACT_EVT): S.SELF_LEAVING_PEER_DOWN,
    (S.NODE_SYNCHING, E.NODE_SYNCH_END_EVT): S.SELF_UP_PEER_UP,
    (S.NODE_SYNCHING, E.NODE_FAILOVER_BEGIN_EVT): S.NODE_FAILINGOVER,
    (S.NODE_SYNCHING, E.NODE_SYNCH_BEGIN_EVT): S.NODE_SYNCHING,
    (S.NODE_SYNCHING, E.SELF_ESTABL_CONTACT_EVT): S.NODE_SYNCHING,
    (S.NODE_SYNCHING, E.PEER_ESTABL_CONTACT_EVT): S.NODE_SYNCHING,
}
del S, E


def node_fsm(state: NodeState, evt: NodeEvt) -> NodeState | None:
    """Next state, or None for an illegal event (same shape as link.link_fsm)."""
    return NODE_FSM.get((state, evt))


# ---------------------------------------------------------------- events
@dataclass(frozen=True)
class NodeUp:
    addr: int
    node_id: bytes


@dataclass(frozen=True)
class NodeDown:
    """Lost contact: the layers above purge the peer's bindings and abort connections."""

    addr: int
    node_id: bytes = b""


@dataclass(frozen=True)
class LinkStateChanged:
    """A link to ``peer`` went up or down.  ``link_id`` = (peer_bearer_id << 16) | bearer_id,
    the port of the ``{2, peer, peer}`` link-state publication."""

    link_name: str
    up: bool
    peer: int
    bearer_id: int
    peer_bearer_id: int = 0
    reason: str = ""

    @property
    def link_id(self) -> int:
        return (self.peer_bearer_id << 16) | self.bearer_id


class NodeReceived(SlotEvent):
    """A message for the layers above, from peer ``addr`` (unicast link or broadcast);
    ``bearer_id`` None = arrived on the peer's broadcast link.  A plain slots class,
    not a frozen dataclass: one is made per received message (see core/_event.py)."""

    __slots__ = ("addr", "msg", "bearer_id")

    def __init__(self, addr: int, msg: Any, bearer_id: int | None = None) -> None:
        self.addr = addr
        self.msg = msg
        self.bearer_id = bearer_id


# ---------------------------------------------------------------- parts
@dataclass
class LinkEntry:
    """Kernel tipc_link_entry: the link plus the peer's media address on that bearer."""

    link: Link
    media_addr: Any
    bearer_id: int


@dataclass
class BcastRcv:
    """Receive side of the peer's broadcast link ("broadcast-link:<peer>")."""

    synced: bool = False
    rcv_nxt: int = 1
    deferred: dict[int, Any] = field(default_factory=dict)
    rx_pkts: int = 0
    rx_dups: int = 0
    rx_unsynced: int = 0
    rx_deferred: int = 0

    @property
    def ack(self) -> int:
        return (self.rcv_nxt - 1) & 0xFFFF


BCAST_RCV_WINDOW = 8191


def _less(a: int, b: int) -> bool:
    return a != b and ((b - a) & 0xFFFF) < 0x8000


_BCAST_PROTOCOL = int(User.BCAST_PROTOCOL)
_TUNNEL = int(User.TUNNEL_PROTOCOL)
_LINK_PROTOCOL = int(User.LINK_PROTOCOL)
_UP_UP = NodeState.SELF_UP_PEER_UP
_REDUNDANT_SHIFT = 12  # w5 of RESET/ACTIVATE: the peer node is up (redundant_link)
_MSGCNT_SHIFT = 16  # w9 of TUNNEL_PROTOCOL: msgcnt / syncpt
_RESET_STATES = frozenset({LinkState.RESET, LinkState.FAILINGOVER, LinkState.ESTABLISHING})
"""Kernel tipc_link_is_reset()."""
MAX_SYNCH_HELD = 16384
"""Packets of a synching link held until the synch point (the kernel drops them and
lets the peer retransmit; holding is bounded by the peer's window and saves that)."""


def _more(a: int, b: int) -> bool:
    return _less(b, a)

LinkFactory = Callable[[int], "Link"]  # bearer_id -> new Link


class PeerNode:
    """The view of one remote node: links, node FSM, active-link selection, bcast rcv."""

    MAX_LINKS = 2

    def __init__(self, *, addr: int, node_id: bytes, caps: int, signature: int) -> None:
        self.addr = addr
        self.node_id = node_id
        self.caps = caps
        self.signature = signature
        self.state = NodeState.SELF_DOWN_PEER_LEAVING
        self.links: dict[int, LinkEntry] = {}
        self.active: list[int | None] = [None, None]
        self.bc = BcastRcv()
        self.illegal_evts = 0
        self.rx_dropped_state = 0
        self.up_since: float | None = None
        self._events: list[object] = []
        self._out: list[tuple[int, Any, bytes]] = []
        self._reassembler: Any = None
        self.sync_point = 0
        """Failover: last tunnel-link seqno to wait for; synch: the old link's."""
        self._held: list[tuple[int, Any]] = []
        self.rx_synch_held = 0
        self.rx_synch_dropped = 0
        self.returned_no_node = 0

    # ---- FSM ------------------------------------------------------------------------
    def fsm_evt(self, evt: NodeEvt) -> None:
        """Apply one FSM event: the only way the state changes after creation."""
        nxt = NODE_FSM.get((self.state, evt))
        if nxt is None:
            self.illegal_evts += 1
            return
        self.state = nxt

    @property
    def is_up(self) -> bool:
        """Kernel node_is_up(): an active link exists."""
        return self.active[0] is not None

    # ---- discovery: kernel tipc_node_check_dest --------------------------------------
    def check_dest(self, bearer_id: int, media_addr: Any, signature: int, caps: int,
                   now: float, create_link: LinkFactory) -> bool:
        """Apply a REQ/RESP from this peer; returns True if it looks like a duplicate.

        The kernel's eight cases of (signature match, media address match, link up):
        accept a new address/signature only while the link on that bearer is not up;
        a mismatch while it is up is a duplicate (or a rebooted peer the link will
        notice soon).
        """
        if caps != self.caps:
            self.caps = caps  # "same node may come back with new capabilities"
        le = self.links.get(bearer_id)
        link_up = le is not None and le.link.is_up
        addr_match = le is not None and le.media_addr == media_addr
        sign_match = signature == self.signature
        accept_addr = False
        dupl = False
        reset = False
        if sign_match and addr_match:
            pass
        elif sign_match and not addr_match:
            if link_up:
                dupl = True
            else:
                accept_addr = reset = True
        elif not sign_match and addr_match:
            self.signature = signature  # peer rebooted; link resets if needed
        else:
            if link_up:
                dupl = True
            else:
                self.signature = signature
                accept_addr = reset = True
        if not accept_addr:
            return dupl
        if le is None:
            if len(self.links) >= self.MAX_LINKS:
                return dupl
            link = create_link(bearer_id)
            le = LinkEntry(link, media_addr, bearer_id)
            self.links[bearer_id] = le
            link.peer_node_up = self.is_up
            link.bc_ack_invalid = not self.bc.synced
            link.bcast_ack = self.bc.ack
            link.start(now)
            if self.state == NodeState.NODE_FAILINGOVER:
                link.fsm_evt(LinkEvent.FAILOVER_BEGIN)
            self._collect(le)
        else:
            le.media_addr = media_addr
            if reset and not le.link.is_up:
                pass  # kernel: link already reset, nothing to do
        return dupl

    # ---- receive --------------------------------------------------------------------
    def _parallel(self, le: LinkEntry) -> LinkEntry | None:
        for o in self.links.values():
            if o is not le:
                return o
        return None

    def _check_state(self, le: LinkEntry, msg: Any, now: float) -> bool:
        """Kernel tipc_node_check_state: accept this packet?  Also where failover
        and synch start and end on the receive side."""
        st = self.state
        w = msg.w
        user = (w[0] >> USER_SHIFT) & USER_MASK
        if st == _UP_UP and user != _TUNNEL:
            return True  # (the usual case: nothing to check)
        link = le.link
        proto_reset = user == _LINK_PROTOCOL and w[1] >> MTYPE_SHIFT != LinkProtoType.STATE
        if st == NodeState.SELF_UP_PEER_COMING:
            if link.is_up and not proto_reset:
                self.fsm_evt(NodeEvt.PEER_ESTABL_CONTACT_EVT)
        if st == NodeState.SELF_DOWN_PEER_LEAVING:
            # msg_peer_node_is_up(): data/STATE say yes; RESET/ACTIVATE carry the bit
            peer_node_up = (not proto_reset) or bool((w[5] >> _REDUNDANT_SHIFT) & 1)
            if peer_node_up:
                self.rx_dropped_state += 1
                return False
            self.fsm_evt(NodeEvt.PEER_LOST_CONTACT_EVT)
            return True
        if st == NodeState.SELF_LEAVING_PEER_DOWN:
            self.rx_dropped_state += 1
            return False
        seqno = w[2] & SEQNO_MASK
        if user != _LINK_PROTOCOL and _less(seqno, link.rcv_nxt):
            return True  # a duplicate: the link drops it
        ple = self._parallel(le)
        pl = ple.link if ple is not None else None
        mtyp = w[1] >> MTYPE_SHIFT
        if user == _TUNNEL and mtyp == FAILOVER_MSG and len(w) > 9:
            syncpt = (seqno + (w[9] >> _MSGCNT_SHIFT) - 1) & 0xFFFF
            if ple is not None and pl is not None and pl.state not in _RESET_STATES:
                residue = pl.failover_down(now)
                self._collect(ple, now)
                self._link_down(ple, now, "failover started by the peer", residue=residue)
            if self.state != NodeState.NODE_FAILINGOVER:
                self._half_failover(pl, le, now)
            if _less(syncpt, self.sync_point):
                self.sync_point = syncpt
        if self.state == NodeState.NODE_FAILINGOVER and link.is_up:
            if _more(link.rcv_nxt, self.sync_point):
                self._failover_end(le, now)
            return True
        if pl is None or not pl.is_up:
            return True
        if user == _TUNNEL and mtyp == SYNCH_MSG and seqno == 1 and len(w) > 9:
            if not msg.data:  # enhanced: the synch point itself
                syncpt = w[9] >> _MSGCNT_SHIFT
            else:
                inner_seq = int.from_bytes(bytes(msg.data[10:12]), "big") \
                    if len(msg.data) >= 12 else 0
                syncpt = (inner_seq + (w[9] >> _MSGCNT_SHIFT) - 1) & 0xFFFF
            if not link.is_up and link.activate(now):
                self._collect(le, now)
            if self.state == _UP_UP and link.is_up:
                self.sync_point = syncpt
                link.fsm_evt(LinkEvent.SYNCH_BEGIN)
                self.fsm_evt(NodeEvt.NODE_SYNCH_BEGIN_EVT)
        if self.state == NodeState.NODE_SYNCHING:
            if self._synch_check(now):
                return True
            if link.state is not LinkState.SYNCHING:
                return True  # the old link
            if user == _TUNNEL and mtyp == SYNCH_MSG or user == _LINK_PROTOCOL:
                return True
            if len(self._held) < MAX_SYNCH_HELD:
                self._held.append((le.bearer_id, msg))
                self.rx_synch_held += 1
            else:
                self.rx_synch_dropped += 1
            return False
        return True

    def _synch_check(self, now: float) -> bool:
        """End synch when the old link has delivered past the synch point."""
        tnl = old = None
        for o in self.links.values():
            if o.link.state is LinkState.SYNCHING:
                tnl = o.link
            else:
                old = o.link
        if tnl is None or old is None or not old.is_up \
                or _more(old.rcv_nxt, self.sync_point):
            if tnl is not None:
                tnl.fsm_evt(LinkEvent.SYNCH_END)
            self.fsm_evt(NodeEvt.NODE_SYNCH_END_EVT)
            return True
        return False

    def _half_failover(self, pl: Link | None, tle: LinkEntry, now: float) -> None:
        """Kernel tipc_node_link_failover: the peer fails over onto ``tle`` but we
        never started (our end of the other link was already reset)."""
        tnl = tle.link
        if not tnl.is_up:
            return
        if pl is not None and pl.state not in _RESET_STATES:
            return
        tnl.fsm_evt(LinkEvent.SYNCH_END)
        self.fsm_evt(NodeEvt.NODE_SYNCH_END_EVT)
        self.sync_point = (tnl.rcv_nxt + 0x7FFE) & 0xFFFF
        # a FAILOVER_MSG so that the peer, too, leaves NODE_FAILINGOVER
        tnl.tnl_xmit(FAILOVER_MSG, [tnl.dummy_pkt(0)], tnl.peer_bearer_id, now)
        tnl.failover_rx(None)
        if pl is not None:
            pl.fsm_evt(LinkEvent.FAILOVER_BEGIN)
        self.fsm_evt(NodeEvt.NODE_FAILOVER_BEGIN_EVT)
        self._collect(tle, now)

    def _failover_end(self, tle: LinkEntry, now: float) -> None:
        self.fsm_evt(NodeEvt.NODE_FAILOVER_END_EVT)
        for o in list(self.links.values()):
            if o is not tle and o.link.state is LinkState.FAILINGOVER:
                o.link.failover_end(now)
                self._collect(o, now)

    def _after_receive(self, le: LinkEntry, now: float) -> None:
        """End failover / synch as soon as the packet just taken got there (the
        kernel notices on the next packet)."""
        st = self.state
        if st == NodeState.NODE_FAILINGOVER:
            if le.link.is_up and _more(le.link.rcv_nxt, self.sync_point):
                self._failover_end(le, now)
        elif st == NodeState.NODE_SYNCHING:
            self._synch_check(now)
        if self._held and self.state != NodeState.NODE_SYNCHING:
            self._release_held(now)

    def _release_held(self, now: float) -> None:
        held, self._held = self._held, []
        for o in list(self.links.values()):
            if o.link.is_up:
                o.link.resume(now)
                self._collect(o, now)
        for bid, m in held:
            self.receive(bid, m, now)

    def receive(self, bearer_id: int, msg: Any, now: float) -> bool:
        """A decoded unicast packet from this peer on ``bearer_id``; False if dropped."""
        le = self.links.get(bearer_id)
        if le is None:
            return False
        if self.state != _UP_UP or (msg.w[0] >> USER_SHIFT) & USER_MASK == _TUNNEL:
            if not self._check_state(le, msg, now):
                return False
            le.link.receive(msg, now)
            self._collect(le, now)
            self._after_receive(le, now)
            return True
        le.link.receive(msg, now)
        self._collect(le, now)
        return True

    def bcast_receive(self, msg: Any, now: float) -> None:
        """A non_seq packet the peer sent on its broadcast link."""
        bc = self.bc
        if not bc.synced or not self.is_up:
            bc.rx_unsynced += 1
            return
        seqno = msg.seqno
        if seqno != bc.rcv_nxt:
            if _less(seqno, bc.rcv_nxt):
                bc.rx_dups += 1
            elif ((seqno - bc.rcv_nxt) & 0xFFFF) <= BCAST_RCV_WINDOW:
                if seqno in bc.deferred:
                    bc.rx_dups += 1
                else:
                    bc.deferred[seqno] = msg
                    bc.rx_deferred += 1
            else:
                bc.rx_dups += 1
            return
        self._bc_deliver(msg, now)
        bc.rcv_nxt = (bc.rcv_nxt + 1) & 0xFFFF
        while bc.rcv_nxt in bc.deferred:
            m = bc.deferred.pop(bc.rcv_nxt)
            self._bc_deliver(m, now)
            bc.rcv_nxt = (bc.rcv_nxt + 1) & 0xFFFF
        self._update_bc_ack()

    def _bc_deliver(self, msg: Any, now: float) -> None:
        self.bc.rx_pkts += 1
        user = msg.user
        if user == User.MSG_BUNDLER:
            from tipcpy.wire.bundle import unbundle

            for inner in unbundle(msg):
                self._events.append(NodeReceived(self.addr, inner, None))
            return
        if user == User.MSG_FRAGMENTER:
            if self._reassembler is None:
                from tipcpy.wire.fragment import Reassembler

                self._reassembler = Reassembler()
            whole = self._reassembler.feed(msg)
            if whole is not None:
                self._events.append(NodeReceived(self.addr, whole, None))
            return
        self._events.append(NodeReceived(self.addr, msg, None))

    def _bc_init(self, msg: Any) -> None:
        """The peer's BCAST_PROTOCOL init over the unicast link: our sync point."""
        self.bc.synced = True
        self.bc.rcv_nxt = (msg.last_bcast + 1) & 0xFFFF
        self.bc.deferred.clear()
        self._update_bc_ack()

    def _update_bc_ack(self) -> None:
        for le in self.links.values():
            le.link.bcast_ack = self.bc.ack
            le.link.bc_ack_invalid = not self.bc.synced

    # ---- send -----------------------------------------------------------------------
    def send(self, msg: Any, selector: int, now: float) -> bool:
        """Send an upper-layer message over the active link chosen by ``selector & 1``."""
        bid = self.active[selector & 1]
        if bid is None:
            return False
        le = self.links[bid]
        ok = bool(le.link.send(msg, now))
        self._collect(le, now)
        return ok

    # ---- links up/down --------------------------------------------------------------
    def _recompute_active(self) -> None:
        """Highest priority working links are active: one gets both slots, two share."""
        up = [le for le in self.links.values() if le.link.is_up]
        if not up:
            self.active = [None, None]
            return
        best = max(le.link.priority for le in up)
        act = sorted(le.bearer_id for le in up if le.link.priority == best)
        old = [b for b in self.active if b is not None and b in act]
        if len(act) == 1:
            self.active = [act[0], act[0]]
        else:
            first = old[0] if old else act[0]
            second = act[1] if first == act[0] else act[0]
            self.active = [first, second]

    def active_links(self) -> list[int]:
        return sorted({b for b in self.active if b is not None})

    def _link_up(self, le: LinkEntry, now: float) -> None:
        was_up = self.is_up
        old_bid = self.active[0]
        self._recompute_active()
        link = le.link
        self._events.append(LinkStateChanged(link.name, True, self.addr, le.bearer_id,
                                             link.peer_bearer_id))
        if not was_up:
            self.fsm_evt(NodeEvt.SELF_ESTABL_CONTACT_EVT)
            self.up_since = now
            for other in self.links.values():
                other.link.peer_node_up = True
            self._events.append(NodeUp(self.addr, self.node_id))
            return
        # Second link (kernel __tipc_node_link_up -> tipc_link_tnl_prepare(SYNCH)):
        # its first packet tells the peer the last seqno the old link carries before
        # traffic may move, and the peer holds this link's traffic until then.
        ole = self.links.get(old_bid) if old_bid is not None else None
        if ole is None or ole is le or not ole.link.is_up:
            return
        ol = ole.link
        # a kernel reads the synch point from the header if *we* advertise the cap
        if link.own_caps & Cap.TUNNEL_ENHANCED:
            syncpt = (ol.snd_nxt + ol.backlog_pkts - 1) & 0xFFFF
            link.tnl_xmit(SYNCH_MSG, [b""], ol.peer_bearer_id, now, syncpt=syncpt)
        else:
            ol.send_dummy(now)  # legacy: a copy of everything the old link owes
            self._collect(ole, now)
            link.tnl_xmit(SYNCH_MSG, ol.unacked_packets(), ol.peer_bearer_id, now)
        link.stats.synchs += 1

    def _link_down(self, le: LinkEntry, now: float, reason: str = "",
                   peer_reset: bool = False, residue: LinkResidue | None = None) -> None:
        """Kernel __tipc_node_link_down.  ``peer_reset``: the link went down because
        the peer reset it (tipc_link_peer_is_down), so the peer has lost contact too.
        ``residue``: what the link still owed and held, failed over to the parallel
        link when there is one."""
        was_up = self.is_up
        self._recompute_active()
        link = le.link
        self._events.append(LinkStateChanged(link.name, False, self.addr, le.bearer_id,
                                             link.peer_bearer_id, reason))
        if not self.is_up:
            if was_up:
                if peer_reset:
                    self.fsm_evt(NodeEvt.PEER_LOST_CONTACT_EVT)
                self.fsm_evt(NodeEvt.SELF_LOST_CONTACT_EVT)
                if residue is not None:
                    self._return_undelivered(residue)
                self._lost_contact(now)
            return
        # a working link remains: fail over onto it
        bid = self.active[0]
        assert bid is not None
        tle = self.links[bid]
        tnl = tle.link
        tnl.fsm_evt(LinkEvent.SYNCH_END)
        self.fsm_evt(NodeEvt.NODE_SYNCH_END_EVT)
        self.sync_point = (tnl.rcv_nxt + 0x7FFE) & 0xFFFF
        if residue is not None:
            tnl.tnl_xmit(FAILOVER_MSG, residue.pkts, residue.peer_bearer_id, now)
        tnl.failover_rx(residue)
        if link.state is not LinkState.FAILINGOVER:
            link.fsm_evt(LinkEvent.FAILOVER_BEGIN)
        link.stats.failovers += 1
        self.fsm_evt(NodeEvt.NODE_FAILOVER_BEGIN_EVT)
        self._collect(tle, now)
        if self._held:
            self._release_held(now)

    def _return_undelivered(self, residue: LinkResidue) -> None:
        """The node is gone with messages still unacked on its last link: give each
        connectionless data message whose sender wants it back (not dest_droppable)
        back to it with TIPC_ERR_NO_NODE, as a returned message from the peer - the
        socket layer reports it with TIPC_ERRINFO.  (A message the peer got but had
        not acked yet comes back too: the sender cannot tell the two apart.)
        Connection messages are not returned: the connection aborts instead."""
        from tipcpy.wire import decode
        from tipcpy.wire.bundle import unbundle

        msgs: list[Any] = []
        todo = list(residue.pkts)
        while todo:
            raw = todo.pop(0)
            try:
                m = decode(raw)
                user = (m.w[0] >> USER_SHIFT) & USER_MASK
                if isinstance(m, BundleMsg):
                    msgs.extend(unbundle(m))
                elif user <= 3:
                    msgs.append(m)
                elif user == _TUNNEL and m.data:
                    # failed over once already: this link carried the residue of a
                    # link that died before it, in FAILOVER_MSG; a tunnel fragment
                    # (a message too big for one packet) is not returnable.
                    inner = bytes(m.data)
                    if len(inner) >= 24 and (inner[0] >> 1) & 0xF != int(User.MSG_FRAGMENTER):
                        todo.append(inner)
            except DecodeError:
                continue
        for m in msgs:
            w = m.w
            if (w[0] >> USER_SHIFT) & USER_MASK > 3 or len(w) < 8:
                continue
            if w[0] & DEST_DROPPABLE_BIT or (w[1] >> ERRCODE_SHIFT) & ERRCODE_MASK \
                    or w[1] >> MTYPE_SHIFT == 0 or not w[4]:  # CONN, or the dummy
                continue
            nw = list(w)
            nw[1] = (nw[1] & ~(ERRCODE_MASK << ERRCODE_SHIFT)) \
                | (int(ErrCode.TIPC_ERR_NO_NODE) << ERRCODE_SHIFT)
            nw[4], nw[5] = w[5], w[4]  # origport <-> destport
            nw[3] = self.addr  # prevnode: returned "by" the lost node
            nw[6], nw[7] = self.addr, w[6]
            self.returned_no_node += 1
            self._events.append(NodeReceived(self.addr, type(m)(nw, m.data), None))

    def _lost_contact(self, now: float = 0.0) -> None:
        """Kernel node_lost_contact: clean broadcast state, end any failover, tell
        the layers above."""
        self.up_since = None
        self._held = []
        for le in list(self.links.values()):
            if le.link.state is LinkState.FAILINGOVER:
                le.link.failover_end(now)
        self.bc = BcastRcv()
        self._reassembler = None
        for le in self.links.values():
            le.link.peer_node_up = False
            le.link.bc_ack_invalid = True
            le.link.bcast_ack = 0
        self._events.append(NodeDown(self.addr, self.node_id))

    def remove_link(self, bearer_id: int, now: float, reason: str = "bearer disabled") -> None:
        """Bearer disabled: politely reset the link and forget it."""
        le = self.links.get(bearer_id)
        if le is None:
            return
        was_up = le.link.is_up
        le.link.reset(now, reason)
        residue = self._collect(le, now, suppress_down=True)
        del self.links[bearer_id]
        if was_up:
            self._link_down(le, now, reason, residue=residue)

    # ---- driving --------------------------------------------------------------------
    def _collect(self, le: LinkEntry, now: float = 0.0,
                 suppress_down: bool = False) -> LinkResidue | None:
        """Pull the link's packets and events; react to up/down and internal messages.
        With ``suppress_down`` a LinkDown is not acted on: its residue is returned."""
        link = le.link
        for data in link.take_outgoing():
            self._out.append((le.bearer_id, le.media_addr, data))
        evs = link.take_events()
        if not evs:
            return None
        residue: LinkResidue | None = None
        events = self._events
        addr = self.addr
        bid = le.bearer_id
        for ev in evs:
            if type(ev) is Delivered:  # the per-message case first
                m = ev.msg
                if (m.w[0] >> USER_SHIFT) & USER_MASK == _BCAST_PROTOCOL:
                    self._bc_init(m)
                else:
                    events.append(NodeReceived(addr, m, bid))
            elif type(ev) is LinkUp:
                self._link_up(le, now)
            elif type(ev) is LinkDown:
                if not suppress_down:
                    self._link_down(le, now, ev.reason, ev.peer_reset, ev.residue)
                else:
                    residue = ev.residue
            else:
                events.append(ev)  # e.g. LinkWakeup: for the socket layer
        # a state change may have produced more packets (e.g. STATE after link up)
        for data in link.take_outgoing():
            self._out.append((le.bearer_id, le.media_addr, data))
        return residue

    def tick(self, now: float, early: float = 0.0) -> None:
        """Tick the links that are due (periodic parts due within ``early`` too)."""
        for le in list(self.links.values()):
            d = le.link.next_deadline()
            if d is not None and d <= now + early:
                le.link.tick(now, early)
            self._collect(le, now)

    def next_deadline(self) -> float | None:
        best: float | None = None
        for le in self.links.values():
            d = le.link.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    def take_outgoing(self) -> list[tuple[int, Any, bytes]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[object]:
        ev, self._events = self._events, []
        return ev

"""PeerNode: FSM table, node up/down, active link selection, broadcast receive side.

Uses a scripted fake Link so the node logic is tested on its own, independent of the
real link's timing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tipcpy.core.link import Delivered, LinkDown, LinkEvent, LinkState, LinkUp
from tipcpy.core.node import (
    NODE_FSM,
    LinkStateChanged,
    NodeDown,
    NodeEvt,
    NodeReceived,
    NodeState,
    NodeUp,
    PeerNode,
    node_fsm,
)
from tipcpy.wire import Msg
from tipcpy.wire.consts import LinkProtoType, NameDistrType, User


class FakeLink:
    def __init__(self, bearer_id: int, priority: int = 10) -> None:
        self.name = f"a:b{bearer_id}-peer:b{bearer_id}"
        self.bearer_id = bearer_id
        self.priority = priority
        self.is_up = False
        self.started = False
        self.bcast_ack = 0
        self.bc_ack_invalid = True
        self.last_bcast = 0
        self.peer_node_up = False
        self.received: list[Msg] = []
        self.sent: list[Msg] = []
        self._ev: list[object] = []
        self.mtu = 1500
        self.peer_bearer_id = 0
        # what the node's failover / synch reads and drives
        self.fsm: list[LinkEvent] = []
        self.tunnelled: list[tuple[int, int, int | None]] = []  # (mtyp, npkts, syncpt)
        self.fo_rx: list[Any] = []
        self.rcv_nxt = 1
        self.snd_nxt = 1
        self.backlog_pkts = 0
        self.own_caps = 0x37F
        self.stats = SimpleNamespace(failovers=0, synchs=0)
        self._failingover = False

    @property
    def state(self) -> LinkState:
        if self._failingover:
            return LinkState.FAILINGOVER
        return LinkState.ESTABLISHED if self.is_up else LinkState.RESET

    def fsm_evt(self, evt: LinkEvent) -> bool:
        self.fsm.append(evt)
        if evt is LinkEvent.FAILOVER_BEGIN:
            self._failingover = True
        return False

    def tnl_xmit(self, mtyp: int, pkts: list[bytes], bid: int, now: float,
                 syncpt: int | None = None) -> int:
        self.tunnelled.append((mtyp, len(pkts), syncpt))
        return len(pkts)

    def failover_rx(self, residue: Any) -> None:
        self.fo_rx.append(residue)

    def failover_end(self, now: float) -> None:
        self._failingover = False
        self.fsm.append(LinkEvent.FAILOVER_END)

    def start(self, now: float) -> None:
        self.started = True

    def receive(self, msg: Msg, now: float) -> None:
        self.received.append(msg)

    def send(self, msg: Msg, now: float) -> bool:
        self.sent.append(msg)
        return True

    def reset(self, now: float, reason: str) -> None:
        if self.is_up:
            self.is_up = False
            self._ev.append(LinkDown(reason))

    def tick(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def take_outgoing(self) -> list[bytes]:
        return []

    def take_events(self) -> list[object]:
        ev, self._ev = self._ev, []
        return ev

    # test helpers
    def come_up(self) -> None:
        self.is_up = True
        self._ev.append(LinkUp())

    def go_down(self) -> None:
        self.is_up = False
        self._ev.append(LinkDown("timeout"))


PEER = 0x0B0B0B0B
PID = b"peer".ljust(16, b"\0")


def new_peer() -> PeerNode:
    return PeerNode(addr=PEER, node_id=PID, caps=0x17F, signature=0x10000)


def add_link(p: PeerNode, bid: int, prio: int = 10, maddr: object = None) -> FakeLink:
    lk = FakeLink(bid, prio)
    p.check_dest(bid, maddr or f"m{bid}", 0x1234, 0x17F, 0.0, lambda b: lk)
    return lk


def reset_msg(redundant: int) -> Msg:
    return Msg.build(User.LINK_PROTOCOL, mtype=LinkProtoType.RESET, redundant_link=redundant,
                     prevnode=PEER)


def pump(p: PeerNode) -> list[object]:
    for le in list(p.links.values()):
        p._collect(le, 1.0)
    return p.take_events()


# ---------------------------------------------------------------- FSM table
def test_fsm_table_matches_kernel_examples() -> None:
    S, E = NodeState, NodeEvt
    assert node_fsm(S.SELF_DOWN_PEER_DOWN, E.SELF_ESTABL_CONTACT_EVT) == S.SELF_UP_PEER_COMING
    assert node_fsm(S.SELF_UP_PEER_COMING, E.PEER_ESTABL_CONTACT_EVT) == S.SELF_UP_PEER_UP
    assert node_fsm(S.SELF_UP_PEER_UP, E.SELF_LOST_CONTACT_EVT) == S.SELF_DOWN_PEER_LEAVING
    assert node_fsm(S.SELF_DOWN_PEER_LEAVING, E.PEER_LOST_CONTACT_EVT) == S.SELF_DOWN_PEER_DOWN
    assert node_fsm(S.SELF_UP_PEER_UP, E.NODE_FAILOVER_BEGIN_EVT) == S.NODE_FAILINGOVER
    assert node_fsm(S.NODE_FAILINGOVER, E.NODE_FAILOVER_END_EVT) == S.SELF_UP_PEER_UP
    assert node_fsm(S.SELF_UP_PEER_UP, E.NODE_SYNCH_BEGIN_EVT) == S.NODE_SYNCHING
    assert node_fsm(S.NODE_SYNCHING, E.NODE_SYNCH_END_EVT) == S.SELF_UP_PEER_UP
    assert node_fsm(S.NODE_SYNCHING, E.NODE_FAILOVER_BEGIN_EVT) == S.NODE_FAILINGOVER
    # legal and ignored: maps to its own state
    assert node_fsm(S.SELF_DOWN_PEER_DOWN, E.SELF_LOST_CONTACT_EVT) == S.SELF_DOWN_PEER_DOWN
    # illegal events are absent
    assert node_fsm(S.SELF_DOWN_PEER_DOWN, E.NODE_SYNCH_BEGIN_EVT) is None
    assert node_fsm(S.SELF_UP_PEER_COMING, E.NODE_FAILOVER_END_EVT) is None
    assert {k[0] for k in NODE_FSM} == set(NodeState)
    assert NodeState.SELF_DOWN_PEER_LEAVING == 0xD1 and NodeEvt.PEER_LOST_CONTACT_EVT == 0x91CE


def test_illegal_event_is_counted_and_changes_nothing() -> None:
    p = new_peer()
    p.fsm_evt(NodeEvt.NODE_SYNCH_END_EVT)  # illegal in SELF_DOWN_PEER_LEAVING
    assert p.illegal_evts == 1 and p.state == NodeState.SELF_DOWN_PEER_LEAVING


# ---------------------------------------------------------------- contact rules
def test_new_peer_ignores_packets_until_peer_shows_no_contact() -> None:
    p = new_peer()
    lk = add_link(p, 0)
    assert lk.started and p.state == NodeState.SELF_DOWN_PEER_LEAVING
    assert not lk.peer_node_up and lk.bc_ack_invalid
    assert p.receive(0, reset_msg(redundant=1), 0.0) is False  # peer still thinks we are up
    assert lk.received == []
    assert p.receive(0, reset_msg(redundant=0), 0.0) is True
    assert p.state == NodeState.SELF_DOWN_PEER_DOWN and len(lk.received) == 1


def test_node_up_down_with_one_link() -> None:
    p = new_peer()
    lk = add_link(p, 0)
    p.receive(0, reset_msg(0), 0.0)
    lk.come_up()
    ev = pump(p)
    assert isinstance(ev[0], LinkStateChanged) and ev[0].up
    assert ev[1] == NodeUp(PEER, PID)
    assert p.is_up and p.active == [0, 0] and lk.peer_node_up
    assert p.state == NodeState.SELF_UP_PEER_COMING
    state = Msg.build(User.LINK_PROTOCOL, mtype=LinkProtoType.STATE, prevnode=PEER)
    p.receive(0, state, 1.0)
    assert p.state == NodeState.SELF_UP_PEER_UP
    assert p.send(Msg.build(User.LOW_IMPORTANCE), 7, 1.0) and len(lk.sent) == 1
    lk.go_down()
    ev = pump(p)
    assert isinstance(ev[0], LinkStateChanged) and not ev[0].up
    assert ev[1] == NodeDown(PEER, PID)
    assert not p.is_up and p.state == NodeState.SELF_DOWN_PEER_LEAVING
    assert not p.send(Msg.build(User.LOW_IMPORTANCE), 7, 1.0)


def test_two_links_equal_priority_share_load_and_node_survives_one() -> None:
    p = new_peer()
    l0, l1 = add_link(p, 0), add_link(p, 1)
    for bid in (0, 1):
        p.receive(bid, reset_msg(0), 0.0)
    l0.come_up()
    l1.come_up()
    ev = pump(p)
    assert [type(e) for e in ev].count(NodeUp) == 1
    assert sorted(p.active) == [0, 1]
    p.send(Msg.build(User.LOW_IMPORTANCE), 0, 1.0)
    p.send(Msg.build(User.LOW_IMPORTANCE), 1, 1.0)
    assert len(l0.sent) == 1 and len(l1.sent) == 1  # selector & 1 picks the slot
    l0.go_down()
    ev = pump(p)
    assert not any(isinstance(e, NodeDown) for e in ev)
    assert p.is_up and p.active == [1, 1]


def test_higher_priority_link_is_sole_active() -> None:
    p = new_peer()
    l0, l1 = add_link(p, 0, prio=10), add_link(p, 1, prio=20)
    for bid in (0, 1):
        p.receive(bid, reset_msg(0), 0.0)
    l0.come_up()
    pump(p)
    assert p.active == [0, 0]
    l1.come_up()
    pump(p)
    assert p.active == [1, 1] and p.active_links() == [1]
    l1.go_down()
    pump(p)
    assert p.active == [0, 0]


def test_at_most_two_links() -> None:
    p = new_peer()
    add_link(p, 0)
    add_link(p, 1)
    add_link(p, 2)
    assert sorted(p.links) == [0, 1]


def test_duplicate_when_media_addr_changes_while_link_up() -> None:
    p = new_peer()
    lk = add_link(p, 0, maddr="m0")
    p.receive(0, reset_msg(0), 0.0)
    lk.come_up()
    pump(p)
    assert p.check_dest(0, "other", 0x9999, 0x17F, 1.0, lambda b: FakeLink(b)) is True
    assert p.links[0].media_addr == "m0"


# ---------------------------------------------------------------- broadcast receive
def up_peer() -> tuple[PeerNode, FakeLink]:
    p = new_peer()
    lk = add_link(p, 0)
    p.receive(0, reset_msg(0), 0.0)
    lk.come_up()
    pump(p)
    return p, lk


def bcast_pub(seqno: int) -> Msg:
    return Msg.build(User.NAME_DISTRIBUTOR, mtype=NameDistrType.PUBLICATION, non_seq=1,
                     seqno=seqno, prevnode=PEER)


def test_bcast_needs_init_then_delivers_in_order_and_acks() -> None:
    p, lk = up_peer()
    p.bcast_receive(bcast_pub(1), 1.0)
    assert p.take_events() == [] and p.bc.rx_unsynced == 1
    init = Msg.build(User.BCAST_PROTOCOL, mtype=0, last_bcast=4, bc_ack_invalid=1)
    lk._ev.append(Delivered(init))
    pump(p)
    assert p.bc.synced and p.bc.rcv_nxt == 5
    assert lk.bcast_ack == 4 and not lk.bc_ack_invalid
    p.bcast_receive(bcast_pub(6), 1.0)  # out of order: deferred
    assert p.take_events() == [] and lk.bcast_ack == 4
    p.bcast_receive(bcast_pub(5), 1.0)
    ev = p.take_events()
    assert [e.msg.seqno for e in ev if isinstance(e, NodeReceived)] == [5, 6]
    assert all(e.bearer_id is None for e in ev)
    assert lk.bcast_ack == 6
    p.bcast_receive(bcast_pub(6), 1.0)  # duplicate
    assert p.take_events() == [] and p.bc.rx_dups == 1
    # node down resets the broadcast receive state
    lk.go_down()
    pump(p)
    assert not p.bc.synced and lk.bc_ack_invalid and lk.bcast_ack == 0


def test_remove_link_politely_resets_and_reports() -> None:
    p, lk = up_peer()
    p.remove_link(0, 2.0)
    ev = p.take_events()
    assert not p.links and not lk.is_up
    assert any(isinstance(e, NodeDown) for e in ev)


def test_module_exports() -> None:
    import tipcpy.core.node as nodemod

    for name in nodemod.__all__:
        assert hasattr(nodemod, name)

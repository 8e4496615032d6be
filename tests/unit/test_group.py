"""Communication groups (tipcpy.core.group): wire, membership, flow control, ordering.

The model tests wire several Group objects together through an in-test network: per
node pair one FIFO "unicast link" (GROUP_PROTOCOL, unicasts, name-table updates, and
broadcasts that must go by replicast) and one FIFO "broadcast link" that later
unicasts may overtake (as the kernel's broadcast link can be overtaken by the unicast
link). Every message is encoded and decoded on the way. Delays are seeded-random.
"""

from __future__ import annotations

import errno
import heapq
import random
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from tipcpy.core.group import (
    ADV_ACTIVE,
    ADV_IDLE,
    TIPC_GROUP_LOOPBACK,
    TIPC_GROUP_MEMBER_EVTS,
    Group,
    GroupDeliver,
    GroupReq,
    GroupWakeup,
    MemberEvent,
    MemberState,
    blocks,
    member_event_msg,
)
from tipcpy.core.name_table import Publication
from tipcpy.wire import DecodeError, decode
from tipcpy.wire.consts import (
    GROUP_H_SIZE,
    TIPC_CLUSTER_SCOPE,
    TIPC_NODE_SCOPE,
    GroupType,
    User,
)
from tipcpy.wire.msg import DataMsg, GroupProtoMsg, Msg

GTYPE = 4711
EVTS = TIPC_GROUP_MEMBER_EVTS


def publ(node: int, port: int, inst: int, scope: int = TIPC_CLUSTER_SCOPE) -> Publication:
    return Publication(GTYPE, inst, inst, scope, node, port, port + 1)


def rt(m: Msg) -> Msg:
    """Wire round trip: what arrives is what a peer would decode."""
    return decode(m.encode())


class Pair:
    """Two (or more) groups wired directly, delivery only when the test says so."""

    def __init__(self, *specs: tuple[int, int, int, int]) -> None:
        self.g: dict[tuple[int, int], Group] = {}
        for node, port, inst, flags in specs:
            self.g[(node, port)] = Group(node, port, GroupReq(GTYPE, inst, 2, flags))
        self.wire: list[tuple[tuple[int, int], Msg]] = []
        self.events: dict[tuple[int, int], list[Any]] = {k: [] for k in self.g}

    def collect(self) -> None:
        for k, g in self.g.items():
            for dnode, m in g.take_outgoing():
                m = rt(m)
                if m.destport:
                    self.wire.append(((dnode, m.destport), m))
                else:  # broadcast copy: every group socket on that node
                    for (n, p) in self.g:
                        if n == dnode:
                            c = decode(m.encode())
                            c.destport = p
                            self.wire.append(((n, p), c))
            self.events[k] += g.take_events()

    def deliver_all(self, pred: Any = None) -> int:
        n = 0
        while True:
            self.collect()
            idx = next((i for i, (_, m) in enumerate(self.wire) if pred is None or pred(m)), None)
            if idx is None:
                return n
            dst, m = self.wire.pop(idx)
            g = self.g.get(dst)
            if g is not None and not g.closed:
                if isinstance(m, GroupProtoMsg):
                    g.proto_rcv(m)
                else:
                    assert isinstance(m, DataMsg)
                    g.filter_msg(m)
            n += 1

    def publish_all(self) -> None:
        """Every group learns every other's publication (and its own)."""
        pubs = [publ(n, p, g.instance) for (n, p), g in self.g.items()]
        for g in self.g.values():
            for p in pubs:
                g.name_event(p, True)


def join_pair(flags_a: int = EVTS, flags_b: int = EVTS) -> Pair:
    pr = Pair((1, 100, 7, flags_a), (2, 200, 8, flags_b))
    a, b = pr.g[(1, 100)], pr.g[(2, 200)]
    a.join([])
    b.join([publ(1, 100, 7)])  # b knows a's publication already
    a.name_event(publ(2, 200, 8), True)
    pr.deliver_all()
    return pr


# ---------------------------------------------------------------- wire
def test_proto_messages_round_trip_with_kernel_layout() -> None:
    pr = Pair((1, 100, 7, 0), (2, 200, 8, 0))
    a = pr.g[(1, 100)]
    a.join([publ(2, 200, 8)])
    [(dnode, join)] = a.take_outgoing()
    assert dnode == 2
    b = join.encode()
    assert len(b) == 40  # INT_H_SIZE, no data
    w0, w1 = struct.unpack_from(">II", b)
    assert (w0 >> 25) & 0xF == User.GROUP_PROTOCOL == 9
    assert (w0 >> 19) & 1 == 1  # dest_droppable
    assert w1 >> 29 == GroupType.JOIN
    w = struct.unpack(">10I", b)
    assert w[3] == 1 and w[4] == 100 and w[5] == 200 and w[6] == 1 and w[7] == 2
    d = decode(b)
    assert isinstance(d, GroupProtoMsg) and d.w == join.w
    # each type's w9 layout: 31:16 syncpt/acked/remitted, 15:0 adv_win
    for mt, kw in [(GroupType.ADV, {"adv_win": 780}), (GroupType.ACK, {"bc_acked": 65535}),
                   (GroupType.REMIT, {"remitted": 12}), (GroupType.LEAVE, {"bc_syncpt": 3}),
                   (GroupType.RECLAIM, {})]:
        m = Msg.build(User.GROUP_PROTOCOL, mt, 40, **kw)
        d = decode(m.encode())
        assert isinstance(d, GroupProtoMsg) and d.mtype == mt
        for k, v in kw.items():
            assert getattr(d, k) == v
        assert d.w[9] == (kw.get("adv_win", 0) | (sum(v for k, v in kw.items()
                                                      if k != "adv_win") << 16))


def test_group_data_header_fields() -> None:
    pr = join_pair()
    a = pr.g[(1, 100)]
    assert a.send_unicast(2, 200, b"hello")
    [(dnode, m)] = a.take_outgoing()
    b = m.encode()
    assert len(b) == GROUP_H_SIZE + 5
    d = decode(b)
    assert isinstance(d, DataMsg) and d.mtype == 7 and d.nametype == GTYPE
    assert d.destnode == 2 and d.destport == 200 and d.orignode == 1 and d.origport == 100
    assert d.lookup_scope == TIPC_CLUSTER_SCOPE and d.dest_droppable == 1
    assert d.grp_bc_seqno == a.bc_snd_nxt == 0
    assert a.send_bcast(b"all")
    [(dnode, m)] = a.take_outgoing()
    d = decode(m.encode())
    assert isinstance(d, DataMsg) and d.mtype == 5 and d.destport == 0 and d.destnode == 2
    assert d.grp_bc_seqno == 0 and d.grp_bc_ack_req == 1  # first bcast after a unicast
    assert a.bc_snd_nxt == 1 and a.bc_ackers == 1


def test_group_req_struct_layout_and_checks() -> None:
    raw = struct.pack("=4I", 4711, 17, TIPC_NODE_SCOPE, TIPC_GROUP_LOOPBACK | EVTS)
    r = GroupReq.unpack(raw + b"extra")  # native order; longer option values are fine
    assert (r.type, r.instance, r.scope, r.flags) == (4711, 17, 3, 3)
    assert r.pack() == struct.pack("=4I", 4711, 17, 3, 3)
    assert r.pack("big") == struct.pack(">4I", 4711, 17, 3, 3)
    # the kernel's flow-control units (reference: ((66060 + 60) / 1024) + 1)
    assert (ADV_IDLE, ADV_ACTIVE) == (65, 780)
    assert r.check() == TIPC_NODE_SCOPE
    assert GroupReq(4711, 0, 0).check() == TIPC_CLUSTER_SCOPE  # zone/0 -> cluster
    with pytest.raises(OSError) as e:
        GroupReq.unpack(raw[:15])
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        Group(1, 5, GroupReq(63, 0))
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        Group(1, 5, GroupReq(4711, 0, 4))
    assert e.value.errno == errno.EINVAL


# ---------------------------------------------------------------- malformed input
def _state(g: Group) -> list[str]:
    return [repr(m) for m in g.member_list()] + [str(g.bc_snd_nxt), str(g.bc_ackers)]


def test_malformed_proto_counted_dropped_nothing_disturbed() -> None:
    pr = join_pair()
    b = pr.g[(2, 200)]
    before = _state(b)
    bad_type = Msg.build(User.GROUP_PROTOCOL, 6, 40, orignode=1, origport=100,
                         destnode=2, destport=200)
    b.proto_rcv(rt(bad_type))
    b.proto_rcv(Msg.build(User.CONN_MANAGER, 0, 40))  # wrong user routed here
    stranger = Msg.build(User.GROUP_PROTOCOL, GroupType.ADV, 40, orignode=9, origport=9,
                         adv_win=1000)
    b.proto_rcv(rt(stranger))
    ack = Msg.build(User.GROUP_PROTOCOL, GroupType.ACK, 40, orignode=1, origport=100)
    b.proto_rcv(rt(ack))  # no broadcast ack awaited
    remit = Msg.build(User.GROUP_PROTOCOL, GroupType.REMIT, 40, orignode=1, origport=100)
    b.proto_rcv(rt(remit))  # never reclaimed
    assert b.counters["bad_proto"] == 2
    assert b.counters["proto_no_member"] == 1
    assert b.counters["unexpected_ack"] == 1
    assert b.counters["unexpected_remit"] == 1
    # data: forged member event, non-member sender, non-group type
    evt = Msg.build(3, 4, GROUP_H_SIZE, orignode=1, origport=100)
    b.filter_msg(rt(evt))  # type: ignore[arg-type]
    nm = Msg.build(0, 7, GROUP_H_SIZE, b"x", orignode=5, origport=5)
    b.filter_msg(rt(nm))  # type: ignore[arg-type]
    named = Msg.build(0, 2, 40, b"x", orignode=1, origport=100)
    b.filter_msg(rt(named))  # type: ignore[arg-type]
    assert (b.counters["evt_from_wire"], b.counters["not_member"], b.counters["not_group"]) \
        == (1, 1, 1)
    assert _state(b) == before
    assert b.take_events() == [] and b.take_outgoing() == []
    # truncated bytes never reach the group: the decoder raises a typed error
    with pytest.raises(DecodeError):
        decode(stranger.encode()[:30])
    hdr = bytearray(bad_type.encode())
    struct.pack_into(">I", hdr, 0, (struct.unpack_from(">I", hdr)[0] & ~(0xF << 21)) | (9 << 21))
    with pytest.raises(DecodeError):  # hsize 36 < 40
        decode(bytes(hdr[:36]) + b"")


def test_node_scope_group_ignores_remote_proto() -> None:
    g = Group(1, 10, GroupReq(GTYPE, 0, TIPC_NODE_SCOPE, 0))
    g.join([])
    m = Msg.build(User.GROUP_PROTOCOL, GroupType.JOIN, 40, orignode=2, origport=5, adv_win=65)
    g.proto_rcv(rt(m))
    assert g.counters["proto_scope"] == 1 and not g.members
    # and cluster-scope publications are not this group's
    assert g.name_event(publ(1, 11, 0, TIPC_CLUSTER_SCOPE), True) is None
    assert g.name_event(publ(1, 11, 0, TIPC_NODE_SCOPE), True) is not None
    assert g.members[(1, 11)].state == MemberState.PUBLISHED


def test_leave_twice_and_send_errors() -> None:
    pr = join_pair()
    a = pr.g[(1, 100)]
    with pytest.raises(OSError) as e:
        a.send_unicast(9, 9, b"x")
    assert e.value.errno == errno.EHOSTUNREACH
    with pytest.raises(OSError) as e:
        a.send_anycast(12345, b"x")
    assert e.value.errno == errno.EHOSTUNREACH
    with pytest.raises(OSError) as e:
        a.send_bcast(bytes(66001))
    assert e.value.errno == errno.EMSGSIZE
    a.leave()
    with pytest.raises(OSError) as e:
        a.leave()
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        a.send_bcast(b"x")
    assert e.value.errno == errno.EINVAL


# ---------------------------------------------------------------- membership
@pytest.mark.parametrize("publication_first", [True, False])
def test_join_both_orders_give_one_event_each(publication_first: bool) -> None:
    pr = Pair((1, 100, 7, EVTS), (2, 200, 8, EVTS))
    a, b = pr.g[(1, 100)], pr.g[(2, 200)]
    a.join([])
    b.join([publ(1, 100, 7)])  # b sends JOIN to a at once
    if publication_first:
        a.name_event(publ(2, 200, 8), True)
        assert a.members[(2, 200)].state == MemberState.PUBLISHED
        pr.deliver_all()
    else:
        pr.deliver_all()  # a gets b's JOIN before b's publication
        assert a.members[(2, 200)].state == MemberState.JOINING
        assert pr.events[(1, 100)] == []
        a.name_event(publ(2, 200, 8), True)
        pr.deliver_all()
    assert a.members[(2, 200)].state == MemberState.JOINED
    assert b.members[(1, 100)].state == MemberState.JOINED
    assert [e for e in pr.events[(1, 100)] if isinstance(e, MemberEvent)] == \
        [MemberEvent(2, 200, GTYPE, 8, True)]
    assert [e for e in pr.events[(2, 200)] if isinstance(e, MemberEvent)] == \
        [MemberEvent(1, 100, GTYPE, 7, True)]
    assert a.open and b.open
    assert a.members[(2, 200)].window == ADV_IDLE == b.members[(1, 100)].window


def test_leave_event_after_senders_messages_and_member_deleted() -> None:
    pr = join_pair()
    a, b = pr.g[(1, 100)], pr.g[(2, 200)]
    assert a.send_bcast(b"one")
    out = [rt(m) for _, m in a.take_outgoing()]
    a.leave()
    leave = [rt(m) for _, m in a.take_outgoing()]
    assert [m.mtype for m in leave] == [GroupType.LEAVE] and leave[0].bc_syncpt == 1
    b.proto_rcv(leave[0])  # LEAVE overtakes the broadcast: event must wait
    assert [e for e in b.take_events() if isinstance(e, MemberEvent)] == []
    assert b.members[(1, 100)].state == MemberState.LEAVING
    c = out[0]
    c.destport = 200
    b.filter_msg(c)  # type: ignore[arg-type]
    ev = b.take_events()
    assert [type(e) for e in ev] == [GroupDeliver, MemberEvent]
    assert ev[0].msg.data == b"one" and ev[1] == MemberEvent(1, 100, GTYPE, 7, False)
    assert (1, 100) not in b.members
    # the later withdrawal of the publication is then a no-op
    b.name_event(publ(1, 100, 7), False)
    assert b.take_events() == []


def test_withdraw_with_node_down_gives_leave_at_once() -> None:
    pr = join_pair()
    b = pr.g[(2, 200)]
    b.name_event(publ(1, 100, 7), False, node_up=True)
    assert b.take_events() == [] and b.members[(1, 100)].state == MemberState.LEAVING
    pr2 = join_pair()
    b2 = pr2.g[(2, 200)]
    b2.name_event(publ(1, 100, 7), False, node_up=False)
    assert b2.take_events() == [MemberEvent(1, 100, GTYPE, 7, False)]
    assert not b2.members


def test_events_flag_off_still_tracks_membership() -> None:
    pr = join_pair(flags_a=0)
    evs = [e for e in pr.events[(1, 100)] if isinstance(e, MemberEvent)]
    assert evs == [MemberEvent(2, 200, GTYPE, 8, True, False)]
    assert pr.g[(1, 100)].members[(2, 200)].state == MemberState.JOINED


def test_loopback_member_receives_own_broadcast() -> None:
    g = Group(1, 100, GroupReq(GTYPE, 3, 2, TIPC_GROUP_LOOPBACK | EVTS))
    g.join([])
    g.name_event(publ(1, 100, 3), True)
    for _ in range(3):
        for _, m in g.take_outgoing():
            m = rt(m)
            m.destport = 100
            if isinstance(m, GroupProtoMsg):
                g.proto_rcv(m)
            else:
                g.filter_msg(m)  # type: ignore[arg-type]
        if not g.send_bcast(b"me"):
            continue
    ev = [e for e in g.take_events() if not isinstance(e, GroupWakeup)]
    assert ev[0] == MemberEvent(1, 100, GTYPE, 3, True)
    assert any(isinstance(e, GroupDeliver) and e.msg.data == b"me" for e in ev)
    # without loopback the own publication is not a member
    h = Group(1, 101, GroupReq(GTYPE, 3, 2, 0))
    assert h.name_event(publ(1, 101, 3), True) is None and not h.members


# ---------------------------------------------------------------- ordering
def test_unicast_overtaking_broadcast_is_held_back() -> None:
    pr = join_pair()
    a, b = pr.g[(1, 100)], pr.g[(2, 200)]
    b.take_events()
    assert a.send_bcast(b"b0", ack=False)
    [(_, bc0)] = a.take_outgoing()
    assert a.send_unicast(2, 200, b"u1")
    [(_, u1)] = a.take_outgoing()
    assert a.send_bcast(b"b2")  # replicast with ack request: follows the unicast path
    [(_, bc2)] = a.take_outgoing()
    assert bc2.grp_bc_ack_req == 1 and u1.grp_bc_seqno == 1 and bc2.grp_bc_seqno == 1
    for m in (u1, bc2):
        m = rt(m)
        m.destport = 200
        b.filter_msg(m)  # type: ignore[arg-type]
    assert b.take_events() == []  # both wait for bcast 0
    m0 = rt(bc0)
    m0.destport = 200
    b.filter_msg(m0)  # type: ignore[arg-type]
    got = [e.msg.data for e in b.take_events() if isinstance(e, GroupDeliver)]
    assert got == [b"b0", b"u1", b"b2"]
    acks = [m for _, m in b.take_outgoing() if m.user == User.GROUP_PROTOCOL]
    assert [m.mtype for m in acks] == [GroupType.ACK] and acks[0].bc_acked == 2
    # a duplicate of an old broadcast is dropped and counted
    b.filter_msg(m0)  # type: ignore[arg-type]
    assert b.counters["old_seqno"] == 1 and b.take_events() == []


def test_broadcast_waits_for_acks_of_previous_replicast() -> None:
    pr = join_pair()
    a = pr.g[(1, 100)]
    assert a.send_bcast(b"x")  # ack requested (first after join)
    assert a.bc_ackers == 1
    assert a.send_bcast(b"y") is False and not a.open
    pr.deliver_all()
    assert a.bc_ackers == 0 and a.open
    assert GroupWakeup() in pr.events[(1, 100)]
    assert a.send_bcast(b"y")


def test_mcast_and_anycast_selection() -> None:
    pr = Pair((1, 100, 0, EVTS), (2, 200, 5, EVTS), (3, 300, 5, EVTS), (4, 400, 6, EVTS))
    for g in pr.g.values():
        g.join([])
    pr.publish_all()
    pr.deliver_all()
    a = pr.g[(1, 100)]
    assert a.send_anycast(5, b"any1") and a.send_anycast(5, b"any2")
    dests = [m.destport for _, m in a.take_outgoing()]
    assert sorted(dests) == [200, 300]  # round robin over the two instance-5 members
    assert a.send_mcast(6, 9, b"one")  # one match -> plain unicast
    [(_, m)] = a.take_outgoing()
    assert m.mtype == 7 and m.destport == 400
    a.take_events()
    with pytest.raises(OSError) as e:  # kernel: only members of instance `lower` count
        a.send_mcast(4, 6, b"none")
    assert e.value.errno == errno.EHOSTUNREACH
    assert a.send_mcast(5, 6, b"multi")  # two of instance 5 -> GRP_MCAST, nameinst 5
    out = a.take_outgoing()
    assert {m.mtype for _, m in out} == {6} and {m.nameinst for _, m in out} == {5}
    assert sorted(d for d, _ in out) == [2, 3, 4]  # every member node gets a copy
    pr.wire.clear()
    for dnode, m in out:
        m = rt(m)
        m.destport = dnode * 100
        pr.wire.append(((dnode, m.destport), m))
    pr.deliver_all()
    got = {k: [e.msg.data for e in v if isinstance(e, GroupDeliver)] for k, v in pr.events.items()}
    assert b"multi" in got[(2, 200)] and b"multi" in got[(3, 300)]
    assert b"multi" not in got[(4, 400)]  # instance 6 != lower: not delivered...
    assert pr.g[(4, 400)].counters["mcast_not_for_us"] == 1  # ...but counted in window
    with pytest.raises(OSError):
        a.send_mcast(100, 200, b"none")


# ---------------------------------------------------------------- flow control
def test_fast_sender_slow_member_blocks_and_loses_nothing() -> None:
    pr = join_pair()
    a, b = pr.g[(1, 100)], pr.g[(2, 200)]
    pr.events[(2, 200)].clear()
    payload = bytes(3000)  # 3 blocks each
    blk = blocks(GROUP_H_SIZE + len(payload))
    sent, blocked, unread, got = 0, 0, 0, []
    max_unread = 0
    for step in range(400):
        if sent < 300 and a.send_unicast(2, 200, payload[:-4] + sent.to_bytes(4, "big")):
            sent += 1
        elif sent < 300:
            blocked += 1
        pr.deliver_all()
        new = [e for e in pr.events[(2, 200)] if isinstance(e, GroupDeliver)]
        pr.events[(2, 200)].clear()
        unread += len(new) * blk
        got += new
        max_unread = max(max_unread, unread)
        if step % 4 == 0 and unread:  # slow reader: one message every 4 steps
            e = got[len(got) - unread // blk]
            b.consumed(e.msg.orignode, e.msg.origport, e.msg.size)
            unread -= blk
    while unread:
        e = got[len(got) - unread // blk]
        b.consumed(1, 100, e.msg.size)
        unread -= blk
        pr.deliver_all()
        while sent < 300 and a.send_unicast(2, 200, payload[:-4] + sent.to_bytes(4, "big")):
            sent += 1
        pr.deliver_all()
        new = [e for e in pr.events[(2, 200)] if isinstance(e, GroupDeliver)]
        pr.events[(2, 200)].clear()
        got += new
        unread += len(new) * blk
    assert sent == 300 and blocked > 0
    seqs = [int.from_bytes(e.msg.data[-4:], "big") for e in got]
    assert seqs == list(range(300))
    assert max_unread <= ADV_ACTIVE
    assert b.members[(1, 100)].state == MemberState.ACTIVE
    assert GroupWakeup() in pr.events[(1, 100)]


def test_congested_peer_gets_advertisement_request() -> None:
    pr = join_pair()
    a = pr.g[(1, 100)]
    m = a.members[(2, 200)]
    m.window = 1
    m.advertised = 0  # our own advertisement to it is not full: send an ADV
    cong, mb = a.cong(2, 200, 5)
    assert cong and mb is m and not a.open
    [(_, adv)] = a.take_outgoing()
    assert adv.mtype == GroupType.ADV and adv.adv_win == ADV_IDLE


# ---------------------------------------------------------------- the model
@dataclass
class App:
    key: tuple[int, int]
    inst: int
    reader_rate: float
    g: Group | None = None
    plan: list[tuple[str, Any]] = field(default_factory=list)
    blocked: bool = False
    unread: list[GroupDeliver] = field(default_factory=list)
    log: list[Any] = field(default_factory=list)  # ("evt", node, port, up) / ("msg", src, seq)
    seq: int = 0
    left: bool = False
    joined_at: float = -1.0


class Model:
    def __init__(self, seed: int, n_nodes: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.q: list[tuple[float, int, int, Any]] = []
        self.n = 0
        self.last: dict[tuple[int, int, str], float] = {}
        self.apps: dict[tuple[int, int], App] = {}
        self.tables: dict[int, set[Publication]] = {n: set() for n in range(1, n_nodes + 1)}
        self.sent: dict[tuple[tuple[int, int], int], set[tuple[int, int]]] = {}
        self.proto: dict[int, int] = {}
        self.blocked_sends = 0

    # network -----------------------------------------------------------
    def _post(self, src: int, dst: int, item: Any, chan: str) -> None:
        d = 0.0 if src == dst else self.rng.uniform(0.001, 0.02)
        t = max(self.now + d, self.last.get((src, dst, chan), 0.0))
        if chan == "bc":  # the broadcast link never overtakes earlier unicast traffic
            t = max(t + self.rng.uniform(0, 0.03), self.last.get((src, dst, "uc"), 0.0))
        self.last[(src, dst, chan)] = t
        self.n += 1
        heapq.heappush(self.q, (t, self.n, dst, item))

    def flush(self, app: App) -> None:
        g = app.g
        assert g is not None
        src = app.key[0]
        for dnode, m in g.take_outgoing():
            b = m.encode()
            if m.user == User.GROUP_PROTOCOL:
                self.proto[m.mtype] = self.proto.get(m.mtype, 0) + 1
            chan = "uc"
            if isinstance(m, DataMsg) and m.mtype in (5, 6) and not m.grp_bc_ack_req \
                    and self.rng.random() < 0.7:
                chan = "bc"
            self._post(src, dnode, ("msg", b), chan)
        for e in g.take_events():
            if isinstance(e, GroupWakeup):
                app.blocked = False
            elif isinstance(e, MemberEvent):
                app.log.append(("evt", e.node, e.port, e.up))
            else:
                app.unread.append(e)
                app.log.append(("msg", (e.msg.orignode, e.msg.origport),
                                int.from_bytes(e.msg.data[:4], "big")))

    def publish(self, p: Publication, up: bool) -> None:
        for n in self.tables:
            self._post(p.node, n, ("publ", p, up), "uc")

    def arrive(self, dst: int, item: Any) -> None:
        if item[0] == "publ":
            _, p, up = item
            (self.tables[dst].add if up else self.tables[dst].discard)(p)
            for app in list(self.apps.values()):
                if app.key[0] == dst and app.g is not None and not app.g.closed:
                    app.g.name_event(p, up, node_up=True)
                    self.flush(app)
            return
        m = decode(item[1])
        if m.destport:
            targets = [m.destport]
        else:  # broadcast: every local socket of the group (kernel tipc_sk_mcast_rcv)
            targets = [k[1] for k, a in self.apps.items()
                       if k[0] == dst and a.g is not None and not a.g.closed]
        for port in targets:
            app = self.apps.get((dst, port))
            if app is None or app.g is None or app.g.closed:
                continue
            c = decode(item[1])
            c.destport = port
            if isinstance(c, GroupProtoMsg):
                app.g.proto_rcv(c, self.now)
            else:
                assert isinstance(c, DataMsg)
                app.g.filter_msg(c, self.now)
            self.flush(app)

    # applications ------------------------------------------------------
    def join(self, app: App) -> None:
        node, port = app.key
        app.g = Group(node, port, GroupReq(GTYPE, app.inst, 2, EVTS))
        p = publ(node, port, app.inst)
        existing = [q for q in self.tables[node] if q.type == GTYPE]
        self.publish(p, True)
        app.g.join(existing, self.now)
        app.joined_at = self.now
        self.flush(app)

    def leave(self, app: App) -> None:
        assert app.g is not None
        app.g.leave(self.now)
        self.flush(app)
        app.left = True
        self.publish(publ(app.key[0], app.key[1], app.inst), False)

    def try_send(self, app: App) -> None:
        g = app.g
        if g is None or g.closed or app.blocked or not app.plan:
            return
        kind, arg = app.plan[0]
        data = app.seq.to_bytes(4, "big") + bytes(self.rng.choice((0, 100, 1500, 5000)))
        receivers = {k for k, m in g.members.items() if m.is_receiver}
        try:
            if kind == "bc":
                ok = g.send_bcast(data, self.now)
            elif kind == "mc":
                ok = g.send_mcast(arg, arg + 1, data, self.now)
            elif kind == "any":
                ok = g.send_anycast(arg, data, self.now)
            else:
                cands = sorted(receivers)
                if not cands:
                    app.plan.pop(0)
                    return
                dst = cands[self.rng.randrange(len(cands))]
                ok = g.send_unicast(dst[0], dst[1], data, self.now)
        except OSError as e:
            assert e.errno == errno.EHOSTUNREACH
            app.plan.pop(0)
            return
        if not ok:
            app.blocked = True
            self.blocked_sends += 1
            return
        out = g._out
        exp: set[tuple[int, int]] = set()
        for _, m in out:
            if not isinstance(m, DataMsg):
                continue
            if m.mtype == 7:
                exp.add((m.destnode, m.destport))
            elif m.mtype == 5:
                exp = receivers
            elif m.mtype == 6:
                exp = {k for k in receivers if g.members[k].instance == m.nameinst}
        self.sent[(app.key, app.seq)] = exp  # may be empty: nobody in service
        app.seq += 1
        app.plan.pop(0)
        self.flush(app)

    def read(self, app: App) -> None:
        if app.g is None or app.g.closed:
            return
        while app.unread and self.rng.random() < app.reader_rate:
            e = app.unread.pop(0)
            app.g.consumed(e.msg.orignode, e.msg.origport, e.msg.size, self.now)
        self.flush(app)

    # driver ------------------------------------------------------------
    def run(self, until: float, step: float = 0.005, actions: Any = None) -> None:
        while self.now < until:
            self.now += step
            while self.q and self.q[0][0] <= self.now:
                _, _, dst, item = heapq.heappop(self.q)
                self.arrive(dst, item)
            if actions:
                actions(self)
            for app in list(self.apps.values()):
                self.read(app)
                for _ in range(3):
                    self.try_send(app)

    def drain(self, limit: float = 200.0) -> None:
        end = self.now + limit
        while self.now < end:
            busy = self.q or any(a.plan and not a.left for a in self.apps.values()) or \
                any(a.unread and not a.left for a in self.apps.values())
            if not busy:
                return
            self.run(self.now + 0.5)
        raise AssertionError("model did not quiesce (deadlock?)")


def check_model(md: Model, overlap_only: bool = False) -> None:
    """``overlap_only``: members that left may have come and gone before an observer
    joined; then the observer sees nothing of them (never half a pair)."""
    alive = [a for a in md.apps.values() if not a.left and a.g is not None]
    everyone = [a for a in md.apps.values() if a.g is not None]
    for r in alive:
        # membership: per other member exactly JOIN, or JOIN then LEAVE
        per: dict[tuple[int, int], list[bool]] = {}
        for ent in r.log:
            if ent[0] == "evt":
                per.setdefault((ent[1], ent[2]), []).append(ent[3])
        for x in everyone:
            if x is r:
                continue
            exp = [True, False] if x.left else [True]
            got = per.get(x.key)
            if overlap_only and x.left and got is None:
                continue
            assert got == exp, (r.key, x.key, got)
        if not overlap_only:
            assert set(per) == {x.key for x in everyone if x is not r}
        # messages: exactly once, per-sender order, inside the JOIN..LEAVE bracket
        seen: dict[tuple[int, int], list[int]] = {}
        state: dict[tuple[int, int], str] = {}
        for ent in r.log:
            if ent[0] == "evt":
                state[(ent[1], ent[2])] = "in" if ent[3] else "out"
            else:
                assert state.get(ent[1]) == "in", (r.key, ent)
                seen.setdefault(ent[1], []).append(ent[2])
        for src, seqs in seen.items():
            assert seqs == sorted(set(seqs)), (r.key, src, seqs)  # ordered, no duplicate
        for (src, seq), dests in md.sent.items():
            got = seq in seen.get(src, [])
            assert got == (r.key in dests), (r.key, src, seq)
    assert len(md.sent) > 50


@pytest.mark.parametrize(("seed", "n_nodes", "n_members"),
                         [(1, 6, 10), (2, 6, 10), (3, 6, 10), (4, 10, 30)])
def test_model_membership_ordering_exactly_once(seed: int, n_nodes: int,
                                                n_members: int) -> None:
    md = Model(seed, n_nodes=n_nodes)
    rng = random.Random(seed * 7)
    keys = [(1 + i % n_nodes, 1000 + i) for i in range(n_members)]
    for i, k in enumerate(keys):
        rate = 0.15 if i == 0 else 0.9  # one slow member
        md.apps[k] = App(k, inst=i % 4, reader_rate=rate)
    kinds = ["bc", "uc", "uc", "mc", "any"]
    for a in md.apps.values():
        a.plan = [(rng.choice(kinds), rng.randrange(4)) for _ in range(25)]
    order = list(md.apps.values())
    rng.shuffle(order)
    joins = {round(0.01 + 0.03 * i, 3): a for i, a in enumerate(order)}

    def phase1(m: Model) -> None:
        for t, a in list(joins.items()):
            if m.now >= t:
                m.join(a)
                del joins[t]

    md.run(0.05 + 0.03 * len(order), actions=phase1)
    assert not joins
    md.drain()
    for a in md.apps.values():  # second round of traffic, then some leave during it
        a.plan = [(rng.choice(kinds), rng.randrange(4)) for _ in range(20)]
    leavers = order[:3]
    lt = {round(md.now + 0.05 + 0.04 * i, 3): a for i, a in enumerate(leavers)}

    def phase3(m: Model) -> None:
        for t, a in list(lt.items()):
            if m.now >= t:
                m.leave(a)
                del lt[t]

    md.run(md.now + 0.3, actions=phase3)
    assert not lt
    md.drain()
    check_model(md)
    assert md.blocked_sends > 0  # the slow member throttled someone
    assert md.proto.get(GroupType.ACK, 0) > 0


def test_model_many_senders_one_slow_receiver_reclaim_remit() -> None:
    md = Model(11, n_nodes=20)
    keys = [(n, 500 + n) for n in range(1, 21)]
    for i, k in enumerate(keys):
        md.apps[k] = App(k, inst=i, reader_rate=0.05 if i == 0 else 1.0)
    for k in keys:
        md.join(md.apps[k])
        md.run(md.now + 0.05)
    md.drain()
    for a in list(md.apps.values())[1:]:
        a.plan = [("any", 0)] * 30  # everyone floods member 0 (instance 0)
    md.drain(limit=2000.0)
    check_model(md)
    g0 = md.apps[keys[0]].g
    assert g0 is not None
    assert md.proto.get(GroupType.RECLAIM, 0) > 0 and md.proto.get(GroupType.REMIT, 0) > 0
    assert g0.active_cnt <= g0.max_active
    assert md.blocked_sends > 0


@pytest.mark.parametrize("seed", [100, 101, 102, 103])
def test_model_join_and_leave_interleaved(seed: int) -> None:
    """Joins and leaves overlap with traffic (no quiet phase between them)."""
    md = Model(seed, n_nodes=5)
    rng = random.Random(seed)
    keys = [(1 + i % 5, 2000 + i) for i in range(12)]
    for i, k in enumerate(keys):
        md.apps[k] = App(k, inst=i % 3, reader_rate=0.3 if i == 5 else 0.8)
        md.apps[k].plan = [(rng.choice(["bc", "uc", "mc", "any"]), rng.randrange(3))
                           for _ in range(15)]
    sched = sorted([(rng.uniform(0, 0.3), "j", k) for k in keys]
                   + [(rng.uniform(0.05, 0.4), "l", k) for k in keys[:4]])

    def act(m: Model) -> None:
        while sched and sched[0][0] <= m.now:
            t, what, k = sched.pop(0)
            a = m.apps[k]
            if what == "j" and a.g is None:
                m.join(a)
            elif what == "l" and a.g is not None and not a.left:
                m.leave(a)
            elif what == "l":  # not joined yet: leave a bit later
                sched.append((t + 0.05, what, k))
                sched.sort()

    md.run(0.6, actions=act)
    assert not sched
    md.drain()
    check_model(md, overlap_only=True)


def test_member_event_message_kernel_form() -> None:
    g = Group(1, 100, GroupReq(GTYPE, 7, 2, EVTS))
    for up, code in ((True, 1), (False, 2)):
        m = rt(member_event_msg(g, MemberEvent(2, 200, GTYPE, 8, up)))
        assert isinstance(m, DataMsg)
        assert (m.user, m.mtype, m.hsize, m.grp_evt) == (3, 4, GROUP_H_SIZE, code)
        assert (m.orignode, m.origport, m.destnode, m.destport, m.nametype) == \
            (2, 200, 1, 100, GTYPE)
        assert len(m.data) == 48
        assert struct.unpack("=5I", m.data[:20]) == (code, 8, 8, 200, 2)
        assert struct.unpack("=3I", m.data[20:32]) == (GTYPE, 8, 8)


def test_broadcast_throttled_by_slowest_member_nothing_lost() -> None:
    pr = Pair((1, 100, 0, EVTS), (2, 200, 1, EVTS), (3, 300, 2, EVTS))
    for g in pr.g.values():
        g.join([])
    pr.publish_all()
    pr.deliver_all()
    a, b, c = pr.g[(1, 100)], pr.g[(2, 200)], pr.g[(3, 300)]
    for k in pr.events:
        pr.events[k].clear()

    def drain_reader(g: Group, k: tuple[int, int]) -> list[bytes]:
        got = [e for e in pr.events[k] if isinstance(e, GroupDeliver)]
        pr.events[k] = [e for e in pr.events[k] if not isinstance(e, GroupDeliver)]
        for e in got:
            g.consumed(e.msg.orignode, e.msg.origport, e.msg.size)
        return [e.msg.data[:4] for e in got]

    got_b: list[bytes] = []
    got_c: list[bytes] = []
    sent, blocked_at, unread_max, unread_idle = 0, [], 0, 0
    for step in range(600):
        if sent < 60:
            if a.send_bcast(sent.to_bytes(4, "big") + bytes(3000)):
                sent += 1
            else:
                blocked_at.append(sent)
        pr.deliver_all()
        got_b += drain_reader(b, (2, 200))  # b reads everything at once
        unread_c = sum(e.msg.size // 1024 + 1 for e in pr.events[(3, 300)]
                       if isinstance(e, GroupDeliver))
        unread_max = max(unread_max, unread_c)
        if step < 39:
            unread_idle = unread_c
        if step % 40 == 39:  # c reads only now and then
            got_c += drain_reader(c, (3, 300))
        pr.deliver_all()
    assert sent == 60
    assert blocked_at and min(blocked_at) < 30  # the slow member held the sender back
    assert ADV_IDLE - 3 < unread_idle <= ADV_IDLE  # c idle: exactly its idle window
    assert unread_max <= ADV_ACTIVE  # then its active window, never more
    want = [i.to_bytes(4, "big") for i in range(60)]
    assert got_b == want and got_c == want


def test_fuzzed_input_never_escapes() -> None:
    """Mutated copies of real group traffic: decode errors are typed, everything the
    decoder accepts is handled (counted or used) without an exception."""
    rng = random.Random(5)
    pr = join_pair()
    a, b = pr.g[(1, 100)], pr.g[(2, 200)]
    samples: list[bytes] = []
    for i in range(6):
        a.send_bcast(bytes(i * 10), ack=False)
        a.send_unicast(2, 200, bytes(i))
        samples += [m.encode() for _, m in a.take_outgoing()]
    for mt in range(8):
        samples.append(Msg.build(User.GROUP_PROTOCOL, mt, 40, orignode=1, origport=100,
                                 adv_win=rng.randrange(65536)).encode())
    handled = rejected = 0
    for _ in range(3000):
        buf = bytearray(rng.choice(samples))
        for _ in range(rng.randrange(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        try:
            m = decode(bytes(buf))
        except DecodeError:
            rejected += 1
            continue
        m.destport = 200
        if isinstance(m, GroupProtoMsg):
            b.proto_rcv(m)
        elif isinstance(m, DataMsg):
            b.filter_msg(m)
        handled += 1
        b.take_outgoing()
        b.take_events()
    assert handled > 1000 and rejected > 100
    assert b.counters["bad_proto"] > 0 and b.counters["not_member"] > 0

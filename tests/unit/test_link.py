"""Unit tests for tipcpy.core.link: FSM, sessions, wire fields, supervision, window.

The harness below is deliberately tiny: two Link endpoints, a virtual clock and a
pipe with seeded loss/duplication/delay.  The general simulator lives elsewhere.
"""

from __future__ import annotations

import heapq
import random
import struct

import pytest

from tipcpy.core.link import (
    FAILOVER_MSG,
    NACK_REPEAT,
    TRANSITIONS,
    Delivered,
    Link,
    LinkDown,
    LinkEvent,
    LinkState,
    LinkUp,
    LinkWakeup,
    link_fsm,
    link_goes_down,
)
from tipcpy.wire import BundleMsg, LinkProtoMsg, Msg, decode
from tipcpy.wire.bundle import bundle as wire_bundle
from tipcpy.wire.bundle import unbundle
from tipcpy.wire.consts import Cap

A_ADDR, B_ADDR = 0x195D0765, 0x195D0465
ALL = int(Cap.ALL)
NO_SEQNO_NO_GAP = ALL & ~int(Cap.LINK_PROTO_SEQNO | Cap.GAP_ACK_BLOCK)


def make_link(own=A_ADDR, peer=B_ADDR, name="a", seed=1, **kw) -> Link:
    kw.setdefault("peer_caps", ALL)
    kw.setdefault("own_caps", ALL)
    kw.setdefault("mtu", 14000)
    return Link(
        own_addr=own,
        peer_addr=peer,
        own_name=name,
        peer_name="b" if name == "a" else "a",
        bearer_id=0,
        if_name="b0",
        rng=random.Random(seed),
        **kw,
    )


def data_msg(payload: bytes, src=A_ADDR, dst=B_ADDR, imp: int = 0) -> Msg:
    return Msg.build(
        imp, 3, data=payload, prevnode=src, orignode=src, destnode=dst, origport=7, destport=9
    )


class Pair:
    """Two links over a pipe; virtual time advances from event to event."""

    def __init__(self, seed=7, loss=0.0, dup=0.0, delay=0.001, jitter=0.0, a_kw=None, b_kw=None):
        self.rng = random.Random(seed)
        self.a = make_link(A_ADDR, B_ADDR, "a", seed=seed, **(a_kw or {}))
        self.b = make_link(B_ADDR, A_ADDR, "b", seed=seed + 1, **(b_kw or {}))
        self.loss, self.dup, self.delay, self.jitter = loss, dup, delay, jitter
        self.now = 0.0
        self.pipe: list = []
        self.n = 0
        self.ev = {"a": [], "b": []}  # (time, event)
        self.wire = {"a": [], "b": []}  # (time, decoded msg) sent by a / b
        self.frozen: set[str] = set()
        self.last_rx = {"a": None, "b": None}  # time a/b last received a packet

    def links(self):
        return (("a", self.a, "b", self.b), ("b", self.b, "a", self.a))

    def start(self, b_delay=0.0):
        self.a.start(self.now)
        self.b.start(self.now + b_delay)
        self.flush()

    def flush(self):
        for name, src, _, dst in self.links():
            for p in src.take_outgoing():
                self.wire[name].append((self.now, decode(p)))
                if name in self.frozen or self.rng.random() < self.loss:
                    continue
                copies = 2 if self.rng.random() < self.dup else 1
                for _ in range(copies):
                    self.n += 1
                    t = self.now + self.delay + self.rng.random() * self.jitter
                    heapq.heappush(self.pipe, (t, self.n, dst, p))
            self.ev[name].extend((self.now, e) for e in src.take_events())

    def step(self):
        cands = [
            lk.next_deadline()
            for nm, lk, _, _ in self.links()
            if nm not in self.frozen and lk.next_deadline() is not None
        ]
        if self.pipe:
            cands.append(self.pipe[0][0])
        self.now = max(self.now, min(cands))
        while self.pipe and self.pipe[0][0] <= self.now:
            _, _, dst, p = heapq.heappop(self.pipe)
            nm = "a" if dst is self.a else "b"
            if nm in self.frozen:
                continue
            self.last_rx[nm] = self.now
            dst.receive(decode(p), self.now)
        for nm, lk, _, _ in self.links():
            if nm not in self.frozen:
                lk.tick(self.now)
        self.flush()

    def run_until(self, cond, limit=30.0):
        end = self.now + limit
        while not cond():
            if self.now > end:
                raise AssertionError(f"condition not met by t={self.now:.3f}")
            self.step()

    def run_for(self, dt):
        end = self.now + dt
        while self.now < end:
            self.step()

    def events(self, name, kind=None):
        return [e for _, e in self.ev[name] if kind is None or isinstance(e, kind)]

    def delivered(self, name):
        return [e.msg for e in self.events(name, Delivered)]

    def up(self):
        self.start()
        self.run_until(lambda: self.a.is_up and self.b.is_up, 5.0)
        return self


def words(m: Msg) -> list[int]:
    return list(m.w)


# ------------------------------------------------------------------ FSM table
def test_fsm_table_matches_kernel_shape():
    S, E = LinkState, LinkEvent
    assert link_fsm(S.RESET, E.PEER_RESET) == S.ESTABLISHING
    assert link_fsm(S.ESTABLISHING, E.ESTABLISH) == S.ESTABLISHED
    assert link_fsm(S.ESTABLISHED, E.FAILURE) == S.RESETTING
    assert link_fsm(S.ESTABLISHED, E.PEER_RESET) == S.PEER_RESET
    assert link_fsm(S.PEER_RESET, E.RESET) == S.ESTABLISHING
    assert link_fsm(S.RESETTING, E.RESET) == S.RESET
    assert link_fsm(S.RESET, E.FAILOVER_BEGIN) == S.FAILINGOVER
    assert link_fsm(S.FAILINGOVER, E.FAILOVER_END) == S.RESET
    assert link_fsm(S.ESTABLISHED, E.SYNCH_BEGIN) == S.SYNCHING
    assert link_fsm(S.SYNCHING, E.SYNCH_END) == S.ESTABLISHED
    # illegal: kernel logs and keeps the state
    assert link_fsm(S.RESETTING, E.ESTABLISH) is None
    assert link_fsm(S.ESTABLISHED, E.FAILOVER_BEGIN) is None
    # only the two "up" states can report the link going down, by PEER_RESET/FAILURE
    downs = {(st, ev) for (st, ev) in TRANSITIONS if link_goes_down(st, ev)}
    assert downs == {(st, ev) for st in (S.ESTABLISHED, S.SYNCHING)
                     for ev in (E.PEER_RESET, E.FAILURE)}
    assert [s.value for s in LinkState] == [0xE, 0xE0, 0x100, 0x2000, 0xD0000, 0xF00000, 0xC000000]


def test_illegal_link_event_is_counted_and_kept_over_resets():
    p = _up_pair()
    a = p.a
    a.fsm_evt(LinkEvent.FAILOVER_BEGIN)  # illegal in ESTABLISHED
    assert a.illegal_evts == 1 and a.state is LinkState.ESTABLISHED
    a.reset(p.now, "test")
    assert a.illegal_evts == 1


def test_bad_parameters_refused():
    for kw in ({"window": 15}, {"window": 8192}, {"tolerance": 49}, {"priority": 32}):
        with pytest.raises(ValueError):
            make_link(**kw)
    make_link(window=16)
    make_link(window=8191)


# ------------------------------------------------------------------ first RESET
def test_first_reset_bytes_match_kernel():
    lk = make_link()
    lk.peer_node_up = True  # must still be 0 in RESET (§9.1)
    lk.start(0.0)
    (p,) = lk.take_outgoing()
    assert len(p) == 56
    w = struct.unpack(">10I", p[:40])
    assert w[0] == 0x4F400038
    assert w[1] == 0x20000000
    assert w[2] == 0x00008000  # ack 0, seqno next_sent 1 + 32767
    assert w[3] == A_ADDR and w[6] == A_ADDR and w[7] == B_ADDR
    assert w[4] == 0x00000001  # last_bcast 0, next_sent 1
    assert w[5] == (lk.session << 16) | 0x4000  # bc_ack_invalid 1, redundant 0, prio 0
    assert w[8] == 0
    assert w[9] == 0x0DAC0000  # max_pkt 14000, tolerance 0
    assert p[40:] == b"b0" + bytes(14)
    m = decode(p)
    assert isinstance(m, LinkProtoMsg)
    assert (m.mtype, m.seqno, m.next_sent, m.max_pkt, m.if_name) == (1, 0x8000, 1, 14000, "b0")
    assert (m.bc_ack_invalid, m.redundant_link, m.peer_stopping, m.probe) == (1, 0, 0, 0)
    assert (m.priority, m.tolerance, m.session) == (0, 0, lk.session)
    assert lk.state is LinkState.RESET and not lk.is_up
    assert lk.name == "a:b0-b:unknown"


def test_reset_msg_schedule_first_five_ticks_then_every_16th():
    lk = make_link()
    lk.start(0.0)
    sent_at = []
    t = 0.0
    for _ in range(40):
        for p in lk.take_outgoing():
            assert decode(p).mtype == 1
            sent_at.append(round(t / lk.keepalive_interval))
        t = lk.next_deadline()
        lk.tick(t)
    assert sent_at == [0, 1, 2, 3, 4, 15, 31]
    assert lk.keepalive_interval == pytest.approx(0.375)


def test_tick_before_deadline_does_nothing():
    lk = make_link()
    lk.start(0.0)
    lk.take_outgoing()
    lk.tick(0.1)
    assert lk.take_outgoing() == []


# ------------------------------------------------------------------ handshake
def test_handshake_transitions_and_mtu_negotiation():
    a = make_link(mtu=14000)
    b = make_link(B_ADDR, A_ADDR, "b", seed=2, mtu=1500)
    a.start(0.0)
    (reset,) = a.take_outgoing()
    b.start(0.0)
    b.take_outgoing()
    b.receive(decode(reset), 0.001)
    assert b.state is LinkState.ESTABLISHING
    assert b.peer_if_name == "b0" and b.name == "b:b0-a:b0"
    (act,) = b.take_outgoing()
    am = decode(act)
    assert (am.mtype, am.dest_session_valid, am.dest_session) == (2, 1, a.session)
    assert am.max_pkt == 1500 and am.redundant_link == 0
    a.receive(am, 0.002)
    assert a.state is LinkState.ESTABLISHED and a.is_up
    assert a.take_events() == [LinkUp()]
    assert a.mtu == 1500 and a.mss == 1500 - 72
    (st,) = a.take_outgoing()
    sm = decode(st)
    assert (sm.mtype, sm.ack, sm.seqno, sm.probe, sm.session) == (0, 0, 1, 0, a.session)
    assert sm.bc_ack_invalid == 1 and sm.redundant_link == 0
    assert sm.data == b"\x00\x04\x00\x00" and len(st) == 44
    b.receive(sm, 0.003)
    assert b.is_up and b.take_events() == [LinkUp()]
    assert b.mtu == 1500


def test_link_comes_up_within_one_second_even_with_loss():
    """Lossless: 1.5 round trips.  At 20 % loss a lost RESET/ACTIVATE/STATE costs a
    tick, but an up link answers a late ACTIVATE with a STATE at once."""
    times = []
    for seed in range(100):
        p = Pair(seed=seed, loss=0.2, jitter=0.002)
        p.start()
        p.run_until(lambda p=p: p.a.is_up and p.b.is_up, 5.0)
        assert p.now < 1.0, f"seed {seed}: set-up took {p.now:.3f}s"
        times.append(p.now)
    times.sort()
    print(f"set-up at 20% loss: median {times[50] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
    lossless = Pair().up()
    assert lossless.now < 0.01


def test_data_in_establishing_brings_link_up_and_is_dropped():
    a = make_link()
    b = make_link(B_ADDR, A_ADDR, "b", seed=2)
    a.start(0.0)
    b.start(0.0)
    reset_a = a.take_outgoing()[0]
    reset_b = b.take_outgoing()[0]
    b.receive(decode(reset_a), 0.001)
    a.receive(decode(reset_b), 0.001)
    act_b = b.take_outgoing()[0]
    a.receive(decode(act_b), 0.002)  # a up
    assert a.is_up
    a.take_outgoing()
    assert a.send(data_msg(b"x"), 0.002)
    (d,) = a.take_outgoing()
    b.receive(decode(d), 0.003)  # b in ESTABLISHING -> up, packet dropped
    assert b.is_up and b.take_events() == [LinkUp()]
    assert b.rcv_nxt == 1


# ------------------------------------------------------------------ sessions
def _up_pair() -> Pair:
    return Pair().up()


def _proto(lk_from: Link, mtype: int, **f) -> LinkProtoMsg:
    f.setdefault("session", lk_from.session)
    f.setdefault("prevnode", lk_from.own_addr)
    f.setdefault("destnode", lk_from.peer_addr)
    if mtype != 0:
        f.setdefault("max_pkt", 14000)
        f.setdefault("if_name", "b0")
    return Msg.build(7, mtype, **f)  # type: ignore[return-value]


def test_stale_reset_activate_state_ignored_and_counted():
    p = _up_pair()
    a, b = p.a, p.b
    before = a.stats.rx_proto_rejected
    a.receive(_proto(b, 1), p.now)  # same session: stale RESET
    a.receive(_proto(b, 2, session=(b.session - 1) & 0xFFFF), p.now)  # older ACTIVATE
    a.receive(_proto(b, 0, session=(b.session + 5) & 0xFFFF), p.now)  # wrong-session STATE
    assert a.is_up and a.take_events() == []
    assert a.stats.rx_proto_rejected == before + 3
    # a STATE whose state seqno goes backwards (peer has LINK_PROTO_SEQNO)
    a.receive(_proto(b, 0, seqno=0), p.now)
    assert a.stats.rx_proto_rejected == before + 4 and a.is_up


def test_state_seqno_not_checked_without_peer_cap():
    p = Pair(a_kw={"peer_caps": NO_SEQNO_NO_GAP}).up()
    a, b = p.a, p.b
    n = a.stats.recv_states
    a.receive(_proto(b, 0, seqno=0), p.now)
    assert a.stats.recv_states == n + 1


def test_newer_reset_while_up_is_peer_reset():
    p = _up_pair()
    a, b = p.a, p.b
    old = a.session
    a.receive(_proto(b, 1, session=(b.session + 1) & 0xFFFF), p.now)
    (down,) = a.take_events()
    assert type(down) is LinkDown and (down.reason, down.peer_reset) == ("peer reset", True)
    assert down.residue is not None  # what a failover would tunnel
    assert a.state is LinkState.ESTABLISHING and a.session == (old + 1) & 0xFFFF
    (act,) = [decode(x) for x in a.take_outgoing()]
    assert act.mtype == 2 and act.dest_session == (b.session + 1) & 0xFFFF


def test_peer_stopping_takes_link_down():
    p = _up_pair()
    a, b = p.a, p.b
    old = a.session
    a.receive(_proto(b, 1, session=(b.session + 1) & 0xFFFF, peer_stopping=1), p.now)
    (down,) = a.take_events()
    assert isinstance(down, LinkDown) and down.reason == "peer stopping"
    assert a.state is LinkState.RESET and a.session == (old + 1) & 0xFFFF
    (r,) = [decode(x) for x in a.take_outgoing()]
    assert (r.mtype, r.peer_stopping, r.redundant_link, r.session) == (1, 1, 0, a.session)
    # and the pair re-establishes on its own
    p.run_until(lambda: a.is_up and b.is_up, 3.0)


def test_local_reset_is_polite_and_pair_recovers():
    p = _up_pair()
    p.a.reset(p.now, "bearer disabled")
    p.flush()
    assert p.events("a", LinkDown)[-1].reason == "bearer disabled"
    stop = [m for _, m in p.wire["a"] if m.user == 7 and m.mtype == 1][-1]
    assert stop.peer_stopping == 1
    p.run_until(lambda: p.events("b", LinkDown), 1.0)
    assert p.events("b", LinkDown)[0].reason == "peer stopping"
    p.run_until(lambda: p.a.is_up and p.b.is_up, 3.0)


def test_activate_with_wrong_dest_session_resynchs():
    a = make_link()
    a.start(0.0)
    a.take_outgoing()
    b = make_link(B_ADDR, A_ADDR, "b", seed=2)
    act = _proto(b, 2, dest_session_valid=1, dest_session=(a.session + 10) & 0xFFFF)
    old = a.session
    a.receive(act, 0.01)
    assert a.state is LinkState.RESET
    assert a.session == (old + 11) & 0xFFFF


def test_reset_with_tiny_max_pkt_or_no_if_name_ignored():
    a = make_link()
    a.start(0.0)
    b = make_link(B_ADDR, A_ADDR, "b", seed=2)
    a.receive(_proto(b, 1, max_pkt=100), 0.01)
    m = _proto(b, 1)
    m.data = b""
    a.receive(m, 0.01)
    assert a.state is LinkState.RESET and a.stats.rx_invalid == 2


def test_tolerance_and_priority_adoption():
    a = make_link(priority=10)
    a.start(0.0)
    b = make_link(B_ADDR, A_ADDR, "b", seed=2)
    a.receive(_proto(b, 1, tolerance=1000, priority=20), 0.0)
    assert a.tolerance == 1000 and a.priority == 20
    assert a.keepalive_interval == pytest.approx(0.25)
    c = make_link(priority=10)
    c.start(0.0)
    c.receive(_proto(b, 1, tolerance=40000, priority=5), 0.0)  # out of range / lower
    assert c.tolerance == 1500 and c.priority == 10


# ------------------------------------------------------------------ STATE contents
def test_state_seqno_counter_and_gap_header():
    p = _up_pair()
    p.run_for(2.0)
    states = [m for _, m in p.wire["a"] if m.user == 7 and m.mtype == 0]
    assert [m.seqno for m in states] == list(range(1, len(states) + 1))
    assert all(m.data == b"\x00\x04\x00\x00" for m in states)
    q = Pair(
        a_kw={"peer_caps": NO_SEQNO_NO_GAP, "own_caps": NO_SEQNO_NO_GAP},
        b_kw={"peer_caps": NO_SEQNO_NO_GAP, "own_caps": NO_SEQNO_NO_GAP},
    ).up()
    q.run_for(2.0)
    states = [m for _, m in q.wire["a"] if m.user == 7 and m.mtype == 0]
    assert states and all(m.seqno == (m.next_sent + 32767) & 0xFFFF for m in states)
    assert all(m.data == b"" for m in states)


def test_broadcast_bookkeeping_written_into_packets():
    p = _up_pair()
    a = p.a
    a.bcast_ack, a.last_bcast, a.bc_ack_invalid, a.peer_node_up, a.bc_gap = 7, 3, False, True, 2
    a.send(data_msg(b"hello"), p.now)
    a.send_state()
    p.flush()
    d = [m for _, m in p.wire["a"] if m.user == 0][-1]
    st = [m for _, m in p.wire["a"] if m.user == 7][-1]
    assert d.bcast_ack == 7
    assert (st.bcast_ack, st.last_bcast, st.bc_ack_invalid, st.redundant_link, st.bc_gap) == (
        7,
        3,
        0,
        1,
        2,
    )


def test_probe_is_answered_with_keepalive_reply():
    p = _up_pair()
    a, b = p.a, p.b
    a.receive(_proto(b, 0, probe=1, is_keepalive=1, seqno=b._snd_nxt_state), p.now)
    (r,) = [decode(x) for x in a.take_outgoing()]
    assert (r.mtype, r.probe, r.is_keepalive) == (0, 0, 1)
    assert a.stats.recv_probes >= 1


def test_probe_from_peer_ahead_triggers_nack():
    p = _up_pair()
    a, b = p.a, p.b
    a.receive(_proto(b, 0, probe=1, is_keepalive=1, next_sent=5, seqno=b._snd_nxt_state), p.now)
    (r,) = [decode(x) for x in a.take_outgoing()]
    assert r.seq_gap == 4 and r.ack == 0
    assert a.stats.sent_nacks == 1


# ------------------------------------------------------------------ supervision
@pytest.mark.parametrize("tol", [1500, 100])
def test_failure_detected_after_tolerance_within_one_interval(tol):
    p = Pair(a_kw={"tolerance": tol}, b_kw={"tolerance": tol}).up()
    p.run_for(1.0)
    p.frozen.add("b")  # b falls silent
    p.run_until(lambda: p.events("a", LinkDown), tol / 1000 * 3)
    t_down = [t for t, e in p.ev["a"] if isinstance(e, LinkDown)][0]
    detect = t_down - p.last_rx["a"]
    interval = min(tol / 4, 500) / 1000
    print(
        f"tolerance {tol} ms: detected after {detect * 1000:.1f} ms (interval {interval * 1000:.0f} ms)"
    )
    assert tol / 1000 <= detect <= tol / 1000 + interval + 1e-9
    assert p.events("a", LinkDown)[0].reason.startswith("link timeout")
    probes = [t for t, m in p.wire["a"] if m.user == 7 and m.mtype == 0 and m.probe]
    assert len([t for t in probes if t > p.last_rx["a"]]) >= 3
    assert p.a.state is LinkState.RESET


def test_idle_link_chatter_no_more_than_kernel():
    p = _up_pair()
    t0 = p.now
    n0 = {k: len(v) for k, v in p.wire.items()}
    p.run_for(30.0)
    assert p.a.is_up and p.b.is_up
    ticks = (p.now - t0) / p.a.keepalive_interval
    for k in "ab":
        sent = len(p.wire[k]) - n0[k]
        # kernel: a probe and a probe reply per tick and side at most
        assert sent <= 2 * ticks + 2, (k, sent, ticks)
    total = sum(len(p.wire[k]) - n0[k] for k in "ab")
    print(f"idle: {total} packets in {p.now - t0:.1f}s ({ticks:.0f} ticks)")


def test_link_survives_kernel_style_peer_that_only_answers():
    """Like a kernel peer: the link stays up when every probe is answered."""
    p = _up_pair()
    p.run_for(10.0)
    assert p.a.is_up and p.b.is_up
    assert not p.events("a", LinkDown) and not p.events("b", LinkDown)


def test_retransmission_failure_resets_link():
    p = _up_pair()
    a, b = p.a, p.b
    p.frozen.add("b")
    a.send(data_msg(b"x" * 10), p.now)
    a.take_outgoing()
    t = p.now
    seq = b._snd_nxt_state
    # b keeps NACKing packet 1 but never acks it (and keeps a alive)
    while a.is_up and t < p.now + 20:
        t += 0.2
        a.receive(_proto(b, 0, seq_gap=1, ack=0, seqno=seq, next_sent=1), t)
        seq += 1
        a.tick(t)
        a.take_outgoing()
    downs = [e for e in a.take_events() if isinstance(e, LinkDown)]
    assert downs and downs[0].reason == "retransmission failure"
    assert 15.0 <= t - p.now <= 15.5


# ------------------------------------------------------------------ malformed / foreign
def test_malformed_input_never_resets_link_and_is_counted():
    p = _up_pair()
    a, b = p.a, p.b
    for i in range(5):
        b.send(data_msg(bytes([i]) * 10, B_ADDR, A_ADDR), p.now)
    p.run_for(0.5)
    assert len(p.delivered("a")) == 5
    s0 = a.stats.as_dict()
    seq = b._snd_nxt_state
    # wrong session
    a.receive(_proto(b, 0, session=(b.session + 1) & 0xFFFF, seqno=seq), p.now)
    # garbage STATE with valid session: ack of packets never sent, gap-ack beyond payload
    a.receive(_proto(b, 0, seqno=seq, ack=30000), p.now)
    g = _proto(b, 0, seqno=seq + 1)
    g.data = b"\x01\x00\x05\x00"
    a.receive(g, p.now)
    g = _proto(b, 0, seqno=seq + 2, seq_gap=8191)
    g.data = b"\x00\x0c\x02\x00\xff\xff\x00\x01\x00\x01\x00\x00"  # backwards blocks
    a.receive(g, p.now)
    # out-of-window and old (duplicate) sequenced packets, non_seq packet
    far = data_msg(b"far", B_ADDR, A_ADDR)
    far.seqno = (a.rcv_nxt + 9000) & 0xFFFF
    a.receive(far, p.now)
    old = data_msg(b"old", B_ADDR, A_ADDR)
    old.seqno = 2
    a.receive(old, p.now)
    ns = data_msg(b"ns", B_ADDR, A_ADDR)
    ns.non_seq = 1
    a.receive(ns, p.now)
    # RESET/ACTIVATE from an older session
    a.receive(_proto(b, 1, session=(b.session - 3) & 0xFFFF), p.now)
    a.receive(_proto(b, 2, session=(b.session - 3) & 0xFFFF), p.now)
    assert a.is_up
    s1 = a.stats.as_dict()
    assert s1["rx_proto_rejected"] - s0["rx_proto_rejected"] == 3
    assert s1["rx_invalid"] - s0["rx_invalid"] == 4  # bad ack, gap len, blocks, non_seq
    assert s1["rx_out_of_window"] - s0["rx_out_of_window"] == 1
    assert s1["duplicates"] - s0["duplicates"] == 2
    assert not p.events("a", LinkDown)
    # still works
    for _ in range(5):
        b.send(data_msg(bytes([9]) * 10, B_ADDR, A_ADDR), p.now)
    p.run_for(0.5)
    assert len(p.delivered("a")) == 10 and a.is_up and b.is_up


# ------------------------------------------------------------------ window / backlog
def test_low_backlog_full_refuses_then_accepts_after_acks():
    p = Pair(a_kw={"window": 16}, b_kw={"window": 16}).up()
    a = p.a
    p.frozen.add("b")  # nothing gets acked
    big = b"z" * 13800  # too big to bundle, small enough not to fragment
    n = 0
    while a.send(data_msg(big), p.now):
        n += 1
        assert n < 1000
    assert n == 16 + 2 * 16  # window + LOW backlog limit
    assert a.is_congested(0) and not a.is_congested(1)
    assert a.stats.link_congs == 1
    assert a.send(data_msg(big, imp=1), p.now)  # MEDIUM has its own, larger limit
    sys_msg = Msg.build(11, 0, prevnode=A_ADDR, destnode=B_ADDR)
    for _ in range(200):
        assert a.send(sys_msg, p.now)  # SYSTEM is never refused
    p.flush()
    p.frozen.discard("b")
    p.run_until(lambda: p.events("a", LinkWakeup), 5.0)
    assert p.events("a", LinkWakeup)[0] == LinkWakeup(0)
    assert a.send(data_msg(big), p.now)
    p.run_until(lambda: len(p.delivered("b")) == n + 1 + 200 + 1, 10.0)


def test_fragmentation_of_largest_message_and_stats():
    p = _up_pair()
    payload = bytes(random.Random(3).randbytes(66000))
    p.a.send(data_msg(payload), p.now)
    p.run_until(lambda: p.delivered("b"), 2.0)
    (m,) = p.delivered("b")
    assert m.data == payload and m.size == 66032
    frags = [x for _, x in p.wire["a"] if x.user == 12]
    assert [f.fragm_no for f in frags] == [1, 2, 3, 4, 5]
    assert [len(f.encode()) for f in frags[:-1]] == [13928] * 4
    assert (p.a.stats.sent_fragmented, p.a.stats.sent_fragments) == (1, 5)
    assert (p.b.stats.recv_fragmented, p.b.stats.recv_fragments) == (1, 5)
    assert all((f.prevnode, f.orignode, f.destnode) == (A_ADDR, A_ADDR, B_ADDR) for f in frags)


def test_bundles_when_window_full_match_wire_helper():
    p = Pair(a_kw={"window": 16}).up()
    a = p.a
    p.frozen.add("b")
    msgs = [data_msg(bytes([i % 256]) * (1 + i % 7)) for i in range(300)]
    for m in msgs:
        assert a.send(m, p.now)
    assert a.transmq_len == 16 and a.stats.sent_bundles >= 1
    p.flush()
    p.frozen.discard("b")
    p.run_until(lambda: len(p.delivered("b")) == 300, 5.0)
    assert [m.data for m in p.delivered("b")] == [m.data for m in msgs]
    bundles = [x for _, x in p.wire["a"] if x.user == 6]
    assert bundles and all(isinstance(x, BundleMsg) for x in bundles)
    bm = bundles[0]
    inner = unbundle(bm)
    ref = wire_bundle(inner, a.mss, dnode=B_ADDR)
    assert len(ref) == 1
    ref[0].ack, ref[0].seqno, ref[0].bcast_ack = bm.ack, bm.seqno, bm.bcast_ack
    assert ref[0].encode() == bm.encode()
    assert p.b.stats.recv_bundles == len(bundles)
    assert a.stats.sent_bundled == p.b.stats.recv_bundled


def test_bcast_protocol_and_name_distr_delivered_in_sequence():
    p = _up_pair()
    bp = Msg.build(5, 0, prevnode=A_ADDR, destnode=B_ADDR, bc_ack_invalid=1)
    nd = Msg.build(11, 0, prevnode=A_ADDR, destnode=B_ADDR)
    p.a.send(bp, p.now)
    p.a.send(nd, p.now)
    p.run_until(lambda: len(p.delivered("b")) == 2, 1.0)
    assert [m.user for m in p.delivered("b")] == [5, 11]
    assert [m.seqno for m in p.delivered("b")] == [1, 2]


def test_nack_carries_gap_ack_blocks_and_sender_honours_them():
    p = _up_pair()
    a, b = p.a, p.b
    for i in range(12):
        a.send(data_msg(bytes([i])), p.now)
    pkts = a.take_outgoing()
    assert len(pkts) == 12
    # b gets 1, 4: the first gap NACKs at once (ack 1, gap 2, block {4,0}); 6 soon
    # after adds nothing; 7, 2 ms later, NACKs again: blocks {4,1} {7,0}
    for i in (0, 3, 5):
        b.receive(decode(pkts[i]), p.now)
    nacks = [m for m in map(decode, b.take_outgoing()) if m.user == 7 and m.seq_gap]
    assert len(nacks) == 1
    assert (nacks[0].ack, nacks[0].seq_gap) == (1, 2)
    assert [tuple(x) for x in nacks[0].gap_ack.uc] == [(4, 0)]
    b.receive(decode(pkts[6]), p.now + NACK_REPEAT)
    nacks = [m for m in map(decode, b.take_outgoing()) if m.user == 7 and m.seq_gap]
    assert len(nacks) == 1
    nk = nacks[0]
    assert (nk.ack, nk.seq_gap, nk.probe) == (1, 2, 0)
    ga = nk.gap_ack
    assert ga is not None and ga.bgack_cnt == 0
    assert [tuple(x) for x in ga.uc] == [(4, 1), (7, 0)]
    assert b.stats.sent_nacks == 2 and b.stats.deferred_recv == 3
    # within 1 ms of the first transmission nothing is retransmitted
    a.receive(nk, p.now + 0.0005)
    assert a.take_outgoing() == []
    # a retransmits exactly the holes 2, 3, 5 and releases what the blocks acked
    nk.seqno += 1
    a.receive(nk, p.now + 0.002)
    again = [decode(x) for x in a.take_outgoing()]
    assert sorted(m.seqno for m in again if m.user == 0) == [2, 3, 5]
    assert all(m.ack == 0 for m in again)
    assert a.stats.retransmitted == 3 and a.stats.recv_nacks == 2
    assert a.transmq_len == 3 + 5


def test_messages_sent_before_link_up_go_out_when_it_comes_up():
    p = Pair()
    p.a.start(0.0)
    assert p.a.send(data_msg(b"early"), 0.0)
    assert p.a.backlog_len == 1 and p.a.take_outgoing()[0][:4] == b"\x4f\x40\x00\x38"
    p.b.start(0.01)
    p.flush()
    p.run_until(lambda: p.delivered("b"), 2.0)
    assert [m.data for m in p.delivered("b")] == [b"early"]


def test_largest_multicast_message_66044_bytes():
    p = _up_pair()
    payload = random.Random(5).randbytes(66000)
    m = Msg.build(
        0, 1, data=payload, prevnode=A_ADDR, orignode=A_ADDR, nametype=99, lower=1, upper=9
    )
    assert m.size == 66044
    p.a.send(m, p.now)
    p.run_until(lambda: p.delivered("b"), 2.0)
    (got,) = p.delivered("b")
    assert got.data == payload and (got.nametype, got.lower, got.upper) == (99, 1, 9)


def test_set_tolerance_is_told_to_peer_and_adopted():
    p = _up_pair()
    p.a.set_tolerance(600, p.now)
    p.run_for(0.1)
    assert p.b.tolerance == 600 and p.b.keepalive_interval == pytest.approx(0.15)
    assert p.a.is_up and p.b.is_up


def test_set_priority_resets_both_ends_and_they_reconverge():
    p = _up_pair()
    p.a.set_priority(20)
    p.run_until(lambda: p.events("b", LinkDown), 1.0)
    assert p.b.priority == 20
    p.run_until(lambda: p.a.is_up and p.b.is_up, 3.0)


def test_seqno_wrap_under_loss_duplication_and_reordering():
    """Counters are started just below 2^16 (test-only poke) so that data seqnos,
    acks, NACK gaps, Gap-ACK blocks and the STATE counter all wrap under loss."""
    p = Pair(seed=11, loss=0.2, dup=0.05, jitter=0.003).up()
    a, b = p.a, p.b
    p.run_for(0.05)
    assert a.transmq_len == 0 and b.deferred_len == 0 and a.snd_nxt == b.rcv_nxt == 1
    a._snd_nxt = b._rcv_nxt = 65400
    a._checkpoint = 65400
    a._snd_nxt_state = b._rcv_nxt_state = 65530
    rng = random.Random(4)
    sent = []
    for i in range(600):
        body = rng.randbytes(rng.choice((10, 3000, 13800)))
        while not a.send(data_msg(body), p.now):
            p.step()
        sent.append(body)
        if i % 7 == 0:
            p.step()
    p.run_until(lambda: len(p.delivered("b")) == len(sent), 60.0)
    assert [m.data for m in p.delivered("b")] == sent
    assert a.snd_nxt < 1000 and b.rcv_nxt == a.snd_nxt  # wrapped
    assert a.stats.retransmitted > 0 and b.stats.sent_nacks > 0
    assert not p.events("a", LinkDown) and not p.events("b", LinkDown)


def test_link_bundle_split_matches_wire_unbundle_on_good_and_damaged_bundles():
    """The link splits bundles itself (decoding in place); it must accept and refuse
    exactly what tipcpy.wire.bundle.unbundle does, with the same messages/errors."""
    from tipcpy.core.link import _split_bundle
    from tipcpy.wire import DecodeError

    rng = random.Random(7)
    inner = [Msg.build(0, 3, data=bytes(rng.randrange(0, 60)), destnode=B_ADDR,
                       prevnode=A_ADDR, orignode=A_ADDR, origport=i, destport=9)
             for i in range(6)]
    good = wire_bundle(inner, 1400)[0]
    raw = good.encode()
    cases = [raw]
    for _ in range(300):
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(40, len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[: rng.randrange(40, len(b))]
            b[1:4] = (len(b) | (b[1] & 0xFE) << 16).to_bytes(3, "big")
        cases.append(bytes(b))
    for c in cases:
        try:
            m = decode(c)
        except DecodeError:
            continue
        try:
            want = [x.encode() for x in unbundle(m)]
        except DecodeError as e:
            want = ("err", str(e))
        try:
            got = [x.encode() for x in _split_bundle(m)]
        except DecodeError as e:
            got = ("err", str(e))
        assert got == want


@pytest.mark.parametrize("last_rx", [0.1, 1.1, 2.3, 7.7, 1234.567, 0.30000000000000004])
def test_tick_at_the_deadline_always_makes_progress(last_rx):
    """Ticking at next_deadline() must move the deadline or take the link down: the
    failure deadline last_rx + tolerance is compared with the same float arithmetic in
    tick(), or a rounding miss leaves the deadline at 'now' and the driver spins."""
    p = Pair().up()
    link = p.a
    link._last_rx = last_rx  # the peer was last heard at this (awkward float) time,
    link._next_tick = last_rx + 0.1  # and the link timer is running from there
    for _ in range(50):
        t = link.next_deadline()
        if not link.is_up:
            break
        link.tick(t)
        assert not link.is_up or link.next_deadline() > t, (t, link.next_deadline())
    assert not link.is_up


def test_link_times_its_probes_and_stat_clear_forgets_them():
    """An idle link probes each tick and the peer answers one pipe delay later, so
    every round trip is exactly two delays (the pipe is 1 ms each way)."""
    p = Pair(delay=0.001).up()
    p.run_for(2.0)
    r = p.a.stats.rtt
    assert r.count >= 2 and r.count <= p.a.stats.sent_probes
    assert r.min == pytest.approx(0.002) and r.max == pytest.approx(0.002)
    assert r.as_dict()["avg"] == pytest.approx(2.0)
    assert "rtt" not in p.a.stats.as_dict()
    p.a.stats.clear()
    assert p.a.stats.rtt.count == 0 and p.a.stats.rtt.as_dict()["min"] is None


def _failover_setup(tnl_mtu: int, tnl_caps: int = ALL):
    """A failed link pair F (a sent five messages, b got only the first) and an up
    tunnel pair T with its own MTU; returns (F, T, a's residue, b's residue)."""
    f = _up_pair()
    t = Pair(seed=11, a_kw={"mtu": tnl_mtu, "peer_caps": tnl_caps},
             b_kw={"mtu": tnl_mtu}).up()
    sizes = [3000, 100, 5000, 100, 3000]
    for i, n in enumerate(sizes):
        assert f.a.send(data_msg(bytes([i]) * n), f.now)
    pkts = f.a.take_outgoing()
    assert len(pkts) == 5
    f.b.receive(decode(pkts[0]), f.now)  # b has message 0; the acks never got back
    f.a.reset(f.now, "cut")
    (down,) = [e for e in f.a.take_events() if isinstance(e, LinkDown)]
    res_b = f.b.failover_down(f.now)
    assert down.residue is not None and res_b is not None
    assert len(down.residue.pkts) == 6 and res_b.rcv_nxt == 2  # 5 + the dummy
    return f, t, down.residue, res_b


def test_failover_tunnel_delivers_once_in_order_with_tunnel_fragments():
    """FAILOVER_MSG over a link with a smaller MTU: packets that do not fit are split
    into tunnel fragments (peer has TIPC_TUNNEL_ENHANCED) and joined again; the drop
    point (b's rcv_nxt on the failed link) drops message 0, the dummy is dropped, and
    1..4 come out once, in order."""
    f, t, res_a, res_b = _failover_setup(1500)
    t.b.failover_rx(res_b)
    n = t.a.tnl_xmit(FAILOVER_MSG, res_a.pkts, res_a.peer_bearer_id, t.now)
    assert n > 6 and t.a.stats.tunnel_tx == n  # 3000/5000-byte packets became fragments
    t.flush()
    t.run_for(0.05)
    got = [(m.data[0], len(m.data)) for m in t.delivered("b")]
    assert got == [(1, 100), (2, 5000), (3, 100), (4, 3000)]
    assert t.b.stats.tunnel_rx == n and t.b.drop_point == (res_a.snd_nxt) & 0xFFFF


def test_failover_without_enhanced_skips_what_does_not_fit():
    """A peer without TIPC_TUNNEL_ENHANCED cannot join tunnel fragments: a packet too
    big for the tunnel link is not sent (counted), as the kernel does."""
    f, t, res_a, res_b = _failover_setup(1500, tnl_caps=ALL & ~0x200)
    n = t.a.tnl_xmit(FAILOVER_MSG, res_a.pkts, res_a.peer_bearer_id, t.now)
    assert n == 3 and t.a.stats.tunnel_too_big == 3


def test_failover_tunnel_same_mtu_no_fragments_and_duplicates_dropped():
    f, t, res_a, res_b = _failover_setup(14000)
    t.b.failover_rx(res_b)
    pk = list(res_a.pkts)
    # the same packets twice (e.g. both ends failed over at once): still once each
    t.a.tnl_xmit(FAILOVER_MSG, pk, res_a.peer_bearer_id, t.now)
    t.a.tnl_xmit(FAILOVER_MSG, pk, res_a.peer_bearer_id, t.now)
    t.flush()
    t.run_for(0.05)
    assert [m.data[0] for m in t.delivered("b")] == [1, 2, 3, 4]
    assert t.b.stats.duplicates >= 5

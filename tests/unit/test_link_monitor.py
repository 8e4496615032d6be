"""The link's monitor hooks (kernel tipc_link_timeout / tipc_link_proto_rcv with
tipc_mon_get_state / tipc_mon_prepare / tipc_mon_rcv), on two links over a pipe.

* STATE messages carry our domain record after the Gap-ACK blocks and the peer's
  monitor applies it; once acked, dummy records follow.
* A malformed record is counted by the monitor and dropped; the link stays up.
* A link to a peer the monitor does not supervise does not fail when the peer falls
  silent (the twin: with no monitor, or supervised, it fails after the tolerance),
  until another node's record reports the peer lost: then it probes and fails.
"""

from __future__ import annotations

import struct

from tipcpy.core.link import LinkDown
from tipcpy.core.monitor import DomainRecord, Monitor

from .test_link import A_ADDR, B_ADDR, Pair

TOL = 1.5


def _pair_with_monitors(a_mon: Monitor, b_mon: Monitor) -> Pair:
    p = Pair(seed=3)
    p.a.monitor = a_mon
    p.b.monitor = b_mon
    p.up()
    a_mon.peer_up(B_ADDR)
    b_mon.peer_up(A_ADDR)
    return p


def _ring_with_b_indirect() -> tuple[Monitor, int]:
    """A's monitor: 2 local members, a head H whose applied record covers B."""
    m = Monitor(A_ADDR, threshold=0)
    for a in (A_ADDR + 1, A_ADDR + 2, A_ADDR + 3, A_ADDR + 4, A_ADDR + 5, A_ADDR + 6,
              B_ADDR + 1):
        m.peer_up(a)
    h = A_ADDR + 3
    return m, h


def _record(h_gen: int, up_b: bool) -> bytes:
    members = (A_ADDR + 4, A_ADDR + 5, A_ADDR + 6, B_ADDR)
    up = 0b0111 | (0b1000 if up_b else 0)
    return DomainRecord(h_gen, 0, up, members).encode()


def test_state_carries_records_both_ways_then_dummies() -> None:
    ma, mb = Monitor(A_ADDR, threshold=0), Monitor(B_ADDR, threshold=0)
    p = _pair_with_monitors(ma, mb)
    p.run_for(3.0)
    assert p.a.is_up and p.b.is_up
    pa, pb = ma.peer(B_ADDR), mb.peer(A_ADDR)
    assert pa is not None and pa.domain is not None and pa.domain.members == (A_ADDR,)
    assert pb is not None and pb.domain is not None and pb.domain.members == (B_ADDR,)
    assert ma.stats.rx_applied >= 1 and mb.stats.rx_applied >= 1
    assert ma.stats.tx_full >= 1 and ma.stats.tx_dummy >= 1  # acked: dummies follow
    # the last STATE a sent: 4-byte Gap-ACK header, then a 16-byte dummy record
    state = [m for _, m in p.wire["a"] if m.user == 7 and m.mtype == 0][-1]
    glen = struct.unpack_from("!H", state.data)[0]
    rec = DomainRecord.decode(state.data[glen:])
    assert rec.member_cnt == 0 and rec.gen == ma.dom_gen and rec.ack_gen == mb.dom_gen
    assert ma.stats.rx_malformed == 0 and mb.stats.rx_malformed == 0


def test_below_threshold_no_record_is_sent() -> None:
    ma, mb = Monitor(A_ADDR), Monitor(B_ADDR)  # threshold 32: inactive with 2 nodes
    p = _pair_with_monitors(ma, mb)
    p.run_for(2.0)
    for _, m in p.wire["a"]:
        if m.user == 7 and m.mtype == 0:
            glen = struct.unpack_from("!H", m.data)[0]
            assert len(m.data) == glen
    assert ma.stats.tx_full == ma.stats.tx_dummy == 0


def test_malformed_record_counted_link_stays_up() -> None:
    ma, mb = Monitor(A_ADDR, threshold=0), Monitor(B_ADDR, threshold=0)
    p = _pair_with_monitors(ma, mb)
    p.run_for(1.0)
    bad = struct.pack("!HHHHQ", 16 + 4 * 65, 9, 0, 65, 0) + bytes(4 * 65)  # > 64 members
    mb.prepare = lambda addr: bad  # type: ignore[method-assign]
    p.run_for(2.0)
    assert ma.stats.rx_malformed >= 1
    assert p.a.is_up and p.b.is_up and not p.events("a", LinkDown)


def test_unsupervised_link_survives_silence_until_reported() -> None:
    ma, h = _ring_with_b_indirect()
    mb = Monitor(B_ADDR, threshold=0)
    p = _pair_with_monitors(ma, mb)
    assert ma.receive(h, _record(5, up_b=True))
    p.run_for(2.0)  # B acks our record: no more probing
    st = ma.get_state(B_ADDR)
    assert not st.monitoring and not st.probing, st
    p.frozen.add("b")
    p.run_for(4 * TOL)
    assert p.a.is_up and not p.events("a", LinkDown), "unsupervised link failed on silence"
    # H reports B down: A probes B and fails it within the tolerance (+ 2 ticks)
    t_report = p.now
    assert ma.receive(h, _record(6, up_b=False))
    assert ma.peer(B_ADDR).down_cnt == 1  # type: ignore[union-attr]
    p.run_until(lambda: bool(p.events("a", LinkDown)), 3 * TOL)
    t_down = [t for t, e in p.ev["a"] if isinstance(e, LinkDown)][0]
    assert t_down - t_report <= TOL + 2 * p.a.keepalive_interval + 1e-9
    assert t_down - t_report >= TOL - 1e-9


def test_twin_supervised_link_fails_after_tolerance() -> None:
    """The same silence on a link the monitor supervises (threshold 0, B local)."""
    ma, mb = Monitor(A_ADDR, threshold=0), Monitor(B_ADDR, threshold=0)
    p = _pair_with_monitors(ma, mb)
    p.run_for(2.0)
    assert ma.get_state(B_ADDR).monitoring
    p.frozen.add("b")
    t0 = p.now
    p.run_until(lambda: bool(p.events("a", LinkDown)), 3 * TOL)
    t_down = [t for t, e in p.ev["a"] if isinstance(e, LinkDown)][0]
    assert t_down - p.last_rx["a"] <= TOL + p.a.keepalive_interval + 1e-9
    assert t_down - t0 <= TOL + p.a.keepalive_interval + 1e-9


def test_four_reports_reset_the_link_at_once() -> None:
    ma, h = _ring_with_b_indirect()
    mb = Monitor(B_ADDR, threshold=0)
    p = _pair_with_monitors(ma, mb)
    assert ma.receive(h, _record(5, up_b=True))
    p.run_for(2.0)
    gen = 6
    for _ in range(4):  # B keeps answering, but H says it is down four times over
        ma.receive(h, _record(gen, up_b=True))
        ma.receive(h, _record(gen + 1, up_b=False))
        gen += 2
    assert ma.peer(B_ADDR).down_cnt >= 4  # type: ignore[union-attr]
    t0 = p.now
    p.run_until(lambda: bool(p.events("a", LinkDown)), 2.0)
    assert p.now - t0 <= p.a.keepalive_interval + 1e-9
    assert p.events("a", LinkDown)[0].reason == "link reset by the neighbour monitor"

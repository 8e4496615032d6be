"""Overlapping Ring Monitor: domain record codec, ring/domain rules, and a 1000-node model.

The model tests feed Monitor objects to each other directly (one STATE each way per
link per round, the record built by ``prepare`` and handed to the peer's ``receive``);
link supervision is modelled by "a link whose monitor state says monitoring/probing
detects a crashed peer" - which is what the kernel's link timer does with it.
"""

from __future__ import annotations

import math
import random
import struct

import pytest

from tipcpy.core.monitor import (
    DEF_MON_THRESHOLD,
    MAX_MON_DOMAIN,
    MAX_PEER_DOWN_EVENTS,
    MON_TIMEOUT,
    DomainRecord,
    DomainRecordError,
    Monitor,
    PeerReportedDown,
    PeerResetByMonitor,
    dom_size,
)
from tipcpy.wire import DecodeError

# ---------------------------------------------------------------- codec


def test_record_round_trip_and_byte_layout() -> None:
    rec = DomainRecord(gen=0x1234, ack_gen=0xFFFE, up_map=0x8000000000000005,
                       members=(0x01020304, 0xA0B0C0D0, 7))
    b = rec.encode()
    assert len(b) == 16 + 3 * 4
    # be16 len, be16 gen, be16 ack_gen, be16 member_cnt, be64 up_map, be32 members
    assert b[:8] == bytes.fromhex("001c" "1234" "fffe" "0003")
    assert b[8:16] == bytes.fromhex("8000000000000005")
    assert b[16:20] == bytes.fromhex("01020304")
    assert b[20:24] == bytes.fromhex("a0b0c0d0")
    back = DomainRecord.decode(b)
    assert back == rec
    assert back.is_up(0) and not back.is_up(1) and back.is_up(2)


@pytest.mark.parametrize("n", [0, 1, 31, MAX_MON_DOMAIN])
def test_record_round_trip_sizes(n: int) -> None:
    rng = random.Random(n)
    rec = DomainRecord(rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(64),
                       tuple(rng.getrandbits(32) for _ in range(n)))
    assert DomainRecord.decode(rec.encode()) == rec


def _raw(length: int, cnt: int, members: int) -> bytes:
    return struct.pack("!HHHHQ", length, 1, 0, cnt, 0) + b"\0" * (4 * members)


@pytest.mark.parametrize("data,field", [
    (b"", "domain record"),
    (b"\x00\x10\x00\x01\x00\x00\x00\x00" + b"\0" * 7, "domain record"),   # 15 bytes
    (_raw(16 + 4 * 65, 65, 65), "member_cnt"),                         # > 64 (CVE-2022-0435)
    (_raw(0xFFFF, 0xFFFF, 0), "member_cnt"),
    (_raw(24, 2, 1), "domain record length"),                          # truncated members
    (_raw(20, 1, 2), "domain record length"),                          # trailing bytes
    (_raw(16, 1, 1), "len"),                                           # len field disagrees
    (_raw(0, 0, 0), "len"),                                            # kernel "invalid" record
])
def test_record_malformed(data: bytes, field: str) -> None:
    with pytest.raises(DomainRecordError) as ei:
        DomainRecord.decode(data)
    assert isinstance(ei.value, DecodeError)
    assert ei.value.field == field


def test_record_encode_refuses_too_many_members() -> None:
    with pytest.raises(ValueError):
        DomainRecord(1, 0, 0, tuple(range(65))).encode()


def test_malformed_record_is_counted_and_dropped() -> None:
    m = Monitor(1, threshold=0)
    m.peer_up(2)
    before = (m.peer(2).domain, m.list_gen)  # type: ignore[union-attr]
    assert m.receive(2, _raw(24, 2, 1)) is False
    assert m.stats.rx_malformed == 1
    assert (m.peer(2).domain, m.list_gen) == before  # type: ignore[union-attr]


def test_dom_size_rule() -> None:
    assert [dom_size(n) for n in (1, 2, 4, 5, 9, 10, 16, 17, 1000, 4096, 5000)] == \
        [1, 2, 2, 3, 3, 4, 4, 5, 32, 64, 64]


# ---------------------------------------------------------------- small rings


def make_cluster(n: int, threshold: int = DEF_MON_THRESHOLD, seed: int = 1,
                 addrs: list[int] | None = None) -> dict[int, Monitor]:
    rng = random.Random(seed)
    if addrs is None:
        addrs = rng.sample(range(1, 1 << 32), n)
    mons = {a: Monitor(a, bearer_name="udp:b0", threshold=threshold) for a in addrs}
    for a, m in mons.items():
        others = [b for b in addrs if b != a]
        rng.shuffle(others)
        for b in others:
            m.peer_up(b)
    return mons


def settle(mons: dict[int, Monitor]) -> None:
    """Let every monitor timer run once (steady state two minutes after start-up)."""
    for m in mons.values():
        m.tick(MON_TIMEOUT + 66.0)


def exchange(mons: dict[int, Monitor], dead: frozenset[int] = frozenset(),
             full_only: bool = False) -> int:
    """One STATE each way on every live link; returns how many full records went.

    ``full_only`` skips handing over the 16-byte dummies (they only carry acks, so a
    round that is about spreading new records is the same without them, and faster).
    """
    full = 0
    live = [a for a in mons if a not in dead]
    for a in live:
        m = mons[a]
        for b in live:
            if b == a or not m.peer(b) or not m.peer(b).is_up:  # type: ignore[union-attr]
                continue
            d = m.prepare(b)
            if len(d) > 16:
                full += 1
            elif full_only:
                continue
            mons[b].receive(a, d)
    return full


def converge(mons: dict[int, Monitor], dead: frozenset[int] = frozenset()) -> int:
    for rounds in range(1, 10):
        if exchange(mons, dead) == 0:
            return rounds
    raise AssertionError("records never settled")


def test_below_threshold_is_full_mesh_without_records() -> None:
    mons = make_cluster(8, threshold=32)
    m = next(iter(mons.values()))
    assert not m.active
    assert m.summary()["algorithm"] == "full-mesh"
    assert m.summary()["cluster_size"] == 8
    for b in mons:
        if b != m.self_addr:
            assert m.prepare(b) == b""  # nothing appended to STATE
            st = m.get_state(b)
            assert st.monitoring and not st.probing
    assert m.monitored_peers() == set(mons) - {m.self_addr}


def test_ring_sorted_local_domain_is_successors() -> None:
    addrs = [50, 10, 40, 20, 30, 60, 70, 80, 90, 100]
    mons = make_cluster(0, threshold=0, addrs=addrs)
    m = mons[40]
    assert [p.addr for p in m.ring()] == [40, 50, 60, 70, 80, 90, 100, 10, 20, 30]
    # As in the kernel, the local domain is only rebuilt when a change lands inside it
    # (or on the 120 s monitor timer), so it may still have the size of a smaller ring
    assert m.local_domain() == [50, 60, 70][:len(m.local_domain())]
    settle(mons)
    # 10 nodes -> dom_size 4 -> 3 members: the next three on the ring, wrapping
    assert m.local_domain() == [50, 60, 70]
    assert mons[90].local_domain() == [100, 10, 20]
    for a in (50, 60, 70):
        assert m.peer(a).is_local  # type: ignore[union-attr]


def test_across_threshold_and_back() -> None:
    mons = make_cluster(33, threshold=32, seed=3)
    settle(mons)
    m = next(iter(mons.values()))
    assert m.active and m.summary()["algorithm"] == "overlapping-ring"
    converge(mons)
    direct = m.directly_monitored()
    assert len(m.local_domain()) == dom_size(33) - 1 == 5
    assert len(direct) < 32
    # every peer is covered: directly, or as an applied member of a head's domain
    covered = set(direct)
    for p in m.ring():
        if p.is_head and p.domain is not None:
            covered.update(p.domain.members[:p.applied])
    assert covered >= set(mons) - {m.self_addr}
    # one node leaves for good: back to the threshold, full mesh, domains forgotten
    gone = next(a for a in mons if a != m.self_addr)
    m.remove_peer(gone)
    assert not m.active
    assert m.prepare(next(a for a in mons if a not in (gone, m.self_addr))) == b""
    assert all(p.domain is None for p in m.ring() if p.addr != m.self_addr)
    assert m.monitored_peers() == set(mons) - {m.self_addr, gone}


def test_threshold_settable_and_bounded() -> None:
    m = Monitor(5)
    for a in (1, 2, 3):
        m.peer_up(a)
    assert not m.active
    m.threshold = 3
    assert m.active  # 4 nodes > 3
    with pytest.raises(ValueError):
        m.threshold = 4096
    m.threshold = 0
    assert m.threshold == 0


def test_generations_ack_and_dummy_records() -> None:
    mons = make_cluster(6, threshold=0, addrs=[1, 2, 3, 4, 5, 6])
    a, b = mons[1], mons[2]
    rec = DomainRecord.decode(a.prepare(2))
    assert rec.members == (2, 3) and rec.gen == a.dom_gen
    assert a.get_state(2).probing  # peer has not acked our generation yet
    b.receive(1, a.prepare(2))
    # b's answer acks a's generation; a then only sends the 16-byte dummy
    a.receive(2, b.prepare(1))
    assert a.state(2).acked_gen == a.dom_gen
    d = a.prepare(2)
    assert len(d) == 16
    dummy = DomainRecord.decode(d)
    assert dummy.members == () and dummy.gen == a.dom_gen and dummy.ack_gen == b.dom_gen
    assert not a.get_state(2).probing
    # a local change bumps the generation and the full record goes again
    g = a.dom_gen
    a.peer_down(3)
    assert a.dom_gen == (g + 1) & 0xFFFF
    full = DomainRecord.decode(a.prepare(2))
    assert full.members == (2, 3) and not full.is_up(1) and full.is_up(0)
    # a duplicate of an applied record changes nothing
    b.receive(1, a.prepare(2))
    assert b.receive(1, a.prepare(2)) is False
    assert b.stats.rx_duplicate >= 1


def test_generation_wraps_modulo_16_bits() -> None:
    m = Monitor(1, threshold=0)
    for a in (2, 3, 4):
        m.peer_up(a)
    m.dom_gen = 0xFFFF
    assert m.local_domain() == [2]
    m.peer_down(2)  # our only member goes down -> generation wraps to 0
    assert m.dom_gen == 0
    peer = Monitor(3, threshold=0)
    for a in (1, 2, 4):
        peer.peer_up(a)
    assert peer.receive(1, m.prepare(3)) is True
    assert peer.state(1).peer_gen == 0
    m.peer_up(2)  # generation 1 is "newer" than 0 after the wrap
    assert m.dom_gen == 1
    assert peer.receive(1, m.prepare(3)) is True
    assert peer.receive(1, m.prepare(3)) is False  # and 1 again is a duplicate


def test_record_from_peer_without_up_link_is_not_applied() -> None:
    m = Monitor(1, threshold=0)
    m.peer_up(2)
    m.peer_up(3)
    m.peer_down(3)
    rec = DomainRecord(5, 0, 1, (1,)).encode()
    assert m.receive(3, rec) is False
    assert m.stats.rx_unknown_peer == 1


def test_link_reset_resyncs_generations() -> None:
    a = Monitor(1, threshold=0)
    b = Monitor(2, threshold=0)
    for m, o in ((a, 2), (b, 1)):
        m.peer_up(o)
        m.peer_up(3)
    b.receive(1, a.prepare(2))
    a.receive(2, b.prepare(1))
    assert len(a.prepare(2)) == 16
    a.link_reset(2)  # kernel zeroes mon_state on link reset: full record again
    assert len(a.prepare(2)) > 16


def test_head_report_makes_others_probe_and_four_reports_reset() -> None:
    # 10 nodes, threshold 0: domains of 3 members
    addrs = list(range(10, 110, 10))
    mons = make_cluster(0, threshold=0, addrs=addrs)
    settle(mons)
    converge(mons)
    me = mons[10]
    victim = 80  # not in 10's local domain (20, 30, 40)
    assert not me.peer(victim).is_local  # type: ignore[union-attr]
    assert not me.get_state(victim).probing
    # the victim's predecessors (50, 60, 70 have it in their local domain) lose it
    for a in (50, 60, 70):
        mons[a].peer_down(victim)
    me.take_events()
    for a in (50, 60, 70):
        me.receive(a, mons[a].prepare(10))
    ev = me.take_events()
    reports = [e for e in ev if isinstance(e, PeerReportedDown) and e.addr == victim]
    assert reports, ev
    st = me.get_state(victim)
    assert st.probing  # our link to the victim must probe now
    assert me.peer(victim).down_cnt >= 1  # type: ignore[union-attr]
    # any record from the victim itself clears the suspicion
    mons[victim].take_events()
    me.receive(victim, mons[victim].prepare(10))
    assert me.peer(victim).down_cnt == 0  # type: ignore[union-attr]


def test_max_peer_down_events_resets_link() -> None:
    m = Monitor(1, threshold=0)
    for a in range(2, 30):
        m.peer_up(a)
    p = m.peer(25)
    assert p is not None and not p.is_local
    p.down_cnt = MAX_PEER_DOWN_EVENTS
    m.list_gen += 1  # invalidate the cached link state, as any table change does
    assert m.get_state(25).reset


def test_monitor_timer_resizes_local_domain() -> None:
    m = Monitor(1000, threshold=0, now=0.0, random16=500)
    assert m.next_deadline() == pytest.approx(MON_TIMEOUT + 0.5)
    for a in range(1, 20):
        m.peer_up(a)  # peers sort *before* us: far from our domain at first
    m.self_peer.applied = 0  # as if the domain was sized for a smaller cluster
    m.tick(10.0)
    assert m.self_peer.applied == 0  # not yet due
    m.tick(MON_TIMEOUT + 0.5)
    assert m.self_peer.applied == dom_size(20) - 1


def test_list_rows_have_the_kernel_columns() -> None:
    mons = make_cluster(0, threshold=0, addrs=[1, 2, 3, 4, 5])
    converge(mons)
    rows = mons[1].list_peers()
    assert [r["addr"] for r in rows] == [1, 2, 3, 4, 5]  # self first, ring order
    first = rows[0]
    assert first["status"] == "up" and first["monitored"] == "direct"
    assert first["applied_node_status"] == ["U", "U"] and first["non_applied"] == []
    assert all(r["monitored"] in ("direct", "indirect") for r in rows)
    assert all("applied_node_status" in r for r in rows)


# ---------------------------------------------------------------- the 1000-node model


@pytest.mark.slow  # ~50 s: the full-size model; run with -m slow
def test_thousand_nodes_sqrt_monitoring_and_crash_reported_by_all() -> None:
    n = 1000
    mons = make_cluster(n, seed=1000)
    settle(mons)
    converge(mons)
    ds = dom_size(n) - 1
    root = math.sqrt(n)
    for m in mons.values():
        assert m.active
        assert len(m.local_domain()) == ds == 31
        direct = len(m.directly_monitored())
        # local domain (~sqrt N) plus one head per other domain (~sqrt N)
        assert root - 1 <= direct <= 2 * root + 4, direct
    avg = sum(len(m.directly_monitored()) for m in mons.values()) / n
    assert avg < n / 10

    victim = sorted(mons)[n // 2]
    dead = frozenset({victim})
    for m in mons.values():
        m.take_events()
    # 1. links that supervise the victim (monitoring) time out and go down
    detected_directly = set()
    for a, m in mons.items():
        if a != victim and m.get_state(victim).monitoring:
            detected_directly.add(a)
    for a in detected_directly:
        mons[a].peer_down(victim)
    assert 0 < len(detected_directly) < n // 10
    # 2. their new records travel on the next STATEs
    assert exchange(mons, dead, full_only=True) > 0
    # 3. every other node now probes the victim (or resets the link at once)
    told = set()
    for a, m in mons.items():
        if a == victim or a in detected_directly:
            continue
        st = m.get_state(victim)
        assert st.probing or st.reset, (hex(a), m.peer(victim))
        evs = m.take_events()
        assert any(isinstance(e, PeerReportedDown) and e.addr == victim for e in evs)
        if any(isinstance(e, PeerResetByMonitor) and e.addr == victim for e in evs):
            told.add(a)
    # with ~31 reporting predecessors most nodes get MAX_PEER_DOWN_EVENTS reports
    assert len(told) > 0
    # 4. the probing links find no answer and fail: every node has the victim down,
    #    The victim was a head for some nodes: its members are now probed until they
    #    answer (kernel: "start probing if member was removed from applied domain");
    #    the link timer asks get_state(), probes, and the member's reply clears it.
    for a, m in mons.items():
        if a != victim and a not in detected_directly:
            m.peer_down(victim)
    suspected = 0
    for a, m in mons.items():
        if a == victim:
            continue
        for p in m.ring():
            if p.addr not in (a, victim) and p.down_cnt:
                suspected += 1
                assert m.get_state(p.addr).probing
                m.receive(p.addr, mons[p.addr].prepare(a))
    assert suspected > 0
    for a, m in mons.items():
        if a != victim:
            assert not m.peer(victim).is_up  # type: ignore[union-attr]
            assert all(p.down_cnt == 0 for p in m.ring() if p.addr != victim)


def test_bench_model_rates_scale_like_sqrt_n() -> None:
    from bench.monitor_model import rates

    small, big = rates(64), rates(256)
    assert small["active"] and big["active"]
    assert small["monitor_design_msgs"] < small["full_mesh_msgs"]
    # 4x the nodes: full mesh 4x the messages, the monitor about 2x (sqrt)
    assert big["full_mesh_msgs"] / small["full_mesh_msgs"] > 3.9
    assert big["monitor_design_msgs"] / small["monitor_design_msgs"] < 3.0


def test_two_nodes_match_the_kernel_capture() -> None:
    # /work/shared/reference/cli/tipc-link.txt: kpeer-a with one peer, below threshold
    m = Monitor(0x1000, bearer_name="udp:b0")
    m.peer_up(0x2000)
    assert m.summary() == {"bearer": "udp:b0", "table_generation": 1, "cluster_size": 2,
                           "algorithm": "full-mesh"}
    me, peer = m.list_peers()
    assert (me["status"], me["monitored"], me["generation"]) == ("up", "direct", 1)
    assert me["applied_node_status"] == ["U"] and me["non_applied"] == []
    assert (peer["status"], peer["monitored"], peer["generation"]) == ("up", "direct", 0)
    assert "applied_node_status" not in peer

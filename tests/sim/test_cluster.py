"""Multi-node behaviour on the virtual-time in-memory network (no sleeping).

Every test builds real Stacks (discovery + node + the real Link) on SimNetwork and
asserts on events and introspection, with virtual time only.
"""

from __future__ import annotations

import os
import time

import pytest

from tipcpy.core.node import LinkStateChanged, NodeDown, NodeUp
from tipcpy.core.stack import AddressCommitted
from tipcpy.sim import FaultModel, SimCluster
from tipcpy.wire import Msg
from tipcpy.wire.consts import DscType, User


def first_time(c: SimCluster, i: int, cls: type, pred=lambda e: True) -> float | None:
    for t, e in c.nodes[i].events:
        if isinstance(e, cls) and pred(e):
            return t
    return None


# ---------------------------------------------------------------- set-up
def test_two_nodes_link_up_within_one_second_after_trial() -> None:
    c = SimCluster(2, seed=1)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    t_addr = first_time(c, 0, AddressCommitted)
    t_up = max(first_time(c, i, NodeUp) for i in (0, 1))
    assert t_addr is not None and 0.99 <= t_addr <= 1.2  # the 1 s address trial
    assert t_up - t_addr < 1.0, f"link up {t_up - t_addr:.3f}s after the trial"
    for i in (0, 1):
        links = [lk for lk in c.nodes[i].stack.link_list() if lk["name"] != "broadcast-link"]
        assert len(links) == 1 and links[0]["up"]
        assert {"name": "broadcast-link", "up": True} in c.nodes[i].stack.link_list()
        nl = c.nodes[i].stack.node_list()
        assert len(nl) == 1 and nl[0]["up"] and nl[0]["identity"] == f"simnode{1 - i}"
    name = [lk for lk in c.nodes[0].stack.link_list() if lk["name"] != "broadcast-link"][0]
    assert name["name"] == "simnode0:lan0-simnode1:lan0"


def test_five_node_full_mesh() -> None:
    c = SimCluster(5, seed=2)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0), "mesh did not form"
    assert c.now < 3.0
    for i in range(5):
        assert c.links_up(i) == 4
        assert len([e for _, e in c.nodes[i].events if isinstance(e, NodeUp)]) == 4
    # stays up (probes answered) for a while with no spurious NodeDown
    c.run_for(10.0)
    assert c.all_links_up()
    assert not any(isinstance(e, NodeDown) for n in c.nodes for _, e in n.events)


# ---------------------------------------------------------------- failure detection
@pytest.mark.parametrize("tolerance_ms", [1500, 100])
def test_crash_detected_within_tolerance(tolerance_ms: int) -> None:
    c = SimCluster(4, seed=3, tolerance=tolerance_ms)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.run_for(2.0)
    victim = 3
    t_crash = c.now
    c.crash(victim)
    va = c.addr(victim)
    tol = tolerance_ms / 1000.0
    intv = min(tol / 4, 0.5)
    assert c.run_until(lambda: all(not c.nodes[i].stack.node_is_up(va) for i in range(3)),
                       timeout=3 * tol + 1.0)
    for i in range(3):
        t = first_time(c, i, NodeDown, lambda e: e.addr == va)
        assert t is not None
        delay = t - t_crash
        # the link fails once the peer has been silent for the tolerance, so the
        # node goes down no later than the tolerance after the crash (the kernel
        # needs up to two more probe intervals)
        assert delay <= tol + 0.001, f"detected after {delay:.3f}s"
        assert delay >= tol - intv - 0.001, f"detected after {delay:.3f}s"
        print(f"tolerance {tolerance_ms} ms: node {i} saw the crash after {delay * 1000:.1f} ms")
    # the survivors keep their links to each other
    c.run_for(3 * tol)
    assert c.all_links_up([0, 1, 2])


def test_partition_heals_and_links_come_back() -> None:
    c = SimCluster(4, seed=4)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.partition([0, 1], [2, 3])
    a0, a2 = c.addr(0), c.addr(2)
    assert c.run_until(lambda: not c.nodes[0].stack.node_is_up(a2)
                       and not c.nodes[2].stack.node_is_up(a0), timeout=5.0)
    assert c.nodes[0].stack.node_is_up(c.addr(1))
    assert c.nodes[2].stack.node_is_up(c.addr(3))
    c.heal_partition()
    t_heal = c.now
    # discovery was back at a 1 s interval (no neighbour lost -> fast), links return
    assert c.run_until(lambda: c.all_links_up(), timeout=10.0)
    assert c.now - t_heal < 5.0


# ---------------------------------------------------------------- redundant links
def test_two_bearers_two_links_node_survives_a_cut() -> None:
    c = SimCluster(2, seed=5, segments=("a", "b"))
    assert c.run_until(lambda: c.links_up(0) == 2 and c.links_up(1) == 2, timeout=5.0)
    p = c.nodes[0].stack.peers[c.addr(1)]
    assert sorted(p.active) == [0, 1]  # equal priority: both active
    c.cut(1, "a")
    assert c.run_until(lambda: c.links_up(0) == 1, timeout=5.0)
    assert c.nodes[0].stack.node_is_up(c.addr(1))
    assert c.nodes[1].stack.node_is_up(c.addr(0))
    assert not any(isinstance(e, NodeDown) for n in c.nodes for _, e in n.events)
    downs = c.events_of(0, LinkStateChanged)
    assert any(not e.up and e.bearer_id == 0 for _, e in downs)
    assert p.active == [1, 1]
    # heal: the link on "a" comes back
    c.heal(1, "a")
    assert c.run_until(lambda: c.links_up(0) == 2 and c.links_up(1) == 2, timeout=10.0)


def test_disable_bearer_takes_peer_link_down_quickly() -> None:
    c = SimCluster(2, seed=6, segments=("a", "b"))
    assert c.run_until(lambda: c.links_up(0) == 2 and c.links_up(1) == 2, timeout=5.0)
    t0 = c.now
    c.disable_bearer(1, "a")
    assert c.run_until(lambda: c.links_up(0) == 1, timeout=5.0)
    assert c.now - t0 < 0.5  # the polite RESET, not the tolerance timeout
    assert c.nodes[0].stack.node_is_up(c.addr(1))


# ---------------------------------------------------------------- bad input
def test_garbage_and_foreign_netid_counted_never_reset_links() -> None:
    c = SimCluster(3, seed=7)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.run_for(1.0)
    rng = c.net.rng
    stack0 = c.nodes[0].stack
    # a foreign cluster's discovery from a node on the same segment
    foreign = SimCluster(1, seed=99, net_id=1234, start=False).nodes[0].stack
    foreign.enable_bearer("eth:x", "mem", c.net.attachment(2, 0).media_addr.__class__(
        b"\x02\x00\x00\x00\x99\x99"), 1500, c.now)
    foreign_pkts = [d for _, _, d in foreign.take_transmits()]
    n_garbage = 0
    for k in range(400):
        kind = k % 4
        if kind == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        elif kind == 1:  # valid-looking header, random rest
            data = bytes.fromhex("5bf0004c") + bytes(rng.getrandbits(8) for _ in range(72))
        elif kind == 2:  # truncated copies of real traffic
            data = foreign_pkts[0][: rng.randrange(0, 76)]
        else:
            data = foreign_pkts[0]
        n_garbage += 1
        c.inject(0, 0, data, delay=0.001 * k)
    c.run_for(2.0)
    assert c.all_links_up()
    assert not any(isinstance(e, NodeDown) for n in c.nodes for _, e in n.events)
    b = stack0.bearer_list()[0]
    dropped = (b["stats"]["rx_decode_errors"] + b["discovery"]["rx_wrong_netid"]
               + b["discovery"]["rx_bad_media"])
    assert b["stats"]["rx_decode_errors"] > 100
    assert b["discovery"]["rx_wrong_netid"] >= 100
    assert dropped >= 0.9 * n_garbage
    assert stack0.stats()["counters"]["duplicate_addr"] == 0


def test_unicast_for_another_node_is_dropped_and_counted() -> None:
    c = SimCluster(2, seed=8)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    m = Msg.build(User.LOW_IMPORTANCE, mtype=3, prevnode=c.addr(1), destnode=0x12345678,
                  data=b"x")
    c.inject(0, 0, m.encode())
    c.run_for(0.01)
    assert c.nodes[0].stack.bearer_list()[0]["stats"]["rx_wrong_dest"] == 1
    assert c.all_links_up()


# ---------------------------------------------------------------- address trial
def test_duplicate_identity_gets_another_address() -> None:
    c = SimCluster(1, seed=9)
    c.run_for(2.0)  # node 0 has its address
    twin = c.add_node(node_id=c.nodes[0].stack.node_id)
    c.run_for(5.0)
    a0, a1 = c.addr(0), twin.stack.own_addr
    assert a0 and a1 and a0 != a1
    assert any(type(e).__name__ == "TrialFailed" for _, e in twin.events)


def test_foreign_net_id_never_links() -> None:
    c = SimCluster(1, seed=10)
    c.add_node(net_id=1234)
    c.run_for(5.0)
    assert c.links_up(0) == 0 and c.links_up(1) == 0
    assert c.nodes[0].stack.bearer_list()[0]["discovery"]["rx_wrong_netid"] > 3


# ---------------------------------------------------------------- upper-layer hooks
def test_send_to_node_delivers_to_registered_user() -> None:
    c = SimCluster(2, seed=11)
    got: list[tuple[int, bytes]] = []
    c.nodes[1].stack.register_user(0, lambda src, m, now: got.append((src, m.data)))
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    a0, a1 = c.addr(0), c.addr(1)
    for k in range(20):
        m = Msg.build(User.LOW_IMPORTANCE, mtype=3, prevnode=a0, orignode=a0, destnode=a1,
                      origport=1, destport=2, data=b"hello %d" % k)
        assert c.nodes[0].stack.send_to_node(a1, m, k, c.now)
    c.run_for(0.5)
    assert [d for _, d in got] == [b"hello %d" % k for k in range(20)]
    assert all(src == a0 for src, _ in got)


def test_lossy_segment_still_links_and_delivers() -> None:
    c = SimCluster(3, seed=12, faults=FaultModel(loss=0.05, duplicate=0.02, reorder=0.05,
                                                  jitter=0.001))
    assert c.run_until(lambda: c.all_links_up(), timeout=10.0)
    got: list[bytes] = []
    c.nodes[1].stack.register_user(0, lambda src, m, now: got.append(m.data))
    a0, a1 = c.addr(0), c.addr(1)
    for k in range(100):
        m = Msg.build(User.LOW_IMPORTANCE, mtype=3, prevnode=a0, orignode=a0, destnode=a1,
                      origport=1, destport=2, data=b"m%d" % k)
        c.nodes[0].stack.send_to_node(a1, m, 1, c.now)
        c.run_for(0.002)
    c.run_for(3.0)
    assert got == [b"m%d" % k for k in range(100)]  # in order, exactly once


def test_discovery_backs_off_once_linked() -> None:
    c = SimCluster(2, seed=13)
    reqs: list[float] = []

    def tap(now, src, dest, data) -> None:
        if src.node == 0 and data[:4] == bytes.fromhex("5bf0004c") and dest is None:
            if (data[4] >> 5) == DscType.REQ:
                reqs.append(now)
    c.net.taps.append(tap)
    c.run_for(130.0)
    assert c.all_links_up()
    gaps = [b - a for a, b in zip(reqs, reqs[1:], strict=False)]
    assert gaps and max(gaps) == pytest.approx(60.0)
    assert len(reqs) < 15


# ---------------------------------------------------------------- scale
@pytest.mark.skipif(os.environ.get("TIPCPY_SKIP_SCALE") == "1", reason="scale run disabled")
def test_hundred_nodes_full_mesh() -> None:
    n = int(os.environ.get("TIPCPY_SCALE_N", "100"))
    t0 = time.perf_counter()
    c = SimCluster(n, seed=14)
    ok = c.run_until(lambda: all(c.links_up(i) == n - 1 for i in range(n)), timeout=10.0)
    real = time.perf_counter() - t0
    print(f"\n{n}-node full mesh: virtual {c.now:.3f}s, real {real:.1f}s, "
          f"{c.net.stats.delivered} packets, {c.steps} steps")
    assert ok, f"mesh incomplete at virtual {c.now:.2f}s"
    assert c.now < 4.0
    assert real < 300


# ---------------------------------------------------------------- name layer wiring
def test_node_state_and_link_state_bindings_replicate_and_purge() -> None:
    c = SimCluster(3, seed=15)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.run_for(0.5)
    addrs = [c.addr(i) for i in range(3)]
    for i in range(3):
        nt = c.nodes[i].stack.name_table
        for a in addrs:  # {0, a, a} cluster scope from every node, incl. itself
            assert [p.node for p in nt.find(0, a, a)] == [a]
        for j in range(3):
            if j != i:  # {2, peer, peer} node scope, port = link id
                (p,) = nt.find(2, addrs[j], addrs[j])
                assert p.node == addrs[i] and p.scope == 3
    c.crash(2)
    assert c.run_until(lambda: not c.nodes[0].stack.node_is_up(addrs[2]), timeout=5.0)
    nt0 = c.nodes[0].stack.name_table
    assert nt0.find(0, addrs[2], addrs[2]) == []  # purged on node down
    assert nt0.find(2, addrs[2], addrs[2]) == []  # link-state withdrawn on link down
    assert [p.node for p in nt0.find(0, addrs[1], addrs[1])] == [addrs[1]]

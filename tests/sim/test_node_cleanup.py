"""Node housekeeping at scale: node objects of peers gone for 5 minutes are deleted
(kernel tipc_node_cleanup, NODE_CLEANUP_AFTER = 300 s), `tipc peer remove` deletes a
down one at once, and churn does not make a node hold more and more.
"""

from __future__ import annotations

import errno

import pytest

from tipcpy.core.stack import Stack, StackError
from tipcpy.sim import SimCluster


def _held(st: Stack) -> tuple[int, int, int, int]:
    disc = st._bearers[0].disc  # type: ignore[union-attr]
    return (len(st.peers), st.monitors[0].peer_cnt - 1,
            len(disc._linked) + len(disc._unlinked), len(st._down_since))


def _join_and_crash(c: SimCluster, slot: int, k: int, base: range) -> int:
    c.replace(slot, f"churn{k}".encode().ljust(16, b"\0"))
    assert c.run_until(lambda: bool(c.addr(slot)) and all(
        c.nodes[i].stack.node_is_up(c.addr(slot)) for i in base), timeout=10)
    a = c.addr(slot)
    c.crash(slot)
    assert c.run_until(lambda: not any(c.nodes[i].stack.node_is_up(a) for i in base),
                       timeout=5)
    return a


def test_gone_peer_deleted_after_five_minutes() -> None:
    c = SimCluster(3, seed=11)
    assert c.run_until(lambda: c.all_links_up(), timeout=10)
    gone = c.addr(2)
    c.crash(2)
    assert c.run_until(lambda: not c.nodes[0].stack.node_is_up(gone), timeout=5)
    t_down = c.now
    st = c.nodes[0].stack
    c.run_until(t_down + 299.0)
    assert gone in st.peers and gone in {p.addr for p in st.monitors[0].ring()}
    c.run_until(t_down + 300.0 + Stack.CLEANUP_SWEEP + 0.01)
    assert gone not in st.peers, "node object not deleted 5 minutes after it was lost"
    assert gone not in {p.addr for p in st.monitors[0].ring()}
    assert st.counters["nodes_cleaned"] == 1
    assert c.nodes[0].stack.node_is_up(c.addr(1))  # the living peer is untouched
    assert [r["addr"] for r in st.node_list()] == [c.addr(1)]


def test_peer_remove_on_a_down_node() -> None:
    c = SimCluster(3, seed=12)
    assert c.run_until(lambda: c.all_links_up(), timeout=10)
    st = c.nodes[0].stack
    with pytest.raises(StackError) as e:
        st.remove_peer(c.addr(1), c.now)  # up: refused
    assert e.value.errno == errno.EBUSY
    gone = c.addr(2)
    c.crash(2)
    assert c.run_until(lambda: not st.node_is_up(gone), timeout=5)
    st.remove_peer(gone, c.now)
    assert gone not in st.peers and st.monitors[0].peer_cnt == 2
    with pytest.raises(StackError) as e:
        st.remove_peer(gone, c.now)
    assert e.value.errno == errno.ENXIO
    c.run_for(400.0)  # the sweep finds nothing left to delete
    assert st.counters["nodes_cleaned"] == 0 and st.node_is_up(c.addr(1))


def test_churn_does_not_grow_what_a_node_holds() -> None:
    """A node joins and leaves with a new identity every ~2.6 s: each base node holds
    the peers of the last 5 minutes and no more (about 300 / 2.6), however long it
    goes on."""
    c = SimCluster(3, seed=13)
    base = range(2)
    assert c.run_until(lambda: c.all_links_up(), timeout=10)
    samples = []
    k = 0
    while c.now < 720.0:
        _join_and_crash(c, 2, k, base)
        k += 1
        if c.now > 360.0 and not samples or samples and c.now > samples[-1][0] + 120:
            samples.append((c.now, [_held(c.nodes[i].stack) for i in base]))
    assert len(samples) >= 3, samples
    window = 300.0 + Stack.CLEANUP_SWEEP
    per_cycle = c.now / k
    most = int(window / per_cycle) + 3
    for _, held in samples:
        for peers, ring, disc, down in held:
            assert peers <= most and ring <= most and disc <= most and down <= most, held
    first, last = samples[0][1], samples[-1][1]
    sweep = int(Stack.CLEANUP_SWEEP / per_cycle) + 1  # deletions come in batches
    for a, b in zip(first, last, strict=True):
        assert b[0] <= a[0] + sweep, (first, last)
    assert all(c.nodes[i].stack.counters["nodes_cleaned"] >= k - most for i in base)

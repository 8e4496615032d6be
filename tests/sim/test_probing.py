"""The two probing rules of the kernel, and the timer slack that coalesces link timers.

* ``probe_idle`` (Linux >= 5.6, the default): an idle link probes on every tick.
* ``probe_idle = False`` (Linux 4.7-5.5, tipcd ``--probing silent``): a link probes
  only after an interval in which it heard nothing, and silence counts only on links
  the monitor supervises.  What must hold: idle links stay up on a clean and on a lossy
  medium, a crash is still found within the tolerance, each pair carries about half
  the STATEs, and above the monitor threshold the links the monitor does not
  supervise send nothing at all.
* ``Stack.timer_slack``: link timers due within the slack run with the ones due now,
  so N links at random phases cost a few wakeups per interval instead of N; nothing
  else may change (same links, same traffic, same failure detection).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tipcpy.core.node import NodeDown
from tipcpy.sim import FaultModel, SimCluster


def _states(c: SimCluster, i: int) -> int:
    return sum(le.link.stats.sent_states for p in c.nodes[i].stack.peers.values()
               for le in p.links.values())


def _idle_states(probe_idle: bool, n: int = 4, secs: float = 20.0) -> tuple[SimCluster, int]:
    c = SimCluster(n, seed=5, probe_idle=probe_idle)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.run_for(2.0)
    s0 = sum(_states(c, i) for i in range(n))
    c.run_for(secs)
    return c, sum(_states(c, i) for i in range(n)) - s0


def test_silent_probing_keeps_idle_links_up_with_half_the_states() -> None:
    c_idle, idle = _idle_states(True)
    c_silent, silent = _idle_states(False)
    for c in (c_idle, c_silent):
        assert c.all_links_up()
        assert not any(isinstance(e, NodeDown) for n in c.nodes for _, e in n.events)
    # idle rule: both ends probe every tick and answer the other's probe (4 per pair
    # and interval); silent rule: each end probes every other tick at most (2)
    pairs, ticks = 6, 20.0 / 0.375
    assert idle == pytest.approx(4 * pairs * ticks, rel=0.1)
    assert silent <= 0.6 * idle, (silent, idle)
    assert silent >= 0.4 * idle, (silent, idle)


@pytest.mark.parametrize("tolerance_ms", [1500, 100])
def test_silent_probing_finds_a_crash_within_the_tolerance(tolerance_ms: int) -> None:
    c = SimCluster(4, seed=3, tolerance=tolerance_ms, probe_idle=False)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.run_for(2.0)
    t_crash = c.now
    c.crash(3)
    va = c.addr(3)
    tol = tolerance_ms / 1000.0
    intv = min(tol / 4, 0.5)
    assert c.run_until(lambda: all(not c.nodes[i].stack.node_is_up(va) for i in range(3)),
                       timeout=3 * tol + 1.0)
    for i in range(3):
        t = next(t for t, e in c.nodes[i].events if isinstance(e, NodeDown) and e.addr == va)
        # silent for the tolerance since the last packet heard, which is at most two
        # intervals before the crash (a side that heard nothing probes)
        assert tol - 2 * intv - 0.001 <= t - t_crash <= tol + 0.001, t - t_crash
    c.run_for(3 * tol)
    assert c.all_links_up([0, 1, 2])


def test_silent_probing_survives_a_lossy_medium() -> None:
    c = SimCluster(3, seed=12, probe_idle=False,
                   faults=FaultModel(loss=0.05, duplicate=0.02, reorder=0.05, jitter=0.001))
    assert c.run_until(lambda: c.all_links_up(), timeout=10.0)
    c.run_for(60.0)
    assert c.all_links_up()
    assert not any(isinstance(e, NodeDown) for n in c.nodes for _, e in n.events)


def test_silent_probing_above_the_threshold_probes_only_supervised_links() -> None:
    n = 40  # above the default threshold of 32: the ring is active
    c = SimCluster(n, seed=9, probe_idle=False)
    assert c.run_until(lambda: c.all_links_up(), timeout=20.0)
    c.run_for(3.0)  # records exchanged and acked
    def counts(i: int, a: int) -> tuple[int, int]:
        """STATEs sent to peer ``a`` and probes received from it, by node ``i``."""
        links = [le.link.stats for le in c.nodes[i].stack.peers[a].links.values()]
        return sum(s.sent_states for s in links), sum(s.recv_probes for s in links)

    before = {(i, a): counts(i, a) for i in range(n) for a in c.nodes[i].stack.peers}
    c.run_for(5.0)
    for i in range(n):
        st = c.nodes[i].stack
        supervised = st.monitors[0].directly_monitored()
        assert len(supervised) < n // 2
        for a in st.peers:
            if a in supervised:
                continue
            sent, probed = (x - y for x, y in zip(counts(i, a), before[(i, a)], strict=True))
            # not supervised by us: in the window we only answered the peer's probes
            # (if it supervises us) and never probed it ourselves
            assert sent <= probed, (i, a, sent, probed)
    assert c.all_links_up()
    assert not c.bugs()


# ---------------------------------------------------------------- timer slack
def _staggered(slack: float) -> tuple[SimCluster, list[float]]:
    """Node 0 links to 8 peers that start 41 ms apart (random-ish link phases), and
    counts its timer runs over 10 s."""
    c = SimCluster(1, seed=21)
    c.nodes[0].stack.timer_slack = slack
    for _ in range(8):
        c.run_for(0.041)
        c.add_node()
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    c.run_for(2.0)
    st = c.nodes[0].stack
    runs: list[float] = []
    tick: Callable[[float], None] = st.tick

    def counted(now: float) -> None:
        runs.append(now)
        tick(now)

    st.tick = counted  # type: ignore[method-assign]
    c.run_for(10.0)
    return c, runs


def test_timer_slack_coalesces_link_timers_and_changes_nothing_else() -> None:
    plain, plain_runs = _staggered(0.0)
    slack, slack_runs = _staggered(0.1)
    assert len(slack_runs) * 2 < len(plain_runs), (len(slack_runs), len(plain_runs))
    for c in (plain, slack):
        assert c.all_links_up()
        assert not any(isinstance(e, NodeDown) for n in c.nodes for _, e in n.events)
        assert not c.bugs()
    # the same supervision traffic: each link still probes once per interval
    assert _states(slack, 0) == pytest.approx(_states(plain, 0), rel=0.1)
    # and a crash is still found within the tolerance (failure deadlines stay exact)
    t_crash = slack.now
    slack.crash(5)
    va = slack.addr(5)
    assert slack.run_until(lambda: not slack.nodes[0].stack.node_is_up(va), timeout=3.0)
    assert slack.now - t_crash <= 1.5 + 0.001

"""A 100-node simulated cluster above the monitor threshold (real Stacks, virtual time).

What must hold, as on a kernel cluster of that size:

* every pair links (the monitor changes supervision, not connectivity), and every
  node's monitor runs the overlapping ring: its local domain is the
  (up to) ``ceil(sqrt(100)) - 1 = 9`` nodes after it on the ring (the kernel grows it
  at once only when a new peer lands in it, else on its 120 s timer), every node is
  supervised directly by several others, and each node's view of every record it
  applied is the one its sender holds;
* the name table converges (3 bindings per node, everywhere);
* one node crashes: every other node's topology subscription reports it down within
  the kernel's bound - its supervisors after the tolerance (plus one interval), the
  rest once a supervisor's record reports it lost and their own probing then fails;
  nodes that do not supervise it learn it from the reports (counted).
"""

from __future__ import annotations

from bisect import bisect_right

from tipcpy.core.monitor import dom_size
from tipcpy.core.name_table import Publication
from tipcpy.core.topsrv import TopSrv
from tipcpy.sim import SimCluster

from .test_names_cluster import bind, decode_events, subscribe

N = 100
FOREVER = 0xFFFFFFFF
NAMES_PER_NODE = 3


def test_hundred_nodes_ring_names_and_crash() -> None:
    c = SimCluster(N, seed=7)  # default threshold 32 < 100: the ring is active
    assert c.run_until(lambda: c.all_links_up(), timeout=20.0), "mesh did not form"
    c.run_for(1.0)  # a few STATE rounds: records exchanged and acked
    addrs = sorted(c.addr(i) for i in range(N))
    dom = dom_size(N) - 1
    assert dom == 9
    for i in range(N):
        st = c.nodes[i].stack
        m = st.monitors[0]
        assert m.summary()["algorithm"] == "overlapping-ring"
        assert m.peer_cnt == N
        k = bisect_right(addrs, c.addr(i))
        local = m.local_domain()
        # the kernel grows the domain at once only when a new peer lands in it; else
        # its 120 s timer does: any size up to dom_size is right until then
        assert 1 <= len(local) <= dom, (i, local)
        assert local == [addrs[(k + j) % N] for j in range(len(local))], i
        # every applied record is the sender's current one
        for p in m.ring()[1:]:
            assert p.is_up
            assert p.domain is not None, f"node {i} holds no record of {p.addr:08x}"
            sender = c.nodes[[c.addr(j) for j in range(N)].index(p.addr)].stack.monitors[0]
            assert p.domain.members == tuple(sender.local_domain())
            assert p.domain.gen == sender.dom_gen
            assert p.applied == len(sender.local_domain())
    supervisors: dict[int, set[int]] = {a: set() for a in addrs}
    for i in range(N):
        for a in c.nodes[i].stack.monitors[0].directly_monitored():
            supervisors[a].add(i)
    assert all(len(s) >= 1 for s in supervisors.values())
    # directly supervised: O(sqrt N) per node, not N - 1
    assert max(len(c.nodes[i].stack.monitors[0].directly_monitored()) for i in range(N)) < 30

    # names: 3 per node, cluster scope, everywhere
    for i in range(N):
        for k in range(NAMES_PER_NODE):
            bind(c, i, Publication(5000 + k, i, i, 2, c.addr(i), 100 + k, 1000 + i))

    def converged() -> bool:
        return all(
            all(c.nodes[j].stack.name_table.lookup_anycast(5000 + k, i) == (c.addr(i), 100 + k)
                for i in range(N) for k in range(NAMES_PER_NODE))
            for j in range(0, N, 9))

    t0 = c.now
    assert c.run_until(converged, timeout=2.0), "name table did not converge"
    assert c.now - t0 < 1.0
    for j in range(N):
        nt = c.nodes[j].stack.name_table
        assert all(nt.lookup_anycast(5000 + k, i) == (c.addr(i), 100 + k)
                   for i in range(N) for k in range(NAMES_PER_NODE)), j

    # crash one node; everyone's subscription to node states reports it
    victim = 37
    va = c.addr(victim)
    srvs = {i: TopSrv(c.nodes[i].stack.name_table, c.addr(i)) for i in range(N) if i != victim}
    for srv in srvs.values():
        subscribe(srv, "nodes", 0, va, va, c.now)
        assert decode_events(srv.take_outgoing()) == [(1, va, va, 0, va)]
    c.crash(victim)
    t_crash = c.now
    seen: dict[int, float] = {}

    def all_down() -> bool:
        for i, srv in srvs.items():
            if i in seen:
                continue
            evs = decode_events(srv.take_outgoing())
            if evs:
                assert evs == [(2, va, va, 0, va)], evs
                seen[i] = c.now
        return len(seen) == len(srvs)

    tol = c.tolerance / 1000
    intv = min(tol / 4, 0.5)
    bound = c.loss_bound()
    assert c.run_until(all_down, timeout=bound + 2.0), f"{len(seen)} of {len(srvs)}"
    lat = {i: t - t_crash for i, t in seen.items()}
    sup = supervisors[va]
    worst_sup = max(lat[i] for i in sup)
    worst = max(lat.values())
    assert worst_sup <= tol + intv + 0.01, worst_sup
    assert worst <= bound, f"down after {worst:.3f}s (bound {bound:.3f}s)"
    others = [i for i in srvs if i not in sup]
    assert others, "every node supervised the victim: the ring is not in use"
    reported = sum(c.nodes[i].stack.monitors[0].stats.down_reports > 0 for i in others)
    assert reported == len(others), f"only {reported} of {len(others)} got a report"
    for i in srvs:
        assert c.nodes[i].stack.name_table.node_count(va) == 0
    print(f"victim down everywhere after {worst:.3f}s (supervisors {worst_sup:.3f}s); "
          f"{len(sup)} supervisors, {len(others)} by report")

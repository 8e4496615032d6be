"""Churn in the simulator: one node joins and leaves (crashes) K times, each time with a
new identity, beside two stable nodes.  Measured at checkpoints: what each stable node
holds (peer node objects, monitor ring, discovery healing set, deadline keys) and the
objects the garbage collector tracks (tracemalloc would triple the run time), to show that node cleanup (300 s after
loss) bounds them: they level off at about 300 s / cycle time and stay there.

Run: ``.venv/bin/python -m bench.churn [K]`` (default 10000; about 15-30 minutes here).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from functools import partial
from typing import Any

from tipcpy.sim import SimCluster


def held(c: SimCluster, i: int) -> dict[str, int]:
    st = c.nodes[i].stack
    disc = st._bearers[0].disc  # type: ignore[union-attr]
    return {"peers": len(st.peers), "ring": st.monitors[0].peer_cnt - 1,
            "disc": len(disc._linked) + len(disc._unlinked), "deadlines": len(st._dl),
            "heap": len(st._heap), "cleaned": st.counters["nodes_cleaned"]}


def _all_down(c: SimCluster, addr: int, base: tuple[int, ...]) -> bool:
    return not any(c.nodes[i].stack.node_is_up(addr) for i in base)


def run(k_total: int, checkpoints: int = 10) -> list[dict[str, Any]]:
    c = SimCluster(3, seed=21)
    base = (0, 1)
    assert c.run_until(lambda: c.all_links_up(), timeout=10)
    rows = []
    t0 = time.perf_counter()
    every = max(1, k_total // checkpoints)
    for k in range(k_total):
        c.replace(2, f"churn{k}".encode().ljust(16, b"\0"))
        ok = c.run_until(lambda: bool(c.addr(2)) and all(
            c.nodes[i].stack.node_is_up(c.addr(2)) for i in base), timeout=10)
        assert ok, f"cycle {k}: no link"
        a = c.addr(2)
        c.crash(2)
        assert c.run_until(partial(_all_down, c, a, base), timeout=5), \
            f"cycle {k}: not seen down"
        for i in base:  # the simulator's own event log (a test aid) would grow
            c.nodes[i].events.clear()
        if (k + 1) % every == 0:
            gc.collect()
            row = {"cycles": k + 1, "virtual_s": round(c.now, 1),
                   "real_s": round(time.perf_counter() - t0, 1),
                   "gc_objects": len(gc.get_objects()),
                   "node0": held(c, 0), "node1": held(c, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    assert c.bugs() == {}, c.bugs()
    return rows


def main(argv: list[str]) -> int:
    k = int(argv[0]) if argv else 10000
    rows = run(k)
    first, last = rows[len(rows) // 3], rows[-1]
    print(json.dumps({"cycles": k, "peers_held_at_third": first["node0"]["peers"],
                      "peers_held_at_end": last["node0"]["peers"],
                      "gc_objects_at_third": first["gc_objects"],
                      "gc_objects_at_end": last["gc_objects"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

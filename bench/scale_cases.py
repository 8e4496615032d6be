"""Cluster scale in the simulator: supervision traffic with and without the monitor,
and how long a big cluster takes to converge.

Measured, not computed: N real :class:`~tipcpy.core.stack.Stack` objects on a
:class:`~tipcpy.sim.SimCluster` (virtual time).  For each N three supervision rules:

* ``full mesh``: threshold 4095, the monitor never activates (every link supervised);
* ``monitor (kernel)``: threshold 32, tipcpy's default and the kernel's: the monitor
  decides which silent links count, and every idle link still probes once per tick
  as ``tipc_link_timeout`` does in Linux 6.x, so STATE traffic stays at the full-mesh
  figure;
* ``monitor (probe when silent)``: threshold 32 with ``probe_idle = False`` (tipcd
  ``--probing silent``), the Linux 4.7-5.5 rule: a link probes only after a silent
  interval and silence counts only where the monitor supervises, so idle links the
  monitor does not supervise send nothing - the O(sqrt N) traffic of the ORM design.

Supervision messages = link STATE messages sent (probes, replies and acks) per node per
second of virtual time, counted by the links themselves over a window after the records
settled.  The model's computed figures (bench/monitor_model.py) are given beside them.

Convergence: from the first bearer enable until every node has every peer up and the
name table holds every node's 3 bindings (virtual seconds, and the real seconds the
simulation took).  Run alone:
``.venv/bin/python -m bench.scale_cases [N ...] [--modes kernel,silent,mesh]``.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from typing import Any

from bench.common import Row
from tipcpy.core.name_table import Publication
from tipcpy.sim import SimCluster

SIZES = (16, 64, 256, 1000)
MODES = {"mesh": (4095, True), "kernel": (32, True), "silent": (32, False)}
"""mode: (monitor threshold, probe_idle)"""
MODE_LABEL = {"mesh": "full mesh", "kernel": "monitor (kernel)",
              "silent": "monitor (probe when silent)"}
NAMES = 3


def _sent_states(c: SimCluster) -> int:
    return sum(le.link.stats.sent_states for n in c.nodes
               for p in n.stack.peers.values() for le in p.links.values())


def _all_up(c: SimCluster) -> bool:
    n = len(c.nodes)
    return all(sum(1 for p in nd.stack.peers.values() if p.is_up) == n - 1 for nd in c.nodes)


def _names_everywhere(c: SimCluster, sample: list[int]) -> bool:
    n = len(c.nodes)
    for j in sample:
        nt = c.nodes[j].stack.name_table
        for i in range(n):
            a = c.addr(i)
            for k in range(NAMES):
                if nt.lookup_anycast(7000 + k, i) != (a, 1 + k):
                    return False
    return True


def _run(c: SimCluster, dt: float) -> None:
    """Advance ``dt`` and move what survived into the collector's permanent generation.

    Why: every object of a simulated cluster lives for the whole run (1000 nodes hold
    ~10 GB of them), and each full collection walks them all; frozen, they are skipped.
    """
    c.run_for(dt)
    gc.freeze()


def _crash_one(c: SimCluster, victim: int, limit: float) -> dict[str, Any]:
    """Crash ``victim``; virtual seconds until each other node holds it down (its
    subscription reports it then), checked every 10 ms of virtual time."""
    va = c.addr(victim)
    c.crash(victim)
    t0 = c.now
    waiting = {i for i in range(len(c.nodes)) if i != victim}
    seen: dict[int, float] = {}
    while waiting and c.now - t0 < limit:
        _run(c, 0.01)
        for i in [i for i in waiting if not c.nodes[i].stack.node_is_up(va)]:
            seen[i] = c.now - t0
            waiting.discard(i)
    lat = sorted(seen.values())
    return {"crash_seen_by": len(seen), "crash_of": len(c.nodes) - 1,
            "crash_all_s": round(lat[-1], 3) if lat else None,
            "crash_median_s": round(lat[len(lat) // 2], 3) if lat else None}


def run_one(n: int, mode: str, window: float, seed: int = 1) -> dict[str, Any]:
    thr, probe_idle = MODES[mode]
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_real = time.perf_counter()
    cpu0 = time.process_time()
    c = SimCluster(n, seed=seed, mon_threshold=thr, probe_idle=probe_idle)
    # bind as soon as each node has its address (the trial takes ~1 s)
    while not all(c.addr(i) for i in range(n)):
        _run(c, 0.05)
    for i in range(n):
        st = c.nodes[i].stack
        for k in range(NAMES):
            st.publish(Publication(7000 + k, i, i, 2, c.addr(i), 1 + k, 100 + i), c.now)
        c._flush(i)
    sample = sorted({0, n // 3, (2 * n) // 3, n - 1})
    step = 0.05
    while not (_all_up(c) and _names_everywhere(c, sample)):
        if c.now > 120:
            raise RuntimeError(f"N={n} {mode}: not converged after 120 virtual s")
        _run(c, step)
    conv_virtual = c.now
    conv_real = time.perf_counter() - t_real
    conv_cpu = time.process_time() - cpu0
    print(f"N={n} {mode}: converged at {conv_virtual:.3f} s virtual, {conv_real:.1f} s real, "
          f"{conv_cpu:.1f} s CPU", flush=True)
    assert _names_everywhere(c, range(n))  # type: ignore[arg-type]
    _progress(c, 2.0, f"N={n} {mode}: settling")  # records exchanged and acked
    s0, t0, r0 = _sent_states(c), c.now, time.perf_counter()
    _progress(c, window, f"N={n} {mode}: window")
    states = _sent_states(c) - s0
    wall = time.perf_counter() - r0
    rate = states / n / (c.now - t0)
    bound = c.loss_bound()
    crash = _crash_one(c, n // 2, bound + 2.0)
    crash["crash_bound_s"] = round(bound, 3)
    print(f"N={n} {mode}: crash seen by {crash['crash_seen_by']} of {crash['crash_of']}"
          f" in {crash['crash_all_s']} s (bound {bound:.3f} s)", flush=True)
    m = c.nodes[0].stack.monitors[0]
    direct = sum(len(nd.stack.monitors[0].directly_monitored()) for nd in c.nodes) / n
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"n": n, "mode": mode, "threshold": thr, "probe_idle": probe_idle,
           "algorithm": m.summary()["algorithm"], "direct_avg": round(direct, 1),
           "states_per_node_s": round(rate, 1), "window_virtual_s": window,
           "window_real_s": round(wall, 2), "converge_virtual_s": round(conv_virtual, 3),
           "converge_real_s": round(conv_real, 1), "converge_cpu_s": round(conv_cpu, 1),
           "packets": c.net.stats.delivered, **crash,
           "bugs": c.bugs(), "maxrss_mb_growth": round((rss1 - rss0) / 1024, 1)}
    del c
    gc.unfreeze()
    gc.collect()
    return out


def _progress(c: SimCluster, dt: float, label: str) -> None:
    """Run ``dt`` in 0.25 s slices, saying how long each took (a 1000-node slice takes
    a minute or more: the output shows it is moving)."""
    end = c.now + dt
    while c.now < end - 1e-9:
        r0 = time.perf_counter()
        _run(c, min(0.25, end - c.now))
        print(f"{label}: {c.now:.2f} s virtual ({time.perf_counter() - r0:.1f} s real)",
              flush=True)


def case_scale(args: Any) -> list[Row]:
    quick = getattr(args, "quick", False)
    sizes = getattr(args, "scale_sizes", None) or ((16, 64) if quick else SIZES)
    modes = getattr(args, "scale_modes", None) or list(MODES)
    rows: list[Row] = []
    for n in sizes:
        res = {}
        for mode in modes:
            if n >= 1000 and mode != "silent":
                continue  # 5 M STATEs per virtual second: hours here (see module doc)
            window = 1.5 if n >= 256 else 3.0
            res[mode] = r = run_one(n, mode, window)
            print(r, flush=True)
        base = res.get("mesh")
        for mode, r in res.items():
            rows.append(Row("scale", f"supervision msgs/node/s N={n} {MODE_LABEL[mode]}",
                            "msg/s", r["states_per_node_s"], "full mesh" if base else "",
                            base["states_per_node_s"] if base else None,
                            note="measured in the simulator (link STATE messages)", extra=r))
            rows.append(Row("scale", f"convergence N={n} {MODE_LABEL[mode]}", "s virtual",
                            r["converge_virtual_s"], note=f"{r['converge_real_s']} s real",
                            extra=r))
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_cases")
    p.add_argument("sizes", nargs="*", type=int, default=list(SIZES))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--window", type=float, default=None)
    a = p.parse_args(argv)
    for n in a.sizes:
        for mode in a.modes.split(","):
            w = a.window if a.window is not None else (1.5 if n >= 256 else 3.0)
            print(run_one(n, mode, w), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

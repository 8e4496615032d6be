"""Supervision messages per node per second, computed from the monitor's protocol model.

NOT a measurement of running daemons: the figures are *computed* from the state of
:class:`tipcpy.core.monitor.Monitor` objects that were fed to each other directly (every
node has every peer up, domain records exchanged until they settle), with the link
timer interval of the default tolerance (1500 ms / 4 = 375 ms).  Three rules are
reported for each N:

* ``full mesh``: every link endpoint probes its peer once per tick and answers the
  peer's probe: 2 (N-1) messages per node per tick.
* ``monitor (design)``: the Overlapping Ring Monitor as introduced (kernel commit
  35c55c98): an idle link only probes when the monitor says *monitoring* (local domain
  member or domain head) - probes sent = |direct(n)|, replies sent = number of nodes
  that directly monitor n.
* ``monitor (Linux 6.x idle rule)``: current kernels also probe every *idle* link once
  per tick (``tipc_link_timeout``: ``probe = true`` when ``snd_nxt == checkpoint``), so
  idle STATE traffic stays at the full-mesh figure and the monitor only changes which
  silent links count towards failure.  Shown so nobody mistakes the design figure for
  what a 6.x kernel cluster sends.

Run: ``.venv/bin/python -m bench.monitor_model [N ...]`` (default 16 64 256 1000; the
1000-node model takes about a minute).  ``case_monitor(args)`` returns bench Rows for
``bench/run.py`` (not registered there yet).
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from bench.common import Row
from tipcpy.core.monitor import DEF_MON_THRESHOLD, MON_TIMEOUT, Monitor

KEEPALIVE = 0.375  # s: min(tolerance / 4, 500 ms) at the default tolerance of 1500 ms
SIZES = (16, 64, 256, 1000)


def build(n: int, seed: int = 1, threshold: int = DEF_MON_THRESHOLD) -> dict[int, Monitor]:
    """N monitors, every link up, timers run once, domain records settled."""
    rng = random.Random(seed)
    addrs = rng.sample(range(1, 1 << 32), n)
    mons = {a: Monitor(a, threshold=threshold) for a in addrs}
    for a, m in mons.items():
        others = [b for b in addrs if b != a]
        rng.shuffle(others)
        for b in others:
            m.peer_up(b)
    for m in mons.values():
        m.tick(MON_TIMEOUT + 66.0)
    for _ in range(10):
        full = 0
        for a, m in mons.items():
            for b in addrs:
                if b != a:
                    d = m.prepare(b)
                    full += len(d) > 16
                    mons[b].receive(a, d)
        if not full:
            break
    return mons


def rates(n: int, seed: int = 1) -> dict[str, float]:
    """Messages and STATE payload bytes per node per second under the three rules."""
    t0 = time.perf_counter()
    mons = build(n, seed)
    direct = {a: m.directly_monitored() for a, m in mons.items()}
    watched_by = dict.fromkeys(mons, 0)
    for s in direct.values():
        for b in s:
            watched_by[b] += 1
    probes = sum(len(s) for s in direct.values()) / n
    replies = sum(watched_by.values()) / n
    active = next(iter(mons.values())).active
    rec = 16 if active else 0  # every STATE carries at least the dummy record
    mesh = 2 * (n - 1) / KEEPALIVE
    design = (probes + replies) / KEEPALIVE
    return {
        "n": n,
        "active": float(active),
        "direct_avg": probes,
        "full_mesh_msgs": mesh,
        "monitor_design_msgs": design,
        "monitor_linux6_msgs": mesh,
        "monitor_design_record_bytes": design * rec,
        "model_seconds": time.perf_counter() - t0,
    }


def case_monitor(args: Any) -> list[Row]:
    sizes = (16, 64, 256) if getattr(args, "quick", False) else SIZES
    rows: list[Row] = []
    for n in sizes:
        r = rates(n)
        note = "computed from the protocol model (not measured)"
        rows.append(Row("monitor_model", f"supervision msgs/node/s N={n} monitor (design)",
                        "msg/s", r["monitor_design_msgs"], "full mesh",
                        r["full_mesh_msgs"], note=note, extra=r))
        rows.append(Row("monitor_model", f"supervision msgs/node/s N={n} Linux 6.x idle rule",
                        "msg/s", r["monitor_linux6_msgs"], "full mesh",
                        r["full_mesh_msgs"], note=note, extra=r))
    return rows


def main(argv: list[str]) -> int:
    sizes = [int(x) for x in argv] or list(SIZES)
    print("computed from the monitor protocol model, not measured; keepalive 375 ms")
    print(f"{'N':>6} {'ORM':>4} {'direct/node':>12} {'full mesh':>12} "
          f"{'ORM design':>12} {'ORM 6.x idle':>13} {'model s':>8}")
    for n in sizes:
        r = rates(n)
        print(f"{n:>6} {'on' if r['active'] else 'off':>4} {r['direct_avg']:>12.1f} "
              f"{r['full_mesh_msgs']:>12.1f} {r['monitor_design_msgs']:>12.1f} "
              f"{r['monitor_linux6_msgs']:>13.1f} {r['model_seconds']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

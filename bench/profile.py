"""``python -m bench.profile [TARGET ...]``: cProfile the hot paths the core exposes
without a daemon, and print the top costs (by own time) of each.

Targets: ``lookup`` (anycast lookups in a big NameTable), ``insert`` (building it),
``bulk`` (NameDistributor bulk build + apply of 100,000 bindings), ``codec`` (decode and
encode of data and name-distributor packets), ``link`` (two Stacks streaming data over a
sim link). ``--top N`` rows each (default 15), ``--n`` size knob.
For tipcd itself under load, use py-spy on the daemon's pid (see bench/README.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import time
from collections.abc import Callable
from typing import Any


def _profile(label: str, fn: Callable[[], Any], top: int) -> None:
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    fn()
    pr.disable()
    wall = time.perf_counter() - t0
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.sort_stats("tottime").print_stats(top)
    lines = [ln for ln in s.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    print(f"\n=== {label}: {wall:.3f} s under the profiler")
    print("\n".join(lines[start:]))


def t_lookup(n: int, top: int) -> None:
    from bench.core_cases import build_table, layout

    t, _ = build_table(n)
    rng = random.Random(1)
    keys = [layout(rng.randrange(n))[:2] for _ in range(200_000)]
    la = t.lookup_anycast

    def run() -> None:
        for ty, inst in keys:
            la(ty, inst)

    _profile(f"lookup: 200,000 anycast lookups in {len(t):,} bindings", run, top)


def t_insert(n: int, top: int) -> None:
    from bench.core_cases import build_table

    _profile(f"insert: build a {n:,}-binding table", lambda: build_table(n), top)


def t_bulk(n: int, top: int) -> None:
    from bench.core_cases import bulk_inproc

    _profile(f"bulk: {n:,} bindings build+encode+decode+apply", lambda: bulk_inproc(n), top)


def t_codec(n: int, top: int) -> None:
    from tipcpy.wire import Msg, decode
    from tipcpy.wire.consts import User

    data = Msg.build(User.TIPC_LOW_IMPORTANCE if hasattr(User, "TIPC_LOW_IMPORTANCE") else 0,
                     2, data=bytes(100), nametype=18888, nameinst=1, destnode=0x2002,
                     prevnode=0x1001, orignode=0x1001, origport=5, seqno=7).encode()

    def run() -> None:
        for _ in range(n):
            m = decode(data)
            m.seqno = m.seqno + 1
            m.encode()

    _profile(f"codec: {n:,} x decode + field write + encode of a 100 B NAMED data msg",
             run, top)


def t_link(n: int, top: int) -> None:
    from tipcpy.sim.cluster import SimCluster
    from tipcpy.wire import Msg

    c = SimCluster(2, seed=3, mtu=14000)
    c.run_until(c.all_links_up, timeout=30)
    s0, s1 = c.nodes[0].stack, c.nodes[1].stack
    a1 = c.addr(1)
    got = [0]
    s1.register_user(0, lambda src, m, now: got.__setitem__(0, got[0] + 1))

    def run() -> None:
        sent = 0
        while sent < n:
            for _ in range(20):
                m = Msg.build(0, 3, data=bytes(100), destnode=a1, prevnode=c.addr(0),
                              orignode=c.addr(0), origport=1, destport=2)
                s0.send_to_node(a1, m, 0, c.now)
                sent += 1
            c._flush(0)
            c.run_until(lambda s=sent: got[0] >= s, timeout=5)  # type: ignore[misc]  # default-bound lambda

    _profile(f"link: {n:,} x 100 B data node 0 -> node 1 over a sim link (Stack+Link+codec)",
             run, top)
    print(f"(delivered {got[0]:,})")


TARGETS = {"lookup": t_lookup, "insert": t_insert, "bulk": t_bulk, "codec": t_codec,
           "link": t_link}
DEFAULT_N = {"lookup": 1_000_000, "insert": 200_000, "bulk": 100_000, "codec": 100_000,
             "link": 20_000}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("targets", nargs="*", default=list(TARGETS), choices=list(TARGETS) + [[]])
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--n", type=int, default=None, help="size knob (bindings, messages)")
    a = p.parse_args()
    for t in a.targets or list(TARGETS):
        TARGETS[t](a.n or DEFAULT_N[t], a.top)


if __name__ == "__main__":
    main()

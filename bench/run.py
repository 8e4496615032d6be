"""``python -m bench``: run the benchmark cases, print one table, write JSON.

Every figure comes with a baseline measured in the same run (see bench/common.py for
why); the table shows the ratio and whether the project's target is met. Nothing here
fails: an unmet target is printed, an unavailable case says why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, dump_json, machine_info, versions

DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"


def _cases() -> dict[str, Callable[[Any], list[Row]]]:
    from bench import (
        bcast_cases,
        core_cases,
        crypto_cases,
        daemon_cases,
        embedded_cases,
        socket_cases,
    )

    return {
        "rdm_inter": lambda a: socket_cases.case_rdm(a, inter=True),
        "rdm_intra": lambda a: socket_cases.case_rdm(a, inter=False),
        "latency": socket_cases.case_latency,
        "embedded": embedded_cases.case_embedded,
        "group": socket_cases.case_group,
        "bcast": bcast_cases.case_bcast,
        "lookup": core_cases.case_lookup,
        "bulk": core_cases.case_bulk,
        "loss": core_cases.case_loss,
        "bulk_udp": daemon_cases.case_bulk_udp,
        "nodedown": daemon_cases.case_nodedown,
        "rss": daemon_cases.case_rss,
        "crypto": crypto_cases.case_crypto,
        "scale": _scale, "monitor_model": _monitor_model, "cluster64": _cluster64,
    }


# cluster-scale cases: minutes to an hour each, so only when named in --cases
OPT_IN = ("scale", "monitor_model", "cluster64")


def _scale(a: Any) -> list[Row]:
    from bench import scale_cases

    return scale_cases.case_scale(a)


def _monitor_model(a: Any) -> list[Row]:
    from bench import monitor_model

    return monitor_model.case_monitor(a)


def _cluster64(a: Any) -> list[Row]:
    from bench import cluster64

    r = cluster64.run(8 if a.quick else 64)
    note = f"{r['n']} tipcd in namespaces on one bridge"
    return [Row("cluster64", "full mesh after launch", "s", r.get("mesh_from_launch_s"),
                note=note, extra=r),
            Row("cluster64", "binding seen by all", "s", r.get("binding_all_s"), note=note),
            Row("cluster64", "kill seen by all", "s", r.get("kill_all_s"), note=note),
            Row("cluster64", "idle RSS per daemon", "MB", r.get("idle_rss_mb_avg"), note=note),
            Row("cluster64", "idle CPU per daemon", "%", r.get("idle_cpu_pct_avg"), note=note)]


# default order: the in-process bulk runs before the million-binding lookup table has
# been built and freed in this process (its heap aftermath slowed the bulk by ~1.5x)
CASE_HELP = {
    "rdm_inter": "RDM one-way throughput between two tipcd (vs pyzmq tcp, asyncio UDP)",
    "rdm_intra": "RDM one-way throughput through one tipcd (vs pyzmq ipc)",
    "latency": "RDM/SEQPACKET 100 B round trip (vs pyzmq REQ/REP, asyncio UDP echo)",
    "embedded": "embedded node to embedded node over UDP: RDM one-way and round trip "
                "(vs pyzmq tcp, both pinned one process per core)",
    "group": "group broadcast 1 KB to 3 members on another tipcd (vs RDM multicast)",
    "bcast": "multicast 1 KB to 3 and 8 tipcd over the broadcast link (vs replicast)",
    "bulk": "name bulk build+encode+decode+apply, and over a sim link",
    "bulk_udp": "name bulk between two real tipcd over UDP",
    "lookup": "anycast lookups/s in a big NameTable (vs dict.get)",
    "loss": "SEQPACKET 100 B msgs/s through a sim segment at 5%/20% loss, vs loss-free",
    "nodedown": "node-down detection time / link tolerance (1500 and 100 ms)",
    "rss": "tipcd resident memory idle and with many bindings",
    "crypto": "encrypted RDM throughput between two tipcd / the same without a key",
    "scale": "sim cluster N=16..1000: supervision msgs/node/s with/without the monitor, "
             "convergence (opt-in)",
    "monitor_model": "supervision msgs/node/s computed from the monitor model (opt-in)",
    "cluster64": "64 real tipcd in namespaces on a bridge (root; opt-in)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = list(CASE_HELP)
    p = argparse.ArgumentParser(
        prog="python -m bench", description="tipcpy benchmarks with same-run baselines.",
        epilog="cases: " + "; ".join(f"{k}: {v}" for k, v in CASE_HELP.items()))
    p.add_argument("--cases", default=",".join(n for n in names if n not in OPT_IN),
                   help=f"comma-separated subset of: {','.join(names)} (default: all but "
                   f"{', '.join(OPT_IN)})")
    p.add_argument("--size", default=None,
                   help="message sizes in bytes for throughput, comma-separated "
                   "(default 100,1024,61440)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per throughput / round-trip measurement (default 2, quick 0.5)")
    p.add_argument("--quick", action="store_true",
                   help="small tables, short runs, one trial each: a smoke run of seconds")
    p.add_argument("--bindings", type=int, default=None,
                   help="bindings in the lookup table (default 1,000,000; quick 100,000)")
    p.add_argument("--bulk", type=int, default=None,
                   help="bindings in the bulk cases (default 100,000; quick 10,000)")
    p.add_argument("--rss-bindings", type=int, default=None,
                   help="bindings for the loaded-RSS figure (default 1,000,000; quick 20,000)")
    p.add_argument("--repeat", type=int, default=None,
                   help="repeats of in-process timings, best kept (default 3, quick 1)")
    p.add_argument("--no-sim", action="store_true", help="skip the sim-link bulk figure")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file ({DEFAULT_OUT})")
    a = p.parse_args(argv)
    q = a.quick
    a.case_list = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in a.case_list if c not in names]
    if bad:
        p.error(f"unknown case(s) {','.join(bad)}; known: {','.join(names)}")
    a.sizes = [int(s) for s in a.size.split(",")] if a.size else [100, 1024, 61440]
    a.duration = a.duration if a.duration is not None else (0.5 if q else 2.0)
    a.bindings = a.bindings if a.bindings is not None else (100_000 if q else 1_000_000)
    a.bulk = a.bulk if a.bulk is not None else (10_000 if q else 100_000)
    a.rss_bindings = (a.rss_bindings if a.rss_bindings is not None
                      else (20_000 if q else 1_000_000))
    a.repeat = a.repeat if a.repeat is not None else (1 if q else 3)
    a.rtt_count = 2_000 if q else 20_000
    a.nd_trials_slow = 1 if q else 2
    a.nd_trials_fast = 1 if q else 3
    return a


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit in ("s",):
        return f"{v:.3f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def print_table(rows: list[Row], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 220)
    t = Table(title=header, show_lines=False, title_justify="left")
    for col, kw in (("case", {}), ("figure", {"overflow": "fold"}), ("value", {"justify": "right"}),
                    ("unit", {}), ("baseline", {"overflow": "fold"}),
                    ("baseline value", {"justify": "right"}), ("ratio", {"justify": "right"}),
                    ("target", {}), ("result", {}), ("note", {"overflow": "fold"})):
        t.add_column(col, **kw)  # type: ignore[arg-type]  # rich's keyword types per column
    for r in rows:
        met = r.met
        res = ("[green]MET[/]" if met else "[red]NOT MET[/]") if met is not None else (
            "n/a" if r.target else "")
        t.add_row(r.case, r.figure, _fmt(r.value, r.unit), r.unit, r.baseline,
                  _fmt(r.baseline_value, r.unit),
                  f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                  r.target.text if r.target else "", res, r.note)
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = _cases()
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    machine = machine_info()
    vers = versions()
    rows: list[Row] = []
    case_info: dict[str, Any] = {}
    print(f"tipcpy bench: cases {','.join(args.case_list)} on {machine['cpu_model']} "
          f"({machine['cores']} cores, kernel {machine['kernel']}, load {machine['loadavg_at_start']})",
          flush=True)
    for name in args.case_list:
        c0 = time.monotonic()
        print(f"  {name} ...", end="", flush=True)
        err = None
        try:
            got = cases[name](args)
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            got = [Row(name, "(case crashed)", "", None, note=f"crashed: {err}"[:300])]
        rows += got
        case_info[name] = {"wall_s": time.monotonic() - c0, "error": err, "rows": len(got)}
        print(f" {time.monotonic() - c0:.1f} s", flush=True)
    wall = time.monotonic() - t0
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    machine["loadavg_at_end"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    header = (f"tipcpy bench {started:%Y-%m-%d %H:%M} UTC  |  {machine['cpu_model']}, "
              f"{machine['cores']} cores, Linux {machine['kernel']}  |  Python {vers['python']}, "
              f"pyzmq {vers['pyzmq']}, uvloop {vers['uvloop']}  |  {wall:.0f} s, "
              f"{cpu / wall:.2f} cores busy on average")
    print_table(rows, header)
    met = [r for r in rows if r.met is not None]
    print(f"targets: {sum(1 for r in met if r.met)} met, {sum(1 for r in met if not r.met)} "
          f"not met, {sum(1 for r in rows if r.target and r.met is None)} not measured")
    out = {
        "schema": 1,
        "started": started.isoformat(),
        "wall_s": wall,
        "cpu_s": cpu,
        "cores_busy_avg": cpu / wall if wall else None,
        "command": [os.path.basename(sys.executable), "-m", "bench", *(argv if argv is not None
                                                                     else sys.argv[1:])],
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine,
        "versions": vers,
        "cases": case_info,
        "rows": [r.as_dict() for r in rows],
    }
    dump_json(args.out, out)
    print(f"wrote {args.out}")
    return 0

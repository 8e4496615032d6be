"""Cases on real tipcd processes on 127.0.0.1: node-down detection, resident memory,
and a name bulk over real UDP.

* nodedown: two tipcd with link tolerance T; A streams its events over the control
  socket (the ``events`` op); B is killed with SIGKILL; the figure is the time from the
  kill to A's link-down event, divided by T (baseline = T itself).
* rss: VmRSS of an idle tipcd with one link up (baseline: a bare ``python -c`` in this
  run), then of the same tipcd after a joining peer (bench.peerd) delivered N bindings
  in its bulk (baseline: the same tipcd idle, measured just before).
* bulk_udp: the joining-peer bulk of N bindings over real UDP between two processes, from
  the receiver's link up to its link having received every bulk packet.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from bench.common import (
    PY,
    Daemon,
    Row,
    Target,
    cpu_seconds,
    free_udp_port,
    rss_bytes,
    wait_for,
    workspace,
)
from bench.core_cases import bulk_floor

MB = 1024 * 1024


# ------------------------------------------------------------------ node down
def _watch_events(d: Daemon, out: list[tuple[float, dict[str, Any]]],
                  args: dict[str, Any] | None = None) -> Any:
    """Stream ``tipc events`` (the ``events`` control op: a topology subscription when
    ``args`` has a type) into ``out`` as (monotonic time of arrival, event)."""
    from tipcpy.runtime.ctlclient import ControlClient

    c = ControlClient(d.run_dir / "ctl.sock", timeout=30).connect()

    def run() -> None:
        try:
            for ev in c.stream("events", args):
                out.append((time.monotonic(), ev))
        except Exception as e:  # the stream ends when we close the socket
            out.append((time.monotonic(), {"event": "_closed", "why": str(e)}))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return c, th


def _close_stream(c: Any) -> None:
    """Wake the reader thread (shutdown) and close the control connection."""
    sock = getattr(c, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    c.close()


def _first(events: list[tuple[float, dict[str, Any]]], pred: Any) -> float | None:
    for t, ev in list(events):
        if pred(ev):
            return t
    return None


def _is_down(ev: dict[str, Any]) -> bool:
    """A link or node withdrawn (topology events of types 2 / 0), or the older
    LinkStateChanged/NodeDown event shapes."""
    name = ev.get("event")
    return ((name == "withdrawn" and ev.get("type") in (0, 2))
            or (name == "LinkStateChanged" and not ev.get("up")) or name == "NodeDown")


def nodedown_trial(tolerance: int, tmp: Any, procs: Any, k: int) -> dict[str, Any]:
    pa, pb = free_udp_port(), free_udp_port()
    a = Daemon(procs, tmp, f"nd{tolerance}-{k}-a", "nd-a", pa, pb, tolerance=tolerance)
    b = Daemon(procs, tmp, f"nd{tolerance}-{k}-b", "nd-b", pb, pa, tolerance=tolerance)
    try:
        a.wait_link_up()
        b.wait_link_up()
        stats = [s for s in a.call("link.stat.show") if not s.get("broadcast")]
        tol_seen = stats[0].get("tolerance") if stats else None
        events: list[tuple[float, dict[str, Any]]] = []
        client, th = _watch_events(a, events, {"type": 2})  # link state, as an app would
        time.sleep(0.3 + 2 * tolerance / 1000.0)  # steady state: probes flowing both ways
        t_kill = time.monotonic()
        os.kill(b.pid, signal.SIGKILL)
        t_down = wait_for(lambda: _first(events, _is_down), 5 + 3 * tolerance / 1000.0,
                          "link down event", 0.002)
        # cross-check with the CLI's view (what `tipc link list` shows)
        listed_down = not a.links_up()
        _close_stream(client)
        th.join(2)
        return {"tolerance_ms": tolerance, "tolerance_seen_ms": tol_seen,
                "detect_s": t_down - t_kill, "ratio": (t_down - t_kill) * 1000.0 / tolerance,
                "link_list_down": listed_down,
                "events": [(e.get("event"), e.get("what"), e.get("state")) for _, e in events]}
    finally:
        procs.stop(a.proc)
        procs.stop(b.proc)


def case_nodedown(args: Any) -> list[Row]:
    rows = []
    with workspace("nodedown") as (tmp, procs):
        for tol, trials in ((1500, args.nd_trials_slow), (100, args.nd_trials_fast)):
            res = []
            err = ""
            for k in range(trials):
                try:
                    res.append(nodedown_trial(tol, tmp, procs, k))
                except Exception as e:
                    err = f"failed: {type(e).__name__}: {e}"[:300]
            if not res:
                rows.append(Row("nodedown", f"node-down detection, tolerance {tol} ms", "ms",
                                None, "configured tolerance", float(tol), None, err))
                continue
            worst = max(r["detect_s"] for r in res) * 1000.0
            med = sorted(r["detect_s"] for r in res)[len(res) // 2] * 1000.0
            rows.append(Row(
                "nodedown", f"node-down detection, tolerance {tol} ms (worst of {len(res)})",
                "ms", worst, "configured tolerance", float(tol),
                Target("ratio", "<=", 1.1, "<= 1.1x"),
                f"median {med:.0f} ms; kill -9 -> link withdrawn event (`tipc events 2`)" + (
                    f"; {err}" if err else ""), {"trials": res}))
    return rows


# ------------------------------------------------------------------ memory & UDP bulk
def _bare_python_rss(procs: Any) -> int | None:
    p = procs.popen([PY, "-c", "import sys, time; sys.stdout.write('x\\n'); sys.stdout.flush();"
                     " time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        p.stdout.readline()
        time.sleep(0.2)
        return rss_bytes(p.pid)
    finally:
        procs.stop(p)


def bulk_pair(tmp: Any, procs: Any, n: int, tag: str) -> dict[str, Any]:
    """Receiver tipcd R idle with a bearer towards peerd P; start P with n bindings;
    time from R's link-up event to the event for the bulk's last binding (topology
    subscriptions through the control socket). RSS of R idle and after."""
    from bench.peerd import BENCH_TYPE, SPREAD, STAMP
    from tipcpy.core.name_distr import items_per_msg

    pr, pp = free_udp_port(), free_udp_port()
    r = Daemon(procs, tmp, f"{tag}-recv", "bench-recv", pr, pp)
    time.sleep(1.5)  # the address trial (1 s) and a settled heap
    rss_idle_alone = rss_bytes(r.pid)
    # topology subscriptions on the receiver: its link coming up, and the last binding
    # of the bulk (bulks are applied in order, so that one arrives last)
    links: list[tuple[float, dict[str, Any]]] = []
    last: list[tuple[float, dict[str, Any]]] = []
    c1, _ = _watch_events(r, links, {"type": 2})
    c2, _ = _watch_events(r, last, {"type": BENCH_TYPE + (n - 1) % SPREAD,
                                     "lower": n - 1, "upper": n - 1})
    cpu_r0 = cpu_seconds(r.pid) or 0.0
    peer = Daemon(procs, tmp, f"{tag}-peer", "bench-peer", pp, pr,
                  argv0=[PY, "-m", "bench.peerd", "--bindings", str(n)])

    def published(ev: dict[str, Any]) -> bool:
        return ev.get("event") == "published"

    t_up = wait_for(lambda: _first(links, published), 60, "link up event", 0.002)
    t_done = wait_for(lambda: _first(last, published), 60 + n / 5000,
                      "the bulk's last binding", 0.005)
    # CPU each daemon spent (receiver: since before the peer started; peer: since exec)
    recv_cpu = (cpu_seconds(r.pid) or 0.0) - cpu_r0
    peer_cpu = cpu_seconds(peer.pid)
    stamp = peer.run_dir / STAMP
    t_start = float(stamp.read_text()) if stamp.exists() else t_up
    _close_stream(c1)
    _close_stream(c2)
    stats = [s for s in r.call("link.stat.show") if not s.get("broadcast")]
    mtu = int(stats[0].get("mtu") or 14000) if stats else 14000
    expect = math.ceil(n / items_per_msg(mtu - 72)) + 1 if n else 1
    time.sleep(0.5)
    rss_after = rss_bytes(r.pid)
    got = None
    if n <= 200_000:  # verify what arrived (the listing itself costs memory: after RSS)
        got = sum(1 for e in r.call("nametable.show", timeout=120)
                  if BENCH_TYPE <= e["type"] < BENCH_TYPE + SPREAD)
    procs.stop(peer.proc)
    procs.stop(r.proc)
    return {"n": n, "secs": t_done - t_start, "up_to_done": t_done - t_up, "expect_pkts": expect, "mtu": mtu,
            "rss_idle_alone": rss_idle_alone, "rss_after": rss_after, "verified": got,
            "recv_cpu_s": recv_cpu, "peer_cpu_s": peer_cpu}


def case_rss(args: Any) -> list[Row]:
    rows = []
    with workspace("rss") as (tmp, procs):
        bare = _bare_python_rss(procs)
        pa, pb = free_udp_port(), free_udp_port()
        a = Daemon(procs, tmp, "idle-a", "idle-a", pa, pb)
        b = Daemon(procs, tmp, "idle-b", "idle-b", pb, pa)
        a.wait_link_up()
        time.sleep(1.0)
        idle = rss_bytes(a.pid)
        procs.stop(b.proc)
        procs.stop(a.proc)
        rows.append(Row("rss", "tipcd RSS idle, one link up", "MB",
                        idle / MB if idle else None, "bare python -c (this run)",
                        bare / MB if bare else None, Target("value", "<=", 40, "<= 40 MB"),
                        "VmRSS from /proc/PID/status"))
        n = args.rss_bindings
        try:
            r = bulk_pair(tmp, procs, n, "rss")
            rows.append(Row(
                "rss", f"tipcd RSS with {n:,} bindings", "MB", r["rss_after"] / MB,
                "same tipcd idle (this run)", r["rss_idle_alone"] / MB,
                Target("value", "<=", 400, "<= 400 MB") if n == 1_000_000 else None,
                "bindings from a joining peer's bulk over UDP (bench.peerd); socket API "
                "binds are capped at 65535 per node", {"run": r}))
            rows.append(Row(
                "bulk", f"{n:,}-binding bulk over real UDP, tipcd to tipcd", "s", r["secs"],
                "struct pack/unpack + dict insert", bulk_floor(n), None,
                "peer starts building its bulk -> receiver's event for the last binding; CPU "
                f"receiver {r['recv_cpu_s']:.2f} s, peer {r['peer_cpu_s'] or 0:.2f} s",
                {"run": r}))
        except Exception as e:
            rows.append(Row("rss", f"tipcd RSS with {n:,} bindings", "MB", None,
                            "same tipcd idle (this run)", None, None,
                            f"failed: {type(e).__name__}: {e}"[:300]))
    return rows


def case_bulk_udp(args: Any) -> list[Row]:
    n = args.bulk
    with workspace("bulkudp") as (tmp, procs):
        try:
            r = bulk_pair(tmp, procs, n, "bulk")
        except Exception as e:
            return [Row("bulk", f"{n:,}-binding bulk over real UDP, tipcd to tipcd", "s", None,
                        "struct pack/unpack + dict insert", None, None,
                        f"failed: {type(e).__name__}: {e}"[:300])]
    note = "peer starts building its bulk -> receiver's event for the last binding"
    if r["verified"] is not None and r["verified"] != n:
        note += f"; ONLY {r['verified']} of {n} in the name table"
    elif r["verified"] == n:
        note += "; all in the name table"
    return [Row("bulk", f"{n:,}-binding bulk over real UDP, tipcd to tipcd", "s", r["secs"],
                "struct pack/unpack + dict insert", bulk_floor(n), None, note, {"run": r})]

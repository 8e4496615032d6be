"""``make soak``: N tipcd in network namespaces, random faults, numbered traffic, a verdict.

Topology: every node runs in its own namespace; each plane (``SOAK_LINKS``, default 2:
two links per pair of nodes, the configuration failover exists for) is a hub namespace
joined to every node by a veth pair.  In a plane's hub, one impairment relay per pair of
nodes (tests/tools/impair.py) is the only path between them, so a fault can hit one link
of one pair.  Numbered streams of every socket type (RDM, SEQPACKET, STREAM) run
continuously from each node to the next; a fault is injected every few seconds, one at
a time, drawn with a seeded RNG from:

* ``impair``  loss 20%, duplication, delay with jitter or truncation on one relay for a
  few seconds (the link must absorb it: nothing may be lost);
* ``cut``     one relay cut past the tolerance (that link goes down, then back up);
* ``ifdown``  a node's veth on one plane down past the tolerance, then up (pyroute2);
* ``sigstop`` a node's tipcd stopped past the tolerance, then SIGCONT;
* ``kill``    kill -9 of a node's tipcd, then a restart with the same configuration.

Invariants (exit status 1 when one breaks): nothing delivered twice or out of order, no
damaged payload; nothing accepted lost and no connection aborted unless the source or
destination node itself was down (sigstop/kill) at the time, or, with a single plane, its
only link was; no flow stalls (a segment ends at least every STALL_SECS, 60 s: a
connection neither going on nor aborting shows here); every node's RSS grows by less
than ``SOAK_RSS_MB`` (default 64); every
daemon's event-loop lag (its ``daemon.stats``, forgotten after a SIGSTOP) stays below
``SOAK_LAG_MS`` (default 100, issue 12; 0 = report only).

Environment (or flags): SOAK_SECS (60), SOAK_NODES (4), SOAK_LINKS (2), SOAK_SEED (1),
SOAK_RATE (msgs/s per stream, 100), SOAK_FAULT_EVERY (s between faults, 4),
SOAK_FAULTS (comma list of the kinds above, default all), SOAK_RSS_MB, SOAK_LAG_MS.
Needs root, iproute2 and pyroute2; exits 77 with the reason elsewhere.  Namespaces are named ``tps-<random>-*``
and always removed; only the processes started here are signalled, by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.tools.impair import Relay, RelayLoop  # noqa: E402
from tests.tools.netns import in_netns  # noqa: E402
from tests.tools.procs import (  # noqa: E402
    add_veth,
    addr_up,
    create_netns,
    lo_up,
    log_tail,
    remove_netns,
    spawn_tipcd,
    stop_proc,
    wait_started,
    why_no_netns,
)
from tests.tools.stream import Report, Stream  # noqa: E402

KINDS = ("rdm", "seqpacket", "stream")
FAULTS = ("impair", "cut", "ifdown", "sigstop", "kill")
TOLERANCE = 1.5
STALL_SECS = 60.0
"""A flow whose segments stop ending for this long is stalled: a segment ends
within its deadline (8 s of traffic + 12 s) and may take 15 s to start."""
EXIT_SKIP = 77


def why_not() -> str | None:
    why = why_no_netns()
    return f"the soak {why}" if why else None


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def node_ip(plane: int, k: int) -> str:
    return f"10.{50 + plane}.{k + 1}.2"


def hub_ip(plane: int, k: int) -> str:
    return f"10.{50 + plane}.{k + 1}.1"


# ------------------------------------------------------------------------------ nodes
@dataclass
class Node:
    k: int
    ns: str
    run_dir: Path
    bearers: list[tuple[str, str, list[tuple[str, int]]]]  # (name, localip, remotes)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    rss_start: int = 0
    resets_before: int = 0      # link resets counted by incarnations that were killed
    log_path: Path | None = None

    @property
    def name(self) -> str:
        return f"s{self.k}"

    @property
    def rd(self) -> str:
        return str(self.run_dir)

    def start(self) -> None:
        from tipcpy.runtime import ctlclient

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("ctl.sock", "tipcd.pid"):
            (self.run_dir / stale).unlink(missing_ok=True)
        args: list[str] = []
        for name, ip, remotes in self.bearers:
            rip, rport = remotes[0]
            args += ["--bearer", f"media udp name {name} localip {ip} remoteip {rip} "
                                 f"remoteport {rport}"]
        self.log_path = self.run_dir.with_name(f"{self.name}.{self.restarts}.log")
        self.proc = spawn_tipcd(["--run-dir", self.rd, "--identity", self.name,
                                 "--log-level", "info", *args], self.log_path, ns=self.ns)
        if not wait_started(self.run_dir, self.proc, 20):
            raise RuntimeError(f"tipcd {self.name} did not start:\n{self.log()}")
        for name, _, remotes in self.bearers:
            for rip, rport in remotes[1:]:
                ctlclient.call("bearer.add", {"media": "udp", "name": name,
                                              "remoteip": rip, "remoteport": rport},
                               path=self.run_dir / "ctl.sock")

    def log(self) -> str:
        return log_tail(self.log_path, 3000)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        stop_proc(self.proc, resume=True)

    def links(self) -> list[dict[str, Any]]:
        from tipcpy.runtime import ctlclient

        try:
            return [lk for lk in ctlclient.call("link.stat.show", {"extended": True},
                                                path=self.run_dir / "ctl.sock", timeout=3)
                    if not lk.get("broadcast")]
        except Exception:
            return []

    def links_up(self) -> int:
        from tipcpy.runtime import ctlclient

        try:
            return sum(1 for lk in ctlclient.call("link.list", path=self.run_dir / "ctl.sock",
                                                  timeout=3)
                       if lk.get("up") and lk.get("name") != "broadcast-link")
        except Exception:
            return 0

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """tipcd's ``daemon.stats`` ({} if it does not answer); ``reset`` forgets the
        loop-lag maxima (after a SIGSTOP: the stop itself is not tipcd's lag)."""
        from tipcpy.runtime import ctlclient

        try:
            out = ctlclient.call("daemon.stats", {"reset": reset} if reset else {},
                                 path=self.run_dir / "ctl.sock", timeout=3)
        except Exception:
            return {}
        return out if isinstance(out, dict) else {}

    def loop_lag_ms(self) -> float | None:
        lag = self.stats().get("loop", {}).get("loop_lag_max_ms")
        return float(lag) if lag is not None else None

    def resets(self) -> int:
        return self.resets_before + sum(int(lk.get("down_count", 0)) for lk in self.links())


# ------------------------------------------------------------------------------ traffic
@dataclass
class FlowTotals:
    kind: str
    src: int
    dst: int
    sent: int = 0
    delivered: int = 0
    lost_excused: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupt: int = 0
    aborted: int = 0
    aborted_unexpected: int = 0
    segments: int = 0
    start_failures: int = 0
    start_errors: list[str] = field(default_factory=list)
    """The first few reasons a segment could not start (with the soak time)."""
    last_end: float = 0.0
    longest_idle: float = 0.0
    """Longest time without a segment ending: a flow stalled (neither going on
    nor aborting) shows here, whatever its counters say."""
    violations: list[str] = field(default_factory=list)

    def idle(self, now: float, t0: float) -> float:
        """Time since the last segment ended (since ``t0`` before the first)."""
        return now - (self.last_end or t0)


class Flow(threading.Thread):
    """Back-to-back numbered streams of one kind from ``src`` to ``dst`` until stopped;
    each stream (segment) ends when done, when its connection aborts, or at its
    deadline, and the next one starts on a fresh service instance."""

    def __init__(self, soak: Soak, kind: str, src: Node, dst: Node, svc: int) -> None:
        super().__init__(name=f"flow-{kind}-{src.k}-{dst.k}", daemon=True)
        self.soak, self.kind, self.src, self.dst, self.svc = soak, kind, src, dst, svc
        self.totals = FlowTotals(kind, src.k, dst.k)
        self.reports: list[tuple[Stream, Report]] = []
        self.stack_shown = False

    def run(self) -> None:
        seg_n = max(50, int(self.soak.rate * 8))
        inst = 0
        while not self.soak.stopping.is_set():
            inst += 1
            s = Stream(self.kind, self.src.rd, self.dst.rd, self.svc, n=seg_n,
                       inst=inst, rate=self.soak.rate, deadline=seg_n / self.soak.rate + 12)
            try:
                s.start()
            except Exception as e:
                t = self.totals
                t.start_failures += 1
                if len(t.start_errors) < 3:
                    t.start_errors.append(f"{time.monotonic() - self.soak.t0:.1f} s: {e!r}")
                time.sleep(0.5)
                continue
            s.send()
            r = s.join()
            self.reports.append((s, r))
            self.soak.account(self, s, r)


# ------------------------------------------------------------------------------ the soak
@dataclass
class Fault:
    kind: str
    start: float
    end: float
    nodes: tuple[int, ...]          # node faults: the node; link faults: the pair / node
    plane: int | None
    detail: str


class Soak:
    def __init__(self, secs: float, nodes: int, planes: int, seed: int, rate: float,
                 every: float, faults: list[str], rss_mb: int, keep: bool = False,
                 lag_ms: float = 0.0) -> None:
        self.lag_ms = lag_ms
        self.secs, self.n, self.planes, self.seed = secs, nodes, planes, seed
        self.rate, self.every, self.fault_kinds, self.rss_mb = rate, every, faults, rss_mb
        self.rng = random.Random(seed)
        self.tag = secrets.token_hex(3)
        self.created_ns: list[str] = []
        self.nodes: list[Node] = []
        self.relays: dict[tuple[int, int, int], Relay] = {}   # (plane, i, j) i<j
        self.loop: RelayLoop | None = None
        self.flows: list[Flow] = []
        self.faults: list[Fault] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.base = Path(tempfile.mkdtemp(prefix="tipcpy-soak-"))
        self.t0 = time.monotonic()
        self.pending: list[tuple[Flow, float]] = []
        self.pending_aborts: list[tuple[Flow, float]] = []

    # ---- setup
    def ns(self, what: str) -> str:
        return f"tps-{self.tag}-{what}"

    def setup(self) -> None:
        from pyroute2 import IPRoute, NetNS

        whats = [f"n{k}" for k in range(self.n)] + [f"h{p}" for p in range(self.planes)]
        create_netns([self.ns(what) for what in whats], self.created_ns)
        with IPRoute() as ipr:
            for p in range(self.planes):
                for k in range(self.n):
                    dn, dh = self.dev(p, k), self.dev(p, k) + "h"
                    add_veth(ipr, dn, self.ns(f"n{k}"), dh, self.ns(f"h{p}"))
        for what in whats:
            with NetNS(self.ns(what)) as n:
                lo_up(n)
                for p in range(self.planes):
                    for k in range(self.n):
                        if what == f"n{k}":
                            dev, ip = self.dev(p, k), node_ip(p, k)
                        elif what == f"h{p}":
                            dev, ip = self.dev(p, k) + "h", hub_ip(p, k)
                        else:
                            continue
                        addr_up(n, dev, ip)
        # relays: one per plane and pair, bound inside the plane's hub
        self.loop = RelayLoop()
        remotes: dict[tuple[int, int], list[tuple[str, int]]] = {
            (p, k): [] for p in range(self.planes) for k in range(self.n)}
        for p in range(self.planes):
            for i in range(self.n):
                for j in range(i + 1, self.n):
                    r = Relay((node_ip(p, i), 6118), (node_ip(p, j), 6118),
                              host=hub_ip(p, i), host_b=hub_ip(p, j),
                              seed=self.seed * 1000 + p * 100 + i * 10 + j)
                    with in_netns(self.ns(f"h{p}")):
                        r.bind()
                    self.loop.add(r)
                    self.relays[(p, i, j)] = r
                    remotes[(p, i)].append(r.addr_a)
                    remotes[(p, j)].append(r.addr_b)
        for k in range(self.n):
            bearers = [(f"b{p}", node_ip(p, k), remotes[(p, k)]) for p in range(self.planes)]
            node = Node(k, self.ns(f"n{k}"), self.base / f"s{k}", bearers)
            self.nodes.append(node)
            node.start()
        want = (self.n - 1) * self.planes
        end = time.monotonic() + 60
        while not all(nd.links_up() >= want for nd in self.nodes):
            if time.monotonic() > end:
                raise RuntimeError("links did not come up: " + ", ".join(
                    f"{nd.name}={nd.links_up()}/{want}" for nd in self.nodes))
            time.sleep(0.2)
        for nd in self.nodes:
            assert nd.proc is not None
            nd.rss_start = rss_kb(nd.proc.pid)

    def dev(self, plane: int, k: int) -> str:
        return f"s{self.tag}{plane}{k}"

    def cleanup(self) -> None:
        self.stopping.set()
        for f in self.flows:
            f.join(2)
        for nd in self.nodes:
            with contextlib.suppress(Exception):
                nd.stop()
        if self.loop is not None:
            self.loop.close()
        remove_netns(self.created_ns)
        self.created_ns.clear()

    # ---- faults
    def now(self) -> float:
        return time.monotonic()

    def relay_call(self, r: Relay, fn: str, *a: Any, **kw: Any) -> None:
        assert self.loop is not None
        self.loop.call(getattr(r, fn), *a, **kw)

    def wait_links(self, timeout: float = 15.0) -> None:
        want = (self.n - 1) * self.planes
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.stopping.is_set():
            if all(nd.links_up() >= want for nd in self.nodes):
                return
            time.sleep(0.2)

    def inject(self) -> None:
        from pyroute2 import NetNS

        kind = self.rng.choice(self.fault_kinds)
        p = self.rng.randrange(self.planes)
        i, j = sorted(self.rng.sample(range(self.n), 2))
        k = self.rng.randrange(self.n)
        hold = TOLERANCE + 0.5 + self.rng.random()
        start = self.now()
        nodes: tuple[int, ...] = (i, j)
        plane: int | None = p
        if kind == "impair":
            r = self.relays[(p, i, j)]
            imp: dict[str, Any] = self.rng.choice([{"loss": 0.2}, {"dup": 0.2},
                                   {"delay": 0.004, "jitter": 0.004},
                                   {"corrupt": 0.05, "corrupt_mode": "truncate"}])
            detail = f"relay p{p} {i}-{j} {imp}"
            self.relay_call(r, "set", "both", **imp)
            time.sleep(hold + 1)
            self.relay_call(r, "clear")
        elif kind == "cut":
            r = self.relays[(p, i, j)]
            detail = f"relay p{p} {i}-{j} cut {hold:.1f}s"
            self.relay_call(r, "cut")
            time.sleep(hold)
            self.relay_call(r, "uncut")
        elif kind == "ifdown":
            nodes = (k,)
            detail = f"node {k} {self.dev(p, k)} down {hold:.1f}s"
            with NetNS(self.ns(f"n{k}")) as n:
                idx = n.link_lookup(ifname=self.dev(p, k))[0]
                n.link("set", index=idx, state="down")
                time.sleep(hold)
                n.link("set", index=idx, state="up")
        elif kind == "sigstop":
            nodes, plane = (k,), None
            detail = f"node {k} SIGSTOP {hold:.1f}s"
            self.nodes[k].signal(signal.SIGSTOP)
            time.sleep(hold)
            self.nodes[k].signal(signal.SIGCONT)
            self.nodes[k].stats(reset=True)
        else:  # kill
            nodes, plane = (k,), None
            nd = self.nodes[k]
            detail = f"node {k} kill -9 + restart"
            nd.resets_before = nd.resets()
            nd.signal(signal.SIGKILL)
            if nd.proc is not None:
                nd.proc.wait(5)
            time.sleep(0.5)
            nd.restarts += 1
            nd.start()
        end = self.now()
        self.wait_links()
        with self.lock:
            self.faults.append(Fault(kind, start, max(end, self.now()), nodes, plane, detail))

    # ---- accounting
    def excused(self, src: int, dst: int, t1: float, t2: float | None = None) -> bool:
        """Was src or dst down (or, with one plane, their only link) at some time in
        ``[t1, t2]``?"""
        t2 = t1 if t2 is None else t2
        with self.lock:
            faults = list(self.faults)
        for f in faults:
            if t2 < f.start - 0.3 or t1 > f.end + TOLERANCE + 1.0:
                continue
            if f.plane is None and (src in f.nodes or dst in f.nodes):
                return True
            if self.planes == 1 and f.kind in ("cut", "ifdown"):
                if f.kind == "cut" and set(f.nodes) == {src, dst}:
                    return True
                if f.kind == "ifdown" and (src in f.nodes or dst in f.nodes):
                    return True
        return False

    def account(self, flow: Flow, s: Stream, r: Report) -> None:
        t = flow.totals
        with self.lock:
            now = time.monotonic()
            t.longest_idle = max(t.longest_idle, t.idle(now, self.t0))
            t.last_end = now
            t.segments += 1
            t.sent += r.accepted
            t.delivered += r.delivered
            t.duplicated += r.duplicated
            t.reordered += r.reordered
            t.corrupt += r.corrupt
        for at in r.lost_accepted_at:
            # judged once the faults around it are known (at the end of the run)
            self.pending.append((flow, s.t0 + at))
        conn_err = [e for e in r.errors if e.errno in (errno.ECONNRESET, errno.EPIPE)]
        if flow.kind != "rdm" and conn_err:
            t.aborted += 1
            self.pending_aborts.append((flow, s.t0 + conn_err[0].t))

    def judge(self) -> None:
        for flow, at in self.pending:
            if self.excused(flow.src.k, flow.dst.k, at):
                flow.totals.lost_excused += 1
            else:
                flow.totals.lost += 1
        for flow, at in self.pending_aborts:
            # an abort must follow the fault within the tolerance (+ margin)
            if not self.excused(flow.src.k, flow.dst.k, at - TOLERANCE - 1.0, at):
                flow.totals.aborted_unexpected += 1

    def watch_stalls(self) -> None:
        """A flow with no segment ended for STALL_SECS: count it (even if it never
        ends another) and print where its thread is, once - the question a stalled
        flow raises is whether tipcpy or this tool is blocking."""
        now = time.monotonic()
        for f in self.flows:
            t = f.totals
            idle = t.idle(now, self.t0)
            if idle <= STALL_SECS:
                continue
            t.longest_idle = max(t.longest_idle, idle)
            if f.stack_shown:
                continue
            f.stack_shown = True
            frame = sys._current_frames().get(f.ident or -1)
            where = "".join(traceback.format_stack(frame)) if frame else "(no frame)"
            print(f"!! {t.kind} s{t.src}->s{t.dst}: no segment ended for {idle:.0f} s "
                  f"(at {now - self.t0:.0f} s); start failures {t.start_failures} "
                  f"{t.start_errors}; its thread is at:\n{where}", flush=True)

    # ---- run
    def run(self) -> int:
        self.setup()
        svc = 70_000
        for k, src in enumerate(self.nodes):
            dst = self.nodes[(k + 1) % self.n]
            for kind in KINDS:
                svc += 1
                self.flows.append(Flow(self, kind, src, dst, svc))
        for f in self.flows:
            f.start()
        self.t0 = time.monotonic()
        end = self.t0 + self.secs
        time.sleep(min(self.every, self.secs / 4))
        while time.monotonic() + self.every < end:
            self.inject()
            self.watch_stalls()
            time.sleep(max(0.0, min(self.every - 2, end - time.monotonic())))
        time.sleep(max(0.0, end - time.monotonic()))
        self.watch_stalls()
        self.stopping.set()
        for f in self.flows:
            f.join(30)
        self.judge()
        return self.report()

    def report(self) -> int:
        from rich.console import Console
        from rich.table import Table

        con = Console(width=140)
        violations: list[str] = []
        tt = Table(title=f"soak: {self.n} nodes, {self.planes} link(s) per pair, "
                         f"{self.secs:.0f} s, seed {self.seed}")
        tt.add_column("flow", no_wrap=True)
        for col in ("sent", "delivered", "lost", "lost (node down)", "duplicated",
                    "reordered", "corrupt", "conn aborted", "unexpected aborts", "segments",
                    "longest idle (s)"):
            tt.add_column(col, justify="right")
        tot = FlowTotals("all", -1, -1)
        for f in self.flows:
            t = f.totals
            tt.add_row(f"{t.kind} s{t.src}->s{t.dst}", str(t.sent), str(t.delivered),
                       str(t.lost), str(t.lost_excused), str(t.duplicated), str(t.reordered),
                       str(t.corrupt), str(t.aborted), str(t.aborted_unexpected),
                       str(t.segments), f"{t.longest_idle:.0f}")
            for a in ("sent", "delivered", "lost", "lost_excused", "duplicated", "reordered",
                      "corrupt", "aborted", "aborted_unexpected", "segments"):
                setattr(tot, a, getattr(tot, a) + getattr(t, a))
            for what, v in (("lost", t.lost), ("duplicated", t.duplicated),
                            ("reordered", t.reordered), ("corrupt", t.corrupt),
                            ("unexpectedly aborted", t.aborted_unexpected)):
                if v:
                    violations.append(f"{t.kind} s{t.src}->s{t.dst}: {v} {what}")
            if t.segments == 0:
                violations.append(f"{t.kind} s{t.src}->s{t.dst}: no stream completed")
            if t.longest_idle > STALL_SECS:
                violations.append(f"{t.kind} s{t.src}->s{t.dst}: no stream ended for "
                                  f"{t.longest_idle:.0f} s (stalled); start failures "
                                  f"{t.start_failures}: {t.start_errors}")
        tt.add_row("total", *(str(getattr(tot, a)) for a in (
            "sent", "delivered", "lost", "lost_excused", "duplicated", "reordered", "corrupt",
            "aborted", "aborted_unexpected", "segments")),
            f"{max(f.totals.longest_idle for f in self.flows):.0f}", style="bold")
        con.print(tt)
        dt = Table(title="daemons")
        for col in ("node", "restarts", "link resets", "RSS start (MB)", "RSS end (MB)",
                    "loop lag max (ms)", "alive"):
            dt.add_column(col, justify="right")
        for nd in self.nodes:
            end_rss = rss_kb(nd.proc.pid) if nd.alive() and nd.proc else 0
            lag = nd.loop_lag_ms() if nd.alive() else None
            dt.add_row(nd.name, str(nd.restarts), str(nd.resets()),
                       f"{nd.rss_start / 1024:.1f}", f"{end_rss / 1024:.1f}",
                       "?" if lag is None else f"{lag:.1f}", "yes" if nd.alive() else "NO")
            if self.lag_ms and lag is not None and lag >= self.lag_ms:
                violations.append(f"{nd.name}: event-loop lag reached {lag:.1f} ms "
                                  f"(>= {self.lag_ms} ms)")
            if not nd.alive():
                violations.append(f"{nd.name}: tipcd died\n{nd.log()}")
            elif nd.restarts == 0 and end_rss - nd.rss_start > self.rss_mb * 1024:
                violations.append(f"{nd.name}: RSS grew {(end_rss - nd.rss_start) / 1024:.1f}"
                                  f" MB (> {self.rss_mb})")
        con.print(dt)
        ft = Table(title="faults injected")
        for col in ("t (s)", "kind", "what"):
            ft.add_column(col)
        for flt in self.faults:
            ft.add_row(f"{flt.start - self.t0:.1f}", flt.kind, flt.detail)
        con.print(ft)
        relay_tot: dict[str, int] = {}
        for r in self.relays.values():
            for d in r.dirs.values():
                for a in ("forwarded", "dropped", "cut_dropped", "duplicated", "corrupted",
                          "overtaken", "rewritten"):
                    relay_tot[a] = relay_tot.get(a, 0) + getattr(d.stats, a)
        con.print("relays: " + ", ".join(f"{k} {v}" for k, v in relay_tot.items()))
        if violations:
            con.print("[bold red]INVARIANTS BROKEN:[/]")
            for line in violations:
                con.print(f"  - {line}")
            return 1
        con.print("[bold green]all invariants held[/]")
        return 0


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--secs", type=float, default=float(env("SOAK_SECS", "60")))
    p.add_argument("--nodes", type=int, default=int(env("SOAK_NODES", "4")))
    p.add_argument("--links", type=int, default=int(env("SOAK_LINKS", "2")), choices=(1, 2))
    p.add_argument("--seed", type=int, default=int(env("SOAK_SEED", "1")))
    p.add_argument("--rate", type=float, default=float(env("SOAK_RATE", "100")))
    p.add_argument("--fault-every", type=float, default=float(env("SOAK_FAULT_EVERY", "4")))
    p.add_argument("--faults", default=env("SOAK_FAULTS", ",".join(FAULTS)))
    p.add_argument("--rss-mb", type=int, default=int(env("SOAK_RSS_MB", "64")))
    p.add_argument("--lag-ms", type=float, default=float(env("SOAK_LAG_MS", "100")),
                   help="fail when a daemon's event-loop lag reaches this (0: report only)")
    ns = p.parse_args(argv)
    why = why_not()
    if why:
        print(f"soak skipped: {why}", file=sys.stderr)
        return EXIT_SKIP
    kinds = [k for k in ns.faults.split(",") if k]
    bad = [k for k in kinds if k not in FAULTS]
    if bad or ns.nodes < 2:
        p.error(f"faults must be among {FAULTS}; nodes >= 2")
    soak = Soak(ns.secs, ns.nodes, ns.links, ns.seed, ns.rate, ns.fault_every, kinds,
                ns.rss_mb, lag_ms=ns.lag_ms)

    me = os.getpid()

    def on_term(signum: int, frame: Any) -> None:
        # pyroute2's NetNS forks helpers that inherit this handler and get SIGTERM when
        # closed: only the soak process itself may stop (and clean up) here
        if os.getpid() != me:
            os._exit(0)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        return soak.run()
    except KeyboardInterrupt:
        print("soak interrupted", file=sys.stderr)
        return 130
    finally:
        soak.cleanup()
        signal.signal(signal.SIGTERM, old)
        shutil.rmtree(soak.base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

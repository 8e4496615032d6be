"""Throughput and round-trip cases: tipcpy sockets through real tipcd processes on
127.0.0.1 against pyzmq and raw asyncio (uvloop) UDP, each measured in this run.

Every side of every pair is its own process (bench.workers); the daemons are real
``tipcd`` processes. ``cores`` in a row's extra = CPU seconds of all processes in the
measurement (workers and daemons) / wall seconds: how much of the machine it took.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PY,
    Daemon,
    Procs,
    Row,
    Target,
    child_env,
    cpu_seconds,
    free_tcp_port,
    free_udp_port,
    socket_api_missing,
    wait_for,
    workspace,
)

SERVICE = 18888


def _readline(p: subprocess.Popen[str], timeout: float) -> str:
    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise TimeoutError("worker did not answer")
        return p.stdout.readline()
    finally:
        sel.close()


def _worker(procs: Procs, role: str, args: dict[str, Any], env: dict[str, str] | None = None
            ) -> subprocess.Popen[str]:
    return procs.popen([PY, "-m", "bench.workers", role, json.dumps(args)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env or child_env())


def _wait_ready(p: subprocess.Popen[str], timeout: float = 30.0) -> None:
    line = _readline(p, timeout)
    if not line.startswith("READY"):
        err = p.stderr.read() if p.stderr and p.poll() is not None else ""
        if line.startswith("RESULT"):
            raise RuntimeError(json.loads(line[7:]).get("error", line))
        raise RuntimeError(f"worker not ready: {line!r} {err[-500:]}")


def _result(p: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        line = _readline(p, max(0.1, end - time.monotonic()))
        if not line:
            err = p.stderr.read() if p.stderr else ""
            raise RuntimeError(f"worker exited without a result: {err[-800:]}")
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            if "error" in r:
                raise RuntimeError(r["error"])
            p.wait(10)
            return r


def _daemon_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(p) or 0.0 for p in pids)


def run_pair(procs: Procs, server_role: str, client_role: str, sargs: dict[str, Any],
             cargs: dict[str, Any], senv: dict[str, str] | None = None,
             cenv: dict[str, str] | None = None, daemons: list[int] | None = None,
             before_client: Any = None, timeout: float = 60.0) -> dict[str, Any]:
    """Start the server role, wait for READY, run the client; both results + cores used."""
    srv = _worker(procs, server_role, sargs, senv)
    try:
        _wait_ready(srv)
        if before_client is not None:
            before_client()
        d0 = _daemon_cpu(daemons or [])
        t0 = time.monotonic()
        cli = _worker(procs, client_role, cargs, cenv)
        cres = _result(cli, timeout)
        wall = time.monotonic() - t0
        sres = _result(srv, 30)
        cpu = cres.get("cpu_s", 0) + sres.get("cpu_s", 0) + _daemon_cpu(daemons or []) - d0
        return {"server": sres, "client": cres, "wall": wall, "cores": cpu / wall if wall else None}
    finally:
        Procs.stop(srv, wait=2)


# ------------------------------------------------------------------ measurement units
def oneway(procs: Procs, kind: str, size: int, duration: float, **kw: Any) -> dict[str, Any]:
    """kind: zmq-tcp, zmq-ipc, udp, tipc (kw: recv_env, send_env, daemons, wait_visible)."""
    if kind in ("zmq-tcp", "zmq-ipc"):
        addr = (f"tcp://127.0.0.1:{free_tcp_port()}" if kind == "zmq-tcp"
                else f"ipc://{procs.tmp / f'zmq-{time.monotonic_ns()}.ipc'}")
        r = run_pair(procs, "zmq_pull", "zmq_push", {"addr": addr},
                     {"addr": addr, "size": size, "duration": duration})
    elif kind == "udp":
        port = free_udp_port()
        r = run_pair(procs, "udp_recv", "udp_send", {"port": port},
                     {"port": port, "size": size, "duration": duration})
    else:
        r = run_pair(procs, "tipc_recv", "tipc_send", {"type": kw["type"], "inst": 1},
                     {"type": kw["type"], "inst": 1, "size": size, "duration": duration},
                     senv=kw["recv_env"], cenv=kw["send_env"], daemons=kw["daemons"],
                     before_client=kw.get("wait_visible"))
    s = r["server"]
    sent = r["client"].get("sent") or 0
    return {"rate": s.get("rate"), "mbps": s.get("mbps"), "received": s.get("n"),
            "sent": sent, "loss": (1 - (s.get("n") or 0) / sent) if sent else None,
            "cores": r["cores"]}


def roundtrip(procs: Procs, kind: str, size: int, duration: float, count: int,
              **kw: Any) -> dict[str, Any]:
    """kind: zmq-tcp, zmq-ipc, udp, tipc-rdm, tipc-seqpacket."""
    a: dict[str, Any] = {"size": size, "duration": duration, "count": count, "warmup": 100}
    if kind in ("zmq-tcp", "zmq-ipc"):
        addr = (f"tcp://127.0.0.1:{free_tcp_port()}" if kind == "zmq-tcp"
                else f"ipc://{procs.tmp / f'zmq-{time.monotonic_ns()}.ipc'}")
        r = run_pair(procs, "zmq_rep", "zmq_req", {"addr": addr}, {**a, "addr": addr})
    elif kind == "udp":
        port = free_udp_port()
        r = run_pair(procs, "udp_echo", "udp_ping", {"port": port}, {**a, "port": port})
    else:
        sot = kind.split("-", 1)[1]
        srv = {"sotype": sot, "type": kw["type"], "inst": 1}
        r = run_pair(procs, "tipc_echo", "tipc_ping", srv, {**a, **srv},
                     senv=kw["recv_env"], cenv=kw["send_env"], daemons=kw["daemons"],
                     before_client=kw.get("wait_visible"))
    c = r["client"]
    return {"median_us": c["median_us"], "p99_us": c["p99_us"], "n": c["n"],
            "lost": c.get("lost", 0), "cores": r["cores"]}


# ------------------------------------------------------------------ tipcpy setups
class Nodes:
    """Two tipcd on loopback (inter-node) and/or reuse of one of them (intra-node)."""

    def __init__(self, procs: Procs, tmp: Path, two: bool) -> None:
        pa, pb = free_udp_port(), free_udp_port()
        self.a = Daemon(procs, tmp, "node-a", "bench-a", pa, pb if two else None)
        self.b = Daemon(procs, tmp, "node-b", "bench-b", pb, pa) if two else None
        if self.b is not None:
            self.a.wait_link_up()
            self.b.wait_link_up()
        self.type = SERVICE

    @classmethod
    def start(cls, procs: Procs, tmp: Path, two: bool) -> tuple[Nodes | None, str]:
        """The tipcd(s) of a case, or None and why not (no socket API, or a failed start:
        the case then reports its rows without tipcpy figures)."""
        missing = socket_api_missing()
        if missing:
            return None, missing
        try:
            return cls(procs, tmp, two), ""
        except Exception as e:
            return None, f"failed to start tipcd: {e}"[:300]

    def next_type(self) -> int:
        self.type += 1
        return self.type

    def visible(self, d: Daemon, type_: int) -> Any:
        def pred() -> bool:
            return any(e["type"] == type_ for e in d.call("nametable.show"))
        return lambda: wait_for(pred, 20, f"binding {type_} visible on {d.name}")

    def setup(self, inter: bool) -> dict[str, Any]:
        """kwargs for oneway/roundtrip: receiver on b (inter) or a (intra), sender on a."""
        t = self.next_type()
        recv = self.b if inter and self.b is not None else self.a
        return {"type": t, "recv_env": recv.env, "send_env": self.a.env,
                "daemons": [self.a.pid] + ([self.b.pid] if self.b is not None else []),
                "wait_visible": self.visible(self.a, t)}


def _try(fn: Any, *a: Any, **kw: Any) -> tuple[dict[str, Any] | None, str]:
    try:
        return fn(*a, **kw), ""
    except Exception as e:
        return None, f"failed: {type(e).__name__}: {e}"[:300]


BIG = 32 * 1024
"""Sizes from here on also get an MB/s row: the large-message figure (issue: 60 KB)."""


def _tput_rows(case: str, size: int, tip: dict[str, Any] | None, why: str,
               baselines: list[tuple[str, dict[str, Any] | None, Target | None]],
               key: str = "rate") -> list[Row]:
    """One row per baseline; ``key`` "rate" (msg/s) or "mbps" (MB/s of payload, 10**6 B)."""
    rows = []
    unit = "msg/s" if key == "rate" else "MB/s"
    for bname, b, target in baselines:
        extra: dict[str, Any] = {"tipcpy": tip, "baseline": b}
        note = why
        if not note and tip and b and tip.get("cores") is not None:
            note = f"cores used {tip['cores']:.2f} (baseline {b['cores']:.2f})"
            if key == "rate" and size >= BIG and tip.get("loss"):
                note += f", {100 * tip['loss']:.1f}% rejected (rcvbuf full)"
        rows.append(Row(case, f"RDM {size} B one-way", unit,
                        tip.get(key) if tip else None, bname, b.get(key) if b else None,
                        target, note, extra))
    return rows


def case_rdm(args: Any, inter: bool) -> list[Row]:
    sizes = args.sizes
    dur = args.duration
    case = "rdm_inter" if inter else "rdm_intra"
    rows: list[Row] = []
    with workspace(case) as (tmp, procs):
        nodes, missing = Nodes.start(procs, tmp, two=inter)
        for size in sizes:
            tip, why = (None, missing or "")
            if nodes is not None:
                tip, why = _try(oneway, procs, "tipc", size, dur, **nodes.setup(inter))
            if inter:
                zt, zwhy = _try(oneway, procs, "zmq-tcp", size, dur)
                ud, uwhy = _try(oneway, procs, "udp", size, dur)
                tgt = (Target("ratio", ">=", 0.3, ">= 0.3x") if size == 100
                       else Target("ratio", ">=", 0.7, ">= 0.7x") if size == 61440 else None)
                rows += _tput_rows(case, size, tip, why or zwhy,
                                   [("pyzmq PUSH/PULL tcp", zt, tgt)])
                rows += _tput_rows(case, size, tip, why or uwhy,
                                   [("asyncio UDP one-way (uvloop)", ud, None)])
                if size >= BIG:
                    # the same runs in MB/s (issue 16 item 5)
                    rows += _tput_rows(case, size, tip, why or zwhy,
                                       [("pyzmq PUSH/PULL tcp", zt, None)], key="mbps")
                    rows += _tput_rows(case, size, tip, why or uwhy,
                                       [("asyncio UDP one-way (uvloop)", ud, None)], key="mbps")
            else:
                zi, zwhy = _try(oneway, procs, "zmq-ipc", size, dur)
                tgt = Target("ratio", ">=", 0.5, ">= 0.5x") if size == 100 else None
                rows += _tput_rows(case, size, tip, why or zwhy, [("pyzmq PUSH/PULL ipc", zi, tgt)])
                if size >= BIG:
                    rows += _tput_rows(case, size, tip, why or zwhy,
                                       [("pyzmq PUSH/PULL ipc", zi, None)], key="mbps")
    return rows


def case_latency(args: Any) -> list[Row]:
    dur = args.duration
    count = args.rtt_count
    rows: list[Row] = []
    with workspace("latency") as (tmp, procs):
        nodes, missing = Nodes.start(procs, tmp, two=True)
        base: dict[str, tuple[dict[str, Any] | None, str]] = {}
        for kind in ("zmq-tcp", "zmq-ipc", "udp"):
            base[kind] = _try(roundtrip, procs, kind, 100, dur, count)
        names = {"zmq-tcp": "pyzmq REQ/REP tcp", "zmq-ipc": "pyzmq REQ/REP ipc",
                 "udp": "asyncio UDP echo (uvloop)"}
        combos = [("rdm", True, ["zmq-tcp", "udp"]), ("seqpacket", True, ["zmq-tcp"]),
                  ("rdm", False, ["zmq-ipc"]), ("seqpacket", False, ["zmq-ipc"])]
        for sot, inter, bases in combos:
            tip, why = None, missing or ""
            if nodes is not None:
                tip, why = _try(roundtrip, procs, f"tipc-{sot}", 100, dur, count,
                                **nodes.setup(inter))
            where = "inter-node" if inter else "intra-node"
            for bk in bases:
                b, bwhy = base[bk]
                for stat in ("median_us", "p99_us"):
                    tgt = (Target("ratio", "<=", 1.5, "<= 1.5x")
                           if sot == "rdm" and inter and bk == "zmq-tcp" and stat == "median_us"
                           else None)
                    rows.append(Row(
                        "latency", f"{sot.upper()} 100 B round trip {where} "
                        f"{'median' if stat == 'median_us' else 'p99'}", "us",
                        tip[stat] if tip else None, names[bk], b[stat] if b else None, tgt,
                        why or bwhy, {"tipcpy": tip, "baseline": b}))
    return rows


# ------------------------------------------------------------------ groups
def fanout(procs: Procs, group: bool, size: int, duration: float, members: int,
           nodes: Nodes) -> dict[str, Any]:
    """One sender on node a, ``members`` receivers on node b: a group broadcast
    (``group``) or a plain RDM multicast to a range all receivers bound. The figure is
    the slowest receiver's rate (each gets every message)."""
    assert nodes.b is not None
    t = nodes.next_type()
    rrole, srole = ("tipc_group_recv", "tipc_group_send") if group else ("tipc_recv",
                                                                        "tipc_send")
    recvs = [_worker(procs, rrole, {"type": t, "inst": 1}, nodes.b.env)
             for _ in range(members)]
    try:
        for r in recvs:
            _wait_ready(r)
        if not group:
            nodes.visible(nodes.a, t)()
            wait_for(lambda: sum(e["type"] == t for e in nodes.a.call("nametable.show"))
                     >= members, 20, "all receivers bound")
        daemons = [nodes.a.pid, nodes.b.pid]
        d0 = _daemon_cpu(daemons)
        t0 = time.monotonic()
        sargs = {"type": t, "inst": 0, "size": size, "duration": duration,
                 "members": members, "mcast": True}
        if not group:
            sargs["inst"] = 1
        snd = _worker(procs, srole, sargs, nodes.a.env)
        sres = _result(snd, duration + 60)
        rres = [_result(r, 60) for r in recvs]
        wall = time.monotonic() - t0
        cpu = (sres.get("cpu_s", 0) + sum(r.get("cpu_s", 0) for r in rres)
               + _daemon_cpu(daemons) - d0)
    finally:
        for r in recvs:
            Procs.stop(r, wait=2)
    sent = sres.get("sent") or 0
    got = [r.get("n") or 0 for r in rres]
    rates = [r.get("rate") for r in rres]
    return {"rate": min(x for x in rates if x) if all(rates) else None, "sent": sent,
            "received": got, "loss": (1 - min(got) / sent) if sent else None,
            "cores": cpu / wall if wall else None}


def case_group(args: Any) -> list[Row]:
    """Group broadcast of 1 KB to 3 members on another tipcd, against a plain RDM
    multicast of the same size to 3 sockets on the same nodes, same run."""
    dur = args.duration
    rows: list[Row] = []
    with workspace("group") as (tmp, procs):
        nodes, missing = Nodes.start(procs, tmp, two=True)
        tip = base = None
        why = bwhy = missing or ""
        if nodes is not None:
            tip, why = _try(fanout, procs, True, 1024, dur, 3, nodes)
            base, bwhy = _try(fanout, procs, False, 1024, dur, 3, nodes)
        note = why or bwhy
        if not note and tip and base:
            note = (f"group: {tip['sent']} sent, {min(tip['received'])} at the slowest "
                    f"member (loss {tip['loss']:.1%}); multicast loss {base['loss']:.1%}")
        rows.append(Row("group", "group broadcast 1024 B to 3 members", "msg/s",
                        tip["rate"] if tip else None, "RDM multicast to 3 sockets",
                        base["rate"] if base else None, None, note,
                        {"tipcpy": tip, "baseline": base}))
    return rows

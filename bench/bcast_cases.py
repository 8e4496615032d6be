"""Broadcast link throughput: one sender multicasting 1 KB to one socket on each of
3 and 8 other tipcd nodes, with method BROADCAST (one copy on the broadcast link,
carried by the UDP bearer's multicast group) against the same run's REPLICAST (one
copy per node over the unicast links).

Why network namespaces: a UDP bearer only has broadcast support in multicast mode,
and multicast needs distinct hosts on a shared segment; loopback with unicast remote
IPs is replicast by definition.  So the case builds its own segment (needs root): a
hub namespace with a bridge and one namespace per node on a veth port, unique names,
always deleted.  Only the daemons live in the namespaces; the workers reach them
through their run directories.  The figure is the slowest receiver's rate.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import Daemon, Procs, Row, _cmd, socket_api_missing, wait_for, workspace
from bench.socket_cases import _result, _try, _wait_ready, _worker

SUBNET = "10.213.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class Segment:
    """A bridge in a hub namespace and ``n`` host namespaces on it."""

    def __init__(self, n: int) -> None:
        tag = secrets.token_hex(3)
        self.hub = f"tpbc-{tag}-hub"
        self.hosts = [f"tpbc-{tag}-{i}" for i in range(n)]
        self.made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        _ip("netns", "add", self.hub)
        self.made.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.hosts):
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
                f"p{i}", "netns", self.hub)
            _ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", self.hub, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", self.hub, "link", "set", f"p{i}", "up")

    def ip(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.made.clear()


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces for a multicast segment)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return socket_api_missing() or ""


def _start(procs: Procs, tmp: Path, seg: Segment) -> list[Daemon]:
    nodes = []
    for i, ns in enumerate(seg.hosts):
        nodes.append(Daemon(procs, tmp, f"node{i}", f"bench-bc{i}", 0, None,
                            argv0=["ip", "netns", "exec", ns, *_cmd("tipcd")],
                            extra=["--bearer", f"media udp name b0 localip {seg.ip(i)}"]))
    n = len(nodes)
    wait_for(lambda: len(nodes[0].links_up()) == n - 1, 60, "sender linked to every node")
    for d in nodes[1:]:
        d.wait_link_up(60)
    return nodes


def _bc_tx(d: Daemon) -> int:
    for s in d.call("link.stat.show"):
        if s.get("broadcast"):
            return int(s.get("tx_packets", 0) or 0)
    return 0


def spread(procs: Procs, nodes: list[Daemon], method: str, type_: int, size: int,
           duration: float) -> dict[str, Any]:
    """One receiver socket on every node but the sender's; the sender multicasts to
    the range they bound for ``duration`` with ``method``."""
    a = nodes[0]
    a.call("link.broadcast.set", {"method": method})
    recvs = [_worker(procs, "tipc_recv", {"type": type_, "inst": 1}, d.env)
             for d in nodes[1:]]
    try:
        for r in recvs:
            _wait_ready(r)
        want = len(recvs)
        wait_for(lambda: sum(e["type"] == type_ for e in a.call("nametable.show")) >= want,
                 30, "all receivers bound")
        tx0 = _bc_tx(a)
        t0 = time.monotonic()
        snd = _worker(procs, "tipc_send", {"type": type_, "inst": 1, "size": size,
                                            "duration": duration, "mcast": True}, a.env)
        sres = _result(snd, duration + 120)
        rres = [_result(r, 120) for r in recvs]
        wall = time.monotonic() - t0
    finally:
        for r in recvs:
            Procs.stop(r, wait=2)
    sent = sres.get("sent") or 0
    got = [r.get("n") or 0 for r in rres]
    rates = [r.get("rate") for r in rres]
    return {"method": method, "rate": min(x for x in rates if x) if all(rates) else None,
            "sent": sent, "received": got, "loss": (1 - min(got) / sent) if sent else None,
            "bc_tx_packets": _bc_tx(a) - tx0, "wall_s": wall}


def case_bcast(args: Any) -> list[Row]:
    """Multicast of 1 KB to 3 and to 8 nodes: BROADCAST vs the same run's REPLICAST."""
    why = _why_not()
    rows: list[Row] = []
    for n in (3, 8):
        fig = f"multicast 1024 B to {n} nodes, BROADCAST"
        tip = base = None
        note = why
        if not why:
            with workspace(f"bcast{n}") as (tmp, procs):
                seg = None
                try:
                    seg = Segment(n + 1)
                    nodes = _start(procs, tmp, seg)
                    tip, w1 = _try(spread, procs, nodes, "BROADCAST", 19000 + n, 1024,
                                   args.duration)
                    base, w2 = _try(spread, procs, nodes, "REPLICAST", 19100 + n, 1024,
                                    args.duration)
                    note = w1 or w2
                except Exception as e:
                    note = f"failed: {type(e).__name__}: {e}"[:300]
                finally:
                    procs.close()
                    if seg is not None:
                        seg.close()
        if not note and tip and base:
            note = (f"broadcast: {tip['sent']} sent, {min(tip['received'])} at the slowest "
                    f"node (loss {tip['loss']:.1%}), {tip['bc_tx_packets']} broadcast-link "
                    f"packets; replicast loss {base['loss']:.1%}")
        rows.append(Row("bcast", fig, "msg/s", tip["rate"] if tip else None,
                        f"REPLICAST to the same {n} nodes",
                        base["rate"] if base else None, None, note,
                        {"tipcpy": tip, "baseline": base}))
    return rows

"""Embedded-node cases: two processes, each running its own embedded node
(``tipcpy.aio.Node``), linked over UDP on 127.0.0.1 -- against pyzmq tcp measured in
the same run with the same pinning.

Why pinned: with an embedded node each side is one single-threaded process, so each gets
a core of its own (receiver/server core 0, sender/client core 1 via
``os.sched_setaffinity``); the pyzmq baseline processes are pinned the same way (with
their I/O thread on the same core), so neither side borrows the other's core and the
ratio compares like with like on a 2-core machine. On a 1-core machine nothing is pinned.

Run as ``python -m bench.embedded_cases ROLE JSON`` (the protocol of bench.workers:
``READY`` then ``RESULT <json>``); roles not defined here are bench.workers' roles, run
after pinning.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import PY, Procs, Row, Target, free_tcp_port, free_udp_port, workspace
from bench.socket_cases import _result, _wait_ready
from bench.workers import Counter, payload, ready, result, rtt_stats

SERVICE = 19888
PIN_NOTE = "each process pinned to its own core (receiver 0, sender 1), baseline likewise"


def _pin(a: dict[str, Any]) -> None:
    cpu = a.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        avail = sorted(os.sched_getaffinity(0))
        if len(avail) > 1:
            os.sched_setaffinity(0, {avail[int(cpu) % len(avail)]})


def _bearer(a: dict[str, Any]) -> str:
    return (f"media udp name b0 localip 127.0.0.1 localport {a['port']} remoteip 127.0.0.1 "
            f"remoteport {a['peer']}")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


async def _visible(node: Any, typ: int, inst: int, timeout: float = 30.0) -> None:
    """Until the peer's binding is in our table (link up + name distribution)."""
    end = time.monotonic() + timeout
    while node.stack.name_table.lookup_anycast(typ, inst, 0) is None:
        if time.monotonic() > end:
            raise TimeoutError(f"binding {{{typ},{inst}}} not visible")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ roles
def _watchdog(s: Any, first: float, idle: float, seen: Any) -> asyncio.Task[None]:
    """Close ``s`` (which wakes its reader with an error) when nothing arrived for
    ``first`` seconds before the first message or ``idle`` seconds after one: one timer
    task per run instead of a ``wait_for`` task per message."""

    async def watch() -> None:
        last = seen()
        limit = first
        while True:
            await asyncio.sleep(0.25)
            now = seen()
            if now != last:
                last, limit = now, idle
                continue
            limit -= 0.25
            if limit <= 0:
                s.close()
                return

    return asyncio.ensure_future(watch())


def _run_node(identity: str, a: dict[str, Any],
              body: Callable[[Any], Awaitable[dict[str, Any]]]) -> None:
    """Run ``body(node)`` inside an embedded node on a fresh loop; report what it returns."""
    from tipcpy.node import Node

    async def main() -> dict[str, Any]:
        async with Node(identity=identity, bearers=[_bearer(a)]) as node:
            return await body(node)

    result(_new_loop().run_until_complete(main()))


def _bound(node: Any, a: dict[str, Any]) -> Any:
    """The server side: an RDM socket bound to the case's name, then READY."""
    from tipcpy import socket as ts

    s = node.socket(ts.SOCK_RDM)
    s.bind((ts.TIPC_ADDR_NAMESEQ, a["type"], a["inst"], a["inst"]))
    ready()
    return s


async def _sender(node: Any, a: dict[str, Any]) -> tuple[Any, tuple[int, ...], bytes]:
    """The client side, once the server's name is visible: an RDM socket, the
    destination and the payload."""
    from tipcpy import socket as ts

    await _visible(node, a["type"], a["inst"])
    s = node.socket(ts.SOCK_RDM)
    return s, (ts.TIPC_ADDR_NAME, a["type"], a["inst"], 0), payload(a["size"])


def emb_recv(a: dict[str, Any]) -> None:
    async def body(node: Any) -> dict[str, Any]:
        s = _bound(node, a)
        c = Counter()
        dog = _watchdog(s, a.get("timeout", 30), 3.0, lambda: c.n)
        recv = s.recv
        feed = c.feed
        try:
            while not c.done:
                feed(await recv())
        except OSError:
            pass                    # the watchdog closed the socket: idle
        dog.cancel()
        return c.result()

    _run_node("emb-recv", a, body)


def emb_send(a: dict[str, Any]) -> None:
    async def body(node: Any) -> dict[str, Any]:
        s, dest, data = await _sender(node, a)
        sendto = s.sendto
        n = 0
        end = time.perf_counter() + a["duration"]
        while True:
            for _ in range(64):
                await sendto(data, dest)
            n += 64
            if time.perf_counter() > end:
                break
            await asyncio.sleep(0)     # let the node flush and read acks
        await sendto(b"E", dest)
        await asyncio.sleep(0.3)       # the end marker and the last acks go out
        return {"sent": n}

    _run_node("emb-send", a, body)


def emb_echo(a: dict[str, Any]) -> None:
    async def body(node: Any) -> dict[str, Any]:
        s = _bound(node, a)
        n = 0
        dog = _watchdog(s, a.get("timeout", 60), 10.0, lambda: n)
        recvfrom, sendto = s.recvfrom, s.sendto
        try:
            while True:
                m, src = await recvfrom()
                if src is not None:          # (RDM: always an address)
                    await sendto(m, src)
                if m[:1] == b"E":
                    break
                n += 1
        except OSError:
            pass
        dog.cancel()
        await asyncio.sleep(0.2)
        return {"served": n}

    _run_node("emb-echo", a, body)


def emb_ping(a: dict[str, Any]) -> None:
    async def body(node: Any) -> dict[str, Any]:
        s, dest, data = await _sender(node, a)
        for _ in range(a.get("warmup", 100)):
            await s.sendto(data, dest)
            await s.recvfrom()
        out: list[int] = []
        clock = time.perf_counter_ns
        end = time.perf_counter() + a["duration"]
        while len(out) < a["count"]:
            t0 = clock()
            await s.sendto(data, dest)
            await s.recvfrom()
            out.append(clock() - t0)
            if not len(out) % 64 and time.perf_counter() > end:
                break
        await s.sendto(b"E", dest)
        await asyncio.wait_for(s.recvfrom(), 5)
        return rtt_stats(out)

    _run_node("emb-ping", a, body)


ROLES = {f.__name__: f for f in (emb_recv, emb_send, emb_echo, emb_ping)}



# ------------------------------------------------------------------ driver side
def _pair(procs: Procs, srole: str, crole: str, sargs: dict[str, Any],
          cargs: dict[str, Any], timeout: float = 90.0) -> dict[str, Any]:
    import subprocess

    def start(role: str, args: dict[str, Any]) -> subprocess.Popen[str]:
        return procs.popen([PY, "-m", "bench.embedded_cases", role, json.dumps(args)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    srv = start(srole, {**sargs, "cpu": 0})
    try:
        _wait_ready(srv, 60)
        t0 = time.monotonic()
        cli = start(crole, {**cargs, "cpu": 1})
        cres = _result(cli, timeout)
        wall = time.monotonic() - t0
        sres = _result(srv, 30)
        cpu = cres.get("cpu_s", 0) + sres.get("cpu_s", 0)
        return {"server": sres, "client": cres, "cores": cpu / wall if wall else None}
    finally:
        Procs.stop(srv, wait=2)


def _try(fn: Any, *a: Any) -> tuple[dict[str, Any] | None, str]:
    try:
        return fn(*a), ""
    except Exception as e:
        return None, f"failed: {type(e).__name__}: {e}"[:300]


def _oneway(procs: Procs, kind: str, size: int, duration: float, typ: int) -> dict[str, Any]:
    if kind == "zmq-tcp":
        addr = f"tcp://127.0.0.1:{free_tcp_port()}"
        r = _pair(procs, "zmq_pull", "zmq_push", {"addr": addr},
                  {"addr": addr, "size": size, "duration": duration})
    else:
        pr, ps = free_udp_port(), free_udp_port()
        r = _pair(procs, "emb_recv", "emb_send",
                  {"port": pr, "peer": ps, "type": typ, "inst": 1},
                  {"port": ps, "peer": pr, "type": typ, "inst": 1, "size": size,
                   "duration": duration})
    s = r["server"]
    return {"rate": s.get("rate"), "received": s.get("n"), "sent": r["client"].get("sent"),
            "cores": r["cores"]}


def _roundtrip(procs: Procs, kind: str, duration: float, count: int, typ: int
               ) -> dict[str, Any]:
    a: dict[str, Any] = {"size": 100, "duration": duration, "count": count, "warmup": 100}
    if kind == "zmq-tcp":
        addr = f"tcp://127.0.0.1:{free_tcp_port()}"
        r = _pair(procs, "zmq_rep", "zmq_req", {"addr": addr}, {**a, "addr": addr})
    else:
        pr, ps = free_udp_port(), free_udp_port()
        r = _pair(procs, "emb_echo", "emb_ping",
                  {"port": pr, "peer": ps, "type": typ, "inst": 1},
                  {**a, "port": ps, "peer": pr, "type": typ, "inst": 1})
    c = r["client"]
    return {"median_us": c["median_us"], "p99_us": c["p99_us"], "n": c["n"],
            "cores": r["cores"]}


def case_embedded(args: Any) -> list[Row]:
    dur = args.duration
    rows: list[Row] = []
    with workspace("embedded") as (_tmp, procs):
        tip, why = _try(_oneway, procs, "embedded", 100, dur, SERVICE)
        zt, zwhy = _try(_oneway, procs, "zmq-tcp", 100, dur, 0)
        note = why or zwhy or PIN_NOTE
        if tip and zt and not (why or zwhy):
            note += f"; cores used {tip['cores']:.2f} (baseline {zt['cores']:.2f})"
        rows.append(Row("embedded", "embedded node to embedded node over UDP, RDM 100 B "
                        "one-way", "msg/s", tip["rate"] if tip else None,
                        "pyzmq PUSH/PULL tcp (pinned)", zt["rate"] if zt else None,
                        Target("ratio", ">=", 0.5, ">= 0.5x"), note,
                        {"tipcpy": tip, "baseline": zt}))
        rt, rwhy = _try(_roundtrip, procs, "embedded", dur, args.rtt_count, SERVICE + 1)
        zr, zrwhy = _try(_roundtrip, procs, "zmq-tcp", dur, args.rtt_count, 0)
        for stat, label in (("median_us", "median"), ("p99_us", "p99")):
            rows.append(Row(
                "embedded", f"embedded node to embedded node over UDP, RDM 100 B round trip "
                f"{label}", "us", rt[stat] if rt else None, "pyzmq REQ/REP tcp (pinned)",
                zr[stat] if zr else None,
                Target("ratio", "<=", 1.0, "<= 1.0x") if stat == "median_us" else None,
                rwhy or zrwhy or PIN_NOTE, {"tipcpy": rt, "baseline": zr}))
    return rows


def main() -> None:
    role, a = sys.argv[1], json.loads(sys.argv[2])
    try:
        _pin(a)
        if role in ROLES:
            ROLES[role](a)
        else:
            from bench import workers

            workers.ROLES[role](a)
    except Exception as e:  # report, do not hang the driver
        print("RESULT " + json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        os._exit(1)


if __name__ == "__main__":
    main()

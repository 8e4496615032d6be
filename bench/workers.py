"""Benchmark worker processes: one role each, run as ``python -m bench.workers ROLE JSON``.

Senders and receivers run in separate processes so that neither the client library nor
the baseline's client shares one interpreter (one GIL, one core) with its peer.
Protocol with the driver (bench.socket_cases): the worker prints ``READY`` once it can
receive, then, when done, one line ``RESULT <json>``.

Messages of one-way runs start with ``D`` (data) or ``E`` (end of run). Receivers time
from the first to the last data message they got; ``rate`` = messages per second.
Ping/echo roles measure round trips one at a time with ``perf_counter_ns``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

RECV_IDLE_TIMEOUT = 3.0  # receiver gives up this long after the last message


def ready(info: str = "") -> None:
    print(f"READY {info}".rstrip(), flush=True)


def result(d: dict[str, Any]) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    d["cpu_s"] = ru.ru_utime + ru.ru_stime
    print("RESULT " + json.dumps(d), flush=True)


def payload(size: int, tag: bytes = b"D") -> bytes:
    return tag + bytes(max(0, size - 1))


class Counter:
    """Receiver-side count of one-way traffic."""

    def __init__(self) -> None:
        self.n = 0
        self.nbytes = 0
        self.t_first = 0.0
        self.t_last = 0.0
        self.done = False

    def feed(self, data: bytes) -> None:
        if data[:1] == b"E":
            self.done = True
            return
        now = time.perf_counter()
        if not self.n:
            self.t_first = now
        self.t_last = now
        self.n += 1
        self.nbytes += len(data)

    def result(self, **extra: Any) -> dict[str, Any]:
        dt = self.t_last - self.t_first
        rate = (self.n - 1) / dt if self.n > 1 and dt > 0 else None
        return {"n": self.n, "bytes": self.nbytes, "secs": dt, "rate": rate,
                "mbps": (rate * self.nbytes / self.n / 1e6) if rate else None, **extra}


def rtt_stats(ns: list[int], lost: int = 0) -> dict[str, Any]:
    ns.sort()
    us = [x / 1000.0 for x in ns]
    from bench.common import percentile

    return {"n": len(us), "lost": lost, "median_us": percentile(us, 50),
            "p99_us": percentile(us, 99), "min_us": us[0] if us else None}


# ------------------------------------------------------------------ pyzmq
def zmq_pull(a: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.RCVHWM, a.get("hwm", 1000))
    s.bind(a["addr"])
    s.setsockopt(zmq.RCVTIMEO, int(a.get("timeout", 20) * 1000))
    ready()
    c = Counter()
    while not c.done:
        try:
            c.feed(s.recv(copy=True))
        except zmq.Again:
            break
    result(c.result())
    s.close(0)
    ctx.term()


def zmq_push(a: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, a.get("hwm", 1000))
    s.connect(a["addr"])
    data = payload(a["size"])
    n = 0
    end = time.perf_counter() + a["duration"]
    send = s.send
    while True:
        for _ in range(64):
            send(data, copy=len(data) < 4096)  # type: ignore[call-overload]  # pyzmq stubs: copy must be a Literal
        n += 64
        if time.perf_counter() > end:
            break
    send(b"E")
    result({"sent": n})
    s.close(linger=10000)
    ctx.term()


def zmq_rep(a: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    s.bind(a["addr"])
    s.setsockopt(zmq.RCVTIMEO, int(a.get("timeout", 20) * 1000))
    ready()
    n = 0
    while True:
        try:
            m = s.recv()
        except zmq.Again:
            break
        s.send(m)
        if m[:1] == b"E":
            break
        n += 1
    result({"served": n})
    s.close(0)
    ctx.term()


def zmq_req(a: dict[str, Any]) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.connect(a["addr"])
    data = payload(a["size"])
    rt = _pingloop(lambda: (s.send(data), s.recv()), a)
    s.send(b"E")
    s.recv()
    result(rtt_stats(rt))
    s.close(0)
    ctx.term()


def _pingloop(one: Callable[[], Any], a: dict[str, Any]) -> list[int]:
    for _ in range(a.get("warmup", 50)):
        one()
    out: list[int] = []
    clock = time.perf_counter_ns
    end = time.perf_counter() + a["duration"]
    count = a["count"]
    while len(out) < count:
        t0 = clock()
        one()
        out.append(clock() - t0)
        if not len(out) % 64 and time.perf_counter() > end:
            break
    return out


# ------------------------------------------------------------------ asyncio UDP (uvloop)
def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def udp_recv(a: dict[str, Any]) -> None:
    loop = _loop()
    c = Counter()
    fin = loop.create_future()
    last = [time.monotonic()]

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            last[0] = time.monotonic()
            c.feed(data)
            if c.done and not fin.done():
                fin.set_result(None)

    async def main() -> None:
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", a["port"]))
        tr, _ = await loop.create_datagram_endpoint(P, sock=s)
        ready()
        while not fin.done():
            await asyncio.wait([fin], timeout=0.2)
            if time.monotonic() - last[0] > RECV_IDLE_TIMEOUT and (c.n or
                                                                   time.monotonic() - last[0] > 20):
                break
        tr.close()

    loop.run_until_complete(main())
    result(c.result())


def udp_send(a: dict[str, Any]) -> None:
    loop = _loop()

    async def main() -> int:
        tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    remote_addr=("127.0.0.1", a["port"]))
        data = payload(a["size"])
        n = 0
        end = time.perf_counter() + a["duration"]
        while time.perf_counter() < end:
            for _ in range(32):
                tr.sendto(data)
            n += 32
            if tr.get_write_buffer_size():  # type: ignore[attr-defined]  # uvloop/asyncio transports have it; the ABC does not
                await asyncio.sleep(0)
        await asyncio.sleep(0.3)
        for _ in range(5):
            tr.sendto(b"E")
            await asyncio.sleep(0.05)
        tr.close()
        return n

    n = loop.run_until_complete(main())
    result({"sent": n})


def udp_echo(a: dict[str, Any]) -> None:
    loop = _loop()
    fin = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def connection_made(self, tr: Any) -> None:
            self.tr = tr

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.tr.sendto(data, addr)
            if data[:1] == b"E" and not fin.done():
                fin.set_result(None)

    async def main() -> None:
        tr, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", a["port"]))
        ready()
        try:
            await asyncio.wait_for(fin, a.get("timeout", 60))
        except TimeoutError:
            pass
        tr.close()

    loop.run_until_complete(main())
    result({})


def udp_ping(a: dict[str, Any]) -> None:
    loop = _loop()
    waiter: list[asyncio.Future[bytes] | None] = [None]

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            w = waiter[0]
            if w is not None and not w.done():
                w.set_result(data)

    async def main() -> dict[str, Any]:
        tr, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", a["port"]))
        data = payload(a["size"])
        lost = 0

        async def one() -> None:
            nonlocal lost
            w = waiter[0] = loop.create_future()
            tr.sendto(data)
            try:
                await asyncio.wait_for(w, 1.0)
            except TimeoutError:
                lost += 1

        for _ in range(a.get("warmup", 50)):
            await one()
        out: list[int] = []
        clock = time.perf_counter_ns
        end = time.perf_counter() + a["duration"]
        while len(out) < a["count"]:
            t0 = clock()
            await one()
            out.append(clock() - t0)
            if not len(out) % 64 and time.perf_counter() > end:
                break
        for _ in range(3):
            tr.sendto(b"E")
        tr.close()
        return rtt_stats(out, lost)

    result(loop.run_until_complete(main()))


# ------------------------------------------------------------------ tipcpy sockets
def _tipc() -> Any:
    from tipcpy import socket as tsock

    return tsock


def tipc_recv(a: dict[str, Any]) -> None:
    ts = _tipc()
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM)
    s.bind((ts.TIPC_ADDR_NAMESEQ, a["type"], a["inst"], a["inst"]))
    # RDM is reliable, but a full receive buffer rejects (returns) messages to the
    # sender as the kernel does -- the end marker too: _count_until_idle stops when idle
    _count_until_idle(s, lambda: s.recvfrom(70000)[0], a)


def _count_until_idle(s: Any, recv: Callable[[], bytes], a: dict[str, Any]) -> None:
    """Count what ``recv`` returns until the end marker, or until the socket stays idle
    (after data: RECV_IDLE_TIMEOUT; before any: ``timeout``); report it and close ``s``."""
    s.settimeout(0.5)
    ready()
    c = Counter()
    last = time.monotonic()
    while not c.done:
        try:
            data = recv()
        except TimeoutError:
            idle = time.monotonic() - last
            if (c.n and idle > RECV_IDLE_TIMEOUT) or idle > a.get("timeout", 30):
                break
            continue
        last = time.monotonic()
        c.feed(data)
    result(c.result())
    s.close()


def tipc_send(a: dict[str, Any]) -> None:
    ts = _tipc()
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM)
    dest = ((ts.TIPC_ADDR_NAMESEQ, a["type"], a["inst"], a["inst"]) if a.get("mcast")
            else (ts.TIPC_ADDR_NAME, a["type"], a["inst"], 0))
    data = payload(a["size"])
    n = 0
    end = time.perf_counter() + a["duration"]
    sendto = s.sendto
    while True:
        for _ in range(16):
            sendto(data, dest)
        n += 16
        if time.perf_counter() > end:
            break
    for _ in range(3):  # the receiver may be rejecting while its buffer is full
        sendto(b"E", dest)
        time.sleep(0.2)
    result({"sent": n})
    s.close()


def tipc_echo(a: dict[str, Any]) -> None:
    ts = _tipc()
    seqpacket = a["sotype"] == "seqpacket"
    s = ts.socket(ts.AF_TIPC, ts.SOCK_SEQPACKET if seqpacket else ts.SOCK_RDM)
    s.bind((ts.TIPC_ADDR_NAMESEQ, a["type"], a["inst"], a["inst"]))
    n = 0
    if seqpacket:
        s.listen(1)
        ready()
        c, _ = s.accept()
        c.settimeout(a.get("timeout", 60))
        while True:
            try:
                m = c.recv(70000)
            except TimeoutError:
                break
            if not m:
                break
            c.send(m)
            if m[:1] == b"E":
                break
            n += 1
        c.close()
    else:
        s.settimeout(a.get("timeout", 60))
        ready()
        while True:
            try:
                m, src = s.recvfrom(70000)
            except TimeoutError:
                break
            s.sendto(m, src)
            if m[:1] == b"E":
                break
            n += 1
    s.close()
    result({"served": n})


def tipc_ping(a: dict[str, Any]) -> None:
    ts = _tipc()
    seqpacket = a["sotype"] == "seqpacket"
    dest = (ts.TIPC_ADDR_NAME, a["type"], a["inst"], 0)
    data = payload(a["size"])
    if seqpacket:
        s = ts.socket(ts.AF_TIPC, ts.SOCK_SEQPACKET)
        s.connect(dest)

        def one() -> Any:
            s.send(data)
            return s.recv(70000)

        def end() -> None:
            s.send(b"E")
            s.recv(70000)
    else:
        s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM)

        def one() -> Any:
            s.sendto(data, dest)
            return s.recvfrom(70000)

        def end() -> None:
            s.sendto(b"E", dest)
            s.recvfrom(70000)

    s.settimeout(10)
    rt = _pingloop(one, a)
    end()
    s.close()
    result(rtt_stats(rt))


def _group_join(ts: Any, a: dict[str, Any], flags: int) -> Any:
    import struct

    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM)
    s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN,
                 struct.pack("=IIII", a["type"], a["inst"], ts.TIPC_CLUSTER_SCOPE, flags))
    return s


def tipc_group_recv(a: dict[str, Any]) -> None:
    """A group member that counts the broadcasts it gets (until the "E" broadcast)."""
    ts = _tipc()
    s = _group_join(ts, a, 0)
    _count_until_idle(s, lambda: s.recv(70000), a)


def tipc_group_send(a: dict[str, Any]) -> None:
    """Joins, waits until ``members`` others joined, broadcasts for ``duration``
    (blocking sends: group flow control throttles it), then the "E" broadcast."""
    ts = _tipc()
    s = _group_join(ts, a, ts.TIPC_GROUP_MEMBER_EVTS)
    s.settimeout(20)
    seen = 0
    while seen < a["members"]:
        _d, _anc, flags, _addr = s.recvmsg(100)
        if flags & ts.MSG_OOB and not flags & ts.MSG_EOR:
            seen += 1
    time.sleep(0.3)  # the ADVs that follow the JOINs
    data = payload(a["size"])
    n = 0
    end = time.perf_counter() + a["duration"]
    send = s.send
    while True:
        for _ in range(16):
            send(data)
        n += 16
        if time.perf_counter() > end:
            break
    send(b"E")
    result({"sent": n})
    s.close()


ROLES: dict[str, Callable[[dict[str, Any]], None]] = {
    f.__name__: f for f in (zmq_pull, zmq_push, zmq_rep, zmq_req, udp_recv, udp_send, udp_echo,
                            udp_ping, tipc_recv, tipc_send, tipc_echo, tipc_ping,
                            tipc_group_recv, tipc_group_send)
}


def main() -> None:
    role, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        ROLES[role](args)
    except Exception as e:  # report, do not hang the driver
        print("RESULT " + json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        os._exit(1)


if __name__ == "__main__":
    main()

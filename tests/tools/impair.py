"""A UDP impairment relay: a misbehaving network between two tipcd UDP bearers.

This machine's kernel has no sch_netem and no packet filter, so faults are made in user
space.  The relay owns two UDP sockets: side A (the address node A is told its peer is)
and side B (the address node B is told its peer is).  A datagram that arrives on side A
goes to node B from side B, and the other way round; on the way each direction applies
its own :class:`Impairment` (drop, duplicate, reorder, delay with jitter, corrupt, cut)
with its own seeded RNG, so a run is repeatable for a given seed and packet order.

Why the rewrite: a node sends link traffic to the UDP media address the peer put into
its LINK_CONFIG (discovery, user 13, bytes 20..51), not to the datagram's source.  If
that address went through unchanged, the nodes would find each other and talk directly
after discovery, and the relay would see nothing but discovery.  So every LINK_CONFIG
with a UDP media address is decoded with tipcpy.wire, its media address set to the
relay's own socket on the receiver's side, and encoded again; all other bytes are
forwarded untouched.

Use it from tests (``async with Relay(...)``), from the soak (``Relay.bind`` may run
while the calling thread is inside a network namespace, the sockets stay there), or as a
CLI: ``python -m tests.tools.impair --a 127.0.0.1:6118 --b 127.0.0.1:6119 --port-a 7000
--port-b 7001 --control /tmp/relay.sock``; the control socket takes one JSON request per
line (``{"op": "set", "dir": "ab", "loss": 0.3}``, ``{"op": "cut"}``, ``{"op": "uncut"}``,
``{"op": "stats"}``) and answers one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import json
import os
import random
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tipcpy.wire import DecodeError, DiscMsg, UdpMediaAddr, decode

Addr = tuple[str, int]
DIRECTIONS = ("ab", "ba")

#: media info sits in words 5..12 of the 60-byte LINK_CONFIG header
MEDIA_INFO_OFF = 20
MEDIA_INFO_END = 52


@dataclass
class Impairment:
    """What one direction does to each datagram (probabilities in 0..1, times in s).

    ``reorder`` holds a packet back by an extra ``reorder_delay`` so that later packets
    overtake it; jitter alone also reorders when it exceeds the packet spacing.
    ``corrupt_mode``: ``bitflip`` flips one random bit anywhere (a real network's
    checksums would catch this; TIPC has none, so its effects are not all detectable),
    ``truncate`` cuts the datagram short (the TIPC size field no longer fits: every
    receiver must detect it), ``header`` flips a bit in the first 24 bytes.
    """

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.010
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    corrupt_mode: str = "bitflip"
    cut: bool = False

    def update(self, **kw: Any) -> None:
        names = {f.name: f for f in dataclasses.fields(self)}
        for k, v in kw.items():
            if k not in names:
                raise ValueError(f"unknown impairment {k!r}")
            if k == "cut":
                if not isinstance(v, bool):
                    raise ValueError("cut must be true or false")
            elif k == "corrupt_mode":
                if v not in ("bitflip", "truncate", "header"):
                    raise ValueError("corrupt_mode must be bitflip, truncate or header")
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"{k} must be a number")
                v = float(v)
                if v < 0 or (k in ("loss", "dup", "reorder", "corrupt") and v > 1):
                    raise ValueError(f"{k} out of range: {v}")
            setattr(self, k, v)


@dataclass
class DirStats:
    """What one direction did; ``forwarded`` counts datagrams sent, copies included."""

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    cut_dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0
    corrupted: int = 0
    rewritten: int = 0
    rewrite_errors: int = 0
    overflow: int = 0
    overtaken: int = 0         # sent after a datagram that arrived later (real reorders)
    send_errors: int = 0
    bytes: int = 0


@dataclass
class Direction:
    """One direction's impairment, RNG and counters.  ``process`` is pure apart from the
    RNG and the counters, so the statistics can be tested without sockets."""

    name: str
    seed: int
    imp: Impairment = field(default_factory=Impairment)
    stats: DirStats = field(default_factory=DirStats)
    rewrite_to: Addr | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.rx_index = 0          # arrival number of the datagram being processed
        self.tx_highest = -1       # highest arrival number sent so far

    def process(self, data: bytes) -> list[tuple[float, bytes]]:
        """The copies to send for one received datagram, each with its delay (s)."""
        st, imp, rng = self.stats, self.imp, self.rng
        st.received += 1
        if imp.cut:
            st.cut_dropped += 1
            return []
        if imp.loss and rng.random() < imp.loss:
            st.dropped += 1
            return []
        if self.rewrite_to is not None:
            data = self.rewrite(data)
        copies = 1
        if imp.dup and rng.random() < imp.dup:
            copies = 2
            st.duplicated += 1
        out: list[tuple[float, bytes]] = []
        for _ in range(copies):
            d = data
            if imp.corrupt and rng.random() < imp.corrupt:
                d = self.corrupt(d)
                st.corrupted += 1
            delay = imp.delay
            if imp.jitter:
                delay = max(0.0, delay + rng.uniform(-imp.jitter, imp.jitter))
            if imp.reorder and rng.random() < imp.reorder:
                delay += imp.reorder_delay
                st.reordered += 1
            if delay > 0:
                st.delayed += 1
            out.append((delay, d))
        return out

    def corrupt(self, data: bytes) -> bytes:
        if not data:
            return data
        rng, mode = self.rng, self.imp.corrupt_mode
        if mode == "truncate":
            return data[:rng.randrange(len(data))]
        limit = min(len(data), 24) if mode == "header" else len(data)
        b = bytearray(data)
        b[rng.randrange(limit)] ^= 1 << rng.randrange(8)
        return bytes(b)

    def rewrite(self, data: bytes) -> bytes:
        """Point a LINK_CONFIG's UDP media address at the relay (see the module doc)."""
        if len(data) < MEDIA_INFO_END or (data[0] >> 1) & 0xF != DiscMsg.USER:
            return data
        try:
            m = decode(data)
            if not isinstance(m, DiscMsg) or not isinstance(m.media_addr, UdpMediaAddr):
                return data
            assert self.rewrite_to is not None
            m.media_addr = UdpMediaAddr(*self.rewrite_to)
            new = m.encode()
        except (DecodeError, ValueError):
            self.stats.rewrite_errors += 1
            return data
        self.stats.rewritten += 1
        # only the media info may change; anything after the message (none on UDP) stays
        return new + data[len(new):]


def parse_addr(s: str) -> Addr:
    host, _, port = s.rpartition(":")
    host = host.strip("[]")
    ipaddress.ip_address(host)
    return host, int(port)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, side: str) -> None:
        self.relay, self.side = relay, side

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay._received(self.side, data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while a peer is down or restarting: expected, counted
        d = self.relay.dirs["ba" if self.side == "a" else "ab"]
        d.stats.send_errors += 1


class Relay:
    """The relay between node A (UDP address ``a``) and node B (``b``).

    Tell node A its peer is :attr:`addr_a` and node B its peer is :attr:`addr_b`.
    Delayed datagrams wait in the event loop's timer heap; at most ``max_pending`` wait
    at once (more are dropped and counted as ``overflow``), so memory stays bounded.
    """

    def __init__(self, a: Addr, b: Addr, *, host: str = "127.0.0.1", port_a: int = 0,
                 port_b: int = 0, seed: int = 1, max_pending: int = 8192,
                 rewrite: bool = True, host_b: str | None = None) -> None:
        self.a, self.b = a, b
        self.host = host
        self._hosts = {"a": host, "b": host_b or host}
        self._ports = {"a": port_a, "b": port_b}
        self.max_pending = max_pending
        self.rewrite = rewrite
        self.dirs = {"ab": Direction("ab", seed), "ba": Direction("ba", seed + 1)}
        self.socks: dict[str, socket.socket] = {}
        self._tr: dict[str, asyncio.DatagramTransport] = {}
        self._pending: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctl: asyncio.AbstractServer | None = None

    # ---- life cycle
    def bind(self) -> None:
        """Create and bind both sockets now (they stay in the caller's netns)."""
        if self.socks:
            return
        for side in ("a", "b"):
            host = self._hosts[side]
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                              socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                s.bind((host, self._ports[side]))
            except OSError:
                s.close()
                for o in self.socks.values():
                    o.close()
                self.socks.clear()
                raise
            s.setblocking(False)
            self.socks[side] = s
        if self.rewrite:
            # what A sends to B goes out of side B: B must answer to side B
            self.dirs["ab"].rewrite_to = self.addr_b
            self.dirs["ba"].rewrite_to = self.addr_a

    @property
    def addr_a(self) -> Addr:
        """Where node A sends (its configured peer)."""
        return self.socks["a"].getsockname()[:2]

    @property
    def addr_b(self) -> Addr:
        return self.socks["b"].getsockname()[:2]

    async def start(self) -> Relay:
        self.bind()
        self._loop = asyncio.get_running_loop()
        for side in ("a", "b"):
            tr, _ = await self._loop.create_datagram_endpoint(
                functools.partial(_Proto, self, side), sock=self.socks[side])
            self._tr[side] = tr
        return self

    async def close(self) -> None:
        for h in self._pending:
            h.cancel()
        self._pending.clear()
        if self._ctl is not None:
            self._ctl.close()
            with contextlib.suppress(Exception):
                await self._ctl.wait_closed()
            self._ctl = None
        for tr in self._tr.values():
            tr.close()
        self._tr.clear()
        for s in self.socks.values():
            s.close()
        self.socks.clear()
        await asyncio.sleep(0)

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- control
    def _dirs(self, direction: str) -> Iterable[Direction]:
        if direction == "both":
            return self.dirs.values()
        if direction not in self.dirs:
            raise ValueError(f"direction must be ab, ba or both, not {direction!r}")
        return (self.dirs[direction],)

    def set(self, direction: str = "both", **kw: Any) -> None:
        """Change the impairment while running, e.g. ``set("ab", loss=0.3)``."""
        for d in self._dirs(direction):
            d.imp.update(**kw)

    def clear(self, direction: str = "both") -> None:
        for d in self._dirs(direction):
            d.imp = Impairment()

    def cut(self, direction: str = "both") -> None:
        self.set(direction, cut=True)

    def uncut(self, direction: str = "both") -> None:
        self.set(direction, cut=False)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {n: {**dataclasses.asdict(d.stats), "impairment": dataclasses.asdict(d.imp)}
                for n, d in self.dirs.items()}

    def control(self, req: dict[str, Any]) -> Any:
        """One control request as a dict (what the control socket carries)."""
        req = dict(req)
        op = req.pop("op", None)
        direction = req.pop("dir", "both")
        if op == "set":
            self.set(direction, **req)
        elif op == "clear":
            self.clear(direction)
        elif op == "cut":
            self.cut(direction)
        elif op == "uncut":
            self.uncut(direction)
        elif op == "stats":
            return self.stats()
        elif op == "addrs":
            return {"a": list(self.addr_a), "b": list(self.addr_b)}
        else:
            raise ValueError(f"unknown op {op!r}")
        return "ok"

    async def serve_control(self, path: str) -> None:
        """A unix socket, one JSON request per line, one JSON answer per line."""
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while line := await r.readline():
                    try:
                        ans = {"ok": self.control(json.loads(line))}
                    except (ValueError, TypeError) as e:
                        ans = {"error": str(e)}
                    w.write(json.dumps(ans).encode() + b"\n")
                    await w.drain()
            except (ConnectionError, asyncio.LimitOverrunError):
                pass
            finally:
                w.close()

        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._ctl = await asyncio.start_unix_server(handle, path)

    # ---- data path
    def _received(self, side: str, data: bytes) -> None:
        direction = self.dirs["ab" if side == "a" else "ba"]
        out_side, dest = ("b", self.b) if side == "a" else ("a", self.a)
        idx = direction.rx_index
        direction.rx_index += 1
        for delay, d in direction.process(data):
            if delay <= 0:
                self._send(direction, out_side, dest, d, idx)
            elif len(self._pending) >= self.max_pending:
                direction.stats.overflow += 1
            else:
                assert self._loop is not None
                cell: list[asyncio.TimerHandle] = []

                def fire(d: bytes = d, cell: list[asyncio.TimerHandle] = cell) -> None:
                    self._pending.discard(cell[0])
                    self._send(direction, out_side, dest, d, idx)

                cell.append(self._loop.call_later(delay, fire))
                self._pending.add(cell[0])

    def _send(self, direction: Direction, side: str, dest: Addr, data: bytes,
              idx: int) -> None:
        tr = self._tr.get(side)
        if tr is None:
            return
        if idx < direction.tx_highest:
            direction.stats.overtaken += 1
        else:
            direction.tx_highest = idx
        try:
            tr.sendto(data, dest)
        except OSError:
            direction.stats.send_errors += 1
            return
        direction.stats.forwarded += 1
        direction.stats.bytes += len(data)


class RelayLoop:
    """One event loop thread hosting any number of relays (the soak runs one per pair of
    nodes and plane).  Bind each relay first (``Relay.bind``, possibly inside a netns),
    then ``add`` it; every call runs in the loop's thread."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.relays: list[Relay] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="impair-loop",
                                        daemon=True)
        self._thread.start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add(self, relay: Relay) -> Relay:
        self._run(relay.start())
        self.relays.append(relay)
        return relay

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        async def run() -> Any:
            return fn(*args, **kw)
        return self._run(run())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            for r in self.relays:
                with contextlib.suppress(Exception):
                    self._run(r.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


class RelayThread:
    """A :class:`Relay` on its own event loop in a daemon thread, for synchronous code
    (pytest tests, the soak's main thread).  Every method runs in the loop's thread and
    waits for it, so there is no data race with the data path."""

    def __init__(self, a: Addr, b: Addr, **kw: Any) -> None:
        import threading

        self.relay = Relay(a, b, **kw)
        self.relay.bind()              # in the caller's thread, so in the caller's netns
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="impair",
                                        daemon=True)
        self._thread.start()
        self._call_async(self.relay.start())

    def _call_async(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        async def run() -> Any:
            return fn(*args, **kw)
        return self._call_async(run())

    @property
    def addr_a(self) -> Addr:
        return self.relay.addr_a

    @property
    def addr_b(self) -> Addr:
        return self.relay.addr_b

    def set(self, direction: str = "both", **kw: Any) -> None:
        self.call(self.relay.set, direction, **kw)

    def clear(self, direction: str = "both") -> None:
        self.call(self.relay.clear, direction)

    def cut(self, direction: str = "both") -> None:
        self.call(self.relay.cut, direction)

    def uncut(self, direction: str = "both") -> None:
        self.call(self.relay.uncut, direction)

    def stats(self) -> dict[str, dict[str, Any]]:
        return dict(self.call(self.relay.stats))

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self._call_async(self.relay.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    def __enter__(self) -> RelayThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def control(path: str, req: dict[str, Any], timeout: float = 5.0) -> Any:
    """Send one request to a relay's control socket (out-of-process use)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    ans = json.loads(buf)
    if "error" in ans:
        raise ValueError(ans["error"])
    return ans["ok"]


def _imp_args(p: argparse.ArgumentParser) -> None:
    for name in ("loss", "dup", "reorder", "delay", "jitter", "corrupt"):
        p.add_argument(f"--{name}", type=float, default=0.0)
    p.add_argument("--corrupt-mode", default="bitflip",
                   choices=("bitflip", "truncate", "header"))


async def _main(ns: argparse.Namespace) -> None:
    relay = Relay(parse_addr(ns.a), parse_addr(ns.b), host=ns.host, port_a=ns.port_a,
                  port_b=ns.port_b, seed=ns.seed)
    await relay.start()
    relay.set("both", loss=ns.loss, dup=ns.dup, reorder=ns.reorder, delay=ns.delay,
              jitter=ns.jitter, corrupt=ns.corrupt, corrupt_mode=ns.corrupt_mode)
    if ns.control:
        await relay.serve_control(ns.control)
    print(json.dumps({"a": relay.addr_a, "b": relay.addr_b}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await relay.close()
        if ns.control:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ns.control)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.tools.impair",
                                description="UDP impairment relay between two tipcd bearers")
    p.add_argument("--a", required=True, help="node A's UDP address ip:port")
    p.add_argument("--b", required=True, help="node B's UDP address ip:port")
    p.add_argument("--host", default="127.0.0.1", help="relay's own IP")
    p.add_argument("--port-a", type=int, default=0, help="port node A sends to")
    p.add_argument("--port-b", type=int, default=0, help="port node B sends to")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--control", help="unix socket path for JSON-line control")
    _imp_args(p)
    ns = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(ns))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A tiny in-process stand-in for tipcd: the real ClientServer over a fake SocketLayer.

Why: the client transport's own behaviour (framing, errno mapping, readiness, backpressure,
bad clients) must be testable without a TIPC stack -- and deterministically: ``congested``
makes the fake's sendto answer False until the test releases it, which is how the real
layer reports link/connection congestion.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tipcpy.runtime.clientsrv import ClientServer
from tipcpy.runtime.guard import Guard

NODE = 0x01001001


@dataclass(frozen=True)
class Deliver:
    port: int
    data: bytes
    src: tuple[int, int]
    dest: tuple[int, int, int] | None = None
    errcode: int = 0
    returned: bool = False
    syn: bool = False


@dataclass(frozen=True)
class Wakeup:
    port: int


class FakeLayer:
    """Connectionless only: bind (ranges), sendto by name/socket address, loopback."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}                 # port -> sotype
        self.binds: list[tuple[int, int, int, int]] = []  # type, lower, upper, port
        self.events: list[Any] = []
        self.next = 1000
        self.congested = False
        self.blocked: set[int] = set()
        self.consumed_bytes = 0
        self.consumed_msgs = 0
        self.sent = 0
        self.opts: dict[tuple[int, int], int] = {}
        self.default: dict[int, tuple[int, ...]] = {}

    def open(self, sotype: int, now: float) -> int:
        self.next += 1
        self.ports[self.next] = sotype
        return self.next

    def close(self, port: int, now: float) -> None:
        self.ports.pop(port, None)
        self.binds = [b for b in self.binds if b[3] != port]

    def bind(self, port: int, addr: tuple[int, ...], now: float) -> None:
        if addr[1] < 64:
            raise OSError(errno.EACCES, "reserved")
        self.binds.append((addr[1], addr[2], addr[3], port))

    def connect(self, port: int, addr: tuple[int, ...], now: float) -> None:
        if self.ports[port] in (1, 5):
            raise OSError(errno.EOPNOTSUPP, "fake layer: no connections")
        self.default[port] = addr

    def listen(self, port: int, backlog: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "fake layer: no connections")

    def release(self) -> None:
        self.congested = False
        for p in sorted(self.blocked):
            self.events.append(Wakeup(p))
        self.blocked.clear()

    def sendto(self, port: int, addr: tuple[int, ...] | None, data: bytes, now: float) -> bool:
        if self.congested:
            self.blocked.add(port)
            return False
        if addr is None:
            addr = self.default.get(port)
            if addr is None:
                raise OSError(errno.EDESTADDRREQ, "no destination")
        if addr[0] == 3:
            dests = [addr[1]] if addr[1] in self.ports else []
            dest = None
        else:
            inst = addr[2]
            dests = [b[3] for b in self.binds if b[0] == addr[1] and b[1] <= inst <= b[2]]
            dest = (addr[1], inst, inst)
        if not dests:
            raise OSError(errno.EHOSTUNREACH, f"no binding for {{{addr[1]},{addr[2]}}}")
        self.sent += 1
        self.events.append(Deliver(dests[0], data, (port, NODE), dest))
        return True

    def consumed(self, port: int, nbytes: int, now: float, messages: int | None = None
                 ) -> None:
        self.consumed_bytes += nbytes
        self.consumed_msgs += messages or 0

    def shutdown(self, port: int, how: int, now: float) -> None:
        raise OSError(errno.ENOTCONN, "not connected")

    def setsockopt(self, port: int, opt: int, value: int) -> None:
        self.opts[(port, opt)] = value

    def getsockopt(self, port: int, opt: int) -> int:
        return self.opts.get((port, opt), 0)

    def getsockname(self, port: int) -> tuple[int, ...]:
        return (3, port, NODE, 0)

    def getpeername(self, port: int) -> tuple[int, ...]:
        raise OSError(errno.ENOTCONN, "not connected")

    def take_events(self) -> list[Any]:
        ev, self.events = self.events, []
        return ev


class FakeStack:
    def __init__(self) -> None:
        self.sockets = FakeLayer()
        self.own_addr = NODE


class FakeRuntime:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stack = FakeStack()
        self.after_pump: list[Any] = []
        self.guard = Guard(loop)       # the real one: containment is what is under test

    def now(self) -> float:
        return self.loop.time()

    def pump(self) -> None:
        for fn in self.after_pump:
            fn()


class FakeDaemon:
    """ClientServer + FakeLayer on an asyncio loop in a thread; ``run_dir`` for clients."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.loop = asyncio.new_event_loop()
        self.runtime = FakeRuntime(self.loop)
        self.server = ClientServer(run_dir / "tipc.sock", self.runtime)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def layer(self) -> FakeLayer:
        return self.runtime.stack.sockets

    def call(self, fn: Any, *args: Any) -> Any:
        """Run fn in the loop thread (and pump), wait for its result."""
        async def run() -> Any:
            r = fn(*args)
            self.runtime.pump()
            return r
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def start(self) -> FakeDaemon:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

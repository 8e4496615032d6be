"""In-process checks of the runtime's containment and bounded-work machinery (issue 12):
the timer survives a failing tick, datagrams deferred to later loop turns reach the Stack
in the same order as without deferral (the twin of the plain path), and the event-stream
budget refuses with the right errno."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any

import pytest

from tipcpy.runtime import runtime as rt_mod
from tipcpy.runtime.budget import MAX_STREAMS, STREAM_QUEUE_MAX, Budget
from tipcpy.runtime.control import ControlError
from tipcpy.runtime.runtime import Runtime


class FakeBearer:
    name = "udp:t"

    def send(self, maddr: Any, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class ScriptedStack:
    """Just what Runtime drives: receive/tick/next_deadline/take_*; records input."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_fails: bool = False,
                 cost: float = 0.0) -> None:
        self.loop = loop
        self.got: list[bytes] = []
        self.ticks = 0
        self.tick_fails = tick_fails
        self.cost = cost

    def receive(self, bid: int, data: bytes, now: float) -> None:
        if self.cost:
            end = time.perf_counter() + self.cost
            while time.perf_counter() < end:
                pass
        if data == b"boom":
            raise KeyError("a bug on the receive path")
        self.got.append(data)

    def tick(self, now: float) -> None:
        self.ticks += 1
        if self.tick_fails:
            raise TypeError("a bug in a timer")

    def next_deadline(self) -> float | None:
        return self.loop.time() + 0.01

    def take_transmits(self) -> list[Any]:
        return []

    def take_events(self) -> list[Any]:
        return []


def _runtime(loop: asyncio.AbstractEventLoop, stack: ScriptedStack) -> Runtime:
    r = Runtime(stack, loop)  # type: ignore[arg-type]
    r.bearers[1] = FakeBearer()  # type: ignore[assignment]
    r.by_name["udp:t"] = 1
    return r


def test_timer_keeps_firing_when_tick_raises(caplog: pytest.LogCaptureFixture) -> None:
    """Defect 1's mechanism: an exception in the timer callback used to stop the node's
    timers for good. Now it is counted per kind, logged once, and the timer re-arms."""
    async def main() -> tuple[Runtime, ScriptedStack]:
        loop = asyncio.get_running_loop()
        stack = ScriptedStack(loop, tick_fails=True)
        r = _runtime(loop, stack)
        r.pump()                                  # arms the timer
        await asyncio.sleep(0.2)
        r.close()
        return r, stack

    with caplog.at_level(logging.ERROR, logger="tipcpy.daemon"):
        r, stack = asyncio.run(main())
    assert stack.ticks >= 5
    assert r.guard.errors == {"timer: TypeError": stack.ticks}
    assert sum("unexpected TypeError in timer" in m for m in caplog.messages) == 1


def test_receive_error_is_contained_and_counted() -> None:
    async def main() -> tuple[Runtime, ScriptedStack]:
        loop = asyncio.get_running_loop()
        stack = ScriptedStack(loop)
        r = _runtime(loop, stack)
        r.receive_batch(1, [(b"a", None), (b"boom", None), (b"b", None)])
        await asyncio.sleep(0.01)
        r.close()
        return r, stack

    r, stack = asyncio.run(main())
    assert stack.got == [b"a", b"b"]
    assert r.counters.rx_errors == 1
    assert r.guard.errors == {"stack.receive: KeyError": 1}


def _feed(budget: float, cost: float) -> tuple[list[bytes], Runtime]:
    """Three bearer batches of 120 datagrams, the second arriving while the first is
    still deferred; what the Stack saw, in order."""
    async def main() -> tuple[list[bytes], Runtime]:
        loop = asyncio.get_running_loop()
        stack = ScriptedStack(loop, cost=cost)
        r = _runtime(loop, stack)
        batches = [[(f"{b}:{i}".encode(), None) for i in range(120)] for b in range(3)]
        r.receive_batch(1, batches[0])
        r.receive_batch(1, batches[1])           # same turn: queued behind the rest
        await asyncio.sleep(0)
        r.receive_batch(1, batches[2])
        for _ in range(400):
            if len(stack.got) == 360:
                break
            await asyncio.sleep(0)
        r.close()
        return stack.got, r

    old = rt_mod.TURN_BUDGET
    rt_mod.TURN_BUDGET = budget
    try:
        return asyncio.run(main())
    finally:
        rt_mod.TURN_BUDGET = old


def test_deferred_datagrams_equal_the_plain_path() -> None:
    """Twin test: with a tiny per-turn budget (datagrams spread over many loop turns)
    the Stack sees exactly what it sees when every batch is handled at once."""
    plain, r_plain = _feed(budget=10.0, cost=0.0)
    spread, r_spread = _feed(budget=0.001, cost=0.0002)
    assert len(plain) == 360
    assert spread == plain
    assert r_plain.counters.rx_deferred_turns == 0
    assert r_spread.counters.rx_deferred_turns > 3


def test_stream_budget_refusals() -> None:
    async def main() -> None:
        b = Budget("event streams", 50)
        q = b.queue()
        for i in range(50):
            q.put(i)
        assert b.used == 50 and await q.get() == 0
        q.put(50)
        q.put(51)                     # over the cap: the stream ends with ENOBUFS
        with pytest.raises(ControlError) as ei:
            while True:
                await q.get()
        assert ei.value.errno == errno.ENOBUFS
        assert b.used == 0 and b.refused_overflow == 1
        q.close()
        assert b.streams == 0
        qs = [b.queue() for _ in range(MAX_STREAMS)]
        with pytest.raises(ControlError) as ei:
            b.queue()
        assert ei.value.errno == errno.EMFILE
        for x in qs:
            x.close()
        big = Budget("event streams", 10 * STREAM_QUEUE_MAX)
        q = big.queue()
        for i in range(STREAM_QUEUE_MAX + 1):     # one stream's share
            q.put(i)
        assert q.overflowed and big.used == 0

    asyncio.run(main())

"""Budgets shared by all event streams: a cap on the events queued, unread, for them.

Why: a ``tipc events`` client that never reads would otherwise make the daemon keep
every event for it (28 MB per stream at the old 100k cap, any number of streams).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections import deque
from typing import Any

from .control import ControlError

log = logging.getLogger("tipcpy.daemon")


MAX_STREAMS = 64
"""Event streams (``tipc events``) open at once."""
STREAM_QUEUE_MAX = 20_000
"""Unread events one stream may hold (a share of the global budget)."""


class Budget:
    """A cap on the events queued, unread, over all event streams together.

    Why: a ``tipc events`` client that never reads would otherwise make the daemon keep
    every event for it (28 MB per stream at the old 100k cap, any number of streams). A
    stream over its share or over the global cap is ended with ENOBUFS (the client
    learns it lost events, as a kernel TIPC subscriber does when its queue overflows),
    and a stream beyond MAX_STREAMS is refused with EMFILE."""

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.used = 0
        self.high = 0
        self.streams = 0
        self.refused_overflow = 0
        self.refused_too_many = 0

    def queue(self) -> BudgetQueue:
        if self.streams >= MAX_STREAMS:
            self.refused_too_many += 1
            raise ControlError(errno.EMFILE, f"tipcd serves at most {MAX_STREAMS} event "
                               "streams at once")
        self.streams += 1
        return BudgetQueue(self)

    def as_dict(self) -> dict[str, int]:
        return {"streams": self.streams, "queued": self.used, "queued_high": self.high,
                "cap": self.cap, "refused_overflow": self.refused_overflow,
                "refused_too_many": self.refused_too_many}


class BudgetQueue:
    """One stream's queue inside a :class:`Budget` (put never blocks, get awaits)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.items: deque[Any] = deque()
        self.overflowed = False
        self.closed = False
        self._wake = asyncio.Event()

    def put(self, item: Any) -> None:
        if self.overflowed or self.closed:
            return
        b = self.budget
        if len(self.items) >= STREAM_QUEUE_MAX or b.used >= b.cap:
            self.overflowed = True
            b.refused_overflow += 1
            log.warning("an event stream overflowed (%d events unread, %d for all "
                        "streams): ending it with ENOBUFS", len(self.items), b.used)
            self._drop_all()
            self._wake.set()
            return
        self.items.append(item)
        b.used += 1
        if b.used > b.high:
            b.high = b.used
        self._wake.set()

    async def get(self) -> Any:
        while not self.items:
            if self.overflowed:
                raise ControlError(errno.ENOBUFS, "event stream overflowed: tipcd dropped "
                                   "it because its events were not read fast enough")
            self._wake.clear()
            await self._wake.wait()
        self.budget.used -= 1
        return self.items.popleft()

    def _drop_all(self) -> None:
        self.budget.used -= len(self.items)
        self.items.clear()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._drop_all()
            self.budget.streams -= 1

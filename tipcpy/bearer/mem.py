"""In-process bearer (media ``mem``) for real-time asyncio tests of several Stacks.

A :class:`MemHub` is a broadcast domain (think: one Ethernet segment) living in the event
loop; each :class:`MemBearer` attached to it gets a locally administered MAC
``02:00:00:00:hh:nn``. Frames are delivered with ``loop.call_soon`` — never re-entrantly —
so the runtime sees the same "batch per wakeup" shape as with real sockets, and ordering
per sender/receiver pair is FIFO. Addresses are Ethernet-shaped so discovery carries them
as ``EthMediaAddr`` exactly as on a real ``eth`` bearer.

The deterministic, virtual-time network for simulations is ``tipcpy.sim``; this hub is for
tests that want the real asyncio runtime without sockets.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from .base import Bearer, einval

_hub_ids = itertools.count(1)


class MemHub:
    """A shared medium; ``drop`` lets a test cut it (all frames lost while True)."""

    def __init__(self, mtu: int = 1500) -> None:
        self.hub_id = next(_hub_ids) & 0xFF
        self.mtu = mtu
        self.drop = False
        self._ports: dict[bytes, MemBearer] = {}
        self._next = itertools.count(1)

    def _attach(self, bearer: MemBearer) -> bytes:
        n = next(self._next)
        if n > 0xFFFF:
            raise einval("mem hub is full")
        mac = bytes([0x02, 0, 0, self.hub_id, n >> 8, n & 0xFF])
        self._ports[mac] = bearer
        return mac

    def _detach(self, mac: bytes) -> None:
        self._ports.pop(mac, None)

    def _send(self, src: MemBearer, dest: bytes | None, data: bytes) -> None:
        if self.drop:
            return
        if dest is None:
            targets = [b for m, b in self._ports.items() if m != src.mac]
        else:
            b = self._ports.get(bytes(dest))
            targets = [b] if b is not None and b is not src else []
        for b in targets:
            b._enqueue(data, src.mac)


class MemBearer(Bearer):
    """One Stack's attachment to a :class:`MemHub`."""

    def __init__(self, hub: MemHub, name: str = "mem0",
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        bname = name if ":" in name else f"{self.MEDIA_NAME}:{name}"
        super().__init__(name=bname, media=self.MEDIA_NAME, mtu=hub.mtu)
        self.hub = hub
        self.mac = b""
        self._loop = loop
        self._inbox: list[tuple[bytes, Any]] = []
        self._scheduled = False
        self._open = False

    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or self._loop or asyncio.get_event_loop()
        self.mac = self.hub._attach(self)
        self._open = True

    def media_addr(self) -> bytes:
        return self.mac

    def send(self, dest: bytes | None, data: bytes) -> None:
        if not self._open:
            return
        self.counters.tx_packets += 1
        self.counters.tx_bytes += len(data)
        self.hub._send(self, dest, bytes(data))

    def _enqueue(self, data: bytes, src: bytes) -> None:
        if not self._open:
            return
        self._inbox.append((data, src))
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        batch, self._inbox = self._inbox, []
        if self._open:
            self._deliver(batch)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.hub._detach(self.mac)

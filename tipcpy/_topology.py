"""The topology service's structs for the asyncio APIs (tipcpy.aio.subscribe and the
embedded node's subscribe): ``struct tipc_subscr`` out, ``struct tipc_event`` in.

A module of its own so that tipcpy.aio (which re-exports the embedded node) and
tipcpy.node (which subscribes too) share it without importing each other.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from tipcpy import socket as tsocket

__all__ = ["EVENT", "EVENT_SIZE", "SUBSCR", "TopologyEvent"]

SUBSCR = struct.Struct("=5I8s")     # struct tipc_subscr, host byte order (28 bytes)
EVENT = struct.Struct("=5I")        # head of struct tipc_event (+ the 28-byte subscr)
EVENT_SIZE = 48
_EVENT_NAMES = {tsocket.TIPC_PUBLISHED: "published", tsocket.TIPC_WITHDRAWN: "withdrawn",
                tsocket.TIPC_SUBSCR_TIMEOUT: "timeout"}


@dataclass(frozen=True)
class TopologyEvent:
    """One ``struct tipc_event`` from the topology server."""

    event: int              # TIPC_PUBLISHED / TIPC_WITHDRAWN / TIPC_SUBSCR_TIMEOUT
    found_lower: int
    found_upper: int
    port: int               # the binding socket's port ({0,0} on timeout)
    node: int
    type: int               # the subscription's range
    lower: int
    upper: int
    handle: bytes

    @property
    def event_name(self) -> str:
        return _EVENT_NAMES.get(self.event, str(self.event))

    @classmethod
    def decode(cls, raw: bytes) -> TopologyEvent:
        if len(raw) != EVENT_SIZE:
            raise ValueError(f"topology event of {len(raw)} bytes, expected {EVENT_SIZE}")
        ev, lo, up, port, node = EVENT.unpack_from(raw)
        styp, slo, sup, _tmo, _flt, handle = SUBSCR.unpack_from(raw, 20)
        return cls(ev, lo, up, port, node, styp, slo, sup, handle)


class _SeqpacketLike(Protocol):
    async def connect(self, addr: tuple[int, int, int, int]) -> None: ...
    async def send(self, data: bytes) -> int: ...
    async def recv(self, bufsize: int) -> bytes: ...
    def close(self) -> None: ...


async def topology_events(s: _SeqpacketLike, type: int, lower: int, upper: int, filter: int,
                          timeout_ms: int, handle: bytes) -> AsyncIterator[TopologyEvent]:
    """One subscription over the SEQPACKET socket ``s`` (closed at the end): shared by the
    daemon's sockets (tipcpy/aio.py) and the embedded node's (tipcpy/node.py)."""
    try:
        await s.connect((tsocket.TIPC_ADDR_NAME, tsocket.TIPC_TOP_SRV, tsocket.TIPC_TOP_SRV,
                         0))
        await s.send(SUBSCR.pack(type, lower, upper, timeout_ms & 0xFFFFFFFF, filter,
                                 handle[:8].ljust(8, b"\0")))
        while True:
            try:
                raw = await s.recv(EVENT_SIZE)
            except ConnectionResetError:
                return
            if not raw:
                return
            ev = TopologyEvent.decode(raw)
            yield ev
            if ev.event == tsocket.TIPC_SUBSCR_TIMEOUT:
                return
    finally:
        s.close()

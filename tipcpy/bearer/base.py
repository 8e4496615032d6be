"""Common shape of the runtime's bearers (udp, eth, mem).

A bearer is the runtime's attachment to one medium. It owns a file descriptor (or, for
``mem``, a hub slot), hands every received frame to the runtime in *batches* (so the
runtime can feed the whole batch to the Stack and flush the resulting transmits once), and
sends frames without awaiting: TIPC links retransmit, so a send that would block is
queued a little and then dropped rather than stalling the event loop.

Addresses: bearers speak their *native* address form (``(ip, port)`` for UDP, a 6-byte MAC
for Ethernet). The conversion to/from the wire's media address objects (``UdpMediaAddr``,
``EthMediaAddr``) lives in :mod:`tipcpy.bearer.addr` so only one place depends on the codec.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Called with the bearer and the frames read in one wakeup (each: payload, native source).
BatchCallback = Callable[["Bearer", list[tuple[bytes, Any]]], None]


class BearerError(OSError):
    """A bearer could not be opened or used; ``errno`` + a message a human can act on.

    It is an ``OSError`` so the control server can pass ``errno`` straight to the CLI,
    which prints it the way iproute2 prints kernel answers.
    """

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:  # OSError's default adds "[Errno N]" noise
        return self.message


def einval(message: str) -> BearerError:
    """Shorthand for the most common configuration error."""
    return BearerError(_errno.EINVAL, message)


@dataclass
class BearerCounters:
    """Per-bearer I/O counters, shown by ``bearer.get`` and used by tests."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0      # send buffer full / unreachable: the link layer will retransmit
    tx_errors: int = 0
    rx_errors: int = 0
    learned_peers: int = 0   # UDP replicast peers learned from LINK_CONFIG

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Bearer:
    """Base class: name/media/mtu plus the callback plumbing shared by all media."""

    name: str                      # full TIPC bearer name, e.g. "udp:b0", "eth:veth0"
    media: str                     # "udp" | "eth" | "mem"
    mtu: int = 1500
    counters: BearerCounters = field(default_factory=BearerCounters)
    on_batch: BatchCallback | None = None
    priority: int | None = None
    tolerance: int | None = None
    window: int | None = None

    @property
    def if_name(self) -> str:
        """The part after ``media:`` — what link names use (``n1:b0-n2:b0``)."""
        return self.name.split(":", 1)[1] if ":" in self.name else self.name

    def _deliver(self, batch: list[tuple[bytes, Any]]) -> None:
        if not batch:
            return
        for data, _src in batch:
            self.counters.rx_packets += 1
            self.counters.rx_bytes += len(data)
        if self.on_batch is not None:
            self.on_batch(self, batch)

    # Interface implemented by subclasses ------------------------------------------------
    def open(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def send(self, dest: Any, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def media_addr(self) -> Any:  # pragma: no cover - interface
        """Own address in native form (advertised in discovery)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Description for ``bearer.get`` / ``bearer.list``."""
        return {"name": self.name, "media": self.media, "mtu": self.mtu,
                "counters": self.counters.as_dict()}

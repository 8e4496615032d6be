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

import asyncio
import collections
import errno as _errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tipcpy.wire.consts import TIPC_MEDIA_TYPE_ETH, TIPC_VERSION, User
from tipcpy.wire.items import MediaAddrError
from tipcpy.wire.msg import USER_MASK, USER_SHIFT, VERSION_MASK, VERSION_SHIFT

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
    rx_bad_media: int = 0    # LINK_CONFIG advertising a media address we cannot use

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


#: version 2 + user LINK_CONFIG as they sit in the first byte of a packet (w0 bits 31..25)
LINK_CONFIG_BYTE0 = ((TIPC_VERSION << (VERSION_SHIFT - 24))
                     | (int(User.LINK_CONFIG) & USER_MASK) << (USER_SHIFT - 24))
USER_BYTE0_MASK = (VERSION_MASK << (VERSION_SHIFT - 24)) | (USER_MASK << (USER_SHIFT - 24))
#: byte offset of the media type in a LINK_CONFIG (media info at w5, type at its byte 3)
MEDIA_TYPE_OFFSET = 23


def foreign_media(data: bytes, media_type: int) -> bool:
    """True for a LINK_CONFIG whose media address is not of ``media_type``.

    The kernel's msg2addr refuses such a discovery message per bearer; here the bearer's
    read path drops it, so no InfiniBand (or unknown, or other-medium) address can reach
    the Stack and come back as a destination this bearer cannot send to.
    """
    return (len(data) > MEDIA_TYPE_OFFSET and data[0] & USER_BYTE0_MASK == LINK_CONFIG_BYTE0
            and data[MEDIA_TYPE_OFFSET] != media_type)


@dataclass
class Bearer:
    """Base class: name/media/mtu plus the callback plumbing shared by all media."""

    name: str                      # full TIPC bearer name, e.g. "udp:b0", "eth:veth0"
    media: str                     # a MEDIA_NAME: "udp" | "eth" (mem poses as eth)
    mtu: int = 1500
    counters: BearerCounters = field(default_factory=BearerCounters)
    on_batch: BatchCallback | None = None
    priority: int | None = None
    tolerance: int | None = None
    window: int | None = None

    #: media name (bearer name prefix) and the media type byte of the addresses this
    #: bearer advertises and can send to; tipcpy.bearer.media keys its table on them
    MEDIA_NAME: ClassVar[str] = "eth"
    MEDIA_TYPE: ClassVar[int] = TIPC_MEDIA_TYPE_ETH

    @property
    def if_name(self) -> str:
        """The part after ``media:`` — what link names use (``n1:b0-n2:b0``)."""
        return self.name.split(":", 1)[1] if ":" in self.name else self.name

    def _deliver(self, batch: list[tuple[bytes, Any]]) -> None:
        if not batch:
            return
        mt = self.MEDIA_TYPE
        keep = [fr for fr in batch if not foreign_media(fr[0], mt)]
        self.counters.rx_bad_media += len(batch) - len(keep)
        for data, _src in keep:
            self.counters.rx_packets += 1
            self.counters.rx_bytes += len(data)
        if keep:
            self._hand_over(keep)

    def _hand_over(self, batch: list[tuple[bytes, Any]]) -> None:
        """Give a batch to the runtime; a media address it cannot use is counted, dropped.

        (Frames with foreign media types are already filtered out; this catches one that
        got in by another way, so a peer's packet can never raise out of a read callback.)
        """
        if self.on_batch is None:
            return
        try:
            self.on_batch(self, batch)
        except MediaAddrError:
            self.counters.rx_bad_media += 1

    # Interface implemented by subclasses ------------------------------------------------
    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Acquire the medium and start delivering to ``on_batch`` on ``loop``.

        ``loop`` defaults to the one given at construction, else the running loop.
        """
        raise NotImplementedError  # pragma: no cover - interface

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


#: frames waiting for a writable socket before we drop (the link layer retransmits)
SENDQ_MAX = 1024


class QueuedSender:
    """Non-blocking ``sendto`` with a short queue, shared by the udp and eth bearers.

    A send that would block is queued and the loop's writer callback drains the queue;
    past ``SENDQ_MAX`` frames are dropped and counted (TIPC links retransmit). The host
    class provides ``_sock``, ``_loop`` and ``counters`` and calls ``_init_sendq()``.
    """

    _sock: Any
    _loop: Any
    counters: BearerCounters

    def _init_sendq(self) -> None:
        self._sendq: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._writer_armed = False

    def _sendto(self, data: bytes, addr: Any) -> None:
        """Send now, or queue behind what is already waiting."""
        if self._sendq:
            self._queue(data, addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            return
        except OSError:
            # unreachable, refused by a previous ICMP, message too long...: the link layer
            # supervises and retransmits; we count and carry on.
            self.counters.tx_errors += 1
            return
        self.counters.tx_packets += 1
        self.counters.tx_bytes += len(data)

    def _queue(self, data: bytes, addr: Any) -> None:
        if len(self._sendq) >= SENDQ_MAX:
            self.counters.tx_dropped += 1
            return
        self._sendq.append((data, addr))
        if not self._writer_armed and self._loop is not None and self._sock is not None:
            self._loop.add_writer(self._sock.fileno(), self._on_writable)
            self._writer_armed = True

    def _on_writable(self) -> None:
        sock = self._sock
        while self._sendq and sock is not None:
            data, addr = self._sendq[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters.tx_errors += 1
            else:
                self.counters.tx_packets += 1
                self.counters.tx_bytes += len(data)
            self._sendq.popleft()
        if self._writer_armed and self._loop is not None and sock is not None:
            self._loop.remove_writer(sock.fileno())
        self._writer_armed = False

    def _close_socket(self) -> None:
        """Unregister, push out what is queued (the RESETs of a polite disable), close."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            if self._writer_armed:
                self._loop.remove_writer(sock.fileno())
                self._writer_armed = False
        while self._sendq:
            data, addr = self._sendq.popleft()
            try:
                sock.sendto(data, addr)
            except OSError:
                break
        sock.close()

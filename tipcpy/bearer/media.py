"""The media TIPC knows, in one table: what each needs and what it defaults to.

Everything that differs between ``udp``, ``eth`` and ``ib`` lives here (the bearer
class, the wire address type and media type byte, the defaults ``tipc media get``
shows, the CLI keys that name and configure a bearer, the ethertype), so adding a
medium is one entry plus its bearer module, not an edit in every layer that used to
carry its own ``("udp", "eth", "ib")`` tuple.

The converters between a bearer's native address (``(ip, port)``, a 6-byte MAC) and the
wire's media address objects are here too: they are the only place bearers meet the
codec's address types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tipcpy.wire.consts import (
    ETH_P_TIPC,
    TIPC_MEDIA_TYPE_IB,
)
from tipcpy.wire.items import EthMediaAddr, MediaAddrError, RawMediaAddr, UdpMediaAddr

from .base import Bearer
from .eth import EthBearer
from .udp import MTU_IPV4, UDP_PORT_DEFAULT, UdpBearer

__all__ = ["Media", "MEDIA", "MEDIA_NAMES", "MEDIA_BY_TYPE", "get", "MediaAddrError",
           "to_media_addr", "from_media_addr", "COMMON_KEYS", "bearer_name_of"]

#: CLI/control keys every medium takes on ``bearer enable`` (besides its own keys)
COMMON_KEYS = ("domain", "priority", "tolerance", "window", "mtu")


def _udp_to_wire(native: Any) -> UdpMediaAddr:
    ip, port = native
    return UdpMediaAddr(ip=str(ip), port=int(port))


def _udp_from_wire(maddr: Any) -> tuple[str, int]:
    if not isinstance(maddr, UdpMediaAddr):
        raise MediaAddrError("media_type", 3, "expected 3 (udp)", _type_of(maddr))
    return (str(maddr.ip), int(maddr.port))


def _eth_to_wire(native: Any) -> EthMediaAddr:
    return EthMediaAddr(mac=bytes(native))


def _eth_from_wire(maddr: Any) -> bytes:
    if not isinstance(maddr, EthMediaAddr):
        raise MediaAddrError("media_type", 3, "expected 1 (eth)", _type_of(maddr))
    return bytes(maddr.mac)


def _unsupported(maddr: Any) -> Any:
    raise MediaAddrError("media_type", 3, "no bearer for this media", _type_of(maddr))


def _type_of(maddr: Any) -> int | str:
    t = getattr(maddr, "media_type", None)
    if isinstance(t, int):
        return t
    for m in MEDIA.values():
        if isinstance(maddr, m.addr_type):
            return m.media_type
    return type(maddr).__name__


@dataclass(frozen=True, slots=True)
class Media:
    """One medium: kernel media name, wire type byte, bearer class and defaults."""

    name: str                                # "udp", "eth", "ib" (bearer name prefix)
    media_type: int                          # byte 3 of the 32-byte media info
    bearer_class: type[Bearer] | None        # None: known on the wire, not supported
    addr_type: type                          # the wire codec's media address class
    name_key: str                            # control/CLI key completing "media:NAME"
    keys: tuple[str, ...]                    # media-specific control/CLI keys
    to_wire: Callable[[Any], Any]            # native address -> wire media address
    from_wire: Callable[[Any], Any]          # wire media address -> native address
    priority: int = 10                       # kernel media defaults (tipc media get)
    tolerance: int = 1500
    window: int = 50
    mtu: int | None = None                   # settable MTU default; None = device MTU
    default_port: int | None = None
    ethertype: int | None = None

    @property
    def mtu_settable(self) -> bool:
        """``tipc media set mtu`` / ``bearer set mtu`` exist only for UDP (kernel)."""
        return self.mtu is not None

    @property
    def supported(self) -> bool:
        return self.bearer_class is not None

    def defaults(self) -> dict[str, int]:
        """What ``media.get`` shows on Linux 6.1 (eth has no mtu property)."""
        d = {"priority": self.priority, "tolerance": self.tolerance, "window": self.window}
        if self.mtu is not None:
            d["mtu"] = self.mtu
        return d

    def bearer_name(self, value: str) -> str:
        return f"{self.name}:{value}"


MEDIA: dict[str, Media] = {
    m.name: m
    for m in (
        Media(UdpBearer.MEDIA_NAME, UdpBearer.MEDIA_TYPE, UdpBearer, UdpMediaAddr, "name",
              ("name", "localip", "localport", "remoteip", "remoteport", "device"),
              _udp_to_wire, _udp_from_wire, mtu=MTU_IPV4, default_port=UDP_PORT_DEFAULT),
        Media(EthBearer.MEDIA_NAME, EthBearer.MEDIA_TYPE, EthBearer, EthMediaAddr, "device", ("device",),
              _eth_to_wire, _eth_from_wire, ethertype=ETH_P_TIPC),
        Media("ib", TIPC_MEDIA_TYPE_IB, None, RawMediaAddr, "device", ("device",),
              _unsupported, _unsupported),
    )
}
MEDIA_NAMES: tuple[str, ...] = tuple(MEDIA)
MEDIA_BY_TYPE: dict[int, Media] = {m.media_type: m for m in MEDIA.values()}


def get(name: str) -> Media:
    """The medium called ``name``; KeyError if there is none."""
    return MEDIA[name]


def bearer_name_of(media: str, args: Mapping[str, Any]) -> str | None:
    """``media`` plus its naming key from ``args`` (udp: ``name``; eth, ib: ``device``)
    -> the kernel's bearer name ``MEDIA:VALUE``; None for an unknown medium or a
    missing key, so each caller words its own error (iproute2's differ by command)."""
    m = MEDIA.get(media)
    if m is None or not args.get(m.name_key):
        return None
    return m.bearer_name(str(args[m.name_key]))


def to_media_addr(media: str, native: Any) -> Any:
    """Native address of a bearer of ``media`` -> wire media address."""
    return MEDIA[media].to_wire(native)


def from_media_addr(maddr: Any) -> Any:
    """Wire media address (None = broadcast) -> native address for ``Bearer.send``.

    A media address of a type no bearer here can send to (InfiniBand, a type byte we do
    not know, an object that is no media address) raises :class:`MediaAddrError`, a
    DecodeError, which the read and transmit paths count and drop.
    """
    if maddr is None:
        return None
    if isinstance(maddr, UdpMediaAddr):
        return (str(maddr.ip), int(maddr.port))
    if isinstance(maddr, EthMediaAddr):
        return bytes(maddr.mac)
    if isinstance(maddr, tuple | bytes):   # already native (fakes in tests)
        return maddr
    raise MediaAddrError("media_type", 3, f"unsupported media address {maddr!r}",
                         _type_of(maddr))

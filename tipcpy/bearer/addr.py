"""Native bearer addresses <-> the wire codec's media address objects.

The Stack (and discovery) speak ``UdpMediaAddr(ip, port)`` / ``EthMediaAddr(mac)`` from
``tipcpy.wire.items``; bearers speak ``(ip, port)`` tuples and 6-byte MACs. Keeping the
translation here means the bearers stay usable without the codec and only this file
changes if the codec's types do.
"""

from __future__ import annotations

from typing import Any


def to_media_addr(media: str, native: Any) -> Any:
    """Native address of a bearer of ``media`` -> wire media address."""
    from tipcpy.wire.items import EthMediaAddr, UdpMediaAddr

    if media == "udp":
        ip, port = native
        return UdpMediaAddr(ip=str(ip), port=int(port))
    return EthMediaAddr(mac=bytes(native))


def from_media_addr(maddr: Any) -> Any:
    """Wire media address (or None = broadcast) -> native address for ``Bearer.send``."""
    if maddr is None:
        return None
    if hasattr(maddr, "ip"):
        return (str(maddr.ip), int(maddr.port))
    if hasattr(maddr, "mac"):
        return bytes(maddr.mac)
    if isinstance(maddr, tuple | bytes):   # already native (fakes in tests)
        return maddr
    raise TypeError(f"unsupported media address {maddr!r}")

"""Fixed-layout structures carried inside TIPC messages.

Name distributor items, discovery media addresses, Gap-ACK blocks of link STATE
messages and the topology server's subscription/event records.  All are pure
pack/unpack helpers; every unpack of untrusted bytes raises :class:`DecodeError`.

``DecodeError`` lives here because this is the leaf module of the codec (msg.py
imports it); it is re-exported as ``tipcpy.wire.DecodeError``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from tipcpy.wire.consts import (
    DISTR_ITEM_SIZE,
    ETH_P_IP,
    ETH_P_IPV6,
    MAX_GAP_ACK_BLKS_PER_KIND,
    MEDIA_INFO_SIZE,
    TIPC_FILTER_MASK,
    TIPC_MAX_IF_NAME,
    TIPC_MEDIA_TYPE_ETH,
    TIPC_MEDIA_TYPE_IB,
    TIPC_MEDIA_TYPE_UDP,
    UDP_PORT_DEFAULT,
)


class DecodeError(ValueError):
    """Malformed bytes: names the field, its byte offset and why it is wrong.

    Callers count and drop; nothing else may escape from decoding untrusted input.
    ``str(e)`` reads like ``bad hsize 16 at offset 0: must be 24..60``.
    """

    def __init__(self, field: str, offset: int, reason: str, value: object = None) -> None:
        self.field = field
        self.offset = offset
        self.reason = reason
        self.value = value
        if value is None:
            msg = f"bad {field} at offset {offset}: {reason}"
        else:
            msg = f"bad {field} {value} at offset {offset}: {reason}"
        super().__init__(msg)



class MediaAddrError(DecodeError):
    """A media address a bearer cannot use (another medium's type, InfiniBand, junk).

    A DecodeError, so every path that counts and drops malformed input drops it too:
    a peer's discovery message must never be able to raise anything else.
    """

# ---------------------------------------------------------------- distr items
_ITEM = struct.Struct(">5I")


class DistrItem(NamedTuple):
    """One binding in a NAME_DISTRIBUTOR message (struct distr_item, 20 bytes BE).

    The publishing node is the message's orignode, not part of the item.
    """

    type: int
    lower: int
    upper: int
    port: int
    key: int

    def pack(self) -> bytes:
        return _ITEM.pack(self.type, self.lower, self.upper, self.port, self.key)

    @classmethod
    def unpack(cls, buf: bytes | memoryview, offset: int = 0) -> DistrItem:
        if len(buf) - offset < DISTR_ITEM_SIZE:
            raise DecodeError("distr_item", offset, f"need {DISTR_ITEM_SIZE} bytes")
        return cls._make(_ITEM.unpack_from(buf, offset))


def pack_items(items: list[DistrItem] | tuple[DistrItem, ...]) -> bytes:
    """Concatenate items as they appear in a NAME_DISTRIBUTOR payload."""
    return b"".join(_ITEM.pack(*it) for it in items)


def unpack_items(buf: bytes | memoryview, base: int = 0) -> list[DistrItem]:
    """Parse a NAME_DISTRIBUTOR payload; its length must be a multiple of 20.

    ``base`` is the payload's offset in the message, for error messages.
    """
    n, rest = divmod(len(buf), DISTR_ITEM_SIZE)
    if rest:
        raise DecodeError(
            "items", base, f"payload length {len(buf)} is not a multiple of {DISTR_ITEM_SIZE}"
        )
    mk = DistrItem._make
    return [mk(t) for t in _ITEM.iter_unpack(buf)] if n else []


# ---------------------------------------------------------------- media addresses
@dataclass(frozen=True, slots=True)
class UdpMediaAddr:
    """struct udp_media_addr as carried in discovery media info (network order).

    Bytes: 0-2 zero, 3 media type 3, 4-5 proto (0x0800/0x86DD), 6-7 port, 8.. IP.
    It is the address the peer wants its link traffic sent to - not the UDP source.
    """

    ip: str
    port: int = UDP_PORT_DEFAULT

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    @property
    def is_multicast(self) -> bool:
        """The kernel refuses discovery carrying a multicast ("broadcast") address."""
        return ipaddress.ip_address(self.ip).is_multicast

    def to_media_info(self) -> bytes:
        addr = ipaddress.ip_address(self.ip)
        proto = ETH_P_IPV6 if addr.version == 6 else ETH_P_IP
        raw = bytearray(struct.pack(">4xHH", proto, self.port) + addr.packed)
        raw[3] = TIPC_MEDIA_TYPE_UDP
        return bytes(raw) + bytes(MEDIA_INFO_SIZE - len(raw))

    @classmethod
    def from_media_info(cls, buf: bytes | memoryview, base: int = 0) -> UdpMediaAddr:
        if len(buf) < MEDIA_INFO_SIZE:
            raise DecodeError("media_info", base, f"need {MEDIA_INFO_SIZE} bytes")
        if buf[3] != TIPC_MEDIA_TYPE_UDP:
            raise DecodeError("media_type", base + 3, "expected 3 (udp)", buf[3])
        proto, port = struct.unpack_from(">HH", buf, 4)
        if proto == ETH_P_IP:
            ip = str(ipaddress.IPv4Address(bytes(buf[8:12])))
        elif proto == ETH_P_IPV6:
            ip = str(ipaddress.IPv6Address(bytes(buf[8:24])))
        else:
            raise DecodeError("udp_proto", base + 4, "must be 0x0800 or 0x86dd", hex(proto))
        return cls(ip, port)

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.is_ipv6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class EthMediaAddr:
    """Ethernet media info: byte 3 = 1, bytes 4-9 = MAC."""

    mac: bytes

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError("mac must be 6 bytes")

    def to_media_info(self) -> bytes:
        return (
            b"\x00\x00\x00" + bytes([TIPC_MEDIA_TYPE_ETH]) + self.mac + bytes(MEDIA_INFO_SIZE - 10)
        )

    @classmethod
    def from_media_info(cls, buf: bytes | memoryview, base: int = 0) -> EthMediaAddr:
        if len(buf) < MEDIA_INFO_SIZE:
            raise DecodeError("media_info", base, f"need {MEDIA_INFO_SIZE} bytes")
        if buf[3] != TIPC_MEDIA_TYPE_ETH:
            raise DecodeError("media_type", base + 3, "expected 1 (eth)", buf[3])
        return cls(bytes(buf[4:10]))

    @property
    def is_broadcast(self) -> bool:
        return self.mac == b"\xff" * 6

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)


@dataclass(frozen=True, slots=True)
class RawMediaAddr:
    """Media info of a media type we only carry (InfiniBand): type + 28 raw bytes."""

    media_type: int
    value: bytes

    def to_media_info(self) -> bytes:
        v = self.value[: MEDIA_INFO_SIZE - 4]
        return b"\x00\x00\x00" + bytes([self.media_type]) + v + bytes(MEDIA_INFO_SIZE - 4 - len(v))

    @classmethod
    def from_media_info(cls, buf: bytes | memoryview, base: int = 0) -> RawMediaAddr:
        if len(buf) < MEDIA_INFO_SIZE:
            raise DecodeError("media_info", base, f"need {MEDIA_INFO_SIZE} bytes")
        return cls(buf[3], bytes(buf[4:MEDIA_INFO_SIZE]))

    def __str__(self) -> str:
        return f"media{self.media_type}:{self.value.rstrip(bytes(1)).hex()}"


MediaAddr = UdpMediaAddr | EthMediaAddr | RawMediaAddr


def media_addr_from_info(buf: bytes | memoryview, base: int = 0) -> MediaAddr:
    """Parse 32-byte media info by its media type byte; unknown types are an error
    (the kernel's msg2addr rejects them too)."""
    if len(buf) < MEDIA_INFO_SIZE:
        raise DecodeError("media_info", base, f"need {MEDIA_INFO_SIZE} bytes")
    t = buf[3]
    if t == TIPC_MEDIA_TYPE_UDP:
        return UdpMediaAddr.from_media_info(buf, base)
    if t == TIPC_MEDIA_TYPE_ETH:
        return EthMediaAddr.from_media_info(buf, base)
    if t == TIPC_MEDIA_TYPE_IB:
        return RawMediaAddr.from_media_info(buf, base)
    raise DecodeError("media_type", base + 3, "must be 1 (eth), 2 (ib) or 3 (udp)", t)


# ---------------------------------------------------------------- gap ack blocks
class GapAck(NamedTuple):
    """One Gap-ACK block: last in-sequence seqno of a received run, then gap length."""

    ack: int
    gap: int


@dataclass(frozen=True, slots=True)
class GapAckBlocks:
    """struct tipc_gap_ack_blks at the start of a STATE payload (§2.6).

    Wire: be16 len (total bytes), u8 ugack_cnt, u8 bgack_cnt, then the broadcast
    blocks followed by the unicast blocks, each {be16 ack, be16 gap}.
    The empty record ``00 04 00 00`` is what kernels send with no loss.
    """

    bc: tuple[GapAck, ...] = ()
    uc: tuple[GapAck, ...] = ()

    @property
    def ugack_cnt(self) -> int:
        return len(self.uc)

    @property
    def bgack_cnt(self) -> int:
        return len(self.bc)

    @property
    def len(self) -> int:
        return 4 + 4 * (len(self.uc) + len(self.bc))

    def pack(self) -> bytes:
        if len(self.uc) > MAX_GAP_ACK_BLKS_PER_KIND or len(self.bc) > MAX_GAP_ACK_BLKS_PER_KIND:
            raise ValueError("at most 64 gap ack blocks of each kind")
        out = bytearray(struct.pack(">HBB", self.len, len(self.uc), len(self.bc)))
        for blk in self.bc + self.uc:
            out += struct.pack(">HH", blk.ack & 0xFFFF, blk.gap & 0xFFFF)
        return bytes(out)

    @classmethod
    def unpack(cls, buf: bytes | memoryview, base: int = 0) -> GapAckBlocks:
        """Parse; raises DecodeError when len does not match the counts (the kernel
        then ignores the record) or the buffer is too short."""
        if len(buf) < 4:
            raise DecodeError("gap_ack", base, "need 4 bytes for the gap ack header")
        ln, ucnt, bcnt = struct.unpack_from(">HBB", buf, 0)
        if ln != 4 + 4 * (ucnt + bcnt):
            raise DecodeError("gap_ack_len", base, f"does not match {ucnt}+{bcnt} blocks", ln)
        if len(buf) < ln:
            raise DecodeError("gap_ack_len", base, f"exceeds {len(buf)} bytes of payload", ln)
        blocks = [GapAck._make(t) for t in struct.iter_unpack(">HH", bytes(buf[4:ln]))]
        return cls(tuple(blocks[:bcnt]), tuple(blocks[bcnt:]))


# ---------------------------------------------------------------- interface name
def pack_if_name(name: str) -> bytes:
    """16-byte NUL-padded interface name (payload of RESET/ACTIVATE)."""
    raw = name.encode()
    if len(raw) >= TIPC_MAX_IF_NAME:
        raise ValueError(f"interface name {name!r} longer than {TIPC_MAX_IF_NAME - 1} bytes")
    return raw + bytes(TIPC_MAX_IF_NAME - len(raw))


def unpack_if_name(buf: bytes | memoryview) -> str:
    """Read a NUL-terminated name from at most the first 16 bytes (lenient: the
    kernel uses strncpy, so bad bytes are replaced rather than rejected)."""
    raw = bytes(buf[:TIPC_MAX_IF_NAME])
    nul = raw.find(0)
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------- topology server records
def _detect_big_endian(filter_bytes: bytes) -> bool:
    """Mirror the kernel (x86, little-endian host): a subscription is in host order
    if any of PORTS/SERVICE/CANCEL is set when its filter is read natively, else it
    is taken as byte-swapped, i.e. network order."""
    return not (int.from_bytes(filter_bytes, "little") & TIPC_FILTER_MASK)


@dataclass(frozen=True, slots=True)
class Subscr:
    """struct tipc_subscr (28 bytes): {type, lower, upper}, timeout ms, filter, handle."""

    type: int
    lower: int
    upper: int
    timeout: int
    filter: int
    usr_handle: bytes = bytes(8)

    SIZE = 28

    def pack(self, big_endian: bool = True) -> bytes:
        fmt = ">5I" if big_endian else "<5I"
        h = bytes(self.usr_handle[:8])
        return (
            struct.pack(fmt, self.type, self.lower, self.upper, self.timeout, self.filter)
            + h
            + bytes(8 - len(h))
        )

    @classmethod
    def unpack(cls, buf: bytes | memoryview, base: int = 0) -> tuple[Subscr, bool]:
        """Returns (subscription, big_endian) with the byte order detected as the
        kernel does; answer events in the same order."""
        if len(buf) < cls.SIZE:
            raise DecodeError("subscr", base, f"need {cls.SIZE} bytes, have {len(buf)}")
        be = _detect_big_endian(bytes(buf[16:20]))
        typ, lower, upper, timeout, filt = struct.unpack_from(">5I" if be else "<5I", buf, 0)
        return cls(typ, lower, upper, timeout, filt, bytes(buf[20:28])), be


@dataclass(frozen=True, slots=True)
class Event:
    """struct tipc_event (48 bytes): event, found range, {port ref, node}, subscr copy."""

    event: int
    found_lower: int
    found_upper: int
    port: int
    node: int
    subscr: Subscr

    SIZE = 48

    def pack(self, big_endian: bool = True) -> bytes:
        fmt = ">5I" if big_endian else "<5I"
        head = struct.pack(
            fmt, self.event, self.found_lower, self.found_upper, self.port, self.node
        )
        return head + self.subscr.pack(big_endian)

    @classmethod
    def unpack(cls, buf: bytes | memoryview, base: int = 0) -> tuple[Event, bool]:
        """Byte order is taken from the embedded subscription's filter."""
        if len(buf) < cls.SIZE:
            raise DecodeError("event", base, f"need {cls.SIZE} bytes, have {len(buf)}")
        sub, be = Subscr.unpack(memoryview(buf)[20:48], base + 20)
        ev, lo, up, port, node = struct.unpack_from(">5I" if be else "<5I", buf, 0)
        return cls(ev, lo, up, port, node, sub), be

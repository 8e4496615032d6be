"""Extract TIPC packets from packet captures (pcap / pcapng), sans-IO.

Why this exists: the reference captures of real Linux kernel TIPC traffic are the ground
truth the codec is proven against, and `tipc dump` lets a person read a capture of a
tipcpy or kernel cluster the way tshark would.  Wireshark's TIPC dissector does not know
the 6.1 header fields we care about, so we carry our own, small, dependency-free reader.

What it understands:

* containers: classic pcap (both byte orders, microsecond and nanosecond magic) and
  pcapng (SHB/IDB/EPB/SPB/OPB, per-interface link type and timestamp resolution);
* link types: Ethernet (1), Linux cooked SLL (113) and SLL2 (276), raw IP (101, 228, 229)
  and BSD loopback/null (0), with any number of 802.1Q/802.1ad VLAN tags;
* IPv4 and IPv6 (with extension headers), IP fragment reassembly (a 14000-byte TIPC link
  packet travels as ten IP fragments), UDP to or from port 6118 or any port the caller
  names, and raw Ethernet frames of ethertype 0x88CA (TIPC's Ethernet bearer).

The parser works on bytes already in memory and never raises on bad frames: a frame
that is malformed or truncated where it matters yields a `PcapRecord` whose `error`
says why, so a dump can show it and go on.  Only a buffer that is not a capture file
at all raises `PcapError` (before anything is yielded), because then there is nothing
sensible to report per frame.  `read_pcap(path)` is the one thin file-reading wrapper.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TIPC_UDP_PORT",
    "ETH_P_TIPC",
    "PcapError",
    "PcapRecord",
    "RawFrame",
    "FrameParser",
    "iter_frames",
    "parse_pcap",
    "read_pcap",
]

TIPC_UDP_PORT = 6118
ETH_P_TIPC = 0x88CA

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})

# A frame or reassembled datagram larger than this is not something we need to hold.
MAX_DATAGRAM = 0x1FFFF + 65535
# pcap caplen sanity bound (libpcap uses 256 KiB for most link types; be generous).
MAX_CAPLEN = 16 * 1024 * 1024
# How many IP datagrams may be in reassembly at once before the oldest is given up.
MAX_PENDING_REASSEMBLIES = 256

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A


class PcapError(ValueError):
    """The buffer is not a capture file this module can read (bad magic, short header)."""


@dataclass(frozen=True)
class PcapRecord:
    """One TIPC packet found in a capture, or one frame that could not be read.

    `frame` is the 1-based frame number in the file; for an IP datagram that arrived in
    fragments it is the frame that completed it (as tshark numbers it).  `src`/`dst` are
    ``ip:port`` (IPv6 as ``[addr]:port``) for UDP and MAC addresses for raw Ethernet;
    ``"?"`` where the capture does not say.  `transport` is ``"udp"`` or ``"eth"``.
    When `error` is set the frame was malformed or truncated and `payload` is empty.
    """

    frame: int
    ts: float
    src: str
    dst: str
    payload: bytes
    transport: str = "udp"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RawFrame:
    """One link-layer frame from the capture container, before any protocol parsing.

    `error` is set when the container itself is damaged (e.g. the file ends inside a
    record); `caplen < wirelen` means the capture's snap length cut the frame.
    """

    frame: int
    ts: float
    linktype: int
    data: bytes
    wirelen: int
    error: str | None = None


# --------------------------------------------------------------------------------------
# Container level: pcap and pcapng
# --------------------------------------------------------------------------------------


def iter_frames(buf: bytes) -> Iterator[RawFrame]:
    """Yield every link-layer frame of a pcap or pcapng buffer.

    Raises `PcapError` only if the buffer does not start like a capture file; damage
    later in the file ends iteration with one `RawFrame` whose `error` says what broke.
    """
    buf = bytes(buf)
    if len(buf) < 4:
        raise PcapError(f"not a pcap file: {len(buf)} bytes, too short for a magic number")
    magic = buf[:4]
    if magic in _PCAP_MAGICS:
        return _iter_pcap(buf)
    if struct.unpack(">I", magic)[0] == _PCAPNG_SHB:
        return _iter_pcapng(buf)
    raise PcapError(f"not a pcap or pcapng file (magic {magic.hex()})")


def _iter_pcap(buf: bytes) -> Iterator[RawFrame]:
    endian, tick = _PCAP_MAGICS[buf[:4]]
    if len(buf) < 24:
        raise PcapError(f"truncated pcap file header ({len(buf)} of 24 bytes)")
    _vmaj, _vmin, _zone, _sigfigs, _snaplen, network = struct.unpack(endian + "HHiIII", buf[4:24])
    # Upper bits of the link-type field carry FCS information (pcap spec); keep the type.
    linktype = network & 0x03FFFFFF
    return _pcap_records(buf, endian, tick, linktype)


def _pcap_records(buf: bytes, endian: str, tick: float, linktype: int) -> Iterator[RawFrame]:
    off = 24
    n = 0
    rec = struct.Struct(endian + "IIII")
    while off < len(buf):
        n += 1
        if len(buf) - off < 16:
            yield RawFrame(n, 0.0, linktype, b"", 0,
                           f"file ends inside record header ({len(buf) - off} of 16 bytes)")
            return
        sec, frac, caplen, wirelen = rec.unpack_from(buf, off)
        ts = sec + frac * tick
        off += 16
        if caplen > MAX_CAPLEN:
            yield RawFrame(n, ts, linktype, b"", wirelen,
                           f"implausible captured length {caplen}; file damaged")
            return
        if off + caplen > len(buf):
            yield RawFrame(n, ts, linktype, buf[off:], wirelen,
                           f"file ends inside frame ({len(buf) - off} of {caplen} bytes)")
            return
        yield RawFrame(n, ts, linktype, buf[off:off + caplen], wirelen)
        off += caplen


@dataclass
class _NgInterface:
    linktype: int
    tsdiv: float = 1e6  # ticks per second
    tsoffset: int = 0


def _iter_pcapng(buf: bytes) -> Iterator[RawFrame]:
    if len(buf) < 28:
        raise PcapError(f"truncated pcapng section header ({len(buf)} bytes)")
    bom = buf[8:12]
    if bom not in (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a"):
        raise PcapError(f"pcapng section header has bad byte-order magic {bom.hex()}")
    return _pcapng_blocks(buf)


def _pcapng_blocks(buf: bytes) -> Iterator[RawFrame]:
    off = 0
    n = 0
    endian = ">"
    ifaces: list[_NgInterface] = []
    while off < len(buf):
        if len(buf) - off < 12:
            yield RawFrame(n + 1, 0.0, -1, b"", 0, "file ends inside a pcapng block header")
            return
        raw_type = buf[off:off + 4]
        if struct.unpack(">I", raw_type)[0] == _PCAPNG_SHB:
            bom = buf[off + 8:off + 12]
            if bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            elif bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            else:
                yield RawFrame(n + 1, 0.0, -1, b"", 0, f"bad pcapng byte-order magic {bom.hex()}")
                return
            ifaces = []  # interface ids are per section
        btype, blen = struct.unpack_from(endian + "II", buf, off)
        if blen < 12 or blen % 4 or off + blen > len(buf):
            yield RawFrame(n + 1, 0.0, -1, b"", 0,
                           f"pcapng block at offset {off} has bad length {blen}")
            return
        body = buf[off + 8:off + blen - 4]
        off += blen
        if btype == 1:  # Interface Description Block
            if len(body) < 8:
                yield RawFrame(n + 1, 0.0, -1, b"", 0, "short pcapng interface block")
                return
            lt, _res, _snap = struct.unpack_from(endian + "HHI", body, 0)
            iface = _NgInterface(lt)
            for code, val in _ng_options(body[8:], endian):
                if code == 9 and len(val) >= 1:  # if_tsresol
                    v = val[0]
                    iface.tsdiv = float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** v)
                elif code == 14 and len(val) >= 8:  # if_tsoffset (seconds)
                    iface.tsoffset = struct.unpack(endian + "q", val[:8])[0]
            ifaces.append(iface)
        elif btype in (6, 2):  # Enhanced Packet Block / obsolete Packet Block
            n += 1
            if btype == 6:
                if len(body) < 20:
                    yield RawFrame(n, 0.0, -1, b"", 0, "short pcapng packet block")
                    continue
                ifid, tsh, tsl, caplen, wirelen = struct.unpack_from(endian + "IIIII", body, 0)
            else:
                if len(body) < 20:
                    yield RawFrame(n, 0.0, -1, b"", 0, "short pcapng packet block")
                    continue
                ifid, _drops, tsh, tsl, caplen, wirelen = struct.unpack_from(
                    endian + "HHIIII", body, 0)
            if ifid >= len(ifaces):
                yield RawFrame(n, 0.0, -1, b"", wirelen, f"packet names unknown interface {ifid}")
                continue
            iface = ifaces[ifid]
            ts = ((tsh << 32) | tsl) / iface.tsdiv + iface.tsoffset
            if 20 + caplen > len(body):
                yield RawFrame(n, ts, iface.linktype, body[20:], wirelen,
                               f"packet block shorter than its captured length {caplen}")
                continue
            yield RawFrame(n, ts, iface.linktype, body[20:20 + caplen], wirelen)
        elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
            n += 1
            if not ifaces or len(body) < 4:
                yield RawFrame(n, 0.0, -1, b"", 0, "simple packet block without interface")
                continue
            (wirelen,) = struct.unpack_from(endian + "I", body, 0)
            data = body[4:4 + min(wirelen, len(body) - 4)]
            yield RawFrame(n, 0.0, ifaces[0].linktype, data, wirelen)
        # Other blocks (name resolution, statistics, custom, SHB) carry no packets.


def _ng_options(buf: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(buf):
        code, length = struct.unpack_from(endian + "HH", buf, off)
        off += 4
        if code == 0:
            return
        yield code, buf[off:off + length]
        off += (length + 3) & ~3


# --------------------------------------------------------------------------------------
# Frame level: link layer, IP, reassembly, UDP
# --------------------------------------------------------------------------------------


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class _Malformed(Exception):
    """Internal: a frame we had to read is broken; becomes a record with `error`."""


@dataclass
class _Reassembly:
    first_frame: int
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes
    total: int | None = None  # known once the last fragment (MF=0) arrived
    header: dict[str, object] = field(default_factory=dict)

    def add(self, offset: int, data: bytes, more: bool) -> None:
        if offset + len(data) > MAX_DATAGRAM:
            raise _Malformed(f"IP fragment reaches past {MAX_DATAGRAM} bytes")
        if not more:
            end = offset + len(data)
            if self.total is not None and self.total != end:
                raise _Malformed("IP fragments disagree about the datagram length")
            self.total = end
        # First copy wins for overlapping duplicates (a retransmitted fragment is identical;
        # an attacker's overlap must not rewrite bytes already accepted).
        self.pieces.setdefault(offset, data)

    def assemble(self) -> bytes | None:
        if self.total is None:
            return None
        out = bytearray(self.total)
        have = 0  # bytes contiguous from 0
        for off in sorted(self.pieces):
            data = self.pieces[off]
            if off > have:
                return None
            end = min(off + len(data), self.total)
            if end > have:
                out[have:end] = data[have - off:end - off]
                have = end
        return bytes(out) if have >= self.total else None

    def have_bytes(self) -> int:
        return sum(len(v) for v in self.pieces.values())


class FrameParser:
    """Turn link-layer frames into TIPC payload records; keeps IP reassembly state.

    Separate from the container reader so a live capture (AF_PACKET in the runtime or a
    test bearer) can use the same decoding: `feed(...)` one frame at a time, then
    `flush()` at the end to learn about datagrams whose fragments never all arrived.
    """

    def __init__(self, ports: Iterable[int] = (TIPC_UDP_PORT,)) -> None:
        self.ports = frozenset(int(p) for p in ports)
        self._pending: OrderedDict[tuple[object, ...], _Reassembly] = OrderedDict()
        self._out: list[PcapRecord] = []

    # -- public ---------------------------------------------------------------------

    def feed(self, frame: RawFrame) -> list[PcapRecord]:
        """Decode one frame; return the TIPC records it completes (0, 1, or an error)."""
        self._out = []
        if frame.error is not None:
            self._out.append(PcapRecord(frame.frame, frame.ts, "?", "?", b"",
                                        "?", frame.error))
            return self._out
        try:
            self._link(frame)
        except _Malformed as exc:
            self._out.append(PcapRecord(frame.frame, frame.ts, "?", "?", b"", "?", str(exc)))
        except (struct.error, IndexError, ValueError) as exc:  # defensive: never escape
            self._out.append(PcapRecord(frame.frame, frame.ts, "?", "?", b"", "?",
                                        f"malformed frame: {exc}"))
        return self._out

    def flush(self) -> list[PcapRecord]:
        """Report IP datagrams still incomplete (only those that could be TIPC)."""
        out = []
        for r in self._pending.values():
            h = r.header
            if h.get("maybe_tipc", True):
                ts = h.get("ts", 0.0)
                out.append(PcapRecord(
                    r.first_frame, float(ts) if isinstance(ts, int | float) else 0.0, str(h.get("src", "?")),
                    str(h.get("dst", "?")), b"", "udp",
                    f"IP datagram incomplete: {r.have_bytes()} bytes of "
                    f"{r.total if r.total is not None else '?'} captured"))
        self._pending.clear()
        return out

    # -- link layer -----------------------------------------------------------------

    def _truncated_check(self, frame: RawFrame, need: int, what: str) -> None:
        if len(frame.data) < need:
            if frame.wirelen > len(frame.data):
                raise _Malformed(f"frame cut by capture snap length ({len(frame.data)} of "
                                 f"{frame.wirelen} bytes) inside {what}")
            raise _Malformed(f"truncated {what} ({len(frame.data)} bytes)")

    def _link(self, frame: RawFrame) -> None:
        d = frame.data
        lt = frame.linktype
        if lt == LINKTYPE_ETHERNET:
            self._truncated_check(frame, 14, "Ethernet header")
            dst, src = _mac(d[0:6]), _mac(d[6:12])
            (etype,) = struct.unpack_from(">H", d, 12)
            self._ether(frame, etype, d, 14, src, dst)
        elif lt == LINKTYPE_LINUX_SLL:
            self._truncated_check(frame, 16, "Linux cooked (SLL) header")
            _pkttype, hatype, alen = struct.unpack_from(">HHH", d, 0)
            src = _mac(d[6:6 + min(alen, 8)]) if hatype == 1 else "?"
            (etype,) = struct.unpack_from(">H", d, 14)
            self._ether(frame, etype, d, 16, src, "?")
        elif lt == LINKTYPE_LINUX_SLL2:
            self._truncated_check(frame, 20, "Linux cooked (SLL2) header")
            (etype,) = struct.unpack_from(">H", d, 0)
            hatype = struct.unpack_from(">H", d, 8)[0]
            alen = d[11]
            src = _mac(d[12:12 + min(alen, 8)]) if hatype == 1 else "?"
            self._ether(frame, etype, d, 20, src, "?")
        elif lt in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
            self._truncated_check(frame, 1, "IP header")
            ver = d[0] >> 4
            self._ether(frame, ETH_P_IP if ver == 4 else ETH_P_IPV6, d, 0, "?", "?")
        elif lt == LINKTYPE_NULL:
            self._truncated_check(frame, 4, "loopback header")
            fam_le = struct.unpack_from("<I", d, 0)[0]
            fam_be = struct.unpack_from(">I", d, 0)[0]
            fam = fam_le if fam_le < 256 else fam_be
            if fam == 2:
                self._ether(frame, ETH_P_IP, d, 4, "?", "?")
            elif fam in (10, 24, 28, 30):  # AF_INET6 on Linux / BSDs / macOS
                self._ether(frame, ETH_P_IPV6, d, 4, "?", "?")
        # Other link types cannot carry what we look for: ignored, not an error.

    def _ether(self, frame: RawFrame, etype: int, d: bytes, off: int, src: str, dst: str) -> None:
        while etype in VLAN_TPIDS:
            self._truncated_check(frame, off + 4, "VLAN tag")
            (etype,) = struct.unpack_from(">H", d, off + 2)
            off += 4
        if etype == ETH_P_TIPC:
            self._emit(frame, src, dst, _trim_tipc(d[off:]), "eth")
        elif etype == ETH_P_IP:
            self._ipv4(frame, d, off)
        elif etype == ETH_P_IPV6:
            self._ipv6(frame, d, off)

    # -- IP ---------------------------------------------------------------------------

    def _ipv4(self, frame: RawFrame, d: bytes, off: int) -> None:
        self._truncated_check(frame, off + 20, "IPv4 header")
        vihl = d[off]
        if vihl >> 4 != 4:
            raise _Malformed(f"IPv4 header with version {vihl >> 4}")
        ihl = (vihl & 0x0F) * 4
        if ihl < 20:
            raise _Malformed(f"IPv4 header length {ihl} < 20")
        total, ident, flagfrag, _ttl, proto = struct.unpack_from(">HHHBB", d, off + 2)
        if proto != 17:
            return
        if total < ihl:
            raise _Malformed(f"IPv4 total length {total} < header length {ihl}")
        if len(d) < off + total and not flagfrag & 0x1FFF and self._not_ours(d, off + ihl):
            return  # someone else's datagram cut by the snap length: not our business
        self._truncated_check(frame, off + total, "IPv4 packet")
        src = str(ipaddress.IPv4Address(d[off + 12:off + 16]))
        dst = str(ipaddress.IPv4Address(d[off + 16:off + 20]))
        payload = d[off + ihl:off + total]
        more = bool(flagfrag & 0x2000)
        foff = (flagfrag & 0x1FFF) * 8
        if more or foff:
            key = (4, src, dst, proto, ident)
            whole = self._reassemble(frame, key, foff, payload, more, src, dst, False)
            if whole is None:
                return
            payload = whole
        self._udp(frame, payload, src, dst, False)

    def _ipv6(self, frame: RawFrame, d: bytes, off: int) -> None:
        self._truncated_check(frame, off + 40, "IPv6 header")
        if d[off] >> 4 != 6:
            raise _Malformed(f"IPv6 header with version {d[off] >> 4}")
        plen, nxt = struct.unpack_from(">HB", d, off + 4)
        src = str(ipaddress.IPv6Address(d[off + 8:off + 24]))
        dst = str(ipaddress.IPv6Address(d[off + 24:off + 40]))
        if plen == 0:
            return  # jumbogram: not used by TIPC
        if len(d) < off + 40 + plen and nxt == 17 and self._not_ours(d, off + 40):
            return  # someone else's datagram cut by the snap length
        self._truncated_check(frame, off + 40 + plen, "IPv6 packet")
        data = d[off + 40:off + 40 + plen]
        pos = 0
        while nxt in (0, 43, 60, 44):
            if nxt == 44:
                if pos + 8 > len(data):
                    raise _Malformed("IPv6 fragment header runs past the packet")
                nh, _res, offm, ident = struct.unpack_from(">BBHI", data, pos)
                foff, more = (offm >> 3) * 8, bool(offm & 1)
                # Offsets count from the start of the fragmentable part, so reassemble
                # first and only then walk any extension headers inside it.
                frag, data, pos, nxt = data[pos + 8:], b"", 0, nh
                if more or foff:
                    whole = self._reassemble(frame, (6, src, dst, ident), foff, frag, more,
                                             src, dst, True, nh)
                    if whole is None:
                        return
                    frag = whole
                data = frag
            else:
                if pos + 2 > len(data):
                    raise _Malformed("IPv6 extension header runs past the packet")
                nxt, hlen = data[pos], data[pos + 1]
                pos += (hlen + 1) * 8
                if pos > len(data):
                    raise _Malformed("IPv6 extension header runs past the packet")
        if nxt != 17:
            return
        self._udp(frame, data[pos:], src, dst, True)

    def _reassemble(self, frame: RawFrame, key: tuple[object, ...], foff: int, data: bytes, more: bool,
                    src: str, dst: str, v6: bool, proto: int = 17) -> bytes | None:
        """Collect one IP fragment; return the whole payload once it is complete."""
        r = self._pending.get(key)
        if r is None:
            r = _Reassembly(frame.frame, header={"ts": frame.ts, "src": src, "dst": dst})
            self._pending[key] = r
            while len(self._pending) > MAX_PENDING_REASSEMBLIES:
                self._pending.popitem(last=False)
        if foff == 0:
            if proto == 17 and len(data) >= 4:
                sport, dport = struct.unpack_from(">HH", data, 0)
                r.header["src"] = _ep(src, sport, v6)
                r.header["dst"] = _ep(dst, dport, v6)
                r.header["maybe_tipc"] = sport in self.ports or dport in self.ports
            else:
                # Only IPv6 extension headers can hide the UDP header; anything else
                # (ESP, TCP, ...) is certainly not ours.
                r.header["maybe_tipc"] = proto in (0, 43, 60)
        try:
            r.add(foff, data, more)
        except _Malformed:
            del self._pending[key]
            raise
        whole = r.assemble()
        if whole is None:
            return None
        del self._pending[key]
        return whole

    # -- UDP --------------------------------------------------------------------------

    def _not_ours(self, d: bytes, udp_off: int) -> bool:
        """The UDP ports at `udp_off` are readable and neither is a TIPC port."""
        if len(d) < udp_off + 4:
            return False
        sport, dport = struct.unpack_from(">HH", d, udp_off)
        return sport not in self.ports and dport not in self.ports

    def _udp(self, frame: RawFrame, p: bytes, src: str, dst: str, v6: bool) -> None:
        if len(p) < 8:
            if len(p) >= 4:
                sport, dport = struct.unpack_from(">HH", p, 0)
                if sport not in self.ports and dport not in self.ports:
                    return
            raise _Malformed(f"truncated UDP header ({len(p)} bytes)")
        sport, dport, ulen, _csum = struct.unpack_from(">HHHH", p, 0)
        if sport not in self.ports and dport not in self.ports:
            return
        s, t = _ep(src, sport, v6), _ep(dst, dport, v6)
        if ulen < 8 or ulen > len(p):
            self._out.append(PcapRecord(frame.frame, frame.ts, s, t, b"", "udp",
                                        f"UDP length {ulen} does not fit the {len(p)}-byte "
                                        "IP payload"))
            return
        self._emit(frame, s, t, p[8:ulen], "udp")

    def _emit(self, frame: RawFrame, src: str, dst: str, payload: bytes, transport: str) -> None:
        self._out.append(PcapRecord(frame.frame, frame.ts, src, dst, payload, transport))


def _ep(ip: str, port: int, v6: bool) -> str:
    return f"[{ip}]:{port}" if v6 else f"{ip}:{port}"


def _trim_tipc(p: bytes) -> bytes:
    """Drop Ethernet minimum-frame padding after a TIPC v2 message.

    A 24-byte TIPC message on Ethernet is padded to 46 bytes; the TIPC size field
    (w0[16:0]) says where the message ends.  Encrypted (v7) messages have no size field
    and are left alone, as is anything whose size field does not fit.
    """
    if len(p) >= 4:
        w0 = struct.unpack_from(">I", p, 0)[0]
        size = w0 & 0x1FFFF
        if w0 >> 29 == 2 and 24 <= size < len(p):
            return p[:size]
    return p


# --------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------


def parse_pcap(buf: bytes, ports: Iterable[int] = (TIPC_UDP_PORT,)) -> Iterator[PcapRecord]:
    """Yield a `PcapRecord` per TIPC packet (or damaged frame) in a capture buffer.

    `ports` are the UDP ports whose traffic is TIPC (either direction); raw Ethernet
    frames of ethertype 0x88CA are always included.  Raises `PcapError` up front if the
    buffer is not a capture file.
    """
    frames = iter_frames(buf)  # raises PcapError now, not on first next()
    parser = FrameParser(ports)

    def gen() -> Iterator[PcapRecord]:
        for fr in frames:
            yield from parser.feed(fr)
        yield from parser.flush()

    return gen()


def read_pcap(path: str | Path, ports: Iterable[int] = (TIPC_UDP_PORT,)) -> list[PcapRecord]:
    """Read a capture file and return its TIPC records (see `parse_pcap`).

    Raises `OSError` if the file cannot be read and `PcapError` if it is not a capture.
    """
    return list(parse_pcap(Path(path).read_bytes(), ports))

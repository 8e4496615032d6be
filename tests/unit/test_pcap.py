"""tipcpy.wire.pcap on synthetic captures built here, independently of the parser.

Each test builds the exact bytes a capture tool would write (pcap or pcapng, the link
header, IP, UDP) so a mistake in the parser cannot hide behind the same mistake in a
shared helper.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tipcpy.wire.pcap import PcapError, RawFrame, iter_frames, parse_pcap

# A real LINK_CONFIG (DSC_REQ) from the reference, 76 bytes.
DSC = bytes.fromhex(
    "5bf0004c07ffe80500000000195d076500001267000000030800" "17e60a4d0103"
    + "00" * 20 + "f246680500000000" + "6b706565722d6200" + "00" * 8
)
assert len(DSC) == 76
# A 24-byte FIN (SHORT header) - shorter than Ethernet's 46-byte minimum payload.
FIN = bytes.fromhex("46c0001804000000000000" + "00195d0765" + "00" * 8)
assert len(FIN) == 24

MAC_A = bytes.fromhex("525400770102")
MAC_B = bytes.fromhex("525400770103")


# ----------------------------------------------------------------------------- builders


def pcap(frames: list[tuple[float, bytes]] | list[tuple[float, bytes, int]], linktype: int = 1,
         endian: str = "<", nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for fr in frames:
        ts, data = fr[0], fr[1]
        wirelen = fr[2] if len(fr) > 2 else len(data)
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out += struct.pack(endian + "IIII", sec, frac, len(data), wirelen) + data
    return out


def eth(payload: bytes, etype: int = 0x0800, src: bytes = MAC_A, dst: bytes = MAC_B,
        vlans: tuple[int, ...] = ()) -> bytes:
    hdr = dst + src
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100
        hdr += struct.pack(">HH", tpid, vid)
    return hdr + struct.pack(">H", etype) + payload


def udp(payload: bytes, sport: int = 6118, dport: int = 6118) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(payload: bytes, src: str = "10.77.1.2", dst: str = "10.77.1.3", proto: int = 17,
         ident: int = 0x1234, frag_off: int = 0, more: bool = False) -> bytes:
    flags = (0x2000 if more else 0) | (frag_off // 8)
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags, 64, proto, 0,
                      bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return hdr + payload


def ipv4_fragments(datagram: bytes, chunk: int = 1480, **kw) -> list[bytes]:
    out = []
    for off in range(0, len(datagram), chunk):
        piece = datagram[off:off + chunk]
        out.append(ipv4(piece, frag_off=off, more=off + chunk < len(datagram), **kw))
    return out


V6_SRC = bytes.fromhex("fd000000000000000000000000000002")
V6_DST = bytes.fromhex("fd000000000000000000000000000003")


def ipv6(payload: bytes, nh: int = 17) -> bytes:
    return struct.pack(">IHBB", 0x60000000, len(payload), nh, 64) + V6_SRC + V6_DST + payload


def ipv6_fragments(datagram: bytes, chunk: int = 1232, ident: int = 77) -> list[bytes]:
    out = []
    for off in range(0, len(datagram), chunk):
        piece = datagram[off:off + chunk]
        more = off + chunk < len(datagram)
        fh = struct.pack(">BBHI", 17, 0, off | int(more), ident)
        out.append(ipv6(fh + piece, nh=44))
    return out


def sll(payload: bytes, etype: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, MAC_A + b"\0\0", etype) + payload


def sll2(payload: bytes, etype: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", etype, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + payload


def pcapng(frames: list[tuple[int, bytes]], linktype: int = 1, tsresol: int = 9,
           endian: str = "<") -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)

    shb = block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = struct.pack(endian + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + b"\0\0\0\0"
    idb = block(1, struct.pack(endian + "HHI", linktype, 0, 262144) + opts)
    out = shb + idb
    for ticks, data in frames:
        out += block(6, struct.pack(endian + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                    len(data), len(data)) + data)
    return out


def records(buf: bytes, **kw):
    return list(parse_pcap(buf, **kw))


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_both_byte_orders_and_resolutions(endian: str, nano: bool) -> None:
    ts = 1795665449.123456
    buf = pcap([(ts, eth(ipv4(udp(DSC)))), (ts + 1, eth(ipv4(udp(FIN))))], endian=endian,
               nano=nano)
    recs = records(buf)
    assert [r.frame for r in recs] == [1, 2]
    r = recs[0]
    assert r.ok and r.payload == DSC and r.transport == "udp"
    assert r.src == "10.77.1.2:6118" and r.dst == "10.77.1.3:6118"
    assert r.ts == pytest.approx(ts, abs=1e-6)
    assert recs[1].payload == FIN


def test_nanosecond_timestamps_keep_nanoseconds() -> None:
    buf = pcap([(100.000000123, eth(ipv4(udp(DSC))))], nano=True)
    assert records(buf)[0].ts == pytest.approx(100.000000123, abs=1e-10)


def test_other_udp_ports_and_protocols_are_skipped_unless_asked_for() -> None:
    frames = [
        (1.0, eth(ipv4(udp(DSC, 5353, 5353)))),
        (2.0, eth(ipv4(b"\0" * 20, proto=6))),  # TCP
        (3.0, eth(b"\0" * 28, etype=0x0806)),  # ARP
        (4.0, eth(ipv4(udp(DSC, 40000, 6118)))),
        (5.0, eth(ipv4(udp(DSC, 7000, 7001)))),
    ]
    assert [r.frame for r in records(pcap(frames))] == [4]
    assert [r.frame for r in records(pcap(frames), ports=(6118, 7001))] == [4, 5]


def test_linux_cooked_sll_and_sll2() -> None:
    buf = pcap([(1.0, sll(ipv4(udp(DSC))))], linktype=113)
    (r,) = records(buf)
    assert r.ok and r.payload == DSC and r.dst == "10.77.1.3:6118"
    buf = pcap([(1.0, sll2(ipv4(udp(DSC))))], linktype=276)
    (r,) = records(buf)
    assert r.ok and r.payload == DSC and r.src == "10.77.1.2:6118"
    # Raw TIPC over SLL: source MAC is known, destination is not.
    (r,) = records(pcap([(1.0, sll(DSC, etype=0x88CA))], linktype=113))
    assert r.transport == "eth" and r.src == "52:54:00:77:01:02" and r.dst == "?"


@pytest.mark.parametrize("vlans", [(5,), (100, 200)])
def test_vlan_tags(vlans: tuple[int, ...]) -> None:
    (r,) = records(pcap([(1.0, eth(ipv4(udp(DSC)), vlans=vlans))]))
    assert r.ok and r.payload == DSC
    (r,) = records(pcap([(1.0, eth(DSC, etype=0x88CA, vlans=vlans))]))
    assert r.ok and r.payload == DSC and r.transport == "eth"


def test_raw_ethernet_tipc_padding_is_trimmed_by_tipc_size() -> None:
    frame = eth(FIN + b"\0" * 22, etype=0x88CA)  # padded to the 46-byte minimum
    (r,) = records(pcap([(1.0, frame)]))
    assert r.payload == FIN
    assert r.src == "52:54:00:77:01:02" and r.dst == "52:54:00:77:01:03"


def test_ipv4_fragments_out_of_order_with_duplicate() -> None:
    tipc = bytes(random.Random(1).randrange(256) for _ in range(14000))
    frags = ipv4_fragments(udp(tipc), ident=0x275E)
    assert len(frags) == 10
    order = [3, 0, 9, 1, 2, 2, 8, 4, 5, 7, 6]  # a duplicate and the last one early
    frames = [(1.0 + i / 1000, eth(frags[k])) for i, k in enumerate(order)]
    frames.insert(4, (1.0035, eth(ipv4(udp(DSC), ident=0x9999))))  # interleaved datagram
    recs = records(pcap(frames))
    assert [len(r.payload) for r in recs] == [76, 14000]
    big = recs[1]
    assert big.ok and big.payload == tipc
    assert big.frame == len(frames)  # the frame that completed the datagram
    assert big.src == "10.77.1.2:6118"


def test_same_ip_id_from_different_sources_do_not_mix() -> None:
    a = bytes(range(256)) * 12
    b = bytes(reversed(range(256))) * 12
    fa = ipv4_fragments(udp(a), ident=7, src="10.0.0.1")
    fb = ipv4_fragments(udp(b), ident=7, src="10.0.0.2")
    frames = [(1.0, eth(x)) for pair in zip(fa, fb, strict=True) for x in pair]
    recs = records(pcap(frames))
    assert sorted(r.payload for r in recs) == sorted([a, b])


def test_incomplete_fragmented_datagram_is_reported_at_end() -> None:
    frags = ipv4_fragments(udp(b"x" * 5000))
    recs = records(pcap([(1.0, eth(f)) for f in frags[:-1]]))
    (r,) = recs
    assert not r.ok and "incomplete" in r.error and r.frame == 1
    assert r.src == "10.77.1.2:6118"


def test_ipv6_plain_and_fragmented() -> None:
    (r,) = records(pcap([(1.0, eth(ipv6(udp(DSC)), etype=0x86DD))]))
    assert r.ok and r.payload == DSC
    assert r.src == "[fd00::2]:6118" and r.dst == "[fd00::3]:6118"
    big = bytes(range(256)) * 40
    frags = ipv6_fragments(udp(big))
    frags = frags[::-1]
    recs = records(pcap([(1.0, eth(f, etype=0x86DD)) for f in frags]))
    assert len(recs) == 1 and recs[0].ok and recs[0].payload == big


def test_ipv6_extension_header_before_udp() -> None:
    dest_opts = bytes([17, 0]) + b"\x01\x04\0\0\0\0"  # next=UDP, 8 bytes, PadN
    (r,) = records(pcap([(1.0, eth(ipv6(dest_opts + udp(DSC), nh=60), etype=0x86DD))]))
    assert r.ok and r.payload == DSC


def test_raw_ip_linktype() -> None:
    (r,) = records(pcap([(1.0, ipv4(udp(DSC)))], linktype=101))
    assert r.ok and r.payload == DSC


def test_frame_cut_by_snaplen_is_an_error_record() -> None:
    full = eth(ipv4(udp(DSC)))
    buf = pcap([(1.0, full[:30], len(full)), (2.0, full)])
    recs = records(buf)
    assert [r.frame for r in recs] == [1, 2]
    assert not recs[0].ok and "snap length" in recs[0].error
    assert recs[1].ok


def test_truncated_headers_are_error_records() -> None:
    frames = [
        (1.0, b"\x01\x02\x03"),  # shorter than an Ethernet header
        (2.0, eth(ipv4(udp(DSC))[:12])),  # IPv4 header cut
        (3.0, eth(ipv4(udp(DSC))[:24])),  # UDP header cut (ports readable)
        (4.0, eth(b"\x00\x05", etype=0x8100)),  # VLAN tag cut
    ]
    recs = records(pcap(frames))
    assert [r.frame for r in recs] == [1, 2, 3, 4]
    assert all(not r.ok and r.error for r in recs)


def test_bad_udp_length_is_an_error_record() -> None:
    dgram = bytearray(udp(DSC))
    dgram[4:6] = struct.pack(">H", 500)
    (r,) = records(pcap([(1.0, eth(ipv4(bytes(dgram))))]))
    assert not r.ok and "UDP length" in r.error and r.dst == "10.77.1.3:6118"


def test_file_ending_inside_a_record_keeps_earlier_records() -> None:
    buf = pcap([(1.0, eth(ipv4(udp(DSC)))), (2.0, eth(ipv4(udp(DSC))))])
    recs = records(buf[:-10])
    assert recs[0].ok and not recs[1].ok and "file ends" in recs[1].error
    recs = records(buf[:-len(eth(ipv4(udp(DSC)))) - 5])
    assert recs[0].ok and "record header" in recs[1].error


@pytest.mark.parametrize("junk", [b"", b"abc", b"hello world, not a capture", b"\0" * 100])
def test_not_a_capture_raises_pcaperror(junk: bytes) -> None:
    with pytest.raises(PcapError):
        parse_pcap(junk)


def test_short_pcap_header_raises_pcaperror() -> None:
    with pytest.raises(PcapError):
        parse_pcap(pcap([])[:10])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_with_nanosecond_resolution(endian: str) -> None:
    ticks = 1795665449_123456789
    buf = pcapng([(ticks, eth(ipv4(udp(DSC)))), (ticks + 1000, eth(ipv4(udp(FIN))))],
                 endian=endian)
    recs = records(buf)
    assert [r.payload for r in recs] == [DSC, FIN]
    assert recs[0].ts == pytest.approx(1795665449.123456789, abs=1e-6)
    assert [r.frame for r in recs] == [1, 2]


def test_pcapng_default_microseconds() -> None:
    buf = pcapng([(5_000_001, eth(ipv4(udp(DSC))))], tsresol=6)
    assert records(buf)[0].ts == pytest.approx(5.000001)


def test_iter_frames_reports_linktype_and_wirelen() -> None:
    frames = list(iter_frames(pcap([(1.0, b"abcd", 60)], linktype=113)))
    assert frames == [RawFrame(1, 1.0, 113, b"abcd", 60)]


_VALID = pcap([(1.0, eth(ipv4(udp(DSC)))), (2.0, eth(ipv4(udp(FIN))))]
              + [(3.0 + i, eth(f)) for i, f in enumerate(ipv4_fragments(udp(b"z" * 4000)))])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_captures_never_raise(data: st.DataObject) -> None:
    buf = bytearray(_VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(24, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(24, len(buf)))
    for r in parse_pcap(bytes(buf[:cut])):
        assert r.ok or r.error


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([0, 1, 101, 113, 276]))
def test_random_frames_never_raise(frame: bytes, linktype: int) -> None:
    for r in parse_pcap(pcap([(1.0, frame)], linktype=linktype)):
        assert r.ok or r.error


def test_other_traffic_cut_by_snaplen_is_not_an_error() -> None:
    dns = eth(ipv4(udp(b"q" * 200, 53, 53)))
    tipc = eth(ipv4(udp(DSC)))
    recs = records(pcap([(1.0, dns[:60], len(dns)), (2.0, tipc[:60], len(tipc))]))
    assert [(r.frame, r.ok) for r in recs] == [(2, False)]
    dns6 = eth(ipv6(udp(b"q" * 200, 53, 53)), etype=0x86DD)
    assert records(pcap([(1.0, dns6[:70], len(dns6))])) == []

"""Payload structures: distr items, media addresses, Gap-ACK blocks, topology records."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tipcpy.wire import (
    DecodeError,
    DistrItem,
    EthMediaAddr,
    Event,
    GapAck,
    GapAckBlocks,
    Subscr,
    UdpMediaAddr,
)
from tipcpy.wire.consts import TIPC_SUB_CANCEL, TIPC_SUB_PORTS, TIPC_SUB_SERVICE, TIPC_WAIT_FOREVER
from tipcpy.wire.items import (
    RawMediaAddr,
    media_addr_from_info,
    pack_if_name,
    pack_items,
    unpack_if_name,
    unpack_items,
)

u32 = st.integers(0, 0xFFFFFFFF)


def H(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


# ---------------------------------------------------------------- distr items
def test_distr_item_layout() -> None:
    it = DistrItem(2000, 1, 1, 0x71606415, 0x71606416)
    assert it.pack() == H("000007d0 00000001 00000001 71606415 71606416")
    assert DistrItem.unpack(it.pack()) == it
    with pytest.raises(DecodeError):
        DistrItem.unpack(bytes(19))


@given(st.lists(st.builds(DistrItem, u32, u32, u32, u32, u32), max_size=30))
def test_items_roundtrip(items: list[DistrItem]) -> None:
    raw = pack_items(items)
    assert len(raw) == 20 * len(items)
    assert unpack_items(raw) == items


def test_items_partial_rejected() -> None:
    with pytest.raises(DecodeError) as ei:
        unpack_items(bytes(45), base=40)
    assert ei.value.field == "items" and ei.value.offset == 40


# ---------------------------------------------------------------- media addresses
def test_udp_ipv4_media_info_matches_reference() -> None:
    a = UdpMediaAddr("10.77.1.3", 6118)
    assert a.to_media_info() == H("00000003 080017e6 0a4d0103") + bytes(20)
    assert UdpMediaAddr.from_media_info(a.to_media_info()) == a
    assert str(a) == "10.77.1.3:6118" and not a.is_ipv6 and not a.is_multicast
    assert UdpMediaAddr("228.0.18.103").is_multicast


def test_udp_ipv6_media_info() -> None:
    a = UdpMediaAddr("fd00::1:2", 6119)
    raw = a.to_media_info()
    assert (
        len(raw) == 32
        and raw[3] == 3
        and raw[4:6] == b"\x86\xdd"
        and raw[6:8] == struct.pack(">H", 6119)
    )
    assert raw[8:24] == bytes.fromhex("fd000000000000000000000000010002")
    assert media_addr_from_info(raw) == a
    assert str(a) == "[fd00::1:2]:6119"


def test_media_errors() -> None:
    raw = bytearray(UdpMediaAddr("1.2.3.4").to_media_info())
    raw[4:6] = b"\x00\x01"
    with pytest.raises(DecodeError, match="udp_proto"):
        media_addr_from_info(bytes(raw), base=20)
    with pytest.raises(DecodeError) as ei:
        media_addr_from_info(bytes(32), base=20)
    assert ei.value.field == "media_type" and ei.value.offset == 23
    with pytest.raises(DecodeError):
        media_addr_from_info(bytes(31))
    with pytest.raises(DecodeError):
        EthMediaAddr.from_media_info(UdpMediaAddr("1.2.3.4").to_media_info())


def test_eth_media_info() -> None:
    e = EthMediaAddr(bytes.fromhex("020000000001"))
    raw = e.to_media_info()
    assert raw == H("00000001 02000000 0001") + bytes(22)
    assert media_addr_from_info(raw) == e and str(e) == "02:00:00:00:00:01"
    assert EthMediaAddr(b"\xff" * 6).is_broadcast
    with pytest.raises(ValueError):
        EthMediaAddr(b"\x00")


def test_ib_media_info_is_carried_raw() -> None:
    raw = bytes([0, 0, 0, 2]) + bytes(range(28))
    a = media_addr_from_info(raw)
    assert isinstance(a, RawMediaAddr) and a.to_media_info() == raw


# ---------------------------------------------------------------- gap ack blocks
def test_gap_ack_empty_is_kernel_header() -> None:
    assert GapAckBlocks().pack() == H("00040000")
    assert GapAckBlocks.unpack(H("00040000")) == GapAckBlocks()


def test_gap_ack_order_bc_then_uc() -> None:
    g = GapAckBlocks(bc=(GapAck(5, 1),), uc=(GapAck(4, 5), GapAck(11, 1)))
    raw = g.pack()
    # len 16, ugack_cnt 2, bgack_cnt 1, then broadcast block, then unicast blocks
    assert raw == H("0010 02 01  0005 0001  0004 0005  000b 0001")
    assert GapAckBlocks.unpack(raw + b"tail") == g
    assert (g.len, g.ugack_cnt, g.bgack_cnt) == (16, 2, 1)


def test_gap_ack_inconsistent() -> None:
    with pytest.raises(DecodeError, match="gap_ack_len"):
        GapAckBlocks.unpack(H("0008 01 01 0000 0000 0000 0000"))
    with pytest.raises(DecodeError, match="exceeds"):
        GapAckBlocks.unpack(H("0008 01 00 0000"))
    with pytest.raises(DecodeError):
        GapAckBlocks.unpack(b"\x00")
    with pytest.raises(ValueError):
        GapAckBlocks(uc=tuple(GapAck(i, 1) for i in range(65))).pack()


# ---------------------------------------------------------------- if name
def test_if_name() -> None:
    assert pack_if_name("b0") == b"b0" + bytes(14)
    assert unpack_if_name(pack_if_name("eth0")) == "eth0"
    assert unpack_if_name(b"abc") == "abc"
    assert unpack_if_name(b"x" * 20) == "x" * 16
    with pytest.raises(ValueError):
        pack_if_name("a" * 16)


# ---------------------------------------------------------------- topology server records
def test_subscr_big_endian_layout() -> None:
    s = Subscr(1000, 0, 10, TIPC_WAIT_FOREVER, TIPC_SUB_PORTS, b"handle01")
    raw = s.pack(big_endian=True)
    assert raw == H("000003e8 00000000 0000000a ffffffff 00000001") + b"handle01"
    assert Subscr.unpack(raw) == (s, True)


def test_subscr_little_endian_detected() -> None:
    s = Subscr(1000, 0, 10, 5000, TIPC_SUB_SERVICE, b"\x01\x02")
    raw = s.pack(big_endian=False)
    assert raw[16:20] == b"\x02\x00\x00\x00"
    got, be = Subscr.unpack(raw)
    assert be is False and got == Subscr(
        1000, 0, 10, 5000, TIPC_SUB_SERVICE, b"\x01\x02" + bytes(6)
    )


@settings(max_examples=100, deadline=None)
@given(
    t=u32,
    lo=u32,
    hi=u32,
    tmo=u32,
    filt=st.sampled_from(
        [
            TIPC_SUB_PORTS,
            TIPC_SUB_SERVICE,
            TIPC_SUB_PORTS | TIPC_SUB_CANCEL,
            TIPC_SUB_SERVICE | 0x20,
        ]
    ),
    be=st.booleans(),
    handle=st.binary(min_size=8, max_size=8),
    ev=st.integers(1, 3),
    fl=u32,
    fu=u32,
    port=u32,
    node=u32,
)
def test_subscr_event_both_orders(t, lo, hi, tmo, filt, be, handle, ev, fl, fu, port, node) -> None:  # noqa: ANN001
    s = Subscr(t, lo, hi, tmo, filt, handle)
    assert Subscr.unpack(s.pack(be)) == (s, be)
    e = Event(ev, fl, fu, port, node, s)
    raw = e.pack(be)
    assert len(raw) == 48
    assert Event.unpack(raw) == (e, be)
    if be:
        assert raw[:4] == struct.pack(">I", ev)
    else:
        assert raw[:4] == struct.pack("<I", ev)


def test_cancel_is_same_subscription_with_bit() -> None:
    s = Subscr(1000, 0, 10, 0, TIPC_SUB_PORTS, b"h" * 8)
    c = Subscr(1000, 0, 10, 0, TIPC_SUB_PORTS | TIPC_SUB_CANCEL, b"h" * 8)
    assert Subscr.unpack(c.pack(False))[0].filter & TIPC_SUB_CANCEL
    assert s.pack(False)[:16] == c.pack(False)[:16]


def test_short_records_rejected() -> None:
    with pytest.raises(DecodeError):
        Subscr.unpack(bytes(27))
    with pytest.raises(DecodeError):
        Event.unpack(bytes(47))

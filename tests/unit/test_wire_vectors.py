"""Annotated Linux 6.1 packets (reference §2.13) decode to the documented field values
and re-encode byte for byte.

Words marked "documented" are copied from the reference text; a few words the text
leaves out (e.g. orignode of ACTIVATE) are filled with the values the kernel puts
there, and ``REAL_*`` vectors are whole packets copied from
../shared/reference/captures/pair-multicast.pcap.
"""

from __future__ import annotations

import pytest

from tipcpy.addr import hash128to32, node_id_from_str
from tipcpy.wire import (
    BcastProtoMsg,
    BundleMsg,
    ConnMgrMsg,
    DataMsg,
    DecodeError,
    DiscMsg,
    DistrItem,
    FragmentMsg,
    GapAckBlocks,
    LinkProtoMsg,
    Msg,
    NameDistrMsg,
    UdpMediaAddr,
    decode,
)
from tipcpy.wire.bundle import unbundle
from tipcpy.wire.consts import (
    Cap,
    DataType,
    DscType,
    ErrCode,
    FragType,
    LinkProtoType,
    NameDistrType,
    User,
)


def H(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


A = 0x195D0465  # kpeer-a
B = 0x195D0765  # kpeer-b

DSC_REQ = H(
    """5bf0004c 07ffe805 00000000 195d0765 00001267 00000003 080017e6 0a4d0103
    00000000 00000000 00000000 00000000 00000000 f2466805 00000000
    6b706565 722d6200 00000000 00000000"""
)
DSC_TRIAL = DSC_REQ[:4] + H("47ffe805") + DSC_REQ[8:]
REAL_DSC_RESP = H(
    """5bf0004c 27ffc6d2 195d0465 195d0765 00001267 00000003 080017e6 0a4d0103
    00000000 00000000 00000000 00000000 00000000 969d46d2 00000000
    6b706565 722d6200 00000000 00000000"""
)
RESET = H(
    """4f400038 20000000 00008000 195d0765 00000001 2ed34000 195d0765 195d0465
    00000000 0dac0000 62300000 00000000 00000000 00000000"""
)
ACTIVATE = H(
    """4f400038 40012ed3 00008000 195d0465 00000001 56a04000 195d0465 195d0765
    00000000 0dac0000 62300000 00000000 00000000 00000000"""
)
STATE_PROBE = H(
    """4f48002c 00000000 00020003 195d0765 00000003 2ed31001 195d0765 195d0465
    00000000 00000000 00040000"""
)
STATE_REPLY = H(
    """4f48002c 00000000 00020003 195d0465 00000003 56a01000 195d0465 195d0765
    00000000 00000000 00040000"""
)
BULK = H(
    """57400078 1c000000 00000002 195d0765 00000004 00004000 195d0765 195d0465
    00000000 00000000
    000007d0 00000001 00000001 71606415 71606416
    000007d1 00000001 00000001 3bb5d8da 3bb5d8db
    000003ea 00000001 00000001 357c4690 357c4691
    00000000 195d0765 195d0765 00000000 195d0765"""
)
REAL_WITHDRAWAL = H(
    """5750003c 24000000 00000002 195d0765 00000004 00001267 195d0765 00000000
    00000000 00000000 000007d2 00000001 00000001 1e727c46 1e727c47"""
)
NAMED = (
    H(
        """41480034 40100000 00020003 195d0765 3fc5fe95 f6994332 195d0765 195d0465
    000003e8 00000001"""
    )
    + b"hello-from-b"
)
REAL_SYN = H(
    "41420028 40100000 00030004 195d0765 8a6e709f d3030215 195d0765 195d0465 000003e9 00000001"
)
REAL_CONN_ACK_EMPTY = H("40c00018 00000000 00040004 195d0465 3c38dbfe 8a6e709f")
REAL_FIN = H("46c00018 04000000 00050006 195d0765 8a6e709f 3c38dbfe")
REAL_DIRECT = (
    H("4108002c 60000000 00030003 195d0465 3d586263 bed39b75 195d0465 195d0765") + b"hello-from-b"
)
CONN_ACK = H(
    """51400028 40000001 0013000f 195d0465 12c4a84a 74e7215d 195d0465 195d0765
    00000000 00280200"""
)
MCAST_BCAST_DUMMY = H(
    """417a002c 24100000 00000001 195d0765 bf1b1fd7 00001267 195d0765 00000000
    000003e8 00000000 0000000a"""
)
MCAST_UNICAST = (
    H(
        """416e0038 20100000 0008000b 195d0765 bf1b1fd7 00000000 195d0765 195d0465
    000003e8 00000000 0000000a"""
    )
    + b"mcast-from-b"
)
BCAST_INIT = H(
    "4b400028 00000000 00000001 195d0465 00000000 00004000 195d0465 195d0765 00000000 00000000"
)


def first_fragment() -> bytes:
    hdr = H(
        "59403668 00000000 000a000d 195d0765 00010000 00000000 195d0765 195d0465 00000000 00000000"
    )
    inner = H(
        "41487558 40100000 00000000 195d0765 4626c853 3d586263 195d0765 195d0465 000003e8 00000001"
    )
    filler = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 600)[: 13888 - len(inner)]
    return hdr + inner + filler


def roundtrip(raw: bytes) -> Msg:
    m = decode(raw)
    assert m.encode() == raw
    assert m.size == len(raw)
    # fields()/summary() never fail on real packets
    assert isinstance(m.fields(), dict)
    assert isinstance(m.summary(), str)
    return m


# ---------------------------------------------------------------- discovery
def test_dsc_req() -> None:
    m = roundtrip(DSC_REQ)
    assert isinstance(m, DiscMsg)
    assert (m.version, m.user, m.hsize, m.non_seq, m.size) == (2, User.LINK_CONFIG, 60, 1, 76)
    assert m.mtype == DscType.REQ
    assert m.caps == Cap.ALL == 0xFFF
    assert m.signature == 0xE805
    assert m.dest_domain == 0
    assert m.prevnode == B == hash128to32(node_id_from_str("kpeer-b"))
    assert m.net_id == 4711
    assert m.media_addr == UdpMediaAddr("10.77.1.3", 6118)
    assert m.media_info == H("00000003 080017e6 0a4d0103") + bytes(20)
    assert m.peer_net_hash == 0xF2466805
    assert m.peer_net_hash & 0x7FFF == m.signature & 0x7FFF
    assert m.suggested_addr == 0
    assert m.node_id == b"kpeer-b" + bytes(9)
    assert m.node_id_str == "kpeer-b"
    f = m.fields()
    assert (
        f["caps"] == 0xFFF and f["media_addr"] == "10.77.1.3:6118" and f["node_id_str"] == "kpeer-b"
    )
    assert "LINK_CONFIG REQ" in m.summary() and "kpeer-b" in m.summary()


def test_dsc_build_writes_signature_then_caps() -> None:
    m = Msg.build(
        User.LINK_CONFIG,
        DscType.REQ,
        caps=Cap.ALL,  # given before signature on purpose: build orders them
        signature=0xE805,
        non_seq=1,
        prevnode=B,
        net_id=4711,
        media_addr=UdpMediaAddr("10.77.1.3", 6118),
        peer_net_hash=0xF2466805,
        node_id=node_id_from_str("kpeer-b"),
    )
    assert m.encode() == DSC_REQ
    assert m.w[1] == 0x07FFE805


def test_dsc_caps_bit0_overrides_signature_bit15() -> None:
    m = Msg.build(13, 0, signature=0x6805, caps=0xFFF)
    assert m.signature == 0xE805  # bit 15 comes from caps bit 0
    m = Msg.build(13, 0, signature=0xE805, caps=0xFFE)
    assert m.signature == 0x6805 and m.caps == 0xFFE


def test_dsc_trial_and_resp() -> None:
    t = roundtrip(DSC_TRIAL)
    assert t.mtype == DscType.TRIAL and t.w[1] == 0x47FFE805 and t.caps == 0xFFF
    r = roundtrip(REAL_DSC_RESP)
    assert isinstance(r, DiscMsg)
    assert r.mtype == DscType.RESP
    assert r.dest_domain == A and r.prevnode == B
    assert r.signature == 0xC6D2 and r.caps == 0xFFF


# ---------------------------------------------------------------- link protocol
def test_reset() -> None:
    m = roundtrip(RESET)
    assert isinstance(m, LinkProtoMsg)
    assert (m.user, m.hsize, m.non_seq, m.is_keepalive, m.size) == (7, 40, 0, 0, 56)
    assert m.mtype == LinkProtoType.RESET
    assert (m.ack, m.seqno) == (0, 0x8000)
    assert (m.last_bcast, m.next_sent) == (0, 1)
    assert m.session == 0x2ED3
    assert (m.bc_ack_invalid, m.peer_stopping, m.redundant_link) == (1, 0, 0)
    assert (m.bearer_id, m.priority, m.net_plane, m.probe) == (0, 0, 0, 0)
    assert (m.prevnode, m.orignode, m.destnode) == (B, B, A)
    assert m.max_pkt == 14000 and m.tolerance == 0
    assert m.if_name == "b0"
    assert m.gap_ack is None


def test_reset_build() -> None:
    m = Msg.build(
        User.LINK_PROTOCOL,
        LinkProtoType.RESET,
        seqno=1 + 32767,
        next_sent=1,
        session=0x2ED3,
        bc_ack_invalid=True,
        prevnode=B,
        orignode=B,
        destnode=A,
        max_pkt=14000,
        if_name="b0",
    )
    assert m.encode() == RESET


def test_activate() -> None:
    m = roundtrip(ACTIVATE)
    assert isinstance(m, LinkProtoMsg)
    assert m.mtype == LinkProtoType.ACTIVATE
    assert m.dest_session_valid == 1 and m.dest_session == 0x2ED3
    assert m.session == 0x56A0 and m.bc_ack_invalid == 1 and m.priority == 0
    assert m.max_pkt == 14000 and m.tolerance == 0 and m.if_name == "b0"
    assert "dest_sess=0x2ed3" in m.summary()


def test_state_probe_and_reply() -> None:
    p = roundtrip(STATE_PROBE)
    r = roundtrip(STATE_REPLY)
    for m in (p, r):
        assert isinstance(m, LinkProtoMsg)
        assert m.mtype == LinkProtoType.STATE and m.size == 44
        assert m.is_keepalive == 1 and m.dest_droppable == 1  # same bit, w0[19]
        assert (m.seq_gap, m.bcast_ack, m.ack, m.seqno) == (0, 0, 2, 3)
        assert (m.last_bcast, m.next_sent, m.bc_gap) == (0, 3, 0)
        assert m.redundant_link == 1 and m.bc_ack_invalid == 0
        assert m.max_pkt == 0 and m.tolerance == 0
        assert m.gap_ack == GapAckBlocks()
        assert m.gap_ack.len == 4 and m.domain_data == b""
    assert p.probe == 1 and p.session == 0x2ED3
    assert r.probe == 0 and r.session == 0x56A0
    s = p.summary()
    assert s.startswith("LINK_PROTOCOL STATE sess=0x2ed3 ack=2 seq=3 probe")
    assert "next_sent=3" in s


def test_state_build_with_gap_ack() -> None:
    m = Msg.build(
        7,
        0,
        is_keepalive=1,
        ack=2,
        seqno=3,
        prevnode=B,
        orignode=B,
        destnode=A,
        next_sent=3,
        session=0x2ED3,
        redundant_link=1,
        probe=1,
        gap_ack=GapAckBlocks(),
    )
    assert m.encode() == STATE_PROBE


# ---------------------------------------------------------------- name distributor
def test_bulk_publication() -> None:
    m = roundtrip(BULK)
    assert isinstance(m, NameDistrMsg)
    assert (m.user, m.hsize, m.non_seq, m.size) == (11, 40, 0, 120)
    assert m.mtype == NameDistrType.PUBLICATION
    assert (m.bulk, m.last_bulk, m.non_legacy) == (1, 1, 1)
    assert (m.ack, m.seqno, m.named_seqno, m.bc_ack_invalid) == (0, 2, 4, 1)
    assert (m.orignode, m.destnode) == (B, A)
    items = m.items
    assert len(items) == 4
    assert items[0] == DistrItem(2000, 1, 1, 0x71606415, 0x71606416)
    assert items[0].key == items[0].port + 1
    assert items[1] == DistrItem(2001, 1, 1, 0x3BB5D8DA, 0x3BB5D8DB)
    assert items[3] == DistrItem(0, B, B, 0, B)
    s = m.summary()
    assert s.startswith(
        "NAME_DISTRIBUTOR PUBLICATION bulk last_bulk seqno=4 items={2000,1,1}@0x71606415"
    )
    assert m.fields()["items"][0] == {
        "type": 2000,
        "lower": 1,
        "upper": 1,
        "port": 0x71606415,
        "key": 0x71606416,
    }


def test_bulk_build() -> None:
    m = Msg.build(
        11,
        0,
        bulk=1,
        last_bulk=1,
        non_legacy=1,
        seqno=2,
        prevnode=B,
        orignode=B,
        destnode=A,
        named_seqno=4,
        bc_ack_invalid=1,
        items=decode(BULK).items,
    )
    assert m.encode() == BULK


def test_single_withdrawal_on_bcast_link() -> None:
    m = roundtrip(REAL_WITHDRAWAL)
    assert isinstance(m, NameDistrMsg)
    assert m.w[0] == 0x5750003C and m.non_seq == 1 and m.size == 60
    assert m.mtype == NameDistrType.WITHDRAWAL
    assert (m.bulk, m.last_bulk, m.non_legacy) == (0, 0, 1)
    assert m.seqno == 2 and m.named_seqno == 4 and m.mc_netid == 4711
    assert m.items == [DistrItem(2002, 1, 1, 0x1E727C46, 0x1E727C47)]


# ---------------------------------------------------------------- data
def test_named_data() -> None:
    m = roundtrip(NAMED)
    assert isinstance(m, DataMsg)
    assert (m.user, m.hsize, m.dest_droppable, m.size) == (0, 40, 1, 52)
    assert m.mtype == DataType.NAMED and m.lookup_scope == 2 and m.bcast_ack == 0
    assert (m.ack, m.seqno) == (2, 3)
    assert (m.prevnode, m.origport, m.destport, m.orignode, m.destnode) == (
        B,
        0x3FC5FE95,
        0xF6994332,
        B,
        A,
    )
    assert (m.nametype, m.nameinst) == (1000, 1)
    assert m.data == b"hello-from-b"
    assert m.summary().startswith(
        "DATA NAMED {1000,1} 0x195d0765:1069940373 -> 0x195d0465:4137239346 len=12"
    )


def test_named_build() -> None:
    m = Msg.build(
        0,
        DataType.NAMED,
        data=b"hello-from-b",
        dest_droppable=1,
        lookup_scope=2,
        ack=2,
        seqno=3,
        prevnode=B,
        origport=0x3FC5FE95,
        destport=0xF6994332,
        orignode=B,
        destnode=A,
        nametype=1000,
        nameinst=1,
    )
    assert m.hsize == 40 and m.encode() == NAMED


def test_syn_ack_fin_direct() -> None:
    syn = roundtrip(REAL_SYN)
    assert syn.w[0] == 0x41420028 and syn.syn == 1 and syn.dest_droppable == 0
    assert syn.hsize == 40 and syn.data == b"" and syn.mtype == DataType.NAMED
    ack = roundtrip(REAL_CONN_ACK_EMPTY)
    assert ack.w[0] == 0x40C00018 and ack.hsize == 24 and ack.mtype == DataType.CONN
    assert ack.orignode == ack.prevnode == A  # SHORT header: orignode := prevnode
    assert ack.destnode == 0  # not in a SHORT header: reads as 0
    with pytest.raises(ValueError):
        ack.destnode = 1
    fin = roundtrip(REAL_FIN)
    assert fin.user == User.CRITICAL_IMPORTANCE and fin.hsize == 24
    assert fin.errcode == ErrCode.TIPC_ERR_NO_PORT and fin.w[1] == 0x04000000
    assert fin.importance == 4  # msg_importance: data with an error code is SYSTEM
    d = roundtrip(REAL_DIRECT)
    assert d.w[0] == 0x4108002C and d.hsize == 32 and d.mtype == DataType.DIRECT
    assert d.w[1] == 0x60000000 and d.destnode == B


def test_conn_ack() -> None:
    m = roundtrip(CONN_ACK)
    assert isinstance(m, ConnMgrMsg)
    assert (m.user, m.hsize, m.size) == (8, 40, 40)
    assert m.mtype == 2 and m.bcast_ack == 1
    assert (m.ack, m.seqno) == (19, 15)
    assert (m.origport, m.destport) == (0x12C4A84A, 0x74E7215D)
    assert (m.conn_ack, m.adv_win) == (40, 512)


def test_mcast_method_switch() -> None:
    d = roundtrip(MCAST_BCAST_DUMMY)
    assert isinstance(d, DataMsg) and d.mtype == DataType.MCAST and d.size == 44
    assert (d.non_seq, d.dest_droppable, d.syn, d.is_rcast) == (1, 1, 1, 0)
    assert d.errcode == 2 and d.seqno == 1 and d.mc_netid == 4711 and d.destnode == 0
    assert (d.nametype, d.lower, d.upper) == (1000, 0, 10)
    u = roundtrip(MCAST_UNICAST)
    assert (u.non_seq, u.syn, u.is_rcast) == (0, 1, 1)
    assert (u.ack, u.seqno, u.destport, u.destnode) == (8, 11, 0, A)
    assert (u.nametype, u.lower, u.upper) == (1000, 0, 10)
    assert "DATA MCAST {1000,0,10}" in u.summary()


def test_bcast_init() -> None:
    m = roundtrip(BCAST_INIT)
    assert isinstance(m, BcastProtoMsg)
    assert m.seqno == 1 and m.last_bcast == 0 and m.bc_ack_invalid == 1 and m.size == 40


# ---------------------------------------------------------------- fragment and bundle
def test_first_fragment() -> None:
    raw = first_fragment()
    m = roundtrip(raw)
    assert isinstance(m, FragmentMsg)
    assert (m.user, m.hsize, m.size) == (12, 40, 13928)
    assert m.mtype == FragType.FIRST_FRAGMENT
    assert (m.ack, m.seqno, m.fragm_no, m.nof_fragms) == (10, 13, 1, 0)
    assert m.w[5] == 0 and m.importance == 0
    inner_w0 = int.from_bytes(m.data[:4], "big")
    assert inner_w0 & 0x1FFFF == 30040


def test_bundler_w9() -> None:
    inner = Msg.build(
        11,
        1,
        non_legacy=1,
        prevnode=B,
        orignode=B,
        items=[DistrItem(2000, 1, i, 7, 8) for i in [1]],
    )
    inners = []
    for i in range(23):
        x = inner.copy()
        x.items = [DistrItem(2000 + i, 1, 1, 0x100 + i, 0x101 + i)]
        x.named_seqno = i
        inners.append(x)
    body = b"".join(x.encode() for x in inners)
    hdr = Msg.build(6, 0, data=body, non_seq=1, seqno=7, prevnode=B, orignode=B, mc_netid=4711)
    hdr.msgcnt = 23
    hdr.importance = 4
    raw = hdr.encode()
    assert len(raw) == 1420
    m = roundtrip(raw)
    assert isinstance(m, BundleMsg)
    assert m.w[9] == 0x00170004 and m.msgcnt == 23 and m.importance == 4
    assert m.non_seq == 1 and m.mc_netid == 4711
    out = unbundle(m)
    assert [x.encode() for x in out] == [x.encode() for x in inners]
    assert all(x.non_seq == 0 and x.w[2] == 0 for x in out)


# ---------------------------------------------------------------- encryption header
@pytest.mark.parametrize(
    "hexwords",
    [
        "fa400000 00000000 00000001 6b706565 722d6200 00000000 00000000",
        "ef580000 00000000 00000013 195d0765",
        "e1500000 00000000 0000000d 195d0765",
        "e0400000 00000000 00000077 195d0765",
        "fa040000 00000000 00000001 195d0765",
    ],
)
def test_v7_encryption_header_is_reported(hexwords: str) -> None:
    raw = H(hexwords) + bytes(60)
    with pytest.raises(DecodeError) as ei:
        decode(raw)
    assert ei.value.reason == "encrypted (v7 header): no key"
    assert ei.value.field == "version" and ei.value.offset == 0


def test_ethernet_padding_ignored() -> None:
    m = decode(REAL_CONN_ACK_EMPTY + bytes(22))
    assert m.size == 24 and m.encode() == REAL_CONN_ACK_EMPTY

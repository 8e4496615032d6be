"""build -> encode -> decode round trips for every message kind (hypothesis).

Each test sets a random value on every field the user defines, and checks that the
decoded message is the same subclass, reads back every value, has identical
fields(), and re-encodes to the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tipcpy.wire import (
    BcastProtoMsg,
    BundleMsg,
    ConnMgrMsg,
    CryptoMsg,
    DataMsg,
    DiscMsg,
    DistrItem,
    EthMediaAddr,
    FragmentMsg,
    GapAck,
    GapAckBlocks,
    GroupProtoMsg,
    LinkProtoMsg,
    Msg,
    NameDistrMsg,
    TunnelMsg,
    UdpMediaAddr,
    decode,
    default_hsize,
    msg_class,
)
from tipcpy.wire.consts import Cap, User

u1 = st.integers(0, 1)
u3 = st.integers(0, 7)
u4 = st.integers(0, 15)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
payload = st.binary(max_size=300)

settings.register_profile("wire", max_examples=100, deadline=None)
settings.load_profile("wire")


def check_roundtrip(m: Msg, expect: dict[str, Any], cls: type[Msg]) -> Msg:
    raw = m.encode()
    assert len(raw) == m.size == m.hsize + len(m.data)
    d = decode(raw)
    assert type(d) is cls
    assert d.encode() == raw
    assert d.fields() == m.fields()
    assert d.summary() == m.summary()
    for k, v in expect.items():
        assert getattr(d, k) == v, k
    return d


def common_fields() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "ack": u16,
        "seqno": u16,
        "prevnode": u32,
        "non_seq": u1,
        "bcast_ack": u16,
    }


@given(
    user=st.integers(0, 3),
    mtype=u3,
    data=payload,
    f=st.fixed_dictionaries(
        {
            "errcode": u4,
            "reroute_cnt": u4,
            "lookup_scope": st.integers(0, 3),
            "dest_droppable": u1,
            "src_droppable": u1,
            "syn": u1,
            "origport": u32,
            "destport": u32,
            **common_fields(),
        }
    ),
    wide=st.fixed_dictionaries(
        {"orignode": u32, "destnode": u32, "nametype": u32, "lower": u32, "upper": u32}
    ),
    grp=st.fixed_dictionaries({"grp_bc_seqno": u16, "grp_evt": st.integers(0, 3)}),
)
def test_data(user: int, mtype: int, data: bytes, f: dict, wide: dict, grp: dict) -> None:
    hs = default_hsize(user, mtype)
    if hs >= 32:
        f |= {"orignode": wide["orignode"], "destnode": wide["destnode"]}
    if hs >= 40:
        f |= {"nametype": wide["nametype"], "nameinst": wide["lower"]}
    if mtype == 1:
        f |= {"upper": wide["upper"]}
    elif mtype >= 4:  # group messages: w10 = grp_bc_seqno / grp_evt
        f |= grp
    m = Msg.build(user, mtype, data=data, **f)
    assert isinstance(m, DataMsg) and m.hsize == hs
    d = check_roundtrip(m, f | {"user": user, "mtype": mtype, "data": data}, DataMsg)
    if hs == 24:
        assert d.orignode == d.prevnode


@given(
    mtype=st.integers(0, 2),
    f=st.fixed_dictionaries(
        {
            "session": u16,
            "bc_ack_invalid": u1,
            "peer_stopping": u1,
            "redundant_link": u1,
            "bearer_id": u3,
            "priority": st.integers(0, 31),
            "net_plane": u3,
            "is_keepalive": u1,
            "last_bcast": u16,
            "next_sent": u16,
            "tolerance": u16,
            "destnode": u32,
            "orignode": u32,
            **common_fields(),
        }
    ),
    state=st.fixed_dictionaries(
        {"probe": u1, "seq_gap": st.integers(0, 0x1FFF), "bc_gap": st.integers(0, 0x3FF)}
    ),
    ra=st.fixed_dictionaries(
        {
            "max_pkt": st.integers(0, 0xFFFF).map(lambda x: x * 4),
            "if_name": st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", max_size=15),
        }
    ),
    act=st.fixed_dictionaries({"dest_session_valid": u1, "dest_session": u16}),
    gap=st.none()
    | st.builds(
        GapAckBlocks,
        st.lists(st.builds(GapAck, u16, u16), max_size=64).map(tuple),
        st.lists(st.builds(GapAck, u16, u16), max_size=64).map(tuple),
    ),
    domain=st.binary(max_size=40),
)
def test_link_proto(
    mtype: int, f: dict, state: dict, ra: dict, act: dict, gap: Any, domain: bytes
) -> None:
    if mtype == 0:
        f |= state
        data = (gap.pack() + domain) if gap is not None else None
    else:
        f |= ra
        if mtype == 2:  # ACTIVATE reuses w1[16:0] for dest_session_valid/dest_session
            f.pop("bcast_ack")
            f |= act
        data = None
    m = Msg.build(7, mtype, **f) if data is None else Msg.build(7, mtype, data=data, **f)
    d = check_roundtrip(m, f, LinkProtoMsg)
    assert isinstance(d, LinkProtoMsg)
    if mtype == 0:
        assert d.gap_ack == gap
        if gap is not None:
            assert d.domain_data == domain
    else:
        assert d.if_name == ra["if_name"]
        assert len(d.data) == 16


@given(
    mtype=st.integers(0, 3),
    data_size=st.integers(0, 40),
    f=st.fixed_dictionaries(
        {
            "caps": st.integers(0, 0x1FFF),
            "signature": u16,
            "dest_domain": u32,
            "prevnode": u32,
            "net_id": u32,
            "peer_net_hash": u32,
            "suggested_addr": u32,
            "non_seq": u1,
        }
    ),
    media=st.one_of(
        st.builds(UdpMediaAddr, st.ip_addresses().map(str), u16),
        st.builds(EthMediaAddr, st.binary(min_size=6, max_size=6)),
    ),
    nid=st.binary(min_size=16, max_size=16),
)
def test_disc(mtype: int, data_size: int, f: dict, media: Any, nid: bytes) -> None:
    m = Msg.build(13, mtype, media_addr=media, node_id=nid, **f)
    assert isinstance(m, DiscMsg) and m.hsize == 60 and m.size == 76
    expect = dict(f)
    # signature is written first, caps after: bit 15 is caps bit 0
    expect["signature"] = (f["signature"] & 0x7FFF) | ((f["caps"] & 1) << 15)
    d = check_roundtrip(m, expect | {"media_addr": media, "node_id": nid}, DiscMsg)
    assert d.w[1] >> 29 == mtype


@given(
    mtype=st.integers(0, 1),
    items=st.lists(st.builds(DistrItem, u32, u32, u32, u32, u32), max_size=70),
    f=st.fixed_dictionaries(
        {"bulk": u1, "last_bulk": u1, "non_legacy": u1, "named_seqno": u16, "bc_ack_invalid": u1,
         "orignode": u32, "destnode": u32, **common_fields()}
    ),
)  # fmt: skip
def test_name_distr(mtype: int, items: list, f: dict) -> None:
    m = Msg.build(11, mtype, items=items, **f)
    check_roundtrip(m, f | {"items": items}, NameDistrMsg)


@given(
    mtype=st.integers(0, 2),
    data=payload,
    f=st.fixed_dictionaries(
        {"fragm_no": u16, "nof_fragms": u16, "importance": u3, "destnode": u32, **common_fields()}
    ),
)
def test_fragment(mtype: int, data: bytes, f: dict) -> None:
    check_roundtrip(Msg.build(12, mtype, data=data, **f), f, FragmentMsg)


@given(
    data=payload,
    f=st.fixed_dictionaries({"msgcnt": u16, "importance": u3, "mc_netid": u32, **common_fields()}),
)
def test_bundle_header(data: bytes, f: dict) -> None:
    check_roundtrip(Msg.build(6, 0, data=data, **f), f, BundleMsg)


@given(
    mtype=st.integers(0, 2),
    f=st.fixed_dictionaries(
        {"conn_ack": u16, "adv_win": u16, "origport": u32, "destport": u32, "orignode": u32,
         "destnode": u32, **common_fields()}
    ),
)  # fmt: skip
def test_conn_mgr(mtype: int, f: dict) -> None:
    check_roundtrip(Msg.build(8, mtype, **f), f, ConnMgrMsg)


@given(
    mtype=st.integers(0, 5),
    f=st.fixed_dictionaries(
        {"bc_syncpt": u16, "adv_win": u16, "origport": u32, "destport": u32, "orignode": u32,
         "destnode": u32, "dest_droppable": u1, **common_fields()}
    ),
)  # fmt: skip
def test_group_proto(mtype: int, f: dict) -> None:
    d = check_roundtrip(Msg.build(9, mtype, **f), f, GroupProtoMsg)
    assert d.bc_acked == d.remitted == d.grp_bc_syncpt == f["bc_syncpt"]


@given(
    mtype=st.integers(0, 1),
    f=st.fixed_dictionaries(
        {
            "msgcnt": u16,
            "bearer_id": u3,
            "session": u16,
            "fragm_no": u16,
            "destnode": u32,
            **common_fields(),
        }
    ),
    data=payload,
)
def test_tunnel(mtype: int, f: dict, data: bytes) -> None:
    f["nof_fragms"] = 1  # payload is then an opaque fragment, not a packet to decode
    d = check_roundtrip(Msg.build(10, mtype, data=data, **f), f, TunnelMsg)
    assert d.syncpt == f["msgcnt"] and d.inner is None


def test_tunnel_inner() -> None:
    inner = Msg.build(
        0, 3, data=b"x" * 10, prevnode=1, orignode=1, destnode=2, origport=5, destport=6
    )
    t = Msg.build(10, 1, data=inner.encode(), msgcnt=1)
    assert decode(t.encode()).inner == inner


@given(
    f=st.fixed_dictionaries(
        {"last_bcast": u16, "bc_ack_invalid": u1, "destnode": u32, **common_fields()}
    )
)
def test_bcast_proto(f: dict) -> None:
    d = check_roundtrip(Msg.build(5, 0, **f), f, BcastProtoMsg)
    assert (d.bcgap_after, d.bcgap_to) == (f["ack"], f["seqno"])


@given(
    gen=u16,
    mode=u4,
    key=st.binary(min_size=0, max_size=72),
    alg=st.text("abcdefghijklmnopqrstuvwxyz()", max_size=31),
)
def test_crypto(gen: int, mode: int, key: bytes, alg: str) -> None:
    m = Msg.build(14, 0, key_gen=gen, key_mode=mode)
    assert isinstance(m, CryptoMsg)
    m.set_key(alg, key)
    d = check_roundtrip(
        m, {"key_gen": gen, "key_mode": mode, "key": key, "alg_name": alg}, CryptoMsg
    )
    assert d.keylen == len(key)


# ---------------------------------------------------------------- misc API
def test_build_rejects_unknown_and_readonly_fields() -> None:
    with pytest.raises(TypeError):
        Msg.build(7, 0, no_such_field=1)
    with pytest.raises(TypeError):
        Msg.build(7, 0, size=3)
    with pytest.raises(ValueError):
        Msg.build(4)
    with pytest.raises(ValueError):
        Msg.build(15)
    with pytest.raises(ValueError):
        Msg.build(0, 0, hsize=22)


@pytest.mark.parametrize("user", [u for u in range(16) if u not in (4, 15)])
def test_default_hsize_and_class(user: int) -> None:
    m = Msg.build(user, 0)
    assert type(m) is msg_class(user)
    assert m.version == 2 and m.user == user
    assert m.hsize == (60 if user == User.LINK_CONFIG else 40 if user > 3 else 24)


def test_data_default_hsizes() -> None:
    assert [default_hsize(0, t) for t in range(8)] == [24, 44, 40, 32, 44, 44, 44, 44]


def test_hsize_setter_grows_and_shrinks() -> None:
    m = Msg.build(0, 0, data=b"abc", prevnode=7)
    m.hsize = 32
    assert len(m.w) == 8 and m.size == 35
    m.destnode = 9
    d = decode(m.encode())
    assert d.hsize == 32 and d.destnode == 9 and d.orignode == 0 and d.data == b"abc"
    m.hsize = 24
    assert m.destnode == 0 and decode(m.encode()).hsize == 24
    with pytest.raises(ValueError):
        m.hsize = 64


def test_unknown_bits_survive() -> None:
    m = Msg.build(7, 0)
    m.w[1] |= 0x00010000  # a bit no STATE field names
    m.w[8] = 0xFFFFFC00  # w8 bits above bc_gap
    d = decode(m.encode())
    assert d.w == m.w


def test_copy_is_independent() -> None:
    m = Msg.build(7, 1, session=5)
    c = m.copy()
    c.session = 6
    assert m.session == 5 and c == decode(c.encode()) and m != c


def test_caps_is_cap_flag_compatible() -> None:
    m = Msg.build(
        13, 0, caps=Cap.NODE_ID128 | Cap.GAP_ACK_BLOCK, media_addr=UdpMediaAddr("1.2.3.4")
    )
    m.node_id = bytes(16)
    assert decode(m.encode()).caps == Cap.NODE_ID128 | Cap.GAP_ACK_BLOCK

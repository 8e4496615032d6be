"""MSG_BUNDLER and MSG_FRAGMENTER helpers: round trips and kernel-shaped output."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tipcpy.wire import BundleMsg, DecodeError, DistrItem, FragmentMsg, Msg, decode
from tipcpy.wire.bundle import bundle, unbundle
from tipcpy.wire.consts import FragType
from tipcpy.wire.fragment import Reassembler, fragment, fragment_packets, link_mss

A = 0x195D0465
B = 0x195D0765


def named(n: int, imp: int = 0, seed: int = 0) -> Msg:
    data = random.Random(seed).randbytes(n)
    return Msg.build(
        imp,
        2,
        data=data,
        prevnode=B,
        orignode=B,
        destnode=A,
        origport=1,
        destport=2,
        nametype=1000,
        nameinst=1,
        lookup_scope=2,
    )


# ---------------------------------------------------------------- fragments
@pytest.mark.parametrize("mss", [13928, 1428])
def test_fragment_max_message(mss: int) -> None:
    m = named(66000)
    assert m.size == 66040
    frags = fragment(m, mss)
    chunk = mss - 40
    assert len(frags) == -(-66040 // chunk)
    assert [f.mtype for f in frags] == (
        [FragType.FIRST_FRAGMENT]
        + [FragType.FRAGMENT] * (len(frags) - 2)
        + [FragType.LAST_FRAGMENT]
    )
    assert [f.fragm_no for f in frags] == list(range(1, len(frags) + 1))
    assert all(f.size == mss for f in frags[:-1])
    assert frags[-1].size == 40 + 66040 - chunk * (len(frags) - 1) <= mss
    assert all(f.hsize == 40 and f.nof_fragms == 0 and f.importance == 0 for f in frags)
    assert all((f.prevnode, f.orignode, f.destnode) == (B, B, A) for f in frags)
    r = Reassembler()
    outs = [r.feed(decode(f.encode())) for f in frags]
    assert outs[:-1] == [None] * (len(frags) - 1)
    assert outs[-1] == m and outs[-1].encode() == m.encode()
    assert not r.in_progress


def test_fragment_matches_kernel_capture_sizes() -> None:
    """30000-byte RDM message at MTU 14000 -> 13928, 13928, 2304 (reference §2.13)."""
    m = named(30000)
    m.dest_droppable = 1
    assert m.size == 30040
    frags = fragment(m.encode(), link_mss(14000))
    assert [f.size for f in frags] == [13928, 13928, 2304]
    assert frags[0].encode()[:4].hex() == "59403668"
    assert frags[0].data[:4].hex() == "41487558"  # inner NAMED header, size 30040
    assert link_mss(1500) == 1428


@pytest.mark.parametrize("imp", [0, 1, 2, 3])
def test_fragment_importance(imp: int) -> None:
    frags = fragment(named(5000, imp), 1428)
    assert {f.importance for f in frags} == {imp}
    assert {f.w[9] & 7 for f in frags} == {imp}
    frags = fragment(named(5000, imp), 1428, importance=4)
    assert {f.importance for f in frags} == {4}


def test_fragment_refuses_small_or_huge() -> None:
    with pytest.raises(ValueError):
        fragment(named(100), 1428)
    with pytest.raises(ValueError):
        fragment(named(10).encode() + bytes(0), 40)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1400, 20000), mss=st.integers(200, 9000), seed=st.integers(0, 99))
def test_fragment_roundtrip_property(n: int, mss: int, seed: int) -> None:
    m = named(n, seed=seed)
    if m.size <= mss - 40:
        return
    frags = fragment(m, mss)
    assert all(f.size <= mss for f in frags)
    r = Reassembler()
    res = None
    for f in frags:
        res = r.feed(f.encode())
    assert res == m


def test_reassembler_errors() -> None:
    frags = fragment(named(4000), 1428)
    assert len(frags) == 3
    r = Reassembler()
    with pytest.raises(DecodeError, match="without FIRST_FRAGMENT"):
        r.feed(frags[1])
    with pytest.raises(DecodeError, match="without FIRST_FRAGMENT"):
        r.feed(frags[2])
    assert r.feed(frags[0]) is None
    with pytest.raises(DecodeError, match="in progress"):
        r.feed(frags[0])
    assert not r.in_progress  # the kernel drops both
    # out-of-order fragm_no
    r.feed(frags[0])
    with pytest.raises(DecodeError) as ei:
        r.feed(frags[2])
    assert ei.value.field == "fragm_no"
    # not a fragment
    with pytest.raises(DecodeError):
        r.feed(named(10))
    # reset() abandons a reassembly
    r.feed(frags[0])
    r.reset()
    assert r.feed(frags[0]) is None and r.feed(frags[1]) is None and r.feed(frags[2]) is not None


def test_reassembler_oversize() -> None:
    first = Msg.build(12, 0, data=bytes(60000), fragm_no=1)
    mid = Msg.build(12, 1, data=bytes(7000), fragm_no=2)
    r = Reassembler()
    r.feed(first)
    with pytest.raises(DecodeError) as ei:
        r.feed(mid)
    assert ei.value.field == "size"
    assert not r.in_progress


def test_reassembler_bad_inner() -> None:
    first = Msg.build(12, 0, data=b"\xff" * 100, fragm_no=1)
    last = Msg.build(12, 2, data=b"\x00" * 100, fragm_no=2)
    r = Reassembler()
    r.feed(first)
    with pytest.raises(DecodeError):
        r.feed(last)
    assert not r.in_progress


# ---------------------------------------------------------------- fast paths = plain path
def plain_fragment(
    inner: Msg | bytes, mss: int, importance: int | None = None, *,
    prevnode: int | None = None, destnode: int | None = None,
) -> list[Msg]:
    """The plain path: every fragment through Msg.build and its named fields (what
    fragment() did before its header words were written directly)."""
    m = inner if isinstance(inner, Msg) else decode(inner)
    raw = m.encode() if isinstance(inner, Msg) else bytes(inner[: m.size])
    chunk = mss - 40
    if chunk < 4 or len(raw) <= chunk or len(raw) > 66060:
        raise ValueError("not fragmentable")
    imp = m.importance if importance is None else importance
    pn = m.prevnode if prevnode is None else prevnode
    dn = m.destnode if destnode is None else destnode
    n = -(-len(raw) // chunk)
    out = []
    for i in range(n):
        mt = 0 if i == 0 else (2 if i == n - 1 else 1)
        f = Msg.build(12, mt, data=raw[i * chunk:(i + 1) * chunk], prevnode=pn,
                      orignode=pn, destnode=dn, fragm_no=i + 1)
        f.importance = imp
        out.append(f)
    return out


def plain_reassemble(frags: list[bytes]) -> Msg:
    """The plain path on receive: decode every packet, join the payloads, decode."""
    return decode(b"".join(decode(f).data for f in frags))


def inner_msg(n: int, seed: int, user: int, hsize_kind: int) -> Msg:
    """An inner message of any shape a link fragments: data of every importance and
    header size, or a NAME_DISTRIBUTOR bulk (SYSTEM importance, INT header)."""
    rnd = random.Random(seed)
    if user == 11:
        m = Msg.build(11, 0, data=rnd.randbytes(n - n % 20), prevnode=B, orignode=B,
                      destnode=A)
        return m
    mtype = (0, 1, 2, 3)[hsize_kind]  # CONN (24 B), MCAST (44), NAMED (40), DIRECT (32)
    m = Msg.build(user, mtype, data=rnd.randbytes(n), prevnode=rnd.getrandbits(32))
    for i in range(4, len(m.w)):
        m.w[i] = rnd.getrandbits(32)  # every header word the type has, any bits
    return m


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 66000), mtu=st.sampled_from([576, 1280, 1500, 9000, 14000, 65507])
       | st.integers(300, 65507), seed=st.integers(0, 2**16), user=st.sampled_from([0, 1, 2, 3, 11]),
       hsize_kind=st.integers(0, 3), as_bytes=st.booleans(),
       override=st.none() | st.tuples(st.integers(0, 7), st.integers(0, 2**32 - 1),
                                      st.integers(0, 2**32 - 1)))
def test_fragment_fast_paths_equal_plain_path(
    n: int, mtu: int, seed: int, user: int, hsize_kind: int, as_bytes: bool,
    override: tuple[int, int, int] | None,
) -> None:
    """fragment() (header words written directly) and fragment_packets() (wire bytes
    built in place) give exactly the plain Msg.build path's packets, for every size up
    to the largest TIPC message and any MTU; the Reassembler gives back the message
    the plain join + decode gives, fed decoded packets, raw bytes or the FragmentMsgs."""
    m = inner_msg(n, seed, user, hsize_kind)
    mss = link_mss(mtu)
    inner: Msg | bytes = m.encode() if as_bytes else m
    kw = {} if override is None else dict(
        importance=override[0], prevnode=override[1], destnode=override[2])
    try:
        plain = plain_fragment(inner, mss, **kw)
    except ValueError:
        with pytest.raises(ValueError):
            fragment(inner, mss, **kw)
        with pytest.raises(ValueError):
            fragment_packets(inner, mss, **kw)
        return
    fast = fragment(inner, mss, **kw)
    want = [f.encode() for f in plain]
    assert [type(f) for f in fast] == [FragmentMsg] * len(plain)
    assert [f.w for f in fast] == [f.w for f in plain]
    assert [f.data for f in fast] == [f.data for f in plain]
    assert [f.encode() for f in fast] == want
    pk = fragment_packets(inner, mss, **kw)
    assert all(isinstance(p, bytearray) for p in pk)
    assert [bytes(p) for p in pk] == want
    assert m.encode() == (inner if as_bytes else m.encode())  # the inner is left intact
    expect = plain_reassemble(want)
    assert expect == m
    for feed_as in ("decoded", "bytes", "fragmsg"):
        r = Reassembler()
        outs = [r.feed(decode(p) if feed_as == "decoded" else (p if feed_as == "bytes" else f))
                for p, f in zip(want, fast, strict=True)]
        assert outs[:-1] == [None] * (len(want) - 1)
        assert outs[-1] == expect and outs[-1].encode() == expect.encode()
        assert not r.in_progress


def test_fragment_packets_on_a_60k_message_at_the_udp_mtu() -> None:
    """The bench's case: 61440 B of NAMED data at MTU 14000 -> 5 packets, every one but
    the last exactly mss; seqno/ack left 0 for the link to patch in place."""
    m = named(61440)
    pk = fragment_packets(m, link_mss(14000), prevnode=B, destnode=A)
    assert [len(p) for p in pk] == [13928] * 4 + [40 + 61480 - 4 * 13888]
    assert [decode(p).seqno for p in pk] == [0] * 5
    r = Reassembler()
    assert [r.feed(bytes(p)) for p in pk][-1] == m


# ---------------------------------------------------------------- bundles
def nd(i: int) -> Msg:
    return Msg.build(
        11,
        1,
        non_legacy=1,
        named_seqno=i,
        prevnode=B,
        orignode=B,
        items=[DistrItem(2000 + i, 1, 1, i, i + 1)],
    )


def test_bundle_like_kernel_burst() -> None:
    """23 x 60-byte name updates fill a 1420-byte bundle at MTU 1500 (mss 1428)."""
    msgs = [nd(i) for i in range(50)]
    bs = bundle(msgs, 1428)
    assert [b.msgcnt for b in bs] == [23, 23, 4]
    assert bs[0].size == 1420 and bs[0].w[9] == 0x00170004
    out = [x for b in bs for x in unbundle(decode(b.encode()))]
    assert [x.encode() for x in out] == [m.encode() for m in msgs]


def test_bundle_alignment_and_mixed_sizes() -> None:
    msgs = [named(n) for n in (1, 2, 3, 5, 0, 7)]
    [b] = bundle([m.encode() for m in msgs], 14000)
    raw = b.data
    pos = 0
    for m in msgs:
        assert pos % 4 == 0
        assert raw[pos : pos + m.size] == m.encode()
        pos = (pos + m.size + 3) & ~3
    assert len(raw) == sum((m.size + 3) & ~3 for m in msgs[:-1]) + msgs[-1].size
    assert unbundle(decode(b.encode())) == msgs


def test_bundle_splits_on_importance() -> None:
    msgs = [named(10, 0), named(10, 0), named(10, 2), named(10, 0)]
    bs = bundle(msgs, 14000)
    assert [(b.msgcnt, b.importance) for b in bs] == [(2, 0), (1, 2), (1, 0)]


def test_bundle_refusals() -> None:
    with pytest.raises(ValueError):
        bundle([named(2000)], 1428)
    with pytest.raises(ValueError):
        bundle([Msg.build(12, 0, data=b"x")], 1428)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 600), min_size=1, max_size=40), mss=st.integers(700, 3000))
def test_bundle_roundtrip_property(sizes: list[int], mss: int) -> None:
    msgs = [named(n, seed=i) for i, n in enumerate(sizes)]
    bs = bundle(msgs, mss)
    assert all(isinstance(b, BundleMsg) and b.size <= mss for b in bs)
    assert sum(b.msgcnt for b in bs) == len(msgs)
    assert [x for b in bs for x in unbundle(decode(b.encode()))] == msgs


def test_unbundle_errors() -> None:
    [b] = bundle([named(10), named(11)], 1428)
    bad = b.copy()
    bad.msgcnt = 3
    with pytest.raises(DecodeError) as ei:
        unbundle(bad)  # type: ignore[arg-type]
    assert ei.value.field == "msgcnt"
    bad = b.copy()
    bad.data = b.data + b"\x00\x00"
    with pytest.raises(DecodeError, match="after the last inner message"):
        unbundle(bad)  # type: ignore[arg-type]
    bad = b.copy()
    bad.data = b.data[:-3]  # second inner message runs past the end
    with pytest.raises(DecodeError) as ei:
        unbundle(bad)  # type: ignore[arg-type]
    assert ei.value.field == "size" and ei.value.offset == 40 + 52
    bad = b.copy()
    bad.data = b"\xe0" + b.data[1:]  # inner version 7
    with pytest.raises(DecodeError) as ei:
        unbundle(bad)  # type: ignore[arg-type]
    assert ei.value.offset == 40


def test_fragment_msg_class() -> None:
    f = fragment(named(3000), 1428)[0]
    assert isinstance(f, FragmentMsg) and "inner=LOW/3040B" in f.summary()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=12), st.integers(0, 3),
       st.integers(0, 9999))
def test_pack_bundle_twin_of_bundle(sizes: list[int], imp: int, seed: int) -> None:
    """The links' hot-path bundle builder (raw bytes in, no decode) gives the very
    bytes the plain wire.bundle.bundle() encodes for the same messages."""
    from tipcpy.wire.bundle import pack_bundle

    raws = [named(n, imp, seed + i).encode() for i, n in enumerate(sizes)]
    (plain,) = bundle(list(raws), mss=1 << 16, dnode=A)
    assert pack_bundle(raws, imp, B, A) == plain.encode()

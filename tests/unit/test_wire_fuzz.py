"""Malformed input may only ever raise DecodeError (with field, offset and reason).

A seeded loop generates FUZZ_COUNT inputs (random bytes, truncations, bad versions,
hsize out of range, size beyond the buffer / below hsize, wire-invalid users, and
byte/bit mutations of real kernel packets); hypothesis adds structured headers.
Every message that does decode must re-encode to its own bytes, and fields(),
summary(), unbundle(), the Reassembler and tunnel inner decoding must hold up too.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_wire_vectors import (
    ACTIVATE,
    BCAST_INIT,
    BULK,
    CONN_ACK,
    DSC_REQ,
    MCAST_BCAST_DUMMY,
    MCAST_UNICAST,
    NAMED,
    REAL_DIRECT,
    REAL_DSC_RESP,
    REAL_FIN,
    REAL_WITHDRAWAL,
    RESET,
    STATE_PROBE,
)
from tipcpy.wire import DecodeError, Event, GapAckBlocks, Msg, Subscr, decode
from tipcpy.wire.bundle import unbundle
from tipcpy.wire.fragment import Reassembler
from tipcpy.wire.items import media_addr_from_info, unpack_items

FUZZ_COUNT = 100_000

SEEDS = [
    DSC_REQ,
    REAL_DSC_RESP,
    RESET,
    ACTIVATE,
    STATE_PROBE,
    BULK,
    REAL_WITHDRAWAL,
    NAMED,
    REAL_FIN,
    REAL_DIRECT,
    CONN_ACK,
    MCAST_BCAST_DUMMY,
    MCAST_UNICAST,
    BCAST_INIT,
]


def _bundle_seed() -> bytes:
    inner = [Msg.build(11, 0, non_legacy=1, data=bytes(20)).encode(), NAMED, REAL_FIN]
    body = b""
    for r in inner:
        body += bytes(-len(body) % 4) + r
    b = Msg.build(6, 0, data=body, msgcnt=len(inner))
    return b.encode()


def _frag_seeds() -> list[bytes]:
    from tipcpy.wire.fragment import fragment

    big = Msg.build(0, 2, data=bytes(range(256)) * 3, nametype=1000, nameinst=1)
    return [f.encode() for f in fragment(big, 300)]


def _tunnel_seed() -> bytes:
    return Msg.build(10, 1, data=NAMED, msgcnt=1).encode()


def _crypto_seed() -> bytes:
    m = Msg.build(14, 0, key_gen=1)
    m.set_key("gcm(aes)", bytes(36))  # type: ignore[attr-defined]
    return m.encode()


SEEDS += [_bundle_seed(), _tunnel_seed(), _crypto_seed()] + _frag_seeds()


def exercise(buf: bytes, reasm: Reassembler) -> str:
    """Decode and poke everything; return 'ok' or 'err'.  Any other exception fails."""
    try:
        m = decode(buf)
    except DecodeError as e:
        assert e.field and isinstance(e.offset, int) and e.reason
        assert str(e).startswith("bad ")
        return "err"
    assert m.encode() == bytes(buf[: m.size])
    m.fields()
    m.summary()
    repr(m)
    u = m.user
    try:
        if u == 6:
            for inner in unbundle(m):  # type: ignore[arg-type]
                inner.fields()
                inner.summary()
        elif u == 12:
            out = reasm.feed(m)  # type: ignore[arg-type]
            if out is not None:
                out.fields()
        elif u == 10:
            inner = m.inner  # type: ignore[attr-defined]
            if inner is not None:
                inner.summary()
        elif u == 13:
            _ = m.media_addr  # type: ignore[attr-defined]
        elif u == 11:
            _ = m.items  # type: ignore[attr-defined]
    except DecodeError as e:
        assert e.field and e.reason
    return "ok"


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    b = bytearray(seed)
    kind = rng.randrange(8)
    if kind == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # random bytes
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 2:  # truncate
        del b[rng.randrange(len(b)) :]
    elif kind == 3:  # extend (padding or garbage)
        b += rng.randbytes(rng.randint(1, 40))
    elif kind == 4:  # rewrite the size field
        w0 = struct.unpack_from(">I", b, 0)[0] & ~0x1FFFF
        struct.pack_into(
            ">I",
            b,
            0,
            w0
            | rng.choice(
                [0, 1, 23, 24, 40, len(b) - 1, len(b) + 1, 0x1FFFF, rng.randrange(0x20000)]
            ),
        )
    elif kind == 5:  # rewrite hsize
        w0 = struct.unpack_from(">I", b, 0)[0] & ~(0xF << 21)
        struct.pack_into(">I", b, 0, w0 | (rng.randrange(16) << 21))
    elif kind == 6:  # rewrite user (incl. 4 and 15) and mtype
        w0 = struct.unpack_from(">I", b, 0)[0] & ~(0xF << 25)
        struct.pack_into(">I", b, 0, w0 | (rng.randrange(16) << 25))
        if len(b) >= 8:
            b[4] = (b[4] & 0x1F) | (rng.randrange(8) << 5)
    else:  # rewrite version
        b[0] = (b[0] & 0x1F) | (rng.randrange(8) << 5)
    return bytes(b)


def _random_header(rng: random.Random) -> bytes:
    """Plausible w0 (mostly version 2) with random everything else."""
    n = rng.randint(0, 120)
    body = bytearray(rng.randbytes(max(n, 4)))
    ver = 2 if rng.random() < 0.85 else rng.randrange(8)
    hw = rng.randrange(16)
    size = (
        rng.choice([len(body), rng.randrange(0x20000), 4 * hw, len(body) + rng.randint(-8, 8)])
        & 0x1FFFF
    )
    w0 = (ver << 29) | (rng.randrange(16) << 25) | (hw << 21) | (rng.randrange(16) << 17) | size
    struct.pack_into(">I", body, 0, w0)
    return bytes(body)


def test_fuzz_volume() -> None:
    rng = random.Random(0x7195)
    reasm = Reassembler()
    counts = {"ok": 0, "err": 0}
    for i in range(FUZZ_COUNT):
        r = i % 10
        if r < 6:
            buf = _mutate(rng, rng.choice(SEEDS))
        elif r < 9:
            buf = _random_header(rng)
        else:
            buf = rng.randbytes(rng.randint(0, 80))
        counts[exercise(buf, reasm)] += 1
    assert counts["ok"] + counts["err"] == FUZZ_COUNT
    # the generator must exercise both outcomes substantially
    assert counts["ok"] > FUZZ_COUNT // 10, counts
    assert counts["err"] > FUZZ_COUNT // 10, counts


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(buf: bytes) -> None:
    exercise(buf, Reassembler())


@settings(max_examples=300, deadline=None)
@given(
    ver=st.integers(0, 7),
    user=st.integers(0, 15),
    hw=st.integers(0, 15),
    flags=st.integers(0, 15),
    size=st.integers(0, 0x1FFFF),
    words=st.lists(st.integers(0, 0xFFFFFFFF), max_size=20),
    tail=st.binary(max_size=64),
)
def test_fuzz_structured_header(
    ver: int, user: int, hw: int, flags: int, size: int, words: list, tail: bytes
) -> None:
    w0 = (ver << 29) | (user << 25) | (hw << 21) | (flags << 17) | size
    buf = struct.pack(f">{1 + len(words)}I", w0, *words) + tail
    exercise(buf, Reassembler())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_items(buf: bytes) -> None:
    for fn in (
        lambda: unpack_items(buf),
        lambda: GapAckBlocks.unpack(buf),
        lambda: Subscr.unpack(buf),
        lambda: Event.unpack(buf),
        lambda: media_addr_from_info(buf),
    ):
        try:
            fn()
        except DecodeError:
            pass


# ---------------------------------------------------------------- specific rejections
def _w0(ver: int = 2, user: int = 0, hsize: int = 24, size: int = 24, flags: int = 0) -> bytes:
    return struct.pack(
        ">I", (ver << 29) | (user << 25) | ((hsize // 4) << 21) | (flags << 17) | size
    )


@pytest.mark.parametrize(
    ("buf", "field", "text"),
    [
        (b"", "length", "bad length 0 at offset 0"),
        (bytes(23), "length", "23"),
        (_w0(ver=3) + bytes(20), "version", "bad version 3 at offset 0: must be 2"),
        (_w0(hsize=16, size=24) + bytes(20), "hsize", "bad hsize 16 at offset 0: must be 24..60"),
        (_w0(hsize=0, size=24) + bytes(20), "hsize", "must be 24..60"),
        (_w0(hsize=40, size=40) + bytes(20), "size", "exceeds the 24 bytes available"),
        (_w0(hsize=32, size=30) + bytes(28), "size", "smaller than hsize 32"),
        (_w0(size=200) + bytes(20), "size", "exceeds"),
        (_w0(size=66025) + bytes(66025), "size", "data exceeds 66000"),
        (_w0(user=4) + bytes(20), "user", "bad user 4"),
        (_w0(user=15) + bytes(20), "user", "bad user 15"),
        (_w0(user=7) + bytes(20), "hsize", "internal header"),
        (_w0(user=13, hsize=40, size=40) + bytes(36), "hsize", "60-byte header"),
    ],
)
def test_specific_rejections(buf: bytes, field: str, text: str) -> None:
    with pytest.raises(DecodeError) as ei:
        decode(buf)
    assert ei.value.field == field
    assert text in str(ei.value)


def test_named_data_needs_40_byte_header() -> None:
    m = Msg.build(0, 2, hsize=24)
    with pytest.raises(DecodeError, match="NAMED data needs a 40-byte header"):
        decode(m.encode())
    m = Msg.build(0, 1, hsize=40)
    with pytest.raises(DecodeError, match="MCAST data needs a 44-byte header"):
        decode(m.encode())


def test_data_size_limit_is_inclusive() -> None:
    m = Msg.build(0, 0, data=bytes(66000))
    assert decode(m.encode()).size == 66024


def test_distr_items_must_be_whole() -> None:
    raw = Msg.build(11, 0, data=bytes(21)).encode()
    with pytest.raises(DecodeError) as ei:
        decode(raw)
    assert ei.value.field == "items" and ei.value.offset == 40


def test_disc_media_and_node_id_checks() -> None:
    good = bytearray(DSC_REQ)
    bad_media = bytearray(good)
    bad_media[23] = 9  # media type byte
    with pytest.raises(DecodeError) as ei:
        decode(bytes(bad_media))
    assert ei.value.field == "media_type" and ei.value.offset == 23
    bad_proto = bytearray(good)
    bad_proto[24:26] = b"\x12\x34"
    with pytest.raises(DecodeError, match="udp_proto"):
        decode(bytes(bad_proto))
    short = bytearray(good[:70])
    struct.pack_into(">I", short, 0, (struct.unpack_from(">I", short, 0)[0] & ~0x1FFFF) | 70)
    with pytest.raises(DecodeError, match="NODE_ID128"):
        decode(bytes(short))
    # without NODE_ID128 the id is not needed
    m = decode(DSC_REQ)
    m.caps = 0  # type: ignore[attr-defined]
    m.data = b""
    assert decode(m.encode()).data == b""


def test_crypto_key_length_checked() -> None:
    m = Msg.build(14, 0)
    m.set_key("gcm(aes)", bytes(36))  # type: ignore[attr-defined]
    raw = bytearray(m.encode())
    struct.pack_into(">I", raw, 40 + 32, 37)  # keylen disagrees with the payload
    with pytest.raises(DecodeError) as ei:
        decode(bytes(raw))
    assert ei.value.field == "keylen" and ei.value.offset == 72

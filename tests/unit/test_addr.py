"""Node identity helpers against the kernel's behaviour (reference §1.1, captures)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tipcpy.addr import (
    ServiceAddr,
    ServiceRange,
    SocketAddr,
    addr_from_zcn,
    addr_to_zcn,
    hash128to32,
    node_id_from_addr,
    node_id_from_str,
    node_id_is_string,
    node_id_to_str,
)


def test_hash_or_fallback() -> None:
    nid = bytes.fromhex("0123456789abcdef0123456789abcdef")
    assert hash128to32(nid) == 0x89ABCDEF  # XOR is 0 -> OR of the words


def test_hash_of_string_ids_from_captures() -> None:
    assert hash128to32(node_id_from_str("kpeer1")) == 0x19416565  # single-guest-status.txt
    assert hash128to32(node_id_from_str("kpeer-a")) == 0x195D0465
    assert hash128to32(node_id_from_str("kpeer-b")) == 0x195D0765


def test_hash_requires_16_bytes() -> None:
    with pytest.raises(ValueError):
        hash128to32(b"short")


def test_string_ids() -> None:
    nid = node_id_from_str("kpeer-b")
    assert nid == b"kpeer-b" + bytes(9)
    assert node_id_is_string(nid) and node_id_to_str(nid) == "kpeer-b"
    full = node_id_from_str("a.b:c_d-e@F0123x")
    assert len(full) == 16 and node_id_to_str(full) == "a.b:c_d-e@F0123x"


def test_hex_ids_strip_trailing_zeros() -> None:
    nid = bytes.fromhex("fedcba9876543210fedcba9876543210")
    assert node_id_to_str(nid) == "fedcba9876543210fedcba987654321"
    assert node_id_from_str("fedcba9876543210fedcba987654321") == nid
    ipv4 = bytes([192, 168, 1, 1]) + bytes(12)
    assert node_id_to_str(ipv4) == "c0a80101"
    assert node_id_from_str("0xc0a80101") == ipv4
    assert (
        node_id_to_str(bytes.fromhex("0123456789abcdef0123456789abcdef"))
        == "0123456789abcdef0123456789abcdef"
    )


def test_bad_id_strings() -> None:
    for s in ["has space", "x" * 33, "zz" * 9, "0x", "ümlaut"]:
        with pytest.raises(ValueError):
            node_id_from_str(s)


@given(st.binary(min_size=16, max_size=16))
def test_id_string_roundtrip(nid: bytes) -> None:
    s = node_id_to_str(nid)
    if node_id_is_string(nid):
        # text ids: bytes after the first NUL are not shown (kernel prints a C string)
        assert nid.startswith(s.encode())
    else:
        assert node_id_from_str(s if len(s) > 16 else "0x" + s) == nid
    assert (hash128to32(nid) == 0) == (nid == bytes(16))  # OR fallback: 0 only for id 0


def test_legacy_forms() -> None:
    assert node_id_from_addr(0x195D0765) == b"195d0765" + bytes(8)
    assert addr_to_zcn(0x01001002) == "1.1.2"
    assert addr_from_zcn("1.1.2") == 0x01001002
    with pytest.raises(ValueError):
        addr_from_zcn("1.2")
    with pytest.raises(ValueError):
        addr_from_zcn("1.5000.1")


def test_address_tuples() -> None:
    assert str(ServiceAddr(1000, 1)) == "{1000,1}"
    r = ServiceRange(1000, 0, 10)
    assert str(r) == "{1000,0,10}" and r.overlaps(10, 20) and not r.overlaps(11, 20)
    s = SocketAddr(5, 0x195D0765)
    assert s.ref == 5 and str(s) == "195d0765:5"

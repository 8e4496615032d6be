"""The media table and issue 12 defect 1 at unit level (no socket, no loop I/O):
unusable media addresses are a typed DecodeError and a bearer's read path drops them."""

from __future__ import annotations

from typing import Any

import pytest

from tipcpy.bearer import media
from tipcpy.bearer.addr import from_media_addr, to_media_addr
from tipcpy.bearer.base import foreign_media
from tipcpy.bearer.eth import EthBearer
from tipcpy.bearer.udp import UdpBearer
from tipcpy.wire.items import (
    DecodeError,
    EthMediaAddr,
    MediaAddrError,
    RawMediaAddr,
    UdpMediaAddr,
)
from tipcpy.wire.msg import Msg, decode


def _lc(maddr: Any) -> bytes:
    return Msg.build(13, 0, net_id=4711, prevnode=0x1001001, media_addr=maddr).encode()


UDP = UdpMediaAddr(ip="10.0.0.1", port=6118)
ETH = EthMediaAddr(mac=b"\x02\x00\x00\x00\x00\x07")
IB = RawMediaAddr(2, bytes(range(20)))


def test_registry_matches_the_bearers_and_the_kernel_defaults() -> None:
    assert media.MEDIA_NAMES == ("udp", "eth", "ib")
    assert media.get("udp").bearer_class is UdpBearer
    assert media.get("eth").bearer_class is EthBearer
    assert not media.get("ib").supported
    assert media.get("udp").defaults() == {"priority": 10, "tolerance": 1500,
                                           "window": 50, "mtu": 14000}
    assert media.get("eth").defaults() == {"priority": 10, "tolerance": 1500, "window": 50}
    assert media.get("udp").mtu_settable and not media.get("eth").mtu_settable
    assert media.get("eth").ethertype == 0x88CA
    assert media.get("udp").bearer_name("b0") == "udp:b0"
    for m in media.MEDIA.values():
        assert media.MEDIA_BY_TYPE[m.media_type] is m
        if m.bearer_class is not None:
            assert m.bearer_class.MEDIA_TYPE == m.media_type
            assert m.bearer_class.MEDIA_NAME == m.name
    with pytest.raises(KeyError):
        media.get("tcp")


def test_address_conversion_round_trips() -> None:
    assert to_media_addr("udp", ("10.0.0.1", 6118)) == UDP
    assert from_media_addr(UDP) == ("10.0.0.1", 6118)
    assert to_media_addr("eth", ETH.mac) == ETH
    assert from_media_addr(ETH) == ETH.mac
    assert from_media_addr(None) is None
    # the address decoded from a real discovery message converts the same way
    assert from_media_addr(decode(_lc(UDP)).media_addr) == ("10.0.0.1", 6118)


@pytest.mark.parametrize("bad", [IB, RawMediaAddr(9, b"x"), object(), 42])
def test_unusable_media_address_is_a_typed_decode_error(bad: Any) -> None:
    with pytest.raises(MediaAddrError) as ei:
        from_media_addr(bad)
    assert isinstance(ei.value, DecodeError)
    assert ei.value.field == "media_type"


def test_per_media_converters_refuse_the_other_media() -> None:
    with pytest.raises(MediaAddrError):
        media.get("udp").from_wire(ETH)
    with pytest.raises(MediaAddrError):
        media.get("eth").from_wire(UDP)
    with pytest.raises(MediaAddrError):
        media.get("ib").from_wire(IB)


def test_foreign_media_recognises_only_v2_link_config_of_another_type() -> None:
    assert not foreign_media(_lc(UDP), 3)
    assert foreign_media(_lc(ETH), 3)
    assert foreign_media(_lc(IB), 3)
    assert foreign_media(_lc(UDP), 1)
    assert not foreign_media(_lc(ETH), 1)
    data = Msg.build(0, 0, data=b"\x02" * 40).encode()      # data message: never
    assert not foreign_media(data, 3)
    assert not foreign_media(b"", 3) and not foreign_media(b"\x5a", 3)
    v1 = bytearray(_lc(IB))
    v1[0] = (v1[0] & 0x1F) | (1 << 5)                          # not version 2
    assert not foreign_media(bytes(v1), 3)


class _FakeSock:
    """recvfrom() from a list, then EAGAIN: the read path without a real socket."""

    def __init__(self, frames: list[tuple[bytes, tuple[str, int]]]) -> None:
        self.frames = list(frames)

    def recvfrom(self, _n: int) -> tuple[bytes, tuple[str, int]]:
        if not self.frames:
            raise BlockingIOError
        return self.frames.pop(0)


def test_udp_read_path_counts_and_drops_foreign_media() -> None:
    b = UdpBearer("b0", "127.0.0.1", 7000, "127.0.0.1", 7001)
    src = ("127.0.0.2", 7002)
    good = _lc(UDP)
    b._sock = _FakeSock([(_lc(IB), src), (_lc(ETH), src), (good, src)])  # type: ignore[assignment]
    got: list[Any] = []
    b.on_batch = lambda _b, batch: got.extend(batch)
    b._on_readable()
    assert got == [(good, src)]
    assert b.counters.rx_bad_media == 2 and b.counters.rx_packets == 1
    assert src in b.remotes and b.counters.learned_peers == 1


def test_read_path_survives_a_media_addr_error_raised_by_its_consumer() -> None:
    b = UdpBearer("b0", "127.0.0.1", 7000, "127.0.0.1", 7001)
    b._sock = _FakeSock([(b"\0" * 40, ("127.0.0.1", 7001))])  # type: ignore[assignment]

    def consumer(_b: Any, _batch: Any) -> None:
        from_media_addr(IB)

    b.on_batch = consumer
    b._on_readable()                    # must not raise
    assert b.counters.rx_bad_media == 1


def test_base_deliver_filters_foreign_media_for_eth() -> None:
    b = EthBearer("veth-x")
    got: list[Any] = []
    b.on_batch = lambda _b, batch: got.extend(batch)
    good = _lc(ETH)
    b._deliver([(_lc(UDP), b"\x02" * 6), (_lc(IB), b"\x02" * 6), (good, b"\x02" * 6)])
    assert got == [(good, b"\x02" * 6)]
    assert b.counters.rx_bad_media == 2 and b.counters.rx_packets == 1

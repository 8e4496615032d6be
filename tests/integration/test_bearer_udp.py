"""UDP bearer on 127.0.0.1: send/receive, replicast, peer learning, batching, errors."""

from __future__ import annotations

import asyncio
import errno
import socket
import time

import pytest

from tipcpy.bearer.base import BearerError
from tipcpy.bearer.udp import UdpBearer, multicast_group
from tipcpy.wire.items import EthMediaAddr, RawMediaAddr, UdpMediaAddr
from tipcpy.wire.msg import Msg

from .conftest import free_udp_port as free_port


def link_config_packet(maddr: object = None) -> bytes:
    """A real discovery REQ advertising ``maddr`` (default: a UDP address)."""
    m = Msg.build(13, 0, net_id=4711, prevnode=0x1001001,
                  media_addr=maddr or UdpMediaAddr(ip="127.0.0.1", port=6118))
    return m.encode()


async def _collect(bearer: UdpBearer, n: int, timeout: float = 2.0) -> list:
    got: list = []
    done = asyncio.Event()

    def on_batch(_b, batch):
        got.extend(batch)
        if len(got) >= n:
            done.set()

    bearer.on_batch = on_batch
    await asyncio.wait_for(done.wait(), timeout)
    return got


def test_multicast_group_from_netid() -> None:
    assert str(multicast_group(4711, False)) == "228.0.18.103"
    assert str(multicast_group(4711, True)) == "ff02::4711"
    assert str(multicast_group(1234, False)) == "228.0.4.210"


def test_unicast_pair_and_broadcast_replicast() -> None:
    async def main() -> None:
        pa, pb, pc = free_port(), free_port(), free_port()
        a = UdpBearer("b0", "127.0.0.1", pa, "127.0.0.1", pb)
        b = UdpBearer("b0", "127.0.0.1", pb, "127.0.0.1", pa)
        c = UdpBearer("b1", "127.0.0.1", pc, "127.0.0.1", pa)
        for x in (a, b, c):
            x.open()
        try:
            assert a.name == "udp:b0" and a.mtu == 14000 and a.media_addr() == ("127.0.0.1", pa)
            a.add_remote("127.0.0.1", pc)
            fb = asyncio.ensure_future(_collect(b, 1))
            fc = asyncio.ensure_future(_collect(c, 1))
            await asyncio.sleep(0)
            a.send(None, b"hello")               # replicast: one copy per remote
            assert (await fb)[0] == (b"hello", ("127.0.0.1", pa))
            assert (await fc)[0] == (b"hello", ("127.0.0.1", pa))
            fb = asyncio.ensure_future(_collect(b, 1))
            await asyncio.sleep(0)
            a.send(("127.0.0.1", pb), b"unicast")
            assert (await fb)[0][0] == b"unicast"
            assert a.counters.tx_packets == 3
        finally:
            for x in (a, b, c):
                x.close()

    asyncio.run(main())


def test_learns_peer_from_link_config_only() -> None:
    async def main() -> None:
        pa, pb = free_port(), free_port()
        a = UdpBearer("b0", "127.0.0.1", pa, "127.0.0.1", free_port())
        a.open()
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", pb))
        try:
            fut = asyncio.ensure_future(_collect(a, 2))
            await asyncio.sleep(0)
            stranger.sendto(b"\x00" * 40, ("127.0.0.1", pa))        # not discovery
            stranger.sendto(link_config_packet(), ("127.0.0.1", pa))
            await fut
            assert ("127.0.0.1", pb) in a.remotes
            assert a.counters.learned_peers == 1
            a.send(None, b"x")
            stranger.settimeout(2)
            assert stranger.recvfrom(100)[0] == b"x"
        finally:
            a.close()
            stranger.close()

    asyncio.run(main())


def test_batch_drains_all_available() -> None:
    async def main() -> None:
        pa = free_port()
        a = UdpBearer("b0", "127.0.0.1", pa, "127.0.0.1", free_port())
        batches: list[int] = []
        a.on_batch = lambda _b, batch: batches.append(len(batch))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.open()
        try:
            for i in range(50):
                s.sendto(bytes([i]) * 30, ("127.0.0.1", pa))
            for _ in range(100):
                await asyncio.sleep(0.01)
                if sum(batches) == 50:
                    break
            assert sum(batches) == 50
            assert len(batches) < 50          # several datagrams per wakeup
        finally:
            a.close()
            s.close()

    asyncio.run(main())


def test_errors_are_clear() -> None:
    with pytest.raises(BearerError) as ei:
        UdpBearer("b0", "not-an-ip")
    assert ei.value.errno == errno.EINVAL and "localip" in str(ei.value)
    with pytest.raises(BearerError) as ei:
        UdpBearer("b0", "127.0.0.1", 7000, "::1")
    assert "address famil" in str(ei.value)
    with pytest.raises(BearerError):
        UdpBearer("b0", "127.0.0.1", 70000)

    async def busy() -> None:
        port = free_port()
        a = UdpBearer("b0", "127.0.0.1", port, "127.0.0.1", 1)
        a.open()
        b = UdpBearer("b1", "127.0.0.1", port, "127.0.0.1", 1)
        try:
            with pytest.raises(BearerError) as ei:
                b.open()
            assert ei.value.errno == errno.EADDRINUSE
            assert f"127.0.0.1:{port}" in str(ei.value)
        finally:
            a.close()
        c = UdpBearer("b2", "192.0.2.77", port, "192.0.2.1", 1)
        with pytest.raises(BearerError) as ei:
            c.open()
        assert ei.value.errno == errno.EADDRNOTAVAIL

    asyncio.run(busy())


def test_cannot_add_remote_to_multicast_bearer() -> None:
    a = UdpBearer("b0", "127.0.0.1", 7000)     # no remoteip -> multicast mode
    assert a.multicast and str(a.remoteip) == "228.0.18.103"
    with pytest.raises(BearerError):
        a.add_remote("127.0.0.2")


def test_ipv6_loopback_pair() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no ::1")
        pa = s.getsockname()[1]
        s.close()
        pb = free_port()
        a = UdpBearer("b0", "::1", pa, "::1", pb)
        b = UdpBearer("b0", "::1", pb, "::1", pa)
        a.open()
        b.open()
        try:
            assert a.mtu == 1280
            fut = asyncio.ensure_future(_collect(b, 1))
            await asyncio.sleep(0)
            a.send(None, b"v6")
            assert (await fut)[0] == (b"v6", ("::1", pa))
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def _ib_link_config() -> bytes:
    """Issue 12 defect 1: a LINK_CONFIG advertising an InfiniBand address."""
    return link_config_packet(RawMediaAddr(2, bytes(range(1, 21))))


def _unknown_media_link_config() -> bytes:
    raw = bytearray(link_config_packet())
    raw[23] = 9                      # a media type byte nobody defines
    return bytes(raw)


def test_foreign_media_link_config_is_counted_and_dropped() -> None:
    """Real datagrams to a real bearer: ib / eth / unknown media addresses never reach
    the runtime (which could not send to them) and never raise; a good one still does."""
    async def main() -> None:
        pa, pb = free_port(), free_port()
        a = UdpBearer("b0", "127.0.0.1", pa, "127.0.0.1", free_port())
        a.open(asyncio.get_running_loop())
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", pb))
        try:
            fut = asyncio.ensure_future(_collect(a, 1))
            await asyncio.sleep(0)
            for bad in (_ib_link_config(), _unknown_media_link_config(),
                        link_config_packet(EthMediaAddr(mac=b"\x02\0\0\0\0\x01"))):
                stranger.sendto(bad, ("127.0.0.1", pa))
            good = link_config_packet()
            stranger.sendto(good, ("127.0.0.1", pa))
            got = await fut
            assert got == [(good, ("127.0.0.1", pb))]
            assert a.counters.rx_bad_media == 3
            assert a.counters.rx_packets == 1
            assert a.counters.learned_peers == 1   # learned from the good one only
        finally:
            a.close()
            stranger.close()

    asyncio.run(main())


def test_media_addr_error_from_the_runtime_is_counted_not_raised() -> None:
    """If the consumer of a batch still meets an unusable media address (the runtime
    converting a transmit's destination), the read callback counts it and returns."""
    from tipcpy.bearer.addr import from_media_addr

    async def main() -> None:
        pa = free_port()
        a = UdpBearer("b0", "127.0.0.1", pa, "127.0.0.1", free_port())
        a.open(asyncio.get_running_loop())
        seen = asyncio.Event()

        def on_batch(_b: object, _batch: object) -> None:
            seen.set()
            from_media_addr(RawMediaAddr(2, bytes(20)))     # raises MediaAddrError

        a.on_batch = on_batch
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.sendto(b"\0" * 40, ("127.0.0.1", pa))
            await asyncio.wait_for(seen.wait(), 2)
            await asyncio.sleep(0)
            assert a.counters.rx_bad_media == 1
        finally:
            a.close()
            s.close()

    asyncio.run(main())


def test_tipcd_survives_an_infiniband_link_config(tipcd) -> None:
    """Issue 12 defect 1 end to end: one datagram to a real tipcd without peer traffic
    used to raise out of the read callback and stop its timers for good."""
    from tipcpy.core.discover import ADDR_TRIAL
    from tipcpy.runtime import ctlclient

    a = tipcd("a")
    a.tipc("node", "set", "identity", "n1")
    a.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1",
           "localport", str(a.port), "remoteip", "127.0.0.1",
           "remoteport", str(free_port()))
    path = a.run_dir / "ctl.sock"
    time.sleep(ADDR_TRIAL + 0.5)     # discovery ignores LINK_CONFIG during the address trial

    def fires() -> int:
        return int(ctlclient.call("daemon.stats", path=path)["runtime"]["timer_fires"])

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", free_port()))
        for bad in (_ib_link_config(), _unknown_media_link_config()):
            s.sendto(bad, ("127.0.0.1", a.port))
    finally:
        s.close()
    time.sleep(0.5)
    before = fires()
    a.wait_for(lambda: fires() >= before + 3, what="timer still firing after the datagram")
    assert a.proc.poll() is None
    assert "Traceback" not in a.log() and "unsupported media address" not in a.log()


def test_socket_buffers_hold_a_link_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Big buffers each way (a window of 14000-byte packets), past net.core.[rw]mem_max
    where the process may (root); at least what the plain option allows otherwise.
    We ask for twice the cap so that only the FORCE option can satisfy us."""
    from pathlib import Path

    from tipcpy.bearer import udp

    caps = [int(Path(f"/proc/sys/net/core/{c}").read_text()) for c in ("rmem_max", "wmem_max")]
    monkeypatch.setattr(udp, "_SOCKBUF", max(udp._SOCKBUF, 2 * max(caps)))

    async def main() -> None:
        a = UdpBearer("b0", "127.0.0.1", free_port(), "127.0.0.1", free_port())
        a.open()
        try:
            s = a._sock
            assert s is not None
            for opt, cap in ((socket.SO_RCVBUF, "rmem_max"), (socket.SO_SNDBUF, "wmem_max")):
                got = s.getsockopt(socket.SOL_SOCKET, opt)   # the kernel doubles the value
                limit = int(Path(f"/proc/sys/net/core/{cap}").read_text())
                try:
                    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    force = udp._SO_RCVBUFFORCE if opt == socket.SO_RCVBUF else udp._SO_SNDBUFFORCE
                    assert force is not None
                    probe.setsockopt(socket.SOL_SOCKET, force, udp._SOCKBUF)
                    may_force = True
                except OSError:
                    may_force = False
                finally:
                    probe.close()
                want = udp._SOCKBUF if may_force else min(udp._SOCKBUF, limit)
                assert got >= 2 * want, (opt, got, want)
        finally:
            a.close()

    asyncio.run(main())

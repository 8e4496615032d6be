"""The impairment relay on its own: seeded statistics, LINK_CONFIG rewrite, cut/uncut."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.tools.impair import MEDIA_INFO_END, MEDIA_INFO_OFF, Direction, Relay, control
from tipcpy.wire import DiscMsg, UdpMediaAddr, decode
from tipcpy.wire.pcap import read_pcap


def _run(d: Direction, n: int = 10_000, size: int = 100) -> list[list[tuple[float, bytes]]]:
    return [d.process(i.to_bytes(4, "big") + bytes(size - 4)) for i in range(n)]


def test_loss_statistics_and_seed_repeatability() -> None:
    d = Direction("ab", seed=11)
    d.imp.update(loss=0.3)
    out = _run(d)
    assert d.stats.received == 10_000
    assert 2_800 <= d.stats.dropped <= 3_200
    assert sum(1 for o in out if not o) == d.stats.dropped
    again = Direction("ab", seed=11)
    again.imp.update(loss=0.3)
    assert _run(again) == out
    other = Direction("ab", seed=12)
    other.imp.update(loss=0.3)
    assert _run(other) != out


def test_dup_delay_jitter_reorder_corrupt() -> None:
    d = Direction("ab", seed=3)
    d.imp.update(dup=0.1, delay=0.02, jitter=0.01, reorder=0.05, reorder_delay=0.05,
                 corrupt=0.02, corrupt_mode="truncate")
    out = _run(d)
    copies = [c for o in out for c in o]
    assert 900 <= d.stats.duplicated <= 1_100
    assert len(copies) == 10_000 + d.stats.duplicated
    assert 400 <= d.stats.reordered <= 650
    delays = [t for t, _ in copies]
    assert min(delays) >= 0.01 - 1e-9 and max(delays) <= 0.03 + 0.05 + 1e-9
    assert sum(1 for t in delays if t > 0.03 + 1e-9) == d.stats.reordered
    short = [b for _, b in copies if len(b) < 100]
    assert len(short) == d.stats.corrupted and 150 <= len(short) <= 300
    bitflip = Direction("ab", seed=3)
    bitflip.imp.update(corrupt=1.0, corrupt_mode="header")
    for (_, b), i in zip((o[0] for o in _run(bitflip, 200)), range(200), strict=True):
        orig = i.to_bytes(4, "big") + bytes(96)
        diff = [k for k in range(100) if b[k] != orig[k]]
        assert len(diff) == 1 and diff[0] < 24 and bin(b[diff[0]] ^ orig[diff[0]]).count("1") == 1


def test_cut_drops_everything_and_uncut_restores() -> None:
    d = Direction("ba", seed=1)
    d.imp.update(cut=True)
    assert all(o == [] for o in _run(d, 50))
    assert d.stats.cut_dropped == 50
    d.imp.update(cut=False)
    assert all(len(o) == 1 for o in _run(d, 50))
    with pytest.raises(ValueError):
        d.imp.update(loss=1.5)
    with pytest.raises(ValueError):
        d.imp.update(nosuch=1)


def test_rewrite_link_config_from_real_captures(captures_dir: Path) -> None:
    recs = [r for p in sorted(captures_dir.glob("*.pcap")) for r in read_pcap(p) if r.ok]
    cfg = [r.payload for r in recs if decode(r.payload).user == DiscMsg.USER]
    other = [r.payload for r in recs if decode(r.payload).user != DiscMsg.USER]
    assert len(cfg) >= 20 and len(other) >= 20
    d = Direction("ab", seed=1, rewrite_to=("127.0.0.1", 40123))
    for raw in cfg:
        assert decode(raw).media_addr != UdpMediaAddr("127.0.0.1", 40123)
        (_, new), = d.process(raw)
        m = decode(new)
        assert isinstance(m, DiscMsg)
        assert m.media_addr == UdpMediaAddr("127.0.0.1", 40123)
        assert len(new) == len(raw)
        assert new[:MEDIA_INFO_OFF] == raw[:MEDIA_INFO_OFF]
        assert new[MEDIA_INFO_END:] == raw[MEDIA_INFO_END:]
        assert m.node_id == decode(raw).node_id
    for raw in other:
        (_, new), = d.process(raw)
        assert new == raw
    assert d.stats.rewritten == len(cfg) and d.stats.rewrite_errors == 0
    # a damaged LINK_CONFIG (media type 9) is forwarded as it is and counted
    bad = bytearray(cfg[0])
    bad[MEDIA_INFO_OFF + 3] = 9
    (_, new), = d.process(bytes(bad))
    assert new == bytes(bad) and d.stats.rewrite_errors == 1


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _recv_all(s: socket.socket, wait: float = 0.3) -> list[bytes]:
    await asyncio.sleep(wait)
    got = []
    while True:
        try:
            got.append(s.recv(65535))
        except BlockingIOError:
            return got


def test_relay_sockets_cut_uncut_one_direction_and_control(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = _udp(), _udp()
        try:
            async with Relay(a.getsockname(), b.getsockname(), seed=4) as r:
                ctl = str(tmp_path / "relay.sock")
                await r.serve_control(ctl)
                for i in range(50):
                    a.sendto(b"A%d" % i, r.addr_a)
                    b.sendto(b"B%d" % i, r.addr_b)
                assert await _recv_all(b) == [b"A%d" % i for i in range(50)]
                assert await _recv_all(a) == [b"B%d" % i for i in range(50)]
                r.cut("ab")
                for _ in range(20):
                    a.sendto(b"x", r.addr_a)
                    b.sendto(b"y", r.addr_b)
                assert await _recv_all(b) == []
                assert len(await _recv_all(a)) == 20
                # out-of-process control: uncut and query, from a worker thread
                assert await asyncio.to_thread(control, ctl, {"op": "uncut"}) == "ok"
                with pytest.raises(ValueError):
                    await asyncio.to_thread(control, ctl, {"op": "set", "loss": -1})
                a.sendto(b"again", r.addr_a)
                assert await _recv_all(b) == [b"again"]
                st = await asyncio.to_thread(control, ctl, {"op": "stats"})
                assert st["ab"]["received"] == 71 and st["ab"]["cut_dropped"] == 20
                assert st["ab"]["forwarded"] == 51 and st["ba"]["forwarded"] == 70
                r.set("ab", delay=0.05, jitter=0.04)
                for i in range(200):
                    a.sendto(i.to_bytes(4, "big"), r.addr_a)
                got = [int.from_bytes(x, "big") for x in await _recv_all(b, 0.4)]
                assert sorted(got) == list(range(200)) and got != list(range(200))
                inversions = sum(1 for i, x in enumerate(got) if x < max(got[:i + 1]))
                assert r.stats()["ab"]["overtaken"] == inversions > 0
            assert r.socks == {} and r._pending == set()
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def test_cli_relays_and_answers_its_control_socket(tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    a, b = _udp(), _udp()
    ctl = tmp_path / "r.sock"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tools.impair", "--a", "{}:{}".format(*a.getsockname()),
         "--b", "{}:{}".format(*b.getsockname()), "--control", str(ctl), "--seed", "3"],
        cwd=repo, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert proc.stdout is not None
        addrs = json.loads(proc.stdout.readline())
        a.sendto(b"hello", tuple(addrs["a"]))
        end = time.monotonic() + 5
        got = b""
        while not got and time.monotonic() < end:
            try:
                got = b.recv(100)
            except BlockingIOError:
                time.sleep(0.02)
        assert got == b"hello"
        assert control(str(ctl), {"op": "cut", "dir": "ab"}) == "ok"
        a.sendto(b"lost", tuple(addrs["a"]))
        time.sleep(0.2)
        st = control(str(ctl), {"op": "stats"})
        assert st["ab"]["forwarded"] == 1 and st["ab"]["cut_dropped"] == 1
        assert st["ab"]["impairment"]["cut"] is True and st["ba"]["impairment"]["cut"] is False
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(10)
        a.close()
        b.close()
    assert not ctl.exists()

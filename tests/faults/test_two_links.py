"""Two links between two tipcd (two UDP bearers, each through its own relay): a link
flapping every 2 s must cost nothing while the other one carries the traffic.

This needs failover and synch (issue 11), which do not exist yet: the tests are
``xfail(strict=True)`` so they flip to a failure, and must then be un-marked, the moment
the mechanism lands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import free_udp_port
from tests.integration.sockhelp import Daemon, links_up, node_addr, wait_for
from tests.tools.impair import RelayThread

from .conftest import daemon_stats, rss_kb
from .test_single_link import RSS_GROWTH_KB, assert_exactly_once, start_streams

pytestmark = [pytest.mark.faults,
              pytest.mark.xfail(strict=True, reason="failover not implemented (issue 11)")]


def _bearer(name: str, port: int, peer: int) -> str:
    return (f"media udp name {name} localip 127.0.0.1 localport {port} remoteip 127.0.0.1 "
            f"remoteport {peer}")


class TwoLinks:
    def __init__(self, base: Path) -> None:
        ports = [free_udp_port() for _ in range(4)]       # a0 a1 b0 b1
        self.relays = [RelayThread(("127.0.0.1", ports[i]), ("127.0.0.1", ports[2 + i]),
                                   seed=77 + i) for i in range(2)]
        self.daemons: list[Daemon] = []
        r0, r1 = self.relays
        self.a = Daemon("n1", base / "n1", ports[0], r0.addr_a[1], base / "n1.log",
                        "--bearer", _bearer("b1", ports[1], r1.addr_a[1]))
        self.daemons.append(self.a)
        self.b = Daemon("n2", base / "n2", ports[2], r0.addr_b[1], base / "n2.log",
                        "--bearer", _bearer("b1", ports[3], r1.addr_b[1]))
        self.daemons.append(self.b)

    def wait_links(self, n: int, timeout: float = 20.0) -> None:
        wait_for(lambda: links_up(self.a.rd) >= n and links_up(self.b.rd) >= n, timeout,
                 f"{n} links up")

    def close(self) -> None:
        for d in self.daemons:
            d.stop()
        for r in self.relays:
            r.close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[TwoLinks]:
    t = None
    try:
        t = TwoLinks(tmp_path)
        t.wait_links(2, 30)
        wait_for(lambda: node_addr(t.a.rd) != 0 and node_addr(t.b.rd) != 0, 10, "addresses")
        yield t
    finally:
        if t is not None:
            t.close()


def test_link_flap_every_2s_loses_nothing(two: TwoLinks) -> None:
    """Each link in turn is cut for 2 s (past the tolerance: it goes down) and restored,
    while numbered streams of every type run; the other link stays up all along."""
    rss0 = rss_kb(two.a.proc.pid)
    streams = start_streams(two.a, two.b, {"rdm": 2500, "seqpacket": 2500,
                                           "stream": 2500}, rate=500, deadline=9)
    time.sleep(0.5)
    for r in two.relays:
        r.cut()
        time.sleep(2.0)
        r.uncut()
        two.wait_links(2, 10)            # back up (synch) before the next one flaps
    reports = [s.join() for s in streams]
    assert_exactly_once(reports)
    for d in (two.a, two.b):
        assert daemon_stats(d)["runtime"]["rx_errors"] == 0
    assert rss_kb(two.a.proc.pid) - rss0 < RSS_GROWTH_KB

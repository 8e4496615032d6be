"""An interface down/up under one of two links (needs root: two namespaces joined by two
veth pairs, one UDP bearer on each).  With the other link up the whole time, nothing
may be lost, duplicated or reordered, and no connection may abort.

Needs failover and synch (issue 11).  Namespaces are
created with pyroute2 under unique names and always removed; daemons are stopped by pid.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.sockhelp import Daemon, links_up, node_addr, wait_for
from tests.tools.procs import add_veth, addr_up, create_netns, lo_up, remove_netns, why_no_netns

from .test_single_link import assert_exactly_once, start_streams

pytestmark = [pytest.mark.netns, pytest.mark.faults]


class NsDaemon(Daemon):
    """A tipcd inside a namespace; looks like sockhelp.Daemon to the stream helpers."""

    def __init__(self, name: str, ns: str, run_dir: Path, bearers: list[str]) -> None:
        self.ns = ns
        run_dir.mkdir(parents=True)
        self._start(name, run_dir, run_dir.with_suffix(".log"),
                    [a for b in bearers for a in ("--bearer", b)], ns=ns, timeout=15)


@pytest.fixture
def veth2(tmp_path: Path) -> Iterator[tuple[NsDaemon, NsDaemon, str, str]]:
    why = why_no_netns()
    if why:
        pytest.skip(why)
    from pyroute2 import IPRoute, NetNS

    tag = secrets.token_hex(3)
    nss = [f"tpf-{tag}-a", f"tpf-{tag}-b"]
    subnet = int(tag[:2], 16) % 250 + 1
    created: list[str] = []
    daemons: list[NsDaemon] = []
    try:
        create_netns(nss, created)
        devs = []
        with IPRoute() as ipr:
            for k in range(2):
                da, db = f"tf{tag}{k}a", f"tf{tag}{k}b"
                devs.append((da, db))
                add_veth(ipr, da, nss[0], db, nss[1])
        for side, ns in enumerate(nss):
            with NetNS(ns) as n:
                lo_up(n)
                for k, pair in enumerate(devs):
                    addr_up(n, pair[side], f"10.{214 + k}.{subnet}.{side + 1}")

        def bearers(side: int) -> list[str]:
            return [f"media udp name b{k} localip 10.{214 + k}.{subnet}.{side + 1} "
                    f"remoteip 10.{214 + k}.{subnet}.{2 - side}" for k in range(2)]

        for side, (name, ns) in enumerate((("f1", nss[0]), ("f2", nss[1]))):
            daemons.append(NsDaemon(name, ns, tmp_path / name, bearers(side)))
        a, b = daemons
        wait_for(lambda: links_up(a.rd) >= 2 and links_up(b.rd) >= 2, 30, "two links up")
        wait_for(lambda: node_addr(a.rd) != 0 and node_addr(b.rd) != 0, 10, "addresses")
        yield a, b, nss[0], devs[0][0]
    finally:
        for d in daemons:
            d.stop()
        remove_netns(created)


def _set_link(ns: str, dev: str, state: str) -> None:
    from pyroute2 import NetNS

    with NetNS(ns) as n:
        n.link("set", index=n.link_lookup(ifname=dev)[0], state=state)


def test_interface_down_up_under_one_of_two_links(
        veth2: tuple[NsDaemon, NsDaemon, str, str]) -> None:
    a, b, ns_a, dev = veth2
    streams = start_streams(a, b, {"rdm": 2500, "seqpacket": 2500, "stream": 2500},  # type: ignore[arg-type]
                            rate=500, deadline=9)
    time.sleep(1.0)
    _set_link(ns_a, dev, "down")
    wait_for(lambda: links_up(a.rd) == 1, 5, "the link over the downed interface down")
    time.sleep(1.0)
    _set_link(ns_a, dev, "up")
    wait_for(lambda: links_up(a.rd) >= 2 and links_up(b.rd) >= 2, 10, "two links up again")
    assert_exactly_once([s.join() for s in streams])

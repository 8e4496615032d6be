"""An interface down/up under one of two links (needs root: two namespaces joined by two
veth pairs, one UDP bearer on each).  With the other link up the whole time, nothing
may be lost, duplicated or reordered, and no connection may abort.

Needs failover (issue 11): ``xfail(strict=True)`` until it lands.  Namespaces are
created with pyroute2 under unique names and always removed; daemons are stopped by pid.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import _cmd
from tests.integration.sockhelp import REPO, links_up, node_addr, wait_for

from .test_single_link import assert_exactly_once, start_streams

pytestmark = [pytest.mark.netns, pytest.mark.faults]


def why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to run a daemon inside a namespace"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "needs pyroute2"
    return None


class NsDaemon:
    """A tipcd inside a namespace; looks like sockhelp.Daemon to the stream helpers."""

    def __init__(self, name: str, ns: str, run_dir: Path, bearers: list[str]) -> None:
        self.name, self.ns, self.run_dir = name, ns, run_dir
        self.log_path = run_dir.with_suffix(".log")
        run_dir.mkdir(parents=True)
        args = [a for b in bearers for a in ("--bearer", b)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *_cmd("tipcd"), "--run-dir", str(run_dir),
                 "--identity", name, "--log-level", "info", *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_for(lambda: (run_dir / "ctl.sock").exists() or self.proc.poll() is not None,
                 15, f"{name} control socket")
        if self.proc.poll() is not None:
            raise AssertionError(f"tipcd {name} exited:\n{self.log()}")

    @property
    def rd(self) -> str:
        return str(self.run_dir)

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def veth2(tmp_path: Path) -> Iterator[tuple[NsDaemon, NsDaemon, str, str]]:
    why = why_no_netns()
    if why:
        pytest.skip(why)
    from pyroute2 import IPRoute, NetNS, netns

    tag = secrets.token_hex(3)
    nss = [f"tpf-{tag}-a", f"tpf-{tag}-b"]
    subnet = int(tag[:2], 16) % 250 + 1
    created: list[str] = []
    daemons: list[NsDaemon] = []
    try:
        for ns in nss:
            netns.create(ns)
            created.append(ns)
        devs = []
        with IPRoute() as ipr:
            for k in range(2):
                da, db = f"tf{tag}{k}a", f"tf{tag}{k}b"
                devs.append((da, db))
                ipr.link("add", ifname=da, kind="veth", peer=db)
                for dev, ns in ((da, nss[0]), (db, nss[1])):
                    ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], net_ns_fd=ns)
        for side, ns in enumerate(nss):
            with NetNS(ns) as n:
                n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")
                for k, pair in enumerate(devs):
                    idx = n.link_lookup(ifname=pair[side])[0]
                    n.addr("add", index=idx, address=f"10.{214 + k}.{subnet}.{side + 1}",
                           prefixlen=24)
                    n.link("set", index=idx, state="up")

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
        for ns in created:
            try:
                netns.remove(ns)
            except Exception:  # removal must not mask the test's own failure
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _set_link(ns: str, dev: str, state: str) -> None:
    from pyroute2 import NetNS

    with NetNS(ns) as n:
        n.link("set", index=n.link_lookup(ifname=dev)[0], state=state)


@pytest.mark.xfail(strict=True, reason="failover not implemented (issue 11)")
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

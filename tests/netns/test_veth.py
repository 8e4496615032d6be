"""Two real hosts in network namespaces joined by a veth pair (needs root).

Each namespace runs its own tipcd (`ip netns exec NS tipcd ...`); links are formed over
an `eth` bearer (AF_PACKET, ethertype 0x88CA) and a `udp` bearer, the latter both with
multicast discovery (no remoteip: group 228.0.18.103) and configured by the `tipc` CLI in
unicast mode. Namespaces are created with pyroute2 under unique names and always removed
(which also removes the veth pair); daemons are stopped by their pid.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools import procs

pytestmark = pytest.mark.netns

_skip = procs.why_no_netns()
if _skip:
    pytest.skip(_skip, allow_module_level=True)

from pyroute2 import IPRoute, NetNS  # noqa: E402


class Host:
    def __init__(self, ns: str, dev: str, ip: str, run_dir: Path) -> None:
        self.ns, self.dev, self.ip, self.run_dir = ns, dev, ip, run_dir
        self.ip6 = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = run_dir.with_suffix(".log")

    def env(self) -> dict[str, str]:
        return {**os.environ, "TIPCPY_RUN_DIR": str(self.run_dir), "PYTHONPATH": str(procs.REPO)}

    def start(self, *args: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.proc = procs.spawn_tipcd(["--run-dir", str(self.run_dir), "--log-level", "debug",
                                 *args], self.log_path, ns=self.ns, env=self.env(),
                                stdin_null=False)
        if not procs.wait_started(self.run_dir, self.proc, 15, poll=0.1):
            raise AssertionError(f"tipcd in {self.ns} did not start:\n{self.log()}")

    def tipc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", self.ns, *procs.cmd("tipc"), *args],
                           env=self.env(), capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"tipc {args} in {self.ns}: {r.returncode}\n{r.stderr}")
        return r

    def log(self) -> str:
        return procs.log_tail(self.log_path, 6000)

    def stop(self) -> None:
        procs.stop_proc(self.proc)

    def wait_links(self, names: list[str], timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        out = ""
        while time.monotonic() < end:
            out = self.tipc("link", "list").stdout
            if all(f"{n}: up" in out.splitlines() for n in names):
                return out
            time.sleep(0.2)
        raise AssertionError(f"{self.ns}: links {names} not up; `tipc link list`:\n{out}\n"
                             f"{self.log()}")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    """Two namespaces joined by a veth pair with 10.213.<r>.1/.2 and IPv6 link-local."""
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"tpy-{tag}-a", f"tpy-{tag}-b"
    dev_a, dev_b = f"tpy{tag}a", f"tpy{tag}b"
    subnet = int(tag[:2], 16) % 250 + 1
    ip_a, ip_b = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    created: list[str] = []
    hosts: list[Host] = []
    try:
        procs.create_netns((ns_a, ns_b), created)
        with IPRoute() as ipr:
            procs.add_veth(ipr, dev_a, ns_a, dev_b, ns_b)
        for ns, dev, ip in ((ns_a, dev_a, ip_a), (ns_b, dev_b, ip_b)):
            with NetNS(ns) as n:
                procs.lo_up(n)
                procs.addr_up(n, dev, ip)
        hosts = [Host(ns_a, dev_a, ip_a, tmp_path / "a"), Host(ns_b, dev_b, ip_b, tmp_path / "b")]
        yield hosts[0], hosts[1]
    finally:
        for h in hosts:
            h.stop()
        procs.remove_netns(created)


def test_eth_and_udp_multicast(pair: tuple[Host, Host]) -> None:
    a, b = pair
    for h, ident in ((a, "nsa"), (b, "nsb")):
        h.start("--identity", ident, "--bearer", f"media eth device {h.dev}",
                "--bearer", f"media udp name u0 localip {h.ip}")
    out = a.wait_links([f"nsa:{a.dev}-nsb:{b.dev}", "nsa:u0-nsb:u0"])
    assert out.splitlines()[0] == "broadcast-link: up"
    b.wait_links([f"nsb:{b.dev}-nsa:{a.dev}", "nsb:u0-nsa:u0"])
    assert b.tipc("bearer", "list").stdout == f"eth:{b.dev}\nudp:u0\n"
    assert "nsa" in b.tipc("node", "list").stdout


def test_udp_unicast_configured_by_cli(pair: tuple[Host, Host]) -> None:
    a, b = pair
    a.start()
    b.start()
    a.tipc("node", "set", "identity", "ua")
    b.tipc("node", "set", "identity", "ub")
    a.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", a.ip,
           "remoteip", b.ip)
    b.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", b.ip,
           "remoteip", a.ip)
    a.wait_links(["ua:b0-ub:b0"])
    b.wait_links(["ub:b0-ua:b0"])
    # cutting the wire takes the link down within the tolerance
    subprocess.run(["ip", "-n", a.ns, "link", "set", a.dev, "down"], check=True)
    end = time.monotonic() + 6
    while time.monotonic() < end:
        if "ub:b0-ua:b0: up" not in b.tipc("link", "list").stdout:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("link stayed up after the veth went down")


def test_missing_device_and_loopback_refused(pair: tuple[Host, Host]) -> None:
    a, _ = pair
    a.start("--identity", "na")
    r = a.tipc("bearer", "enable", "media", "eth", "device", "nosuch0", check=False)
    assert r.returncode == 255 and "device 'nosuch0' does not exist" in r.stderr
    r = a.tipc("bearer", "enable", "media", "eth", "device", "lo", check=False)
    assert r.returncode == 255 and "loopback" in r.stderr
    assert a.tipc("bearer", "list").stdout == ""




def test_udp_ipv6_multicast(pair: tuple[Host, Host]) -> None:
    a, b = pair
    for h, n in ((a, 1), (b, 2)):
        with NetNS(h.ns) as ns:
            idx = ns.link_lookup(ifname=h.dev)[0]
            ns.addr("add", index=idx, address=f"fd00:7c::{n}", prefixlen=64,
                    flags=0x02)  # IFA_F_NODAD: usable at once
        h.ip6 = f"fd00:7c::{n}"
    for h, ident in ((a, "v6a"), (b, "v6b")):
        h.start("--identity", ident, "--bearer", f"media udp name m6 localip {h.ip6}")
    a.wait_links(["v6a:m6-v6b:m6"])
    assert b.tipc("bearer", "get", "mtu", "media", "udp", "name", "m6").stdout == "1280\n"

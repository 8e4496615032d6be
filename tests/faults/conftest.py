"""Two real tipcd processes on 127.0.0.1 whose only path is the impairment relay.

Node n1 is told its peer is the relay's side A, n2 the relay's side B; the relay rewrites
the media address inside LINK_CONFIG so link traffic stays on it.  Teardown stops both
daemons by pid (SIGCONT first, in case a test left one stopped) and closes the relay;
logs and relay counters are printed when a test failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import _cmd, free_udp_port
from tests.integration.sockhelp import REPO, Daemon, links_up, node_addr, wait_for
from tests.tools.impair import RelayThread
from tipcpy.runtime import ctlclient


def rss_kb(pid: int) -> int:
    """Resident set size of a process we started (kB), from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def link_stats(d: Daemon) -> dict[str, Any]:
    """The unicast link's counters as `tipc link stat show -j` prints them."""
    r = subprocess.run(_cmd("tipc") + ["-j", "link", "stat", "show"], capture_output=True,
                       text=True, timeout=30,
                       env={**os.environ, "TIPCPY_RUN_DIR": d.rd, "PYTHONPATH": str(REPO)})
    if r.returncode != 0:
        raise AssertionError(f"tipc -j link stat show: {r.stderr}")
    links = [x for x in json.loads(r.stdout) if x.get("link") != "broadcast-link"
             and "broadcast" not in str(x.get("link", x.get("name", "")))]
    return links[0] if links else {}


def link_is_up(d: Daemon) -> bool:
    return links_up(d.rd) >= 1


def daemon_stats(d: Daemon) -> dict[str, Any]:
    return dict(ctlclient.call("daemon.stats", path=Path(d.rd) / "ctl.sock"))


@dataclass
class Pair:
    a: Daemon
    b: Daemon
    relay: RelayThread
    base: Path

    def restart_b(self) -> Daemon:
        """Start n2 again after it was killed (same run dir, port and relay)."""
        for stale in ("ctl.sock", "tipcd.pid"):
            (self.base / "n2" / stale).unlink(missing_ok=True)
        self.b = Daemon("n2", self.base / "n2", self.b.port, self.relay.addr_b[1],
                        self.base / "n2-restart.log", "--log-level", "info")
        return self.b

    def wait_up(self, timeout: float = 20.0) -> None:
        wait_for(lambda: link_is_up(self.a) and link_is_up(self.b), timeout, "link n1-n2 up")


@pytest.fixture
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    pa, pb = free_udp_port(), free_udp_port()
    relay = RelayThread(("127.0.0.1", pa), ("127.0.0.1", pb), seed=1234)
    started: list[Daemon] = []
    p: Pair | None = None
    try:
        a = Daemon("n1", tmp_path / "n1", pa, relay.addr_a[1], tmp_path / "n1.log")
        started.append(a)
        b = Daemon("n2", tmp_path / "n2", pb, relay.addr_b[1], tmp_path / "n2.log")
        started.append(b)
        p = Pair(a, b, relay, tmp_path)
        p.wait_up(30)
        wait_for(lambda: node_addr(a.rd) != 0 and node_addr(b.rd) != 0, 10, "addresses")
        yield p
    finally:
        failed = getattr(request.node, "rep_call", None)
        daemons = started + ([p.b] if p is not None and p.b not in started else [])
        for d in daemons:
            if d.proc.poll() is None:
                os.kill(d.proc.pid, signal.SIGCONT)
            d.stop()
        if failed is None or failed.failed:
            st = relay.stats() if not relay.loop.is_closed() else {}
            print("relay:", json.dumps({k: {kk: vv for kk, vv in v.items() if vv}
                                        for k, v in st.items()}))
            for d in daemons:
                print(f"----- log of {d.name} ({d.log_path.name}) -----\n{d.log()}")
        relay.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def wait_down(d: Daemon, timeout: float) -> float:
    """Seconds until ``d`` has no unicast link up (raises if it stays up)."""
    t0 = time.monotonic()
    wait_for(lambda: not link_is_up(d), timeout, f"link down on {d.name}")
    return time.monotonic() - t0

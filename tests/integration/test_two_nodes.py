"""Two real tipcd processes on 127.0.0.1, configured with the real `tipc` command."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path

from tipcpy.runtime import ctlclient

from .conftest import TipcNode, _cmd, free_udp_port


def enable_udp(node: TipcNode, peer: TipcNode) -> None:
    node.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1",
              "localport", str(node.port), "remoteip", "127.0.0.1",
              "remoteport", str(peer.port))


def link_up(node: TipcNode, name: str) -> bool:
    return f"{name}: up" in node.tipc("link", "list").stdout.splitlines()


def make_pair(tipcd) -> tuple[TipcNode, TipcNode]:
    a = tipcd("a")
    b = tipcd("b")
    a.tipc("node", "set", "identity", "n1")
    b.tipc("node", "set", "identity", "n2")
    enable_udp(a, b)
    enable_udp(b, a)
    a.wait_for(lambda: link_up(a, "n1:b0-n2:b0"), what="link n1:b0-n2:b0 up")
    b.wait_for(lambda: link_up(b, "n2:b0-n1:b0"), what="link n2:b0-n1:b0 up")
    return a, b


def test_link_and_node_up(tipcd) -> None:
    a, b = make_pair(tipcd)
    assert a.tipc("link", "list").stdout == "broadcast-link: up\nn1:b0-n2:b0: up\n"
    nodes = a.tipc("node", "list").stdout.splitlines()
    assert nodes[0] == "Node Identity                    Hash     State"
    assert nodes[1].split() == ["n2", f"{int.from_bytes(b'n2', 'big') << 16:08x}", "up"]
    assert a.tipc("node", "get", "identity").stdout.splitlines()[1].startswith("n1 ")
    assert a.tipc("bearer", "list").stdout == "udp:b0\n"
    j = a.tipc("-j", "link", "list").stdout
    assert j == '[{"broadcast-link":"up","n1:b0-n2:b0":"up"}]\n'
    stat = a.tipc("link", "stat", "show", "link", "n1:b0-n2:b0").stdout
    assert stat.startswith("Link <n1:b0-n2:b0>\n  ACTIVE  MTU:14000  Priority:10  "
                           "Tolerance:1500 ms  Window:50 packets\n")


def test_bad_bearer_enable_leaves_node_unchanged(tipcd) -> None:
    a, b = make_pair(tipcd)
    before = (a.tipc("bearer", "list").stdout, a.tipc("node", "get", "identity").stdout)
    r = a.tipc("bearer", "enable", "media", "udp", "name", "b1", "localip", "127.0.0.300",
               check=False)
    assert r.returncode == 255 and r.stdout == ""
    assert r.stderr == ("Error: invalid localip '127.0.0.300': expected an IPv4 or IPv6 "
                        "address.\nkernel answers: Invalid argument\n")
    # a port some other program holds
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    busy = holder.getsockname()[1]
    try:
        r = a.tipc("bearer", "enable", "media", "udp", "name", "b1", "localip", "127.0.0.1",
                   "localport", str(busy), "remoteip", "127.0.0.1", check=False)
    finally:
        holder.close()
    assert r.returncode == 255
    assert f"UDP 127.0.0.1:{busy} is already in use" in r.stderr
    assert "kernel answers: Address already in use" in r.stderr
    r = a.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1",
               check=False)
    assert r.returncode == 255 and r.stderr.startswith("Error: Already enabled.")
    assert (a.tipc("bearer", "list").stdout, a.tipc("node", "get", "identity").stdout) == before
    assert link_up(a, "n1:b0-n2:b0")


def test_tipc_without_daemon(tmp_path: Path) -> None:
    env = {**os.environ, "TIPCPY_RUN_DIR": str(tmp_path)}
    r = subprocess.run(_cmd("tipc") + ["link", "list"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines()[0] == (
        f"tipcd is not running (no control socket at {tmp_path / 'ctl.sock'})")


def test_garbage_is_counted_and_link_stays_up(tipcd) -> None:
    a, b = make_pair(tipcd)
    path = a.run_dir / "ctl.sock"

    def decode_errors() -> int:
        st = ctlclient.call("daemon.stats", path=path)
        return sum(v.get("rx_decode_errors", 0) for v in st["stack"]["bearers"].values())

    before = decode_errors()
    rng = random.Random(7)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", free_udp_port()))
    junk = [b"", b"\x00", b"garbage", bytes(24), b"\xff" * 60]
    junk += [rng.randbytes(rng.randrange(1, 300)) for _ in range(60)]
    for j in junk:
        s.sendto(j, ("127.0.0.1", a.port))
    s.close()
    a.wait_for(lambda: decode_errors() >= before + 40, what="decode errors counted")
    time.sleep(2.0)                      # longer than the link tolerance (1.5 s)
    assert link_up(a, "n1:b0-n2:b0") and link_up(b, "n2:b0-n1:b0")
    assert a.proc.poll() is None
    st = ctlclient.call("daemon.stats", path=path)
    assert st["runtime"]["rx_errors"] == 0       # the Stack dropped them, nothing escaped


def test_sigterm_is_clean(tipcd) -> None:
    a, b = make_pair(tipcd)
    a.stop()
    assert a.proc.returncode == 0
    assert not (a.run_dir / "ctl.sock").exists() and not (a.run_dir / "tipcd.pid").exists()
    # the peer learns at once (RESET with peer_stopping), well before the tolerance expires
    b.wait_for(lambda: "n2:b0-n1:b0: down" in b.tipc("link", "list").stdout
               or "n2:b0-n1:b0" not in b.tipc("link", "list").stdout,
               timeout=1.4, what="link down after peer stop")


def test_configured_at_start_by_toml_and_flags(tipcd, tmp_path: Path) -> None:
    pa, pb = free_udp_port(), free_udp_port()
    conf = tmp_path / "a.toml"
    conf.write_text(f'identity = "c1"\n[link]\ntolerance = 3000\n[[bearer]]\nmedia = "udp"\n'
                    f'name = "b0"\nlocalip = "127.0.0.1"\nlocalport = {pa}\n'
                    f'remoteip = "127.0.0.1"\nremoteport = {pb}\n')
    a = tipcd("a", "--config", str(conf), port=pa)
    b = tipcd("b", "--identity", "c2", "--bearer",
              f"media udp name b0 localip 127.0.0.1 localport {pb} remoteip 127.0.0.1 "
              f"remoteport {pa}", port=pb)
    a.wait_for(lambda: link_up(a, "c1:b0-c2:b0"), what="link c1:b0-c2:b0 up")
    assert link_up(b, "c2:b0-c1:b0")
    assert "Tolerance:3000 ms" in a.tipc("link", "stat", "show", "link", "c1:b0").stdout

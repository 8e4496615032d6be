"""Control server/client, the daemon ops and runtime loop against a tiny fake Stack,
and the CLI's iproute2 formatting (driven through a real control socket)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fake_stack import FakeStack
from tipcpy.addr import node_id_from_str
from tipcpy.runtime import ctlclient
from tipcpy.runtime.config import DaemonConfig
from tipcpy.runtime.control import ControlError, ControlServer
from tipcpy.runtime.ops import NodeOps
from tipcpy.runtime.runtime import Runtime

from .conftest import free_udp_port as free_port


class Server:
    """NodeOps + ControlServer on a loop in a background thread."""

    def __init__(self, run_dir: Path, identity: str | None = "kpeer-a") -> None:
        self.path = run_dir / "ctl.sock"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(identity,), daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self, identity: str | None) -> None:
        asyncio.set_event_loop(self.loop)
        cfg = DaemonConfig(run_dir=self.path.parent, identity=identity)
        stack = FakeStack(node_id_from_str(identity) if identity else None, 4711,
                          random.Random(1))
        self.ops = NodeOps(cfg, Runtime(stack, self.loop))  # type: ignore[arg-type]
        self.server = ControlServer(self.path, self.ops.dispatch)
        self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
        fut.result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.ops.runtime.close()


@pytest.fixture
def srv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TIPCPY_RUN_DIR", str(tmp_path))
    s = Server(tmp_path)
    yield s
    s.stop()


def test_no_daemon_message(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    with pytest.raises(ctlclient.DaemonNotRunning) as ei:
        ctlclient.call("node.get", path=path)
    assert str(ei.value).splitlines()[0] == f"tipcd is not running (no control socket at {path})"
    assert "hint" in str(ei.value)


def test_socket_mode_and_protocol_errors(srv: Server) -> None:
    assert oct(os.stat(srv.path).st_mode & 0o777) == "0o660"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(srv.path))
    f = s.makefile("rwb")
    for line, code in ((b"not json\n", errno.EINVAL), (b"[1,2]\n", errno.EINVAL),
                       (b'{"op":"no.such"}\n', errno.EOPNOTSUPP)):
        f.write(line)
        f.flush()
        ans = json.loads(f.readline())
        assert ans["ok"] is False and ans["errno"] == code and ans["error"]
    f.write(b'{"op":"node.get"}\n')
    f.flush()
    ans = json.loads(f.readline())
    assert ans["ok"] is True and ans["result"]["identity"] == "kpeer-a"
    s.close()


def test_node_ops_and_bad_input_leaves_node_unchanged(srv: Server) -> None:
    info = ctlclient.call("node.get")
    assert info == {"address": 0x195D0465, "identity": "kpeer-a", "netid": 4711,
                    "clusterid": 4711}
    with pytest.raises(ControlError) as ei:
        ctlclient.call("node.set", {"identity": "way too long for a string id!"})
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(ControlError):
        ctlclient.call("node.set", {"netid": 0})
    assert ctlclient.call("node.get") == info
    ctlclient.call("node.set", {"identity": "n2", "netid": 1234})
    assert ctlclient.call("node.get")["netid"] == 1234


def test_bearer_enable_errors_leave_node_unchanged(srv: Server) -> None:
    port = free_port()
    ok = {"media": "udp", "name": "b0", "localip": "127.0.0.1", "localport": port,
          "remoteip": "127.0.0.1", "remoteport": free_port()}
    for bad, code, text in (({**ok, "localip": "999.1.1.1"}, errno.EINVAL, "localip"),
                            ({**ok, "remoteip": "::1"}, errno.EINVAL, "famil"),
                            ({**ok, "priority": 99}, errno.EINVAL, "priority"),
                            ({"media": "eth", "device": "nosuchdev0"}, errno.ENODEV,
                             "does not exist"),
                            ({"media": "eth", "device": "lo"}, errno.EINVAL, "loopback")):
        with pytest.raises(ControlError) as ei:
            ctlclient.call("bearer.enable", bad)
        assert ei.value.errno == code and text in ei.value.message, ei.value.message
    assert ctlclient.call("bearer.list") == []
    assert ctlclient.call("bearer.enable", ok)["bearer"] == "udp:b0"
    with pytest.raises(ControlError) as ei:          # same port again: busy
        ctlclient.call("bearer.enable", {**ok, "name": "b1"})
    assert ei.value.errno == errno.EADDRINUSE
    with pytest.raises(ControlError) as ei:
        ctlclient.call("bearer.enable", ok)
    assert ei.value.message == "Already enabled"
    assert ctlclient.call("bearer.list") == ["udp:b0"]
    with pytest.raises(ControlError):                # node.set refused while bearers up
        ctlclient.call("node.set", {"identity": "x"})
    ctlclient.call("bearer.add", {"bearer": "udp:b0", "remoteip": "127.0.0.2"})
    assert "127.0.0.2:6118" in ctlclient.call("bearer.get", {"bearer": "udp:b0"})["remotes"]
    ctlclient.call("bearer.disable", {"bearer": "udp:b0"})
    assert ctlclient.call("bearer.list") == []
    with pytest.raises(ControlError) as ei:
        ctlclient.call("bearer.disable", {"bearer": "udp:b0"})
    assert ei.value.message == "Bearer not found"


def test_runtime_loop_flushes_and_ticks(srv: Server) -> None:
    """Discovery emitted on enable reaches the peer socket; datagrams reach the Stack;
    the timer fires at next_deadline; a Stack exception on receive is counted."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(3)
    port = free_port()
    ctlclient.call("bearer.enable", {"media": "udp", "name": "b0", "localip": "127.0.0.1",
                                     "localport": port, "remoteip": "127.0.0.1",
                                     "remoteport": peer.getsockname()[1]})
    assert peer.recvfrom(100)[0] == b"discovery-from-udp:b0"
    peer.sendto(b"hello", ("127.0.0.1", port))
    peer.sendto(b"crash", ("127.0.0.1", port))
    stack = srv.ops.stack
    for _ in range(200):
        st = ctlclient.call("daemon.stats")
        if st["runtime"]["rx_packets"] == 2 and stack.ticks:
            break
        threading.Event().wait(0.01)
    assert stack.rx == [(0, b"hello")]
    assert st["runtime"]["rx_errors"] == 1 and stack.ticks == 1
    ctlclient.call("bearer.disable", {"bearer": "udp:b0"})
    assert peer.recvfrom(100)[0] == b"reset-peer-stopping"     # flushed before close
    peer.close()


def run_cli(*args: str) -> Any:
    from cli.tipc import main

    return CliRunner().invoke(main, list(args))


def test_cli_node_outputs(srv: Server) -> None:
    r = run_cli("node", "get", "identity")
    assert r.exit_code == 0 and r.output == (
        "Node Identity                    Hash\nkpeer-a                          195d0465\n")
    assert run_cli("node", "get", "address").output == "195d0465\n"
    assert run_cli("node", "get", "netid").output == "4711\n"
    assert run_cli("no", "g", "c").output == "4711\n"
    assert run_cli("-j", "node", "list").output == (
        "Node Identity                    Hash     State\n"
        "peer-b                           195d0765 up\n")


def test_cli_link_outputs(srv: Server) -> None:
    assert run_cli("link", "list").output == "broadcast-link: up\na:b0-peer-b:b0: up\n"
    assert run_cli("-j", "link", "list").output == (
        '[{"broadcast-link":"up","a:b0-peer-b:b0":"up"}]\n')
    out = run_cli("link", "stat", "show", "link", "a:b0-peer-b:b0").output
    assert out == (
        "Link <a:b0-peer-b:b0>\n"
        "  ACTIVE  MTU:14000  Priority:10  Tolerance:1500 ms  Window:50 packets\n"
        "  RX packets:21 fragments:6/2 bundles:0/0\n"
        "  TX packets:18 fragments:6/2 bundles:0/0\n"
        "  TX profile sample:5 packets average:7038 octets\n"
        "  0-64:60% -256:0% -1024:0% -4096:0% -16384:20% -32768:20% -66000:0%\n"
        "  RX states:214 probes:104 naks:0 defs:0 dups:0\n"
        "  TX states:218 probes:104 naks:0 acks:1 retrans:0\n"
        "  Congestion link:0  Send queue max:0 avg:0\n\n")
    full = run_cli("link", "stat", "show").output
    assert full.startswith("Link <broadcast-link>\n  Window:50 packets\n"
                           "  RX packets:0 fragments:0/0 bundles:0/0\n")
    assert run_cli("link", "stat", "show", "link", "nosuch").output == ""
    j = run_cli("-j", "link", "stat", "show", "link", "peer-b").output
    assert j.startswith('[{"link":"a:b0-peer-b:b0","state":["ACTIVE"],"mtu":14000,')
    assert '"tx profile sample":5,"packets average":7038,"0-64":60,' in j


def test_cli_nametable_and_bearer(srv: Server) -> None:
    out = run_cli("nametable", "show").output.splitlines()
    assert out[0] == ("Type       Lower      Upper      Scope    Port       Node"
                      "                             ")
    assert out[1] == "0          425526373  425526373  cluster  0          kpeer-a"
    assert out[2] == "1          1          1          node     133953688  kpeer-a"
    assert run_cli("-j", "nametable", "show").output.startswith(
        '[{"type":0,"lower":425526373,"upper":425526373,"scope":"cluster","port":0,'
        '"node":"kpeer-a"},')
    r = run_cli("bearer", "enable", "media", "udp", "name", "b0", "localip", "1.2.3")
    assert r.exit_code == 255
    assert r.output.startswith("Error: invalid localip '1.2.3'")
    assert r.output.rstrip().endswith("kernel answers: Invalid argument")
    r = run_cli("bearer", "enable", "media", "udp", "localip", "127.0.0.1")
    assert r.exit_code == 255 and "missing bearer name" in r.output
    port = free_port()
    r = run_cli("b", "en", "media", "udp", "name", "b0", "localip", "127.0.0.1",
                "localport", str(port), "remoteip", "127.0.0.1")
    assert r.exit_code == 0, r.output
    assert run_cli("bearer", "list").output == "udp:b0\n"
    assert run_cli("bearer", "get", "mtu", "media", "udp", "name", "b0").output == "14000\n"
    r = run_cli("bearer", "get", "tolerance", "media", "udp", "name", "nosuch")
    assert r.exit_code == 255
    assert r.output == "Error: Bearer not found.\nkernel answers: Invalid argument\n"
    assert run_cli("bearer", "add", "media", "udp", "name", "b0", "remoteip",
                   "127.0.0.3").exit_code == 0
    assert run_cli("bearer", "disable", "media", "udp", "name", "b0").exit_code == 0
    assert run_cli("bearer", "list").output == ""


def test_cli_without_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPCPY_RUN_DIR", str(tmp_path))
    r = run_cli("link", "list")
    assert r.exit_code == 1
    assert r.output.splitlines()[0] == (
        f"tipcd is not running (no control socket at {tmp_path / 'ctl.sock'})")


def test_peer_credentials_policy() -> None:
    from tipcpy.runtime.control import peer_allowed

    assert peer_allowed(0, 0)
    assert peer_allowed(os.geteuid(), os.getegid())
    import grp

    try:
        tipc_gid = grp.getgrnam("tipc").gr_gid
    except KeyError:
        assert not peer_allowed(65534, 65534)      # no group tipc: only root/owner
    else:
        assert peer_allowed(65534, tipc_gid)


def test_toml_config(tmp_path: Path) -> None:
    cfg_file = tmp_path / "tipcd.toml"
    cfg_file.write_text(
        'identity = "n9"\nnetid = 1234\n[link]\ntolerance = 3000\n'
        '[[bearer]]\nmedia = "udp"\nname = "b0"\nlocalip = "127.0.0.1"\n'
        'remoteip = "127.0.0.1"\nremoteport = 7000\n')
    cfg = DaemonConfig.from_toml(cfg_file)
    assert (cfg.identity, cfg.netid, cfg.link) == ("n9", 1234, {"tolerance": 3000})
    assert cfg.bearers[0]["remoteport"] == 7000
    (tmp_path / "bad.toml").write_text("identiti = 'x'\n")
    with pytest.raises(ValueError, match="unknown key"):
        DaemonConfig.from_toml(tmp_path / "bad.toml")


def test_probing_rule_from_config_reaches_the_stack(tmp_path: Path) -> None:
    import random

    from tipcpy.node import build_stack

    assert build_stack(DaemonConfig(), random.Random(1)).probe_idle is True
    (tmp_path / "p.toml").write_text('probing = "silent"\n')
    cfg = DaemonConfig.from_toml(tmp_path / "p.toml")
    assert cfg.probing == "silent"
    assert build_stack(cfg, random.Random(1)).probe_idle is False
    (tmp_path / "bad.toml").write_text('probing = "never"\n')
    with pytest.raises(ValueError, match="probing must be one of idle, silent"):
        DaemonConfig.from_toml(tmp_path / "bad.toml")


def test_words_parser() -> None:
    from tipcpy.runtime.words import WordError, parse_media

    assert parse_media("priority 5 media udp name b0 localip 10.0.0.1 localport 7000".split()) \
        == {"name": "b0", "localip": "10.0.0.1", "localport": 7000, "bearer": "udp:b0",
            "priority": 5, "media": "udp"}
    assert parse_media("media eth device veth0".split())["bearer"] == "eth:veth0"
    for bad in ("media udp localip 1.2.3.4", "media udp name b0 localip",
                "media foo", "media udp name b0 localip 1.1.1.1 bogus 1",
                "media udp name b0 localip 1.1.1.1 localport x"):
        with pytest.raises(WordError):
            parse_media(bad.split())


def test_deep_json_over_the_socket_gets_an_answer(srv: Server) -> None:
    """Nesting that would overflow the JSON parser's recursion is one EINVAL answer on a
    connection that stays usable; a line over the size cap is answered, then closed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(srv.path))
    f = s.makefile("rwb")
    f.write(b"[" * 60_000 + b"\n")
    f.flush()
    ans = json.loads(f.readline())
    assert ans["ok"] is False and ans["errno"] == errno.EINVAL
    assert "nested deeper" in ans["error"]
    f.write(b'{"op":"node.get"}\n')
    f.flush()
    assert json.loads(f.readline())["result"]["identity"] == "kpeer-a"
    f.write(b"[" * 100_000 + b"\n")
    f.flush()
    ans = json.loads(f.readline())
    assert ans["ok"] is False and ans["errno"] == errno.EMSGSIZE
    assert f.readline() == b""                      # closed after the answer
    s.close()
    assert ctlclient.call("node.get")["identity"] == "kpeer-a"     # the server lives on

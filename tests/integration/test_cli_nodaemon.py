"""With no tipcd, every `tipc` command that would ask the daemon says so: the
not-running message (with how to start tipcd) on stderr, nothing on stdout, exit 1,
no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_cli_ref import tipc, tipc_proc

LINK = "n1:b0-n2:b0"
UDP = ("media", "udp", "name", "b0")

COMMANDS = [
    ("bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1"),
    ("bearer", "enable", "domain", "1", "priority", "5", *UDP, "device", "lo"),
    ("bearer", "disable", *UDP),
    ("bearer", "add", *UDP, "remoteip", "127.0.0.2"),
    ("bearer", "list"),
    *[("bearer", "get", p, *UDP) for p in ("priority", "tolerance", "window", "mtu")],
    *[("bearer", "get", *UDP, o) for o in ("localip", "localport", "remoteip", "remoteport")],
    *[("bearer", "set", p, "100", *UDP) for p in ("priority", "tolerance", "window", "mtu")],
    ("bearer", "get", "tolerance", "media", "eth", "device", "eth0"),
    ("link", "list"),
    *[("link", "get", p, "link", LINK) for p in ("priority", "tolerance", "window")],
    ("link", "get", "broadcast"),
    *[("link", "set", p, "100", "link", LINK) for p in ("priority", "tolerance", "window")],
    ("link", "set", "broadcast", "REPLICAST"),
    ("link", "set", "broadcast", "AUTOSELECT", "ratio", "20"),
    ("link", "statistics", "show"),
    ("link", "stat", "show", "link", LINK, "-s"),
    ("link", "statistics", "reset", "link", LINK),
    ("link", "monitor", "set", "threshold", "10"),
    ("link", "monitor", "get", "threshold"),
    ("link", "monitor", "summary"),
    ("link", "monitor", "list"),
    ("link", "monitor", "list", *UDP),
    ("media", "list"),
    *[("media", "get", p, "media", "udp") for p in ("priority", "tolerance", "window", "mtu")],
    *[("media", "set", p, "100", "media", "udp") for p in ("priority", "tolerance", "window")],
    ("nametable", "show"),
    ("node", "list"),
    *[("node", "get", p) for p in ("address", "identity", "netid", "clusterid")],
    ("node", "set", "identity", "n1"),
    ("node", "set", "address", "1.1.1"),
    ("node", "set", "netid", "4711"),
    ("node", "set", "clusterid", "4711"),
    ("node", "set", "key", "this_is_a_master_key", "master"),
    ("node", "set", "key", "rekeying", "now"),
    ("node", "flush", "key"),
    ("peer", "remove", "address", "1.1.1"),
    ("peer", "remove", "identity", "n2"),
    ("socket", "list"),
    ("events",),
    ("events", "0"),
    ("-j", "link", "list"),
    ("-j", "-p", "nametable", "show"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_says_tipcd_is_not_running(tmp_path: Path, args: tuple[str, ...]
                                                 ) -> None:
    r = tipc(tmp_path, *args)
    assert (r.exit, r.stdout) == (1, ""), r
    lines = r.stderr.splitlines()
    assert lines[0] == f"tipcd is not running (no control socket at {tmp_path / 'ctl.sock'})"
    assert "start it with `tipcd`" in lines[1]
    assert "Traceback" not in r.stderr


def test_not_running_from_the_installed_command(tmp_path: Path) -> None:
    for args in (("link", "stat", "show"), ("events",), ("node", "get", "identity")):
        r = tipc_proc(tmp_path, *args)
        assert (r.exit, r.stdout) == (1, "")
        assert r.stderr.startswith("tipcd is not running (no control socket at ")
        assert "Traceback" not in r.stderr


def test_a_stale_socket_file_is_not_running_either(tmp_path: Path) -> None:
    (tmp_path / "ctl.sock").write_text("")          # a dead daemon's leftover
    r = tipc(tmp_path, "node", "list")
    assert r.exit == 1 and r.stderr.startswith("tipcd is not running")

"""tipcd's encryption settings: --key-file and --refuse-clear (and their TOML keys)
take effect before any bearer, and the key never shows in what tipcd reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tipcpy.runtime.config import DaemonConfig
from tipcpy.runtime.control import ControlError
from tipcpy.runtime.ctlclient import call
from tipcpy.runtime.ops.node import key_words

from .test_cli_ref import Pair, ok, pair_fixture, tipc

pair = pair_fixture()
KEY = "0x" + "4b" * 32 + "5a175a17"


def test_toml_refuse_clear_and_key_file(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('identity = "n1"\nrefuse_clear = true\nkey_file = "/etc/k"\n')
    cfg = DaemonConfig.from_toml(f)
    assert cfg.refuse_clear is True and cfg.key_file == "/etc/k"
    f.write_text('refuse_clear = "yes"\n')
    with pytest.raises(ValueError, match="refuse_clear must be true or false"):
        DaemonConfig.from_toml(f)


def test_key_file_words() -> None:
    assert key_words(["K" * 20, "master"]) == {"key": "K" * 20, "master": True}
    assert key_words(["K" * 20, "algname", "gcm(aes)", "nodeid", "n2"]) == {
        "key": "K" * 20, "algname": "gcm(aes)", "nodeid": "n2"}
    for bad in ([], ["K" * 20, "nodeid"], ["K" * 20, "bogus"]):
        with pytest.raises(ControlError):
            key_words(bad)


def test_tipcd_key_file_and_refuse_clear_before_the_bearer(pair: Pair, tmp_path: Path) -> None:
    kf = tmp_path / "k"
    kf.write_text(f"# the cluster key\n{KEY}\n")
    c = pair.start("c", "--identity", "nc", "--key-file", str(kf), "--refuse-clear")
    info = call("node.key.get", None, c.run_dir / "ctl.sock")
    assert info["working"] and info["refuse_clear"] and not info["master"], info
    assert KEY[2:].lower() not in json.dumps(info).lower()  # hints only, never the key
    (k,) = info["tx"]["keys"].values()
    assert k["bits"] == 256 and k["hint"] == KEY[2:66][-10:]
    log = c.log_path.read_text()
    assert re.search(r"cluster key set \(gcm\(aes\)-256, hint \.\.\.4b4b4b4b4b\)", log), log
    assert KEY[2:] not in log
    assert tipc(c, "node", "set", "key", "clear", "accept").exit == 0
    assert call("node.key.get", None, c.run_dir / "ctl.sock")["refuse_clear"] is False
    assert ok(c, "node", "flush", "key") == ""
    assert call("node.key.get", None, c.run_dir / "ctl.sock")["working"] is False

"""`tipc dump` end to end, and the root CLI behaviour it relies on (cli/common.py).

Runs the real command in process (click's CliRunner; the subprocess runs are in
tests/integration/test_dump_cli_subprocess.py) on the reference captures, on damaged
copies of them, and on files that are not captures at all.  Also checks cli/common's
iproute2 JSON writer byte for byte against the kernel tool's output recorded in
../shared/reference/cli.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.common import TipcGroup, fail, format_iproute2_json, state
from cli.tipc import main

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CAPTURES_DIR = SHARED / "reference" / "captures"
PAIR = CAPTURES_DIR / "pair-multicast.pcap"
SINGLE = CAPTURES_DIR / "single-guest-host.pcap"
CLI_REF = SHARED / "reference" / "cli"

needs_captures = pytest.mark.skipif(not PAIR.is_file() or not SINGLE.is_file(),
                                    reason=f"reference captures absent at {CAPTURES_DIR}")

SUMMARY = re.compile(r"^(\d+) messages, (\d+) errors$")


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), prog_name="tipc")


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


# Offset of the TIPC payload of the first frame in the reference captures:
# pcap header 24 + record header 16 + Ethernet 14 + IPv4 20 + UDP 8.
FIRST_TIPC = 24 + 16 + 14 + 20 + 8


def corrupted_copy(tmp_path: Path, src: Path, offset: int, value: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] = value
    out = tmp_path / f"corrupt-{src.name}"
    out.write_bytes(bytes(data))
    return out


# ----------------------------------------------------------------------- --check


@needs_captures
@pytest.mark.parametrize("capture", [PAIR, SINGLE], ids=lambda p: p.name)
def test_check_on_reference_captures_has_no_errors(capture: Path) -> None:
    res = run("dump", "--check", str(capture))
    assert res.exit_code == 0, res.output
    m = SUMMARY.match(last_line(res.stdout))
    assert m, res.stdout
    assert int(m.group(1)) > 0 and m.group(2) == "0"
    assert res.stdout.count("\n") == 1  # only the summary: no failure lines


@needs_captures
def test_check_counts_inner_messages_too() -> None:
    res = run("dump", "--check", str(PAIR))
    n = int(SUMMARY.match(last_line(res.stdout)).group(1))
    text = run("dump", str(PAIR)).stdout
    assert n == len(text.splitlines())
    assert text.count("\\_ reassembled:") >= 4  # 30000 and 40000 bytes, both directions


@needs_captures
def test_corrupted_tipc_packet_is_reported_with_reason(tmp_path: Path) -> None:
    raw = PAIR.read_bytes()
    assert raw[FIRST_TIPC:FIRST_TIPC + 2] == bytes.fromhex("5bf0"), "layout assumption"
    bad = corrupted_copy(tmp_path, PAIR, FIRST_TIPC, 0x7B)  # version 2 -> 3
    res = run("dump", "--check", str(bad))
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith("frame 1:") and "decode error" in lines[0]
    assert "version" in lines[0]  # the DecodeError names the field
    m = SUMMARY.match(lines[-1])
    assert m and m.group(2) == "1"
    assert "Traceback" not in res.output
    # Without --check the dump goes on past the bad packet and says why it is bad.
    res = run("dump", str(bad))
    assert res.exit_code == 0
    first = res.stdout.splitlines()[0]
    assert first.split()[0] == "1" and "[decode error:" in first
    assert len(res.stdout.splitlines()) == n_lines_of(PAIR)


def n_lines_of(capture: Path) -> int:
    return len(run("dump", str(capture)).stdout.splitlines())


@needs_captures
def test_truncated_size_field_is_reported(tmp_path: Path) -> None:
    # w0 size low byte 0x4c (76) -> 0xff: the message claims more bytes than the datagram.
    bad = corrupted_copy(tmp_path, SINGLE, FIRST_TIPC + 3, 0xFF)
    res = run("dump", "--check", str(bad))
    assert res.exit_code == 1
    assert res.stdout.splitlines()[0].startswith("frame 1:")
    assert SUMMARY.match(last_line(res.stdout)).group(2) == "1"


@needs_captures
def test_capture_cut_mid_frame_is_reported(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(SINGLE.read_bytes()[:-20])
    res = run("dump", "--check", str(cut))
    assert res.exit_code == 1
    assert "file ends inside frame" in res.stdout
    assert SUMMARY.match(last_line(res.stdout)).group(2) == "1"


# ------------------------------------------------------------------ bad input files


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    res = run("dump", str(tmp_path / "nope.pcap"))
    assert res.exit_code == 2
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and "nope.pcap" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("content", [b"", b"GARBAGE" * 100, b"\x00" * 3])
def test_garbage_file_is_one_line_exit_2(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "garbage.pcap"
    f.write_bytes(content)
    res = run("dump", "--check", str(f))
    assert res.exit_code == 2
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and "not a pcap" in res.stderr


def test_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    res = run("dump", str(tmp_path))
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1


# ------------------------------------------------------------------ output modes


@needs_captures
def test_json_lines_parse_and_carry_fields() -> None:
    res = run("dump", "-j", str(PAIR))
    assert res.exit_code == 0
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    n = int(SUMMARY.match(last_line(run("dump", "--check", str(PAIR)).stdout)).group(1))
    assert len(objs) == n
    for o in objs:
        assert {"frame", "time", "src", "dst", "user", "mtype", "summary"} <= o.keys()
    assert objs[0]["time"] == 0
    dsc = objs[0]
    assert dsc["user_name"] == "LINK_CONFIG" and dsc["net_id"] > 0
    inner = [o for o in objs if o.get("via") == "reassembled"]
    assert inner and all(o["depth"] == 1 for o in inner)
    assert any(o.get("nametype") == 1000 for o in inner)
    # -j anywhere on the line, as iproute2 accepts it.
    assert run("-j", "dump", str(PAIR)).stdout == res.stdout
    assert run("dump", str(PAIR), "--json").stdout == res.stdout


@needs_captures
def test_verbose_prints_every_field() -> None:
    res = run("dump", "-v", str(SINGLE))
    assert res.exit_code == 0
    assert "net_id: 4711" in res.stdout and "node_id_str: kpeer1" in res.stdout


@needs_captures
def test_summary_lines_look_like_tshark() -> None:
    lines = run("dump", str(PAIR)).stdout.splitlines()
    assert re.match(r"^\s+1\s+0\.000000 10\.77\.1\.2:6118 -> 228\.0\.18\.103:6118 LINK_CONFIG",
                    lines[0])


@needs_captures
def test_extra_port_option() -> None:
    # Nothing travels on 7000 in the capture: the option adds a port, it does not replace.
    a = run("dump", "--check", str(SINGLE)).stdout
    assert run("dump", "--check", "--port", "7000", str(SINGLE)).stdout == a


# ------------------------------------------------------------ root CLI behaviour


@needs_captures
def test_unique_prefixes_and_help_anywhere() -> None:
    assert run("du", "--check", str(SINGLE)).stdout == run("dump", "--check",
                                                           str(SINGLE)).stdout
    res = run("dump", str(SINGLE), "-h")
    assert res.exit_code == 0 and res.stdout.startswith("Usage: tipc dump")
    res = run("dump", "--help")
    assert "--check" in res.stdout


def test_help_of_last_valid_word_and_root() -> None:
    res = run("-h")
    assert res.exit_code == 0 and "dump" in res.stdout
    res = run("dump", "no-such-word", "-h")
    assert res.stdout.startswith("Usage: tipc dump")


def _toy() -> TipcGroup:
    @click.group(cls=TipcGroup)
    def root() -> None:
        """toy root"""

    @root.group("link")
    def link() -> None:
        """links"""

    @link.group("statistics")
    def stats() -> None:
        """stats"""

    @stats.command("show")
    def show() -> None:
        """show them"""
        st = state()
        click.echo(f"show json={st.json} pretty={st.pretty}")

    @link.command("set")
    def set_() -> None:
        fail("kernel answers: Invalid argument")

    @link.command("get")
    def get() -> None:
        raise RuntimeError("boom")

    @link.command("gone")
    def gone() -> None:
        pass

    plain = click.Group("plain")

    @plain.command("statistics")
    def pstat() -> None:
        click.echo("plain ok")

    root.add_command(plain)
    return root


def test_prefix_matching_is_iproute2_style() -> None:
    root = _toy()
    r = CliRunner()
    assert r.invoke(root, ["l", "stat", "sh"]).stdout == "show json=False pretty=False\n"
    assert r.invoke(root, ["link", "statistics", "show", "-j", "-p"]).stdout == \
        "show json=True pretty=True\n"
    assert r.invoke(root, ["-p", "li", "st", "sh"]).stdout == "show json=False pretty=True\n"
    # Plain click sub-groups get prefix matching from the root too.
    assert r.invoke(root, ["pl", "stat"]).stdout == "plain ok\n"
    amb = r.invoke(root, ["link", "g"])  # get / gone
    assert amb.exit_code == 2 and "ambiguous" in amb.stderr
    unknown = r.invoke(root, ["link", "xyz"])
    assert unknown.exit_code == 2


def test_help_shows_full_words_of_the_last_valid_word() -> None:
    r = CliRunner()
    res = r.invoke(_toy(), ["l", "-h", "stat", "sh"], prog_name="tipc")
    assert res.exit_code == 0
    assert res.stdout.startswith("Usage: tipc link statistics show")
    res = r.invoke(_toy(), ["l", "stat", "bogus", "--help"], prog_name="tipc")
    assert res.stdout.startswith("Usage: tipc link statistics [OPTIONS] COMMAND")


def test_errors_are_one_line_exit_1_never_a_traceback() -> None:
    r = CliRunner()
    res = r.invoke(_toy(), ["link", "set"])
    assert res.exit_code == 1 and res.stderr == "error: kernel answers: Invalid argument\n"
    res = r.invoke(_toy(), ["link", "get"])
    assert res.exit_code == 1
    assert res.stderr == "error: internal error: RuntimeError: boom\n"
    assert res.stdout == ""


# ------------------------------------------------- iproute2 JSON, byte for byte


def _reference_json_examples() -> list[tuple[str, str]]:
    """(command, exact stdout) of every `tipc -j ...` in ../shared/reference/cli."""
    out = []
    if not CLI_REF.is_dir():
        return out
    for f in sorted(CLI_REF.glob("tipc-*.txt")):
        text = f.read_bytes()
        for m in re.finditer(rb"^\$ (tipc -j[^\n]*?)\s+#[^\n]*\n\[exit 0\]\n--- stdout \((\d+) "
                             rb"bytes\)\n", text, re.M):
            n = int(m.group(2))
            body = text[m.end():m.end() + n].decode()
            if body.lstrip().startswith(("[", "{")):
                out.append((m.group(1).decode(), body))
    return out


JSON_EXAMPLES = _reference_json_examples()


@pytest.mark.skipif(not JSON_EXAMPLES, reason=f"no `tipc -j` transcripts under {CLI_REF}")
@pytest.mark.parametrize("command,stdout", JSON_EXAMPLES, ids=[c for c, _ in JSON_EXAMPLES])
def test_iproute2_json_layout_matches_the_kernel_tool(command: str, stdout: str) -> None:
    def no_dups(pairs: list[tuple[str, object]]) -> dict:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            pytest.skip("iproute2 printed duplicate keys; not representable as a dict")
        return dict(pairs)

    try:
        value = json.loads(stdout, object_pairs_hook=no_dups)
    except json.JSONDecodeError:
        # e.g. `link monitor get threshold` prints `[ "threshold": 32 ]`: a command that
        # wants to match it must print that text itself.
        pytest.skip("iproute2 printed invalid JSON here; no value serialises to it")
    pretty = " -p" in command
    assert format_iproute2_json(value, pretty) + "\n" == stdout


def test_iproute2_json_edge_cases() -> None:
    assert format_iproute2_json([], True) == "[ ]"
    assert format_iproute2_json([{}], False) == "[{}]"
    assert format_iproute2_json({"a": [1, 2], "b": True, "c": None}, False) == \
        '{"a":[1,2],"b":true,"c":null}'


# ------------------------------------------------------------ root module loading


def test_missing_command_module_is_skipped_other_import_errors_raise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.tipc as tipc_mod

    assert tipc_mod._load("no_such_family_xyz") is None

    def broken(name: str) -> None:
        raise ModuleNotFoundError("No module named 'pyroute2x'", name="pyroute2x")

    monkeypatch.setattr(tipc_mod.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError):
        tipc_mod._load("bearer")


def test_print_table_and_emit_json() -> None:
    from cli.common import emit_json, print_table

    @click.command()
    def show() -> None:
        print_table(["Type", "Lower"], [[1000, 1], [2000, None]])
        emit_json([{"a": 1}])

    res = CliRunner().invoke(show, [])
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Type", "Lower"] and lines[1].split() == ["1000", "1"]
    assert lines[-1] == '[{"a":1}]'


# ------------------------------------------------------------- bundles (synthetic)
# The reference captures happen to contain no MSG_BUNDLER packet, so build one with the
# codec and wrap it in a minimal pcap (Ethernet / IPv4 / UDP 6118).


def _udp_pcap(payloads: list[bytes]) -> bytes:
    import struct

    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for i, p in enumerate(payloads):
        u = struct.pack(">HHHH", 6118, 6118, 8 + len(p), 0) + p
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(u), i, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + u
        frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
        out += struct.pack("<IIII", 1000 + i, 0, len(frame), len(frame)) + frame
    return out


def _bundle_bytes() -> bytes:
    from tipcpy.wire import Msg
    from tipcpy.wire.bundle import bundle
    from tipcpy.wire.items import DistrItem

    msgs = [Msg.build(11, mtype=0, items=[DistrItem(1000 + i, 1, 1, 77 + i, 78 + i)],
                      orignode=0x01020304, non_legacy=1) for i in range(3)]
    (b,) = bundle(msgs, 1420)
    return b.encode()


def test_bundle_inner_messages_are_shown_and_checked(tmp_path: Path) -> None:
    f = tmp_path / "bundle.pcap"
    f.write_bytes(_udp_pcap([_bundle_bytes()]))
    res = run("dump", str(f))
    lines = res.stdout.splitlines()
    assert res.exit_code == 0 and len(lines) == 4
    assert [ln.split("\\_ ")[1].split(":")[0] for ln in lines[1:]] == \
        ["bundle 1/3", "bundle 2/3", "bundle 3/3"]
    assert "{1002,1,1}" in lines[3]
    res = run("dump", "--check", str(f))
    assert res.exit_code == 0 and last_line(res.stdout) == "4 messages, 0 errors"
    objs = [json.loads(x) for x in run("dump", "-j", str(f)).stdout.splitlines()]
    assert [o["depth"] for o in objs] == [0, 1, 1, 1]
    assert objs[3]["items"][0]["type"] == 1002


def test_bundle_with_a_broken_inner_message_fails_check(tmp_path: Path) -> None:
    raw = bytearray(_bundle_bytes())
    raw[40 + 60] = (raw[40 + 60] & 0x1F) | 0x60  # 2nd inner message: version 2 -> 3
    f = tmp_path / "badbundle.pcap"
    f.write_bytes(_udp_pcap([bytes(raw)]))
    res = run("dump", "--check", str(f))
    assert res.exit_code == 1
    assert "frame 1 (bundle 2/3)" in res.stdout and "decode error" in res.stdout

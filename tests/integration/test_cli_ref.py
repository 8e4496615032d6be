"""Helpers of the `tipc` CLI tests: the iproute2 6.1 transcripts and a shared node pair.

`REF` parses ../shared/reference/cli/tipc-*.txt into ``{command: Section}`` (exit status,
exact stdout and stderr), so each family's test compares our output with what the
kernel tool printed.  Values differ (other node names, counters, ports), so lines are
compared through `shape()`: the reference line with every number, hash, node name and
link name turned into a pattern - headers, columns, words and spacing stay literal.

`pair_fixture()` makes a module-scoped fixture: two real tipcd on 127.0.0.1 (n1, n2)
with a UDP link up, so a test module pays the start-up once.  `tipc()` runs the CLI
in-process against a node (fast; the daemons are real processes); `tipc_proc()` runs the
installed `tipc` command as a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from .conftest import REPO, TipcNode, _cmd, free_udp_port

REF_DIR = REPO.parent / "shared" / "reference" / "cli"
LINK_REF = "kpeer-a:b0-kpeer-b:b0"


@dataclass
class Section:
    command: str
    exit: int
    stdout: str
    stderr: str


def load_reference() -> dict[str, Section]:
    out: dict[str, Section] = {}
    if not REF_DIR.is_dir():
        return out
    pat = re.compile(r"^\$ (tipc[^\n]*?)\s+# on \S+\n\[exit (\d+)\]\n--- stdout \((\d+) bytes\)\n",
                     re.M)
    for f in sorted(REF_DIR.glob("tipc-*.txt")):
        text = f.read_text()
        for m in pat.finditer(text):
            pos = m.end()
            so = text[pos:pos + int(m.group(3))]
            pos += int(m.group(3))
            m2 = re.compile(r"--- stderr \((\d+) bytes\)\n").match(text, pos)
            assert m2, f"{f.name}: no stderr after {m.group(1)}"
            se = text[m2.end():m2.end() + int(m2.group(1))]
            # the first section of a command wins (peer remove appears twice)
            out.setdefault(m.group(1), Section(m.group(1), int(m.group(2)), so, se))
    return out


REF = load_reference()
needs_ref = pytest.mark.skipif(not REF, reason=f"no iproute2 transcripts under {REF_DIR}")

_TOKENS = [
    (re.escape(LINK_REF), r"\S+:\S+-\S+:\S+"),
    (r"kpeer-[ab]", r"\S+"),
    (r"\d+\.\d+\.\d+", r"\d+\.\d+\.\d+"),
    # a whole 8-digit hex word (a node hash); values vary in length (a port printed as
    # 8 decimal digits in the reference may have 10 here), so any hex run matches it
    (r"(?<![0-9a-f])[0-9a-f]{8}(?![0-9a-f])", r"[0-9a-f]+"),
    (r"\d+", r"\d+"),
]


def shape(line: str) -> str:
    """Regex of a reference line: literal except numbers, hashes, names - and the
    padding right after one of those (a column's width absorbs the value's length)."""
    out = []
    i = 0
    while i < len(line):
        for tok, rep in _TOKENS:
            m = re.compile(tok).match(line, i)
            if m:
                out.append(rep)
                i = m.end()
                if line[i:i + 1] == " ":
                    while line[i:i + 1] == " ":
                        i += 1
                    out.append(" +" if i < len(line) else " *")
                break
        else:
            out.append(re.escape(line[i]))
            i += 1
    return "^" + "".join(out) + "$"


def assert_lines_shaped(ours: str, ref: str) -> None:
    """Same number of lines, each matching the shape of the reference line."""
    a, b = ours.split("\n"), ref.split("\n")
    assert len(a) == len(b), f"{len(a)} lines vs reference {len(b)}:\n{ours}\n---\n{ref}"
    for x, y in zip(a, b, strict=True):
        assert re.match(shape(y), x), f"line {x!r} does not look like reference {y!r}"


def assert_rows_shaped(ours: str, ref: str, header_lines: int = 1) -> None:
    """Header lines equal; every other line shaped like some reference row."""
    a, b = ours.rstrip("\n").split("\n"), ref.rstrip("\n").split("\n")
    assert a[:header_lines] == b[:header_lines]
    shapes = {shape(y) for y in b[header_lines:]}
    for x in a[header_lines:]:
        assert any(re.match(s, x) for s in shapes), f"row {x!r} unlike any of {shapes}"


def json_shape(v: object) -> object:
    """The structure of a JSON value: dict keys and types, list element shapes."""
    if isinstance(v, dict):
        return {k: json_shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [json_shape(x) for x in v[:1]]
    return type(v).__name__


# ---------------------------------------------------------------- running tipc


@dataclass
class Result:
    exit: int
    stdout: str
    stderr: str


def tipc(node: TipcNode | Path, *args: str) -> Result:
    """The CLI in-process against a node's run dir (or any run dir)."""
    from cli.tipc import main

    run_dir = node.run_dir if isinstance(node, TipcNode) else node
    r = CliRunner().invoke(main, list(args), prog_name="tipc",
                           env={"TIPCPY_RUN_DIR": str(run_dir)})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Result(r.exit_code, r.stdout, r.stderr)


def tipc_proc(node: TipcNode | Path, *args: str) -> Result:
    run_dir = node.run_dir if isinstance(node, TipcNode) else node
    env = {**os.environ, "TIPCPY_RUN_DIR": str(run_dir), "PYTHONPATH": str(REPO)}
    r = subprocess.run(_cmd("tipc") + list(args), env=env, capture_output=True, text=True,
                       timeout=30)
    return Result(r.returncode, r.stdout, r.stderr)


def ok(node: TipcNode, *args: str) -> str:
    r = tipc(node, *args)
    assert r.exit == 0, f"tipc {' '.join(args)} -> {r.exit}: {r.stderr}"
    return r.stdout


# ---------------------------------------------------------------- a linked pair


@dataclass
class Pair:
    a: TipcNode
    b: TipcNode
    link: str             # the link's name on a
    start: Callable[..., TipcNode]


def enable(node: TipcNode, peer: TipcNode, name: str = "b0") -> None:
    ok(node, "bearer", "enable", "media", "udp", "name", name, "localip", "127.0.0.1",
       "localport", str(node.port), "remoteip", "127.0.0.1", "remoteport", str(peer.port))


def link_state(node: TipcNode, link: str) -> str | None:
    for line in ok(node, "link", "list").splitlines():
        if line.startswith(link + ": "):
            return line.split(": ", 1)[1]
    return None


def pair_fixture() -> Callable[..., Iterator[Pair]]:
    @pytest.fixture(scope="module")
    def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        import subprocess as sp

        base = tmp_path_factory.mktemp("pair")
        started: list[TipcNode] = []

        def start(name: str, *extra: str) -> TipcNode:
            run_dir = base / name
            run_dir.mkdir()
            log_path = base / f"{name}.log"
            with open(log_path, "wb") as log:
                proc = sp.Popen(_cmd("tipcd") + ["--run-dir", str(run_dir), *extra],
                                stdout=log, stderr=sp.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
            node = TipcNode(name, run_dir, free_udp_port(), proc, log_path)
            started.append(node)
            node.wait_for(lambda: (run_dir / "ctl.sock").exists() or proc.poll() is not None,
                          what="control socket")
            assert proc.poll() is None, node.log()
            return node

        try:
            a = start("a", "--identity", "n1")
            b = start("b", "--identity", "n2")
            enable(a, b)
            enable(b, a)
            a.wait_for(lambda: link_state(a, "n1:b0-n2:b0") == "up", what="link up")
            b.wait_for(lambda: link_state(b, "n2:b0-n1:b0") == "up", what="link up")
            yield Pair(a, b, "n1:b0-n2:b0", start)
        finally:
            for n in started:
                n.stop()
    return pair


# ---------------------------------------------------------------- the helpers' own tests


@needs_ref
def test_reference_sections_parse() -> None:
    assert REF["tipc link list"].stdout == "broadcast-link: up\nkpeer-a:b0-kpeer-b:b0: up\n"
    assert REF["tipc bearer get"].exit == 255
    assert REF["tipc peer remove identity kpeer-b"].stderr == \
        "kernel answers: Device or resource busy\n"
    assert len(REF) > 100


def test_shape_keeps_words_and_spacing() -> None:
    s = shape("  ACTIVE  MTU:14000  Priority:10  Tolerance:1500 ms  Window:50 packets")
    assert re.match(s, "  ACTIVE  MTU:9000  Priority:3  Tolerance:400 ms  Window:50 packets")
    assert not re.match(s, "  ACTIVE MTU:9000  Priority:3  Tolerance:400 ms  Window:50 packets")
    assert re.match(shape("kpeer-b                          195d0765 up"),
                    "n2                               6e320000 up")
    assert re.match(shape("25.1488.1125  up     direct    1          U []"),
                    "110.784.0     up     direct    1          U []")
    assert not re.match(shape("broadcast-link: up"), "broadcast-link:  up")

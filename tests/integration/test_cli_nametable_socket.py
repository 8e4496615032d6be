"""`tipc nametable show` and `tipc socket list` against real tipcd, compared with
iproute2 6.1's output (tipc-nametable.txt, tipc-socket.txt)."""

from __future__ import annotations

import json
import re

from .test_cli_ref import (
    REF,
    Pair,
    assert_rows_shaped,
    json_shape,
    needs_ref,
    ok,
    pair_fixture,
    tipc,
)

pair = pair_fixture()


@needs_ref
def test_nametable_looks_like_iproute2(pair: Pair) -> None:
    a = pair.a
    out = ok(a, "nametable", "show")
    assert_rows_shaped(out, REF["tipc nametable show"].stdout)
    rows = [ln.split() for ln in out.splitlines()[1:]]
    # node up {0, n1}, {0, n2}; link {2, n2} on n1 - as on the kernel
    assert ["0", "1848705024", "1848705024", "cluster", "0", "n1"] in rows
    assert ["0", "1848770560", "1848770560", "cluster", "0", "n2"] in rows
    assert ["2", "1848770560", "1848770560", "node"] == rows[[r[0] for r in rows]
                                                            .index("2")][:4]
    ours = json.loads(ok(a, "-j", "nametable", "show"))
    theirs = json.loads(REF["tipc -j nametable show"].stdout)
    assert json_shape(ours) == json_shape(theirs)
    pretty = ok(a, "-j", "-p", "nametable", "show")
    assert json.loads(pretty) == ours
    ref_lines = REF["tipc -j -p nametable show"].stdout.splitlines()
    assert pretty.splitlines()[:2] == ref_lines[:2]             # "[ {", "        \"type\": 0,"
    r = tipc(a, "nametable", "show", "extra")
    assert (r.exit, r.stderr) == (255, "Usage: tipc nametable show\n")


@needs_ref
def test_socket_list_looks_like_iproute2(pair: Pair) -> None:
    a = pair.a
    shapes = {re.sub(r"\d+", r"\\d+", re.escape(ln))
              for ln in REF["tipc socket list"].stdout.splitlines()}
    shapes |= {s.replace(r"\d+:", r"[0-9a-f]+:") for s in shapes}
    for flags in ((), ("-j",), ("-j", "-p")):              # -j is ignored, as by iproute2
        out = ok(a, *flags, "socket", "list")
        for line in out.splitlines():
            assert any(re.fullmatch(s, line) for s in shapes), line
    lines = ok(a, "socket", "list").splitlines()
    if lines:          # with the socket layer: the topology server's port, as on a kernel
        assert "  bound to {1,1,1}" in lines
        i = lines.index("  bound to {1,1,1}")
        assert re.fullmatch(r"socket \d+", lines[i - 1])
        port = lines[i - 1].split()[1]
        assert any(r.split()[:5] == ["1", "1", "1", "node", port]
                   for r in ok(a, "nametable", "show").splitlines())
    r = tipc(a, "socket", "list", "extra")
    assert (r.exit, r.stderr) == (255, "Usage: tipc socket list\n")

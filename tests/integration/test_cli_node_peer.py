"""`tipc node` and `tipc peer` against real tipcd, compared with iproute2 6.1's output
(tipc-node.txt, tipc-peer.txt); validation of identities, netids, addresses and keys."""

from __future__ import annotations

import json
import re

from .test_cli_ref import (
    REF,
    Pair,
    assert_lines_shaped,
    assert_rows_shaped,
    link_state,
    needs_ref,
    ok,
    pair_fixture,
    tipc,
)

pair = pair_fixture()


@needs_ref
def test_node_looks_like_iproute2(pair: Pair) -> None:
    a = pair.a
    for flags in ((), ("-j",), ("-j", "-p")):       # -j is ignored, as by iproute2
        pre = " ".join(("tipc", *flags))
        assert_rows_shaped(ok(a, *flags, "node", "list"), REF[f"{pre} node list"].stdout)
        for prop in ("identity", "address", "netid"):
            assert_lines_shaped(ok(a, *flags, "node", "get", prop),
                                REF[f"{pre} node get {prop}"].stdout)
    assert ok(a, "node", "list").splitlines()[1].split() == ["n2", "6e320000", "up"]
    assert ok(a, "node", "get", "netid") == "4711\n" == ok(a, "node", "get", "clusterid")
    assert ok(a, "node", "get", "address") == "6e310000\n"
    for cmd in ("tipc node get", "tipc node set", "tipc node set netid 4711",
                "tipc node set identity kpeer-x"):
        r = tipc(a, *cmd.split()[1:])
        assert r.exit == REF[cmd].exit and r.stdout == ""
        assert r.stderr.endswith(REF[cmd].stderr), (cmd, r.stderr)   # EPERM: bearer up


def test_node_set_and_bad_values(pair: Pair) -> None:
    c = pair.start("c")                      # no identity, no bearer: may be configured

    def snapshot() -> tuple[str, ...]:
        return tuple(ok(c, "node", "get", p) for p in ("identity", "address", "netid"))

    before = snapshot()
    for args, msg in ((("netid", "0"), "expected 1-9999"),
                      (("netid", "10000"), "expected 1-9999"),
                      (("clusterid", "x"), "expected 1-9999"),
                      (("identity", "abcdefghijklmnopq"), "up to 16 characters"),
                      (("identity", "bad/char"), "up to 16 characters"),
                      (("identity", "0x" + "f" * 33), "up to 32 hex digits"),
                      (("address", "1.2"), "expected Z.C.N"),
                      (("address", "256.0.1"), "expected Z.C.N")):
        r = tipc(c, "node", "set", *args)
        assert r.exit == 255 and msg in r.stderr, (args, r)
        assert r.stderr.endswith("kernel answers: Invalid argument\n")
    assert snapshot() == before
    ok(c, "node", "set", "netid", "1234")
    ok(c, "node", "set", "identity", "node-c")
    assert ok(c, "node", "get", "clusterid") == "1234\n"
    assert ok(c, "node", "get", "identity").splitlines()[1].split()[0] == "node-c"
    r = tipc(c, "node", "set", "nonsense", "1")
    assert r.exit == 2 and "No such command 'nonsense'" in r.stderr and "identity" in r.stderr
    c.stop()


def test_node_keys_are_validated_and_attached(pair: Pair) -> None:
    """Keys set on both nodes (the link survives: both sides encrypt with the same key
    in the end); bad keys refused with the kernel's answer and nothing attached."""
    import time

    a, b = pair.a, pair.b
    for n in (a, b):
        r = tipc(n, "node", "set", "key", "0x746869735F69735F615F6B657931365F73616C74")
        assert r.exit == 0 and r.stdout == "" and r.stderr == "", r
    # the peer uses the new key at once, so a second key cannot replace it until it has
    # lasted (10 s): the kernel answers EBUSY, and so do we
    time.sleep(1.0)
    assert link_state(a, pair.link) == "up"
    text = ok(a, "link", "stat", "show", "link", pair.link)
    m = re.search(r"^  Crypto ok:(\d+) bad_tag:0 replay:0 no_key:\d+ unknown_key_id:0 "
                  r"too_old:0 clear_dropped:0 malformed:0$", text, re.M)
    assert m and int(m.group(1)) > 0, text
    (js,) = [x for x in json.loads(ok(a, "-j", "link", "stat", "show", "link", pair.link))
             if x["link"] == pair.link]
    assert js["crypto"]["ok"] > 0 and js["crypto"]["bad_tag"] == 0, js
    assert ok(a, "link", "stat", "reset", "link", pair.link) == ""
    after = ok(a, "link", "stat", "show", "link", pair.link)
    m2 = re.search(r"^  Crypto ok:(\d+)", after, re.M)
    assert m2 is None or int(m2.group(1)) < int(m.group(1)), after
    for key in ("this_is_a_master_key", "k" * 28, "0x" + "ab" * 36):
        r = tipc(a, "node", "set", "key", key)
        assert r.exit == 255 and "key change is under way" in r.stderr, (key, r)
        assert "Device or resource busy" in r.stderr
    r = tipc(a, "node", "set", "key", "this_is_a_key16_salt", "algname", "gcm(aes)",
             "nodeid", "n2")
    assert r.exit == 0, r
    for args, msg in ((("short",), "invalid key length 5 octets: expected 20, 28 or 36"),
                      (("k" * 21,), "invalid key length 21"),
                      (("0x" + "ab" * 19,), "invalid key length 19"),
                      (("0x12345",), "even number of hex digits"),
                      (("this_is_a_master_key", "algname", "cbc(aes)"), "gcm(aes)"),
                      (("this_is_a_master_key", "master", "nodeid", "n2"),
                       "mutually exclusive"),
                      (("rekeying", "soon"), "rekeying interval")):
        r = tipc(a, "node", "set", "key", *args)
        assert r.exit == 255 and msg in r.stderr, (args, r)
    assert tipc(a, "node", "set", "key", "rekeying", "600").exit == 0
    assert tipc(a, "node", "set", "key", "rekeying", "now").exit == 0
    assert tipc(a, "node", "set", "key", "clear", "refuse").exit == 0
    assert tipc(a, "node", "set", "key", "clear", "maybe").exit == 255
    assert tipc(a, "node", "set", "key", "clear", "accept").exit == 0
    for n in (a, b):
        assert ok(n, "node", "flush", "key") == ""
    r = tipc(a, "node", "set", "key")
    assert r.exit == 255 and r.stderr.startswith("Usage: tipc node set key KEY")
    end = time.monotonic() + 15
    while link_state(a, pair.link) != "up" and time.monotonic() < end:
        time.sleep(0.2)
    assert link_state(a, pair.link) == "up"


@needs_ref
def test_peer_remove_as_iproute2(pair: Pair) -> None:
    """The transcript's sequence: busy while up, gone after the peer's bearer went down."""
    a, b = pair.a, pair.b
    r = tipc(a, "peer", "remove")
    assert (r.exit, r.stderr) == (255, REF["tipc peer remove"].stderr)
    r = tipc(a, "peer", "remove", "identity", "n2")
    assert r.exit == 255
    assert r.stderr.endswith(REF["tipc peer remove identity kpeer-b"].stderr)
    r = tipc(a, "peer", "remove", "address", "6e320000")
    assert r.exit == 255 and r.stderr.endswith("kernel answers: Device or resource busy\n")
    r = tipc(a, "peer", "remove", "identity", "nosuch")
    assert r.exit == 255
    assert r.stderr.endswith(REF["tipc peer remove identity nosuch"].stderr)
    r = tipc(a, "peer", "remove", "colour", "red")
    assert r.exit == 2 and "'address', 'identity'" in r.stderr
    ok(b, "bearer", "disable", "media", "udp", "name", "b0")
    a.wait_for(lambda: link_state(a, pair.link) == "down", what="link down")
    # the transcript's `node list` after kpeer-b went down: the same row, "down"
    assert_rows_shaped(ok(a, "node", "list"), REF["tipc node list"].stdout.replace(" up\n",
                                                                                   " down\n"))
    r = tipc(a, "peer", "remove", "identity", "n2")
    assert (r.exit, r.stdout, r.stderr) == (0, "", "")
    assert ok(a, "node", "list") == REF["tipc node list"].stdout.splitlines()[0] + "\n"
    assert ok(a, "link", "list") == "broadcast-link: up\n"
    r = tipc(a, "peer", "remove", "identity", "n2")
    assert r.exit == 255 and r.stderr.endswith("kernel answers: No such device or address\n")

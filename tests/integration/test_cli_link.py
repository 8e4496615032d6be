"""`tipc link` against two real tipcd, compared with iproute2 6.1's output (tipc-link.txt)."""

from __future__ import annotations

import json
import re
from typing import Any

from .test_cli_ref import (
    LINK_REF,
    REF,
    Pair,
    assert_lines_shaped,
    json_shape,
    needs_ref,
    ok,
    pair_fixture,
    tipc,
)

pair = pair_fixture()


def ref(cmd: str) -> str:
    return REF[cmd].stdout


@needs_ref
def test_list_and_get_look_like_iproute2(pair: Pair) -> None:
    a, link = pair.a, pair.link
    assert_lines_shaped(ok(a, "link", "list"), ref("tipc link list"))
    assert_lines_shaped(ok(a, "-j", "link", "list"), ref("tipc -j link list"))
    assert_lines_shaped(ok(a, "-j", "-p", "link", "list"), ref("tipc -j -p link list"))
    for prop in ("tolerance", "priority", "window"):
        for flags in ((), ("-j",), ("-j", "-p")):
            cmd = " ".join(("tipc", *flags, "link", "get", prop, "link", LINK_REF))
            assert_lines_shaped(ok(a, *flags, "link", "get", prop, "link", link), ref(cmd))
    # The transcript's default (AUTOSELECT ratio:10) is a multicast bearer's.  This
    # pair's UDP bearers replicate to a remote IP: like the kernel (a replicast UDP
    # bearer has no broadcast support) the mode is then 0 and iproute2 prints nothing.
    assert ok(a, "link", "get", "broadcast") == ""
    assert ok(a, "-j", "link", "get", "broadcast") == "[{}]\n"
    assert ok(a, "link", "get", "tolerance", "link", link) == "1500\n"
    # the error cases of the transcript
    r = tipc(a, "link", "get", "tolerance", "link", "nosuch")
    assert r.exit == 255 and r.stderr.endswith(REF["tipc link get tolerance link nosuch"].stderr)
    r = tipc(a, "link", "get", "tolerance")
    assert (r.exit, r.stderr) == (255, REF["tipc link get tolerance"].stderr)
    r = tipc(a, "link", "get")
    assert (r.exit, r.stderr) == (255, REF["tipc link get"].stderr)
    r = tipc(a, "link", "stat", "show", "link", "nosuch")
    assert (r.exit, r.stdout, r.stderr) == (0, "", "")


@needs_ref
def test_statistics_look_like_iproute2(pair: Pair) -> None:
    a, link = pair.a, pair.link
    assert_lines_shaped(ok(a, "link", "stat", "show"), ref("tipc link stat show"))
    assert_lines_shaped(ok(a, "l", "st", "sh", "link", link),
                        ref(f"tipc link stat show link {LINK_REF}"))
    for flags in (("-j",), ("-j", "-p")):
        ours = json.loads(ok(a, *flags, "link", "stat", "show"))
        theirs = json.loads(ref(" ".join(("tipc", *flags, "link", "stat", "show"))))
        assert json_shape(ours) == json_shape(theirs)
        assert [list(d) for d in ours] == [list(d) for d in theirs]   # key order too
    pretty = ok(a, "-j", "-p", "link", "stat", "show", "link", link)
    assert_lines_shaped(pretty, ref(f"tipc -j -p link stat show link {LINK_REF}"))
    # -s: tipcpy's extra lines, after iproute2's, before the blank line; an idle link
    # probes every 375 ms, so round trips come soon
    a.wait_for(lambda: json.loads(ok(a, "-j", "link", "stat", "show", "link", link, "-s"))[0]
               ["rtt"]["count"] > 0, what="a probe answered")
    ext = ok(a, "link", "stat", "show", "link", link, "-s").split("\n")
    std = ok(a, "link", "stat", "show", "link", link).split("\n")
    assert len(ext) == len(std) + 3
    assert re.match(r"^  RTT min:\d+\.\d{3} avg:\d+\.\d{3} max:\d+\.\d{3} ms  "
                    r"probes answered:[1-9]\d*$", ext[-5]), ext[-5]
    assert re.match(r"^  Up:1 Down:0  Last change:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)$",
                    ext[-4]), ext[-4]
    assert ext[-3] == "  Failovers:0 Synchs:0", ext[-3]
    j = json.loads(ok(a, "-j", "link", "stat", "show", "link", link, "--extended"))[0]
    r = j["rtt"]
    assert r["count"] >= 1 and 0 <= r["min"] <= r["avg"] <= r["max"] < 1000
    assert j["up count"] == 1 and j["down count"] == 0 and j["last change"] > 0
    assert j["failovers"] == 0 and j["synchs"] == 0
    # reset: the counters start again (probes keep coming, so compare a busy one)
    # (another test of this module may have reset the counters a moment ago: wait
    # for a few probes rather than assume them)
    a.wait_for(lambda: json.loads(ok(a, "-j", "link", "stat", "show", "link", link))[0]
               ["rx states"]["rx states"] > 3, what="a few STATEs counted")
    before = json.loads(ok(a, "-j", "link", "stat", "show", "link", link))[0]
    assert before["rx states"]["rx states"] > 3
    assert ok(a, "link", "stat", "reset", "link", link) == ""
    after = json.loads(ok(a, "-j", "link", "stat", "show", "link", link))[0]
    assert after["rx states"]["rx states"] < before["rx states"]["rx states"]
    r = tipc(a, "link", "stat", "reset", "link", "nosuch")
    assert r.exit == 255 and r.stderr.endswith("kernel answers: Invalid argument\n")


@needs_ref
def test_monitor_looks_like_iproute2(pair: Pair) -> None:
    a = pair.a
    assert_lines_shaped(ok(a, "link", "monitor", "summary"), ref("tipc link monitor summary"))
    assert "algorithm full-mesh" in ok(a, "link", "monitor", "summary")
    for flags in (("-j",), ("-j", "-p")):
        cmd = " ".join(("tipc", *flags, "link", "monitor", "summary"))
        assert_lines_shaped(ok(a, *flags, "link", "monitor", "summary"), ref(cmd))
        cmd = " ".join(("tipc", *flags, "link", "monitor", "list"))
        assert_lines_shaped(ok(a, *flags, "link", "monitor", "list"), ref(cmd))
    assert_lines_shaped(ok(a, "link", "monitor", "list"), ref("tipc link monitor list"))
    assert ok(a, "link", "monitor", "list", "media", "udp", "name", "b0") == \
        ok(a, "link", "monitor", "list")
    # the threshold, and iproute2's quirky (invalid) JSON for it, byte for byte
    for flags in ((), ("-j",), ("-j", "-p")):
        cmd = " ".join(("tipc", *flags, "link", "monitor", "get", "threshold"))
        assert ok(a, *flags, "link", "monitor", "get", "threshold") == ref(cmd)
    assert ok(a, "link", "monitor", "set", "threshold", "0") == ""
    assert ok(a, "link", "monitor", "get", "threshold") == "0\n"
    r = tipc(a, "link", "monitor", "set", "threshold", "4096")
    assert r.exit == 255 and "expected 0-4095" in r.stderr
    assert ok(a, "link", "monitor", "get", "threshold") == "0\n"
    ok(a, "link", "monitor", "set", "threshold", "32")


def test_set_properties_and_broadcast(pair: Pair) -> None:
    a, b, link = pair.a, pair.b, pair.link
    assert ok(a, "link", "set", "tolerance", "3000", "link", link) == ""
    assert ok(a, "link", "get", "tolerance", "link", link) == "3000\n"
    # the peer adopts the tolerance from our next STATE message
    a.wait_for(lambda: ok(b, "link", "get", "tolerance", "link", "n2:b0-n1:b0") == "3000\n",
               what="peer adopts tolerance")
    ok(a, "link", "set", "window", "100", "link", link)
    assert ok(a, "link", "get", "window", "link", link) == "100\n"
    ok(a, "link", "set", "tolerance", "1500", "link", link)
    ok(a, "link", "set", "window", "50", "link", link)
    r = tipc(a, "link", "set", "broadcast", "REPLICAST")
    assert r.exit == 0 and r.stderr == ""
    assert ok(a, "link", "get", "broadcast") == "REPLICAST\n"
    assert ok(a, "-j", "link", "get", "broadcast") == '[{"method":"REPLICAST"}]\n'
    # no broadcast support on a replicast UDP bearer: the kernel's ENOPROTOOPT
    for words in (("BROADCAST",), ("AUTOSELECT", "ratio", "30")):
        r = tipc(a, "link", "set", "broadcast", *words)
        assert r.exit == 255 and "Protocol not available" in r.stderr, r
    assert ok(a, "link", "get", "broadcast") == "REPLICAST\n"
    assert link_is_up(pair)


def link_is_up(pair: Pair) -> bool:
    return f"{pair.link}: up" in ok(pair.a, "link", "list")


def test_bad_values_leave_the_link_unchanged(pair: Pair) -> None:
    a, link = pair.a, pair.link
    before = ok(a, "-j", "link", "stat", "show", "link", link)
    before_props = [ok(a, "link", "get", p, "link", link) for p in
                    ("priority", "tolerance", "window")]
    for prop, bad, rng in (("tolerance", "49", "50-30000"), ("tolerance", "30001", "50-30000"),
                           ("priority", "32", "0-31"), ("priority", "-1", "0-31"),
                           ("window", "15", "16-8191"), ("window", "8192", "16-8191"),
                           ("window", "lots", "16-8191")):
        r = tipc(a, "link", "set", prop, bad, "link", link)
        assert r.exit == 255, (prop, bad, r)
        assert "expected" in r.stderr and rng in r.stderr, r.stderr
        assert r.stderr.endswith("kernel answers: Invalid argument\n")
    bc_before = ok(a, "link", "get", "broadcast")
    r = tipc(a, "link", "set", "broadcast", "AUTOSELECT", "ratio", "101")
    assert r.exit == 255 and "0-100" in r.stderr
    assert ok(a, "link", "get", "broadcast") == bc_before
    # a wrong word: click's usage error naming the valid ones
    r = tipc(a, "link", "set", "colour", "3", "link", link)
    assert r.exit == 2
    assert "'colour' is not one of 'tolerance', 'priority', 'window', 'broadcast'" in r.stderr
    r = tipc(a, "link", "set", "broadcast", "SOMETIMES")
    assert r.exit == 2 and "'BROADCAST', 'REPLICAST', 'AUTOSELECT'" in r.stderr
    r = tipc(a, "link", "frobnicate")
    assert r.exit == 2 and "Valid: get, list, monitor, set, statistics" in r.stderr
    assert [ok(a, "link", "get", p, "link", link) for p in
            ("priority", "tolerance", "window")] == before_props
    assert json.loads(before)[0]["state"] == ["ACTIVE"] and link_is_up(pair)


def test_monitor_shows_the_real_ring(pair: Pair) -> None:
    """Threshold 1 on both daemons: the monitors go overlapping-ring, exchange domain
    records in STATE messages, and `link monitor list` shows each other's record."""
    import time

    a, b = pair.a, pair.b
    try:
        for n in (a, b):
            assert ok(n, "link", "monitor", "set", "threshold", "1") == ""
        deadline = time.monotonic() + 10
        while True:
            summ = json.loads(ok(a, "-j", "link", "monitor", "summary"))[0]
            rows = json.loads(ok(a, "-j", "link", "monitor", "list"))[0]
            peers = rows[rows["bearer"]]
            if (summ["algorithm"] == "overlapping-ring" and len(peers) == 2
                    and all(p.get("applied_node_status") == ["U"] for p in peers)):
                break
            assert time.monotonic() < deadline, (summ, peers)
            time.sleep(0.2)
        assert summ["cluster_size"] == 2 and summ["table_generation"] >= 1
        assert all(p["status"] == "up" and p["monitored"] == "direct" for p in peers)
        assert peers[1]["generation"] >= 1  # the peer's record was received and applied
        text = ok(a, "link", "monitor", "list")
        assert re.search(r"^\S+\s+up\s+direct\s+\d+\s+U \[\]$", text, re.M), text
    finally:
        for n in (a, b):
            ok(n, "link", "monitor", "set", "threshold", "32")
    summ = json.loads(ok(a, "-j", "link", "monitor", "summary"))[0]
    assert summ["algorithm"] == "full-mesh"


def test_name_updates_count_on_the_broadcast_link_and_reset_clears(pair: Pair) -> None:
    """Both tipcd advertise TIPC_NAMED_BCAST, so a binding made after link up goes to
    the peer as one broadcast-link packet (carried by the replicast UDP bearer, as a
    kernel does): `link stat show link broadcast-link` counts it, the peer applies
    it, and `stat reset` clears the counters.  A node forced to REPLICAST sends its
    name updates over the unicast link instead."""
    import json

    from tipcpy import socket as tsock

    a, b = pair.a, pair.b

    def bc_tx(n: Any) -> int:
        (s,) = json.loads(ok(n, "-j", "link", "stat", "show", "link", "broadcast-link"))
        return int(s["tx packets"]["tx packets"])

    def bind_and_see(src: Any, dst: Any, typ: int) -> None:
        with tsock.socket(tsock.AF_TIPC, tsock.SOCK_RDM, run_dir=str(src.run_dir)) as s:
            s.bind((tsock.TIPC_ADDR_NAMESEQ, typ, 1, 1))
            dst.wait_for(lambda: f"{typ} " in ok(dst, "nametable", "show"), what="binding")

    assert ok(b, "link", "get", "broadcast") == ""  # b's mode: the default (0 here)
    tx0 = bc_tx(b)
    bind_and_see(b, a, 31337)
    assert bc_tx(b) >= tx0 + 1
    ok(b, "link", "stat", "reset", "link", "broadcast-link")
    assert bc_tx(b) == 0
    ok(a, "link", "set", "broadcast", "REPLICAST")
    ok(a, "link", "stat", "reset", "link", "broadcast-link")
    bind_and_see(a, b, 31338)
    assert bc_tx(a) == 0

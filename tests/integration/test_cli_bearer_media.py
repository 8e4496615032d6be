"""`tipc bearer` and `tipc media` against real tipcd, compared with iproute2 6.1's output
(tipc-bearer.txt, tipc-media.txt), including media -> bearer -> link inheritance."""

from __future__ import annotations

from .test_cli_ref import (
    REF,
    Pair,
    assert_lines_shaped,
    enable,
    link_state,
    needs_ref,
    ok,
    pair_fixture,
    tipc,
)

pair = pair_fixture()
PROPS = ("tolerance", "mtu", "priority", "window")


@needs_ref
def test_bearer_looks_like_iproute2(pair: Pair) -> None:
    a = pair.a
    for flags in ((), ("-j",), ("-j", "-p")):       # -j is ignored, as by iproute2
        assert ok(a, *flags, "bearer", "list") == REF[" ".join(("tipc", *flags,
                                                                 "bearer", "list"))].stdout
        for prop in PROPS:
            cmd = " ".join(("tipc", *flags, "bearer", "get", prop, "media", "udp", "name",
                            "b0"))
            assert ok(a, *flags, "bearer", "get", prop, "media", "udp", "name", "b0") == \
                REF[cmd].stdout                       # defaults: byte for byte
    for cmd in ("tipc bearer get tolerance media udp name nosuch",
                "tipc bearer get tolerance media udp", "tipc bearer get"):
        r = tipc(a, *cmd.split()[1:])
        assert (r.exit, r.stdout, r.stderr) == (REF[cmd].exit, "", REF[cmd].stderr), cmd
    r = tipc(a, "bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1")
    ref = REF["tipc bearer enable media udp name b0 localip 10.77.1.2"]
    assert (r.exit, r.stderr) == (ref.exit, ref.stderr)
    # the udp options of `bearer get`
    assert ok(a, "bearer", "get", "media", "udp", "name", "b0", "localip") == "127.0.0.1\n"
    assert ok(a, "bearer", "get", "media", "udp", "name", "b0", "localport") == f"{a.port}\n"
    assert ok(a, "bearer", "get", "media", "udp", "name", "b0", "remoteip") == "127.0.0.1\n"
    assert ok(a, "bearer", "get", "media", "udp", "name", "b0", "remoteport") == \
        f"{pair.b.port}\n"


@needs_ref
def test_media_looks_like_iproute2(pair: Pair) -> None:
    a = pair.a
    for flags in ((), ("-j",), ("-j", "-p")):
        ours = ok(a, *flags, "media", "list").split()
        # tipcpy has no InfiniBand; the rest, in the same order
        assert ours == [m for m in REF["tipc media list"].stdout.split() if m != "ib"]
        for prop in PROPS:
            cmd = " ".join(("tipc", *flags, "media", "get", prop, "media", "udp"))
            assert ok(a, *flags, "media", "get", prop, "media", "udp") == REF[cmd].stdout
    for cmd in ("tipc media get mtu media eth", "tipc media get tolerance media nosuch",
                "tipc media get"):
        r = tipc(a, *cmd.split()[1:])
        assert (r.exit, r.stdout, r.stderr) == (REF[cmd].exit, "", REF[cmd].stderr), cmd
    assert_lines_shaped(ok(a, "media", "get", "window", "media", "eth"),
                        REF["tipc media get window media udp"].stdout)


def test_set_and_inheritance_media_bearer_link(pair: Pair) -> None:
    a, b = pair.a, pair.b
    # bearer set: applies to the bearer's existing link at once
    ok(a, "bearer", "set", "priority", "12", "media", "udp", "name", "b0")
    assert ok(a, "bearer", "get", "priority", "media", "udp", "name", "b0") == "12\n"
    assert ok(a, "link", "get", "priority", "link", pair.link) == "12\n"
    ok(a, "bearer", "set", "mtu", "9000", "media", "udp", "name", "b0")
    assert ok(a, "bearer", "get", "mtu", "media", "udp", "name", "b0") == "9000\n"
    # media set: inherited by bearers enabled later, and by their links
    ok(a, "media", "set", "tolerance", "2500", "media", "udp")
    ok(b, "media", "set", "tolerance", "2500", "media", "udp")
    assert ok(a, "media", "get", "tolerance", "media", "udp") == "2500\n"
    assert ok(a, "bearer", "get", "tolerance", "media", "udp", "name", "b0") == "1500\n"
    a2, b2 = pair.start("a2", "--identity", "n3"), pair.start("b2", "--identity", "n4")
    ok(a2, "media", "set", "tolerance", "2500", "media", "udp")
    ok(b2, "media", "set", "tolerance", "2500", "media", "udp")
    ok(a2, "media", "set", "window", "100", "media", "udp")
    enable(a2, b2, "m1")
    enable(b2, a2, "m1")
    assert ok(a2, "bearer", "get", "tolerance", "media", "udp", "name", "m1") == "2500\n"
    assert ok(a2, "bearer", "get", "window", "media", "udp", "name", "m1") == "100\n"
    a2.wait_for(lambda: link_state(a2, "n3:m1-n4:m1") == "up", what="link n3-n4 up")
    assert ok(a2, "link", "get", "tolerance", "link", "n3:m1-n4:m1") == "2500\n"
    assert ok(a2, "link", "get", "window", "link", "n3:m1-n4:m1") == "100\n"
    a2.stop()
    b2.stop()


def test_bad_values_leave_the_bearer_unchanged(pair: Pair) -> None:
    a = pair.a
    get = ("media", "udp", "name", "b0")
    before = [ok(a, "bearer", "get", p, *get) for p in PROPS] + [ok(a, "bearer", "list")]
    for prop, bad, rng in (("tolerance", "49", "50-30000"), ("tolerance", "30001", "50-30000"),
                           ("priority", "32", "0-31"), ("window", "15", "16-8191"),
                           ("window", "8192", "16-8191"), ("mtu", "100", "256-65507")):
        for target in (("bearer", "set", prop, bad, *get),
                       ("media", "set", prop, bad, "media", "udp")):
            r = tipc(a, *target)
            assert r.exit == 255 and rng in r.stderr, (target, r)
    for words, msg in (
            (("localip", "127.0.0.300"), "invalid localip '127.0.0.300'"),
            (("localip", "127.0.0.1", "localport", "70000"), "invalid localport 70000: "
             "expected 1-65535"),
            (("localip", "127.0.0.1", "remoteip", "1.2.3.4.5"), "invalid remoteip"),
            (("localip", "127.0.0.1", "remoteport", "0"), "invalid remoteport 0: "
             "expected 1-65535"),
            (("localip", "127.0.0.1", "priority", "40"), "invalid priority 40: expected 0-31"),
            (("device", "nosuchdev0"), "no device 'nosuchdev0'")):
        r = tipc(a, "bearer", "enable", "media", "udp", "name", "b9", *words)
        assert r.exit == 255 and msg in r.stderr, (words, r)
    r = tipc(a, "bearer", "set", "speed", "3", *get)
    assert r.exit == 2 and "'speed' is not one of 'priority', 'tolerance', 'window', 'mtu'" \
        in r.stderr
    r = tipc(a, "media", "get", "colour", "media", "udp")
    assert r.exit == 2 and "is not one of 'tolerance', 'priority', 'window', 'mtu'" in r.stderr
    assert [ok(a, "bearer", "get", p, *get) for p in PROPS] + [ok(a, "bearer", "list")] == \
        before
    assert link_state(a, pair.link) == "up"


def test_udp_bearer_on_a_device(pair: Pair) -> None:
    a = pair.a
    ok(a, "bearer", "enable", "media", "udp", "name", "lo1", "device", "lo",
       "localport", str(a.port + 1 if a.port < 65535 else a.port - 1))
    assert ok(a, "bearer", "get", "media", "udp", "name", "lo1", "localip") == "127.0.0.1\n"
    ok(a, "bearer", "disable", "media", "udp", "name", "lo1")
    assert ok(a, "bearer", "list") == "udp:b0\n"

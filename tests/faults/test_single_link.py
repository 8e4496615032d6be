"""Single-link faults that must hold today: two tipcd linked through the relay only.

For every case, numbered streams of every socket type (RDM, SEQPACKET, STREAM) run
from n1 to n2 while the relay misbehaves, and the invariants of issue 11 are checked:
nothing delivered twice or out of order; nothing accepted lost while the link stays up;
connections either continue or abort with ECONNRESET (EPIPE for a send on a connection
that was already aborted, as the kernel) within the tolerance plus a margin; the
daemons' RSS stays bounded; the counters show what happened.

Each case is a few seconds (N of 1,000-3,000); the long versions are marked ``slow``.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Any

import pytest

from tests.integration.sockhelp import Daemon, wait_for
from tests.tools.stream import Report, Stream
from tipcpy.core.link import UNSENT_MARGIN

from .conftest import Pair, daemon_stats, link_is_up, link_stats, rss_kb

TOLERANCE = 1.5                 # the UDP media's default link tolerance (s)
MARGIN = 1.0                    # scheduling slack on a loaded 2-core machine
RSS_GROWTH_KB = 32 * 1024       # what a run of a few thousand messages may add
KINDS = ("rdm", "seqpacket", "stream")

pytestmark = pytest.mark.faults

_svc = [40_000 + (os.getpid() % 1000) * 16]


def svc() -> int:
    _svc[0] += 1
    return _svc[0]


def start_streams(src: Daemon, dst: Daemon, n: dict[str, int], rate: float | None = None,
                  deadline: float = 40.0) -> list[Stream]:
    streams = [Stream(k, src.rd, dst.rd, svc(), n=n[k], rate=rate, deadline=deadline)
               for k in KINDS]
    for s in streams:
        s.start()
    for s in streams:
        s.start_sender()
    return streams


def up_down(d: Daemon) -> tuple[int, int]:
    """(up_count, down_count) of the node's unicast link, from `tipc link stat show -s`."""
    from pathlib import Path

    from tipcpy.runtime import ctlclient

    for lk in ctlclient.call("link.stat.show", {"extended": True},
                             path=Path(d.rd) / "ctl.sock"):
        if not lk.get("broadcast"):
            return int(lk.get("up_count", 0)), int(lk.get("down_count", 0))
    return 0, 0


def counter(stats: dict[str, Any], group: str, name: str) -> int:
    return int(stats.get(group, {}).get(name, 0))


def assert_exactly_once(reports: list[Report]) -> None:
    for r in reports:
        assert r.clean, r.summary()


def assert_rss(before: dict[str, int], pair: Pair) -> None:
    for d in (pair.a, pair.b):
        now = rss_kb(d.proc.pid)
        assert now - before[d.name] < RSS_GROWTH_KB, (d.name, before[d.name], now)


# ------------------------------------------------------------------ impaired, link stays up
IMPAIRMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "loss30": ("both", {"loss": 0.3}),
    "delay_jitter": ("both", {"delay": 0.004, "jitter": 0.004, "reorder": 0.05,
                              "reorder_delay": 0.008}),
    "duplication": ("both", {"dup": 0.25}),
    "corrupt_truncate": ("both", {"corrupt": 0.05, "corrupt_mode": "truncate"}),
    "asym_loss_data": ("ab", {"loss": 0.3}),     # only the data direction
    "asym_loss_acks": ("ba", {"loss": 0.3}),     # only the ack/return direction
}
FAST_N = {"rdm": 3000, "seqpacket": 1000, "stream": 1000}
SLOW_N = {"rdm": 30000, "seqpacket": 10000, "stream": 10000}


def _impaired(pair: Pair, case: str, n: dict[str, int], deadline: float = 60) -> None:
    direction, imp = IMPAIRMENTS[case]
    a, b = pair.a, pair.b
    rss0 = {d.name: rss_kb(d.proc.pid) for d in (a, b)}
    ud0 = up_down(a), up_down(b)
    st0 = link_stats(a), link_stats(b)
    pair.relay.set(direction, **imp)
    reports = [s.join() for s in start_streams(a, b, n, deadline=deadline)]
    pair.relay.clear()
    relay = pair.relay.stats()
    assert_exactly_once(reports)
    # the link never went down: the impairment was absorbed, not paid for with a reset
    assert (up_down(a), up_down(b)) == ud0
    assert link_is_up(a) and link_is_up(b)
    # the relay did what it was told, and the link's counters show the repair
    st1 = link_stats(a), link_stats(b)
    ab, ba = relay["ab"], relay["ba"]
    if case == "loss30":
        assert ab["dropped"] > 100 and ba["dropped"] > 10
        assert counter(st1[0], "tx states", "retrans") > counter(st0[0], "tx states", "retrans")
    elif case == "asym_loss_data":
        assert ab["dropped"] > 100 and ba["dropped"] == 0
        assert counter(st1[0], "tx states", "retrans") > counter(st0[0], "tx states", "retrans")
    elif case == "asym_loss_acks":
        assert ba["dropped"] > 10 and ab["dropped"] == 0
    elif case == "delay_jitter":
        assert ab["overtaken"] > 20
        assert counter(st1[1], "rx states", "defs") + counter(st1[1], "rx states", "naks") \
            > counter(st0[1], "rx states", "defs") + counter(st0[1], "rx states", "naks")
    elif case == "duplication":
        assert ab["duplicated"] > 50 and ba["duplicated"] > 5
        assert counter(st1[1], "rx states", "dups") > counter(st0[1], "rx states", "dups")
    elif case == "corrupt_truncate":
        assert ab["corrupted"] > 10
        errs = sum(v.get("rx_decode_errors", 0)
                   for v in daemon_stats(b)["stack"]["bearers"].values())
        assert errs >= ab["corrupted"] // 2
    for d in (a, b):
        assert d.proc.poll() is None
        assert daemon_stats(d)["runtime"]["rx_errors"] == 0
    assert_rss(rss0, pair)


@pytest.mark.parametrize("case", list(IMPAIRMENTS))
def test_impaired_link_delivers_exactly_once_in_order(pair: Pair, case: str) -> None:
    _impaired(pair, case, FAST_N)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(IMPAIRMENTS))
def test_impaired_link_long(pair: Pair, case: str) -> None:
    _impaired(pair, case, SLOW_N, deadline=400)


def test_bitflip_corruption_never_breaks_the_daemon(pair: Pair) -> None:
    """TIPC carries no checksum (it relies on the media's), so a flipped bit that still
    decodes may be delivered or may confuse the link: this case asserts only what must
    hold whatever the bit: no exception escapes, the daemons live, and once the path is
    clean again the link is (or comes back) up and a fresh stream is exact.  (Where a
    path can corrupt undetected, a cluster key is the real answer: AEAD drops every
    damaged packet, and loss is what the link recovers from.)"""
    a, b = pair.a, pair.b
    pair.relay.set("both", corrupt=0.1, corrupt_mode="bitflip")
    first = [s.join() for s in start_streams(a, b, FAST_N, rate=1500, deadline=6)]
    corrupted = pair.relay.stats()["ab"]["corrupted"]
    pair.relay.clear()
    print("under bit flips:", *(r.summary() for r in first), sep="\n")
    assert corrupted > 20
    for d in (a, b):
        assert d.proc.poll() is None, d.log()
        assert daemon_stats(d)["runtime"]["rx_errors"] == 0
    pair.wait_up(20)
    assert sum(r.delivered for r in first) > 0
    # A flip that moved a seqno less than UNSENT_MARGIN ahead leaves a packet
    # deferred that is delivered in its slot when the sequence gets there (the link
    # cannot tell it from the real one); farther ones are dropped.  So damage ends
    # with the corruption plus that many packets (and a window): carry them first.
    flush = Stream("rdm", a.rd, b.rd, svc(), n=UNSENT_MARGIN + 200, size=1000, deadline=20)
    flush.start()
    flush.start_sender()
    print("flush:", flush.join().summary())
    fresh = [s.join() for s in start_streams(a, b, FAST_N, deadline=20)]
    # (before the link's defences against flipped acks, STATE seqnos and data
    # seqnos - tests/unit/test_link_corruption.py, tests/sim/test_corruption.py -
    # about 1 run in 5 delivered nothing here: the link stayed up and stalled)
    assert all(r.clean for r in fresh), "; ".join(r.summary() for r in fresh)


# ------------------------------------------------------------------ peer stopped or killed
def _check_abort(r: Report, t_fault: float, side: str, allowed: set[int]) -> None:
    """The connection ended with an allowed errno within the tolerance (+ margin)."""
    errs = [e for e in r.errors if e.side == side]
    assert errs, f"no error on the {side} side: {r.summary()}"
    assert errs[0].errno in allowed, r.summary()
    assert errs[0].t - t_fault <= TOLERANCE + MARGIN, (errs[0].t - t_fault, r.summary())


def _check_no_loss_outside(r: Report, t_fault: float, t_back: float) -> None:
    """Only messages accepted during the outage may be lost (they were in the link's
    queue when it was reset: no second link to fail over to); none delivered twice or
    out of order."""
    assert not r.duplicated and not r.reordered and not r.corrupt, r.summary()
    outside = [t for t in r.lost_accepted_at if not t_fault - 0.3 <= t <= t_back]
    assert not outside, (outside[:10], r.summary())


@pytest.mark.parametrize("sig", ["stop", "kill"])
def test_peer_stopped_or_killed(pair: Pair, sig: str) -> None:
    a = pair.a
    b0 = pair.b
    rss0 = rss_kb(a.proc.pid)
    ud0 = up_down(a)
    n = {"rdm": 2500, "seqpacket": 2500, "stream": 2500}
    # n1 -> n2 (receivers on the faulty node) and n2 -> n1 (receivers on the good one)
    out = start_streams(a, b0, n, rate=500, deadline=15)
    back = start_streams(b0, a, n, rate=500, deadline=15)
    time.sleep(1.0)
    t = time.monotonic()
    if sig == "stop":
        os.kill(b0.proc.pid, signal.SIGSTOP)
    else:
        b0.kill()
    down_after = time.monotonic()
    wait_for(lambda: not link_is_up(a), TOLERANCE + MARGIN + 1, "n1 sees the link down")
    down_after = time.monotonic() - t
    assert down_after <= TOLERANCE + MARGIN
    if sig == "stop":
        time.sleep(max(0.0, TOLERANCE + 1.0 - (time.monotonic() - t)))
        os.kill(b0.proc.pid, signal.SIGCONT)
    else:
        pair.restart_b()
    pair.wait_up(20)
    t_back = time.monotonic()
    reports_out = [s.join() for s in out]
    reports_back = [s.join() for s in back]
    # the RDM streams go on through the outage: refused (EHOSTUNREACH) while the node is
    # down, lost only if accepted during the outage, delivered once and in order otherwise
    # (after kill -9 one end of each RDM stream was a client of the killed daemon: there
    # the fresh stream at the end is the check)
    for streams, r in ((out, reports_out[0]), (back, reports_back[0])):
        if sig == "kill":
            assert not r.duplicated and not r.reordered and not r.lost_gap, r.summary()
            continue
        t0 = streams[0].t0
        _check_no_loss_outside(r, t - t0, t_back - t0)
        assert set(r.error_counts) <= {errno.EHOSTUNREACH}, r.summary()
    # connections abort within the tolerance on the surviving node: the receiver there
    # gets ECONNRESET, the sender there ECONNRESET or EPIPE (the kernel's choice on send)
    for s, r in zip(back[1:], reports_back[1:], strict=True):
        _check_abort(r, t - s.t0, "rx", {errno.ECONNRESET})
        assert not r.lost_gap and not r.duplicated and not r.reordered, r.summary()
    for s, r in zip(out[1:], reports_out[1:], strict=True):
        _check_abort(r, t - s.t0, "tx", {errno.ECONNRESET, errno.EPIPE})
        assert not r.lost_gap and not r.duplicated and not r.reordered, r.summary()
    # counters: one more down and one more up on n1's link
    up1, down1 = up_down(a)
    assert down1 == ud0[1] + 1 and up1 == ud0[0] + 1
    assert a.proc.poll() is None and daemon_stats(a)["runtime"]["rx_errors"] == 0
    assert rss_kb(a.proc.pid) - rss0 < RSS_GROWTH_KB
    # and the restored link carries a fresh stream exactly
    assert_exactly_once([s.join() for s in start_streams(a, pair.b, FAST_N, deadline=20)])

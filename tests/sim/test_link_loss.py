"""Two link endpoints over a lossy, duplicating, reordering pipe (virtual time).

The must-show: 100,000 messages of mixed sizes (1 B .. 66000 B, mostly small with a
tail of large ones) through one link at 20 % loss, 5 % duplication and reordering,
delivered exactly once, in order and intact.  The harness is a deliberately tiny
event loop (the general simulator is tipcpy.sim); everything is seeded.
"""

from __future__ import annotations

import heapq
import random
import time
import zlib

import pytest

from tipcpy.core.link import Delivered, Link, LinkDown, LinkUp
from tipcpy.wire import decode, msg_class

A_ADDR, B_ADDR = 0x1001, 0x2002


class LossyPair:
    """Two links; each packet is lost with p=loss, duplicated with p=dup, delayed by
    delay + U(0, jitter), and with p=reorder held back an extra U(0, 5 ms)."""

    def __init__(self, seed, loss=0.2, dup=0.05, reorder=0.1, delay=0.001, jitter=0.002, **kw):
        self.rng = random.Random(seed)
        mk = dict(bearer_id=0, if_name="b0", peer_caps=0x17F, own_caps=0x17F, mtu=14000)
        mk.update(kw)
        self.a = Link(
            own_addr=A_ADDR,
            peer_addr=B_ADDR,
            own_name="a",
            peer_name="b",
            rng=random.Random(seed * 2),
            **mk,
        )
        self.b = Link(
            own_addr=B_ADDR,
            peer_addr=A_ADDR,
            own_name="b",
            peer_name="a",
            rng=random.Random(seed * 2 + 1),
            **mk,
        )
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay, self.jitter = delay, jitter
        self.now = 0.0
        self.pipe: list = []
        self.n = 0
        self.got = {"a": [], "b": []}  # Delivered msgs
        self.other: list = []  # any other event: (time, side, event)
        self.packets = 0

    def start(self):
        self.a.start(0.0)
        self.b.start(0.013)

    def _carry(self, src, dst):
        rnd = self.rng.random
        for p in src.take_outgoing():
            self.packets += 1
            if rnd() < self.loss:
                continue
            for _ in range(2 if rnd() < self.dup else 1):
                t = self.now + self.delay + rnd() * self.jitter
                if rnd() < self.reorder:
                    t += rnd() * 0.005
                self.n += 1
                heapq.heappush(self.pipe, (t, self.n, dst, p))

    def _events(self, side, lk):
        got = self.got[side]
        for e in lk.take_events():
            if type(e) is Delivered:
                got.append(e.msg)
            else:
                self.other.append((self.now, side, e))

    def step(self):
        a, b = self.a, self.b
        self._carry(a, b)
        self._carry(b, a)
        self._events("a", a)
        self._events("b", b)
        t = min(a.next_deadline(), b.next_deadline())
        pipe = self.pipe
        if pipe and pipe[0][0] < t:
            t = pipe[0][0]
        if t > self.now:
            self.now = t
        now = self.now
        while pipe and pipe[0][0] <= now:
            dst, p = heapq.heappop(pipe)[2:]
            dst.receive(decode(p), now)
        a.tick(now)
        b.tick(now)

    def downs(self):
        return [x for x in self.other if isinstance(x[2], LinkDown)]


def mixed_size(rng: random.Random) -> int:
    """Mostly small, a tail of large ones, up to the 66000-byte maximum."""
    r = rng.random()
    if r < 0.80:
        return rng.randint(1, 200)
    if r < 0.95:
        return rng.randint(201, 2000)
    if r < 0.99:
        return rng.randint(2001, 14000)
    return rng.randint(14001, 66000)


def run_transfer(seed, n_ab, n_ba, limit_virtual=3600.0, **net):
    pair = LossyPair(seed, **net)
    # deterministic message streams that survive a refused send: derive each
    # message from its index instead of from a shared stream
    sa = IndexedSender(pair.a, A_ADDR, B_ADDR, n_ab, seed + 100)
    sb = IndexedSender(pair.b, B_ADDR, A_ADDR, n_ba, seed + 200)
    pair.start()
    t0 = time.perf_counter()
    while len(pair.got["b"]) < n_ab or len(pair.got["a"]) < n_ba:
        sa.pump(pair.now)
        sb.pump(pair.now)
        pair.step()
        if pair.now > limit_virtual:
            raise AssertionError(
                f"not done by t={pair.now:.1f}s: b got {len(pair.got['b'])}/{n_ab}, "
                f"a got {len(pair.got['a'])}/{n_ba}"
            )
    real = time.perf_counter() - t0
    return pair, sa, sb, real


class IndexedSender:
    """Message i has a size and content fixed in advance from the seed, so a send the
    link refuses is simply tried again later with the same message."""

    def __init__(self, link, src, dst, n, seed):
        self.link, self.n = link, n
        rng = random.Random(seed)
        self.blob = rng.randbytes(140000)
        self.plan = []
        for _ in range(n):
            size = mixed_size(rng)
            self.plan.append((rng.randrange(0, 140000 - size), size))
        # DIRECT data header (32 bytes) words: w0 is finished by encode()
        self.w = [(2 << 29) | (8 << 21), 3 << 29, 0, src, 1, 2, src, dst]
        self.sent: list[tuple[int, int]] = []

    def pump(self, now):
        lk = self.link
        if not lk.is_up:
            return
        sent, plan, blob, w = self.sent, self.plan, self.blob, self.w
        cls = msg_class(0)
        while len(sent) < self.n:
            off, size = plan[len(sent)]
            data = blob[off : off + size]
            if not lk.send(cls(list(w), data), now):
                return
            sent.append((size, zlib.crc32(data)))


def check_exactly_once_in_order(got, sent):
    assert len(got) == len(sent)
    for k, (m, (size, crc)) in enumerate(zip(got, sent, strict=True)):
        if len(m.data) != size or zlib.crc32(m.data) != crc:
            raise AssertionError(f"message {k}: wrong content or order")


def test_100k_mixed_messages_20pct_loss_exactly_once_in_order():
    n = 100_000
    pair, sa, sb, real = run_transfer(seed=2024, n_ab=n, n_ba=5_000)
    check_exactly_once_in_order(pair.got["b"], sa.sent)
    check_exactly_once_in_order(pair.got["a"], sb.sent)
    assert not pair.downs(), pair.downs()
    assert [type(e) for _, s, e in pair.other if isinstance(e, LinkUp)] == [LinkUp, LinkUp]
    sa_st, sb_st = pair.a.stats, pair.b.stats
    nbytes = sum(s for s, _ in sa.sent)
    sizes = [s for s, _ in sa.sent]
    print(
        f"\n100k link transfer: {n + 5000} msgs ({nbytes / 1e6:.1f} MB a->b, "
        f"max {max(sizes)} B) in {real:.1f}s real = {(n + 5000) / real:,.0f} msg/s, "
        f"{pair.now:.2f}s virtual; packets on the wire {pair.packets}; "
        f"a: sent_pkts {sa_st.sent_pkts} retransmitted {sa_st.retransmitted} "
        f"bundles {sa_st.sent_bundles}/{sa_st.sent_bundled} fragmented "
        f"{sa_st.sent_fragmented}/{sa_st.sent_fragments}; b: dups {sb_st.duplicates} "
        f"deferred {sb_st.deferred_recv} nacks {sb_st.sent_nacks}"
    )
    assert max(sizes) > 60000 and min(sizes) == 1
    assert sa_st.sent_bundles > 0 and sa_st.sent_fragmented > 0 and sa_st.retransmitted > 0
    assert sb_st.duplicates > 0 and sb_st.recv_fragmented == sa_st.sent_fragmented
    assert sb_st.rx_bad_inner == 0
    assert real < 60, f"too slow: {real:.1f}s"


@pytest.mark.parametrize(
    "seed,net",
    [
        # At 30-40 % loss a 1.5 s tolerance is only ~8 probe/reply packets: 8 losses
        # in a row (p ~ 1e-3 per stall at 40 %) legitimately fail the link, as they
        # would a kernel's, so these nets get a tolerance that fits them.
        (1, {"loss": 0.4, "dup": 0.2, "reorder": 0.3, "tolerance": 5000}),
        (
            2,
            {"loss": 0.3, "dup": 0.1, "reorder": 0.5, "window": 16, "mtu": 1500, "tolerance": 5000},
        ),
        (3, {"loss": 0.1, "dup": 0.3, "reorder": 0.2, "window": 400, "jitter": 0.01}),
        (5, {"loss": 0.2, "dup": 0.05, "reorder": 0.1, "window": 8191}),
        (4, {"loss": 0.0, "dup": 0.0, "reorder": 0.0}),
    ],
)
def test_harsh_networks_exactly_once_in_order(seed, net):
    pair, sa, sb, _ = run_transfer(seed=seed, n_ab=3000, n_ba=1000, **net)
    check_exactly_once_in_order(pair.got["b"], sa.sent)
    check_exactly_once_in_order(pair.got["a"], sb.sent)
    assert not pair.downs()

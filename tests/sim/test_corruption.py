"""Bit flips on the only link between two nodes, in the simulator (issue 11).

TIPC carries no checksum of its own: the kernel trusts the medium's (Ethernet FCS,
UDP checksum).  A flip that gets through decodes as a valid packet, so while it lasts
messages may be damaged, lost or duplicated - as with a kernel.  What must hold is
what comes after: once the medium is clean, the link is up (or comes back) and,
once the link has carried UNSENT_MARGIN and a window more packets (a packet whose
seqno a flip moved less than that ahead is delivered in its slot), a fresh stream
is exact.  Before the defences in tipcpy/core/link.py (tests in
tests/unit/test_link_corruption.py), about one seed in four stalled the link for
good or delivered a stale packet in place of a fresh one; the same failure showed
through the UDP impairment relay (tests/faults, about 1 run in 5).
"""

from __future__ import annotations

import struct

import pytest

from tests.sim.test_failover import Pair, verdict
from tipcpy.core import socket as S
from tipcpy.core.link import UNSENT_MARGIN
from tipcpy.core.socket import Deliver

NAMED = S.TIPC_ADDR_NAME
SEEDS = [2, 3, 9, 10, 14, 17]
"""Seeds where the flips hit an ack, a STATE seqno or a data seqno (each failed
before the defences); `--slow` runs 40."""


def _blast(p: Pair, secs: float) -> int:
    """RDM from node 0 to a port on node 1 for ``secs`` of virtual time, anything
    goes (flips may garble names, ports, sizes)."""
    c = p.c
    srv = p.do(1, "open", S.SOCK_RDM)
    p.do(1, "bind", srv, (NAMED, 7000, 1, 0))
    cli = p.do(0, "open", S.SOCK_RDM)
    p.run(0.5)
    c.net.set_faults("lan0", corrupt=0.1)
    sent = 0
    end = c.now + secs
    while c.now < end:
        for _ in range(20):
            try:
                if p.L(0).sendto(cli, (NAMED, 7000, 1, 0), struct.pack(">I", sent) + bytes(92),
                                 c.now):
                    sent += 1
            except OSError:
                pass  # e.g. the name withdrawn by a flipped withdrawal
        c._flush(0)
        p.run(0.005)
        p.ev = [[], []]
    c.net.set_faults("lan0", corrupt=0.0)
    return sent


def _fresh_stream(p: Pair, n: int, limit: float = 20.0) -> list[int]:
    c = p.c
    srv = _bound(p, 7100)
    cli = p.do(0, "open", S.SOCK_RDM)
    p.run(0.5)
    got: list[int] = []
    i = 0
    t0 = c.now
    while len(got) < n and c.now - t0 < limit:
        while i < n and p.L(0).sendto(cli, (NAMED, 7100, 1, 0),
                                      struct.pack(">I", i) + bytes(92), c.now):
            i += 1
        c._flush(0)
        p.run(0.005)
        got += [struct.unpack_from(">I", d.data)[0] for d in p.take(1, Deliver)
                if d.port == srv]
        p.ev = [[], []]
    return got


RECOVER = 30.0
"""Virtual seconds a name bound after the corruption may take to reach the other
node: a corrupted broadcast-link sync point is only repaired when the peer is
failed, after 10 x tolerance (15 s) of acks for packets never sent."""


def _bound(p: Pair, type_: int) -> int:
    """Bind {type_, 1} on node 1; wait until node 0 resolves it."""
    srv = p.do(1, "open", S.SOCK_RDM)
    p.do(1, "bind", srv, (NAMED, type_, 1, 0))
    nt = p.c.stacks[0].name_table
    assert p.c.run_until(lambda: nt.lookup_anycast(type_, 1) is not None, timeout=RECOVER)
    return srv


def _flush(p: Pair, packets: int) -> None:
    """Carry ``packets`` unbundled packets on the link (to a port of their own,
    unchecked): a packet whose seqno a flip moved less than UNSENT_MARGIN ahead
    waits in the deferred queue and is delivered in its slot when the sequence
    gets there - one damaged delivery the link cannot tell from a real one."""
    c = p.c
    _bound(p, 7200)
    cli = p.do(0, "open", S.SOCK_RDM)
    p.run(0.5)
    lk = p.peer(0).links[0].link
    end = (lk.snd_nxt + packets) & 0xFFFF
    t0 = c.now
    while ((end - lk.snd_nxt) & 0xFFFF) < 0x8000 and c.now - t0 < 20:
        while p.L(0).sendto(cli, (NAMED, 7200, 1, 0), bytes(1000), c.now):
            pass
        c._flush(0)
        p.run(0.005)
        p.ev = [[], []]
    p.run(0.5)


def _case(seed: int) -> None:
    p = Pair(seed=seed, second_link=False)
    assert _blast(p, 3.0) > 1000
    assert p.c.net.stats.corrupted > 100
    p.run(2.0)
    assert p.c.run_until(lambda: p.links_up(1), timeout=20.0)
    # the guarantee's bound: damage ends with the corruption plus UNSENT_MARGIN and a
    # window of packets (farther flips are dropped, see Link._drop_unsent)
    _flush(p, UNSENT_MARGIN + 2 * p.peer(0).links[0].link.window)
    n = 3000
    got = _fresh_stream(p, n)
    assert verdict(got, n) == (0, 0, 0), (verdict(got, n), len(got))


@pytest.mark.parametrize("seed", SEEDS)
def test_after_bit_flips_the_link_recovers_and_a_fresh_stream_is_exact(seed: int) -> None:
    _case(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 140))
def test_after_bit_flips_many_seeds(seed: int) -> None:
    _case(seed)

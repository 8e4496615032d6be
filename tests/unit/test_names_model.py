"""Model test: two nodes' NameTable + NameDistributor replicate bindings correctly.

Messages travel through per-direction queues that deliver in order but may lose
everything when the link resets (a reliable link loses nothing unless it goes down).
Bulks travel on one queue and single updates on another, so singles can overtake the
bulk as they do in the kernel (broadcast link vs unicast link). After every drain, each
node's table must equal a plain reference model: its own bindings, plus -- if the link
is up -- exactly the peer's cluster-scope bindings, and nothing of a peer that is down.
"""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tipcpy.core.name_distr import NameDistributor
from tipcpy.core.name_table import NameTable, Publication
from tipcpy.wire import NameDistrMsg, decode

A, B = 0x0A0A0001, 0x0B0B0002
NODES = (A, B)
Row = tuple[int, int, int, int, int, int]  # type, lower, upper, scope, port, key


def other(n: int) -> int:
    return B if n == A else A


class NamesModel(RuleBasedStateMachine):
    @initialize(mss=st.sampled_from([80, 120, 1428]))
    def setup(self, mss: int) -> None:
        self.mss = mss  # small MSS: bulks of 2..4 items, many messages
        self.tables = {n: NameTable(n) for n in NODES}
        self.distr = {n: NameDistributor(n, self.tables[n]) for n in NODES}
        self.ref: dict[int, dict[int, Publication]] = {n: {} for n in NODES}  # key -> publ
        self.uni: dict[int, deque[NameDistrMsg]] = {n: deque() for n in NODES}  # to n
        self.bc: dict[int, deque[NameDistrMsg]] = {n: deque() for n in NODES}
        self.up = False
        self.next_port = 1000
        self.next_key = 1 << 20
        self.now = 0.0
        for n in NODES:
            self.distr[n].publish(Publication(0, n, n, 2, n, 0, n))
            self.ref[n][n] = self.tables[n].publications_of(n)[0]

    # ---------------------------------------------------------------- helpers
    def _send_single(self, src: int, m: NameDistrMsg | None) -> None:
        if m is not None and self.up:
            self.bc[other(src)].append(decode(m.encode()))  # type: ignore[arg-type]

    def _link_up(self) -> None:
        self.up = True
        for n in NODES:
            for m in self.distr[n].node_up(other(n), self.mss):
                self.uni[other(n)].append(decode(m.encode()))  # type: ignore[arg-type]

    def _link_down(self) -> None:
        self.up = False
        for n in NODES:
            self.uni[n].clear()
            self.bc[n].clear()
            self.distr[n].node_down(other(n))

    # ---------------------------------------------------------------- rules
    @rule(
        n=st.sampled_from(NODES),
        type=st.integers(64, 66),
        lower=st.integers(0, 6),
        width=st.sampled_from([0, 0, 1, 3]),
        scope=st.sampled_from([2, 2, 3]),
        reuse_port=st.booleans(),
    )
    def bind(self, n: int, type: int, lower: int, width: int, scope: int, reuse_port: bool) -> None:
        mine = list(self.ref[n].values())
        if reuse_port and len(mine) > 1:
            port = mine[-1].port  # same socket binds again (fresh key)
        else:
            self.next_port += 1
            port = self.next_port
        self.next_key += 1
        key = self.next_key
        p = Publication(type, lower, lower + width, scope, n, port, key)
        self._send_single(n, self.distr[n].publish(p))
        self.ref[n][key] = p

    @rule(n=st.sampled_from(NODES), latest=st.booleans(), data=st.data())
    def unbind(self, n: int, latest: bool, data: st.DataObject) -> None:
        keys = [k for k in self.ref[n] if k != n]
        if not keys:
            return
        k = keys[-1] if latest else data.draw(st.sampled_from(keys))
        p = self.ref[n].pop(k)
        self._send_single(n, self.distr[n].withdraw(p))

    @rule(n=st.sampled_from(NODES))
    def close_socket(self, n: int) -> None:
        """All bindings of one socket go at once (socket close)."""
        ports = sorted({p.port for k, p in self.ref[n].items() if k != n})
        if not ports:
            return
        for k, p in list(self.ref[n].items()):
            if p.port == ports[0] and k != n:
                del self.ref[n][k]
                self._send_single(n, self.distr[n].withdraw(p))

    @rule(n=st.sampled_from(NODES), chunk=st.sampled_from([None, 1, 2]))
    def close_socket_batched(self, n: int, chunk: int | None) -> None:
        """A socket closes through the batch paths: its bindings leave the table by port
        (``withdraw_port``, ``chunk`` a call, as the runtime spreads them over loop
        turns) or all at once (``withdraw_many``); peers must end up as with one
        ``withdraw`` per binding."""
        ports = sorted({p.port for k, p in self.ref[n].items() if k != n})
        if not ports:
            return
        port = ports[-1]
        for k in [k for k, p in self.ref[n].items() if p.port == port and k != n]:
            del self.ref[n][k]
        if chunk is None:
            mine = self.tables[n].port_publications(port)
            for m in self.distr[n].withdraw_many(mine):
                self._send_single(n, m)
            return
        more = True
        while more:
            done, msgs, more = self.distr[n].withdraw_port(port, chunk)
            assert len(done) <= chunk
            for m in msgs:
                self._send_single(n, m)

    @rule()
    def link_up(self) -> None:
        if not self.up:
            self._link_up()

    @rule()
    def link_down(self) -> None:
        if self.up:
            self._link_down()

    @rule(
        n=st.sampled_from(NODES),
        q=st.sampled_from(["uni", "bc"]),
        skip=st.sampled_from([0, 0, 1, 2]),
    )
    def deliver_one(self, n: int, q: str, skip: int) -> None:
        """Deliver the next message; for singles possibly one a little further back
        (two singles swapping places, e.g. over different links during a failover): the
        receiver must restore named_seqno order itself."""
        queue = self.uni[n] if q == "uni" else self.bc[n]
        if not queue:
            return
        i = skip if q == "bc" and skip < len(queue) else 0
        m = queue[i]
        del queue[i]
        self.distr[n].receive(m, other(n), self.now)

    @rule(n=st.sampled_from(NODES), i=st.integers(0, 5))
    def reorder_singles(self, n: int, i: int) -> None:
        """Two single updates swap places (e.g. they came over different links during a
        failover): the receiver must restore named_seqno order itself."""
        q = self.bc[n]
        if len(q) >= i + 2:
            q[i], q[i + 1] = q[i + 1], q[i]

    @rule(n=st.sampled_from(NODES))
    def lose_and_reset(self, n: int) -> None:
        """A packet is lost for good: the link must reset, then comes back."""
        if self.up and (self.uni[n] or self.bc[n]):
            self._link_down()
            self._link_up()

    @rule(dt=st.sampled_from([0.01, 0.5, 2.5]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        for n in NODES:
            self.distr[n].tick(self.now)

    @rule()
    def drain(self) -> None:
        for n in NODES:
            while self.uni[n] or self.bc[n]:
                if self.bc[n]:  # singles first: the harder order
                    self.distr[n].receive(self.bc[n].popleft(), other(n), self.now)
                else:
                    self.distr[n].receive(self.uni[n].popleft(), other(n), self.now)

    # ---------------------------------------------------------------- checks
    @staticmethod
    def _rows(ps: list[Publication]) -> set[Row]:
        return {(p.type, p.lower, p.upper, p.scope, p.port, p.key) for p in ps}

    @invariant()
    def own_bindings_always_exact(self) -> None:
        if not hasattr(self, "tables"):
            return
        for n in NODES:
            assert self._rows(self.tables[n].publications_of(n)) == self._rows(
                list(self.ref[n].values())
            )

    @invariant()
    def converged_when_quiet(self) -> None:
        if not hasattr(self, "tables"):
            return
        if any(self.uni[n] or self.bc[n] for n in NODES):
            return
        for n in NODES:
            peer = other(n)
            got = self._rows(self.tables[n].publications_of(peer))
            want = (
                {r for r in self._rows(list(self.ref[peer].values())) if r[3] == 2}
                if self.up
                else set()
            )
            assert got == want, (hex(n), got ^ want)
            assert set(self.tables[n].nodes()) <= {n, peer}
            assert len(self.tables[n]) == len(self.ref[n]) + len(want)
            # every anycast answer is a binding that covers the instance
            every = [p for m in NODES for p in self.ref[m].values()
                     if m == n or (self.up and p.scope == 2)]  # fmt: skip
            for type in (64, 65, 66):
                for inst in range(0, 10):
                    cover = {
                        (p.node, p.port)
                        for p in every
                        if p.type == type and p.lower <= inst <= p.upper
                    }
                    res = self.tables[n].lookup_anycast(type, inst)
                    assert (res is None) == (not cover)
                    assert res is None or res in cover


NamesModel.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestNamesModel = NamesModel.TestCase


def test_swapped_singles_with_a_long_pause_still_converge() -> None:
    """The scenario the named_seqno ordering exists for: a withdrawal overtakes its
    publication and the publication only arrives after the deferred-withdrawal timeout.
    Applying singles on arrival (no ordering) leaves a stale binding here."""
    m = NamesModel()
    m.setup(mss=1428)
    m.link_up()
    m.drain()
    m.bind(n=A, type=64, lower=1, width=0, scope=2, reuse_port=False)
    p = list(m.ref[A].values())[-1]
    m.ref[A].pop(p.key)
    m._send_single(A, m.distr[A].withdraw(p))
    m.deliver_one(n=B, q="bc", skip=1)  # the withdrawal first
    m.time_passes(dt=2.5)
    m.deliver_one(n=B, q="bc", skip=0)
    m.converged_when_quiet()
    assert m.tables[B].find(64, 1, 1) == []

"""NameTable: the kernel's lookup policy, ordering, validation and observers."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest

from tipcpy.core.name_table import (
    TIPC_ANY_SCOPE,
    NameTable,
    Publication,
    check_bind,
    scope_name,
)

OWN = 0x1001
B = 0x1002
C = 0x1003
CL, ND = 2, 3
CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "captures"


def P(type: int, lower: int, upper: int, node: int, port: int, key: int | None = None,
      scope: int = CL) -> Publication:  # fmt: skip
    return Publication(type, lower, upper, scope, node, port, port + 1 if key is None else key)


def test_anycast_round_robin_order_is_the_kernels_newest_first_then_rotating() -> None:
    t = NameTable(OWN)
    # kernel list_add: the newest publication is at the head, lookups take the head and
    # move it to the tail
    for port in (10, 20, 30):
        assert t.insert(P(100, 5, 5, B, port))
    got = [t.lookup_anycast(100, 5) for _ in range(7)]
    assert got == [(B, 30), (B, 20), (B, 10), (B, 30), (B, 20), (B, 10), (B, 30)]
    # a new publication goes to the head of the *rotated* list, i.e. it is next
    t.insert(P(100, 5, 5, C, 40))
    assert t.lookup_anycast(100, 5) == (C, 40)
    assert t.lookup_anycast(100, 5) == (B, 20)
    # removal keeps the rotation position
    assert t.remove(100, 5, B, 11, upper=5) is not None  # port 10
    assert [t.lookup_anycast(100, 5) for _ in range(3)] == [(B, 30), (C, 40), (B, 20)]


def test_anycast_uses_only_the_first_lowest_matching_range() -> None:
    t = NameTable(OWN)
    t.insert(P(100, 0, 100, B, 1))
    t.insert(P(100, 50, 60, C, 2))
    t.insert(P(100, 50, 60, C, 3))
    # instance 55 matches both ranges; only {0,100} (lowest) is used, never {50,60}
    assert {t.lookup_anycast(100, 55) for _ in range(10)} == {(B, 1)}
    assert t.lookup_anycast(100, 101) is None
    assert t.lookup_anycast(100, 50, 0) == (B, 1)
    # once {0,100} is gone, {50,60} round-robins
    assert t.remove(100, 0, B, 2, 100) is not None
    assert [t.lookup_anycast(100, 55) for _ in range(3)] == [(C, 3), (C, 2), (C, 3)]
    assert t.lookup_anycast(100, 61) is None
    assert t.lookup_anycast(100, 49) is None
    assert t.lookup_anycast(101, 55) is None


def test_among_equal_lower_the_newest_range_comes_first_as_in_the_rbtree() -> None:
    t = NameTable(OWN)
    t.insert(P(100, 10, 20, B, 1))
    t.insert(P(100, 10, 30, C, 2))  # same lower, created later: goes left in the tree
    assert t.lookup_anycast(100, 15) == (C, 2)
    assert [(p.lower, p.upper) for p in t] == [(10, 30), (10, 20)]


def test_overlapping_ranges_first_match_is_leftmost_overlap() -> None:
    t = NameTable(OWN)
    t.insert(P(100, 0, 5, B, 1))  # does not cover 8
    t.insert(P(100, 3, 10, B, 2))
    t.insert(P(100, 4, 4, B, 3))
    t.insert(P(100, 8, 8, C, 4))
    assert t.lookup_anycast(100, 8) == (B, 2)
    assert t.lookup_anycast(100, 4) == (B, 1)
    assert t.lookup_anycast(100, 6) == (B, 2)
    t.remove(100, 3, B, 3, 10)
    assert t.lookup_anycast(100, 8) == (C, 4)
    assert t.lookup_anycast(100, 6) is None


def test_lookup_matches_brute_force_kernel_model_on_random_tables() -> None:
    rng = random.Random(7)
    for _ in range(30):
        t = NameTable(OWN)
        ranges: list[tuple[int, int, int]] = []  # (lower, upper, creation)
        live: list[Publication] = []
        for step in range(60):
            if live and rng.random() < 0.3:
                p = live.pop(rng.randrange(len(live)))
                assert t.remove(p.type, p.lower, p.node, p.key, p.upper) is p
                if not t.find(p.type, p.lower, p.upper):
                    ranges = [r for r in ranges if (r[0], r[1]) != (p.lower, p.upper)]
                continue
            lo = rng.randrange(40)
            up = lo + rng.choice([0, 0, 0, 1, 3, 10])
            p = P(200, lo, up, rng.choice([OWN, B, C]), step + 1)
            assert t.insert(p)
            live.append(p)
            if all((r[0], r[1]) != (lo, up) for r in ranges):
                ranges.append((lo, up, step))
        # kernel order: by lower, newest range first among equal lowers
        order = sorted(ranges, key=lambda r: (r[0], -r[2]))
        for inst in range(-1, 55):
            inst = max(inst, 0)
            first = next(((lo, up) for lo, up, _ in order if lo <= inst <= up), None)
            res = t.lookup_anycast(200, inst)
            if first is None:
                assert res is None
            else:
                assert res in {(p.node, p.port) for p in t.find(200, *first)}


def test_domain_own_node_round_robins_over_local_publications_only() -> None:
    t = NameTable(OWN)
    t.insert(P(100, 1, 1, B, 1))
    t.insert(P(100, 1, 1, OWN, 2))
    t.insert(P(100, 1, 1, C, 3))
    t.insert(P(100, 1, 1, OWN, 4, scope=ND))
    got = [t.lookup_anycast(100, 1, OWN) for _ in range(4)]
    assert got == [(OWN, 4), (OWN, 2), (OWN, 4), (OWN, 2)]
    # cluster-wide: everyone, starting at the head of all_publ
    assert {t.lookup_anycast(100, 1) for _ in range(4)} == {(OWN, 4), (C, 3), (OWN, 2), (B, 1)}


def test_domain_own_node_skips_ranges_without_local_publications() -> None:
    t = NameTable(OWN)
    t.insert(P(100, 0, 10, B, 1))  # first range, remote only
    t.insert(P(100, 5, 5, OWN, 2))
    assert t.lookup_anycast(100, 5, OWN) == (OWN, 2)
    assert t.lookup_anycast(100, 5) == (B, 1)
    assert t.lookup_anycast(100, 3, OWN) is None


def test_domain_other_node_defers_lookup_to_that_node() -> None:
    t = NameTable(OWN)
    assert t.lookup_anycast(100, 1, B) == (B, 0)


def test_identical_bindings_by_one_socket_are_separate_publications() -> None:
    t = NameTable(OWN)
    assert t.insert(P(100, 1, 1, OWN, 77, key=78))
    assert t.insert(P(100, 1, 1, OWN, 77, key=79))  # same socket, same range, new key
    assert len(t) == 2
    assert [t.lookup_anycast(100, 1) for _ in range(2)] == [(OWN, 77), (OWN, 77)]
    assert t.lookup_mcast(100, 0, 5) == {OWN: [77]}  # one copy per socket
    # duplicate = same key and node in the same range
    assert not t.insert(P(100, 1, 1, OWN, 99, key=78))
    assert t.insert(P(100, 1, 1, B, 77, key=78))  # same key, other node: fine
    assert t.insert(P(100, 1, 2, OWN, 77, key=78))  # same key, other range: fine


def test_node_zero_publication_blocks_same_key_from_any_node() -> None:
    t = NameTable(0)
    assert t.insert(P(100, 1, 1, 0, 5, key=9))
    assert not t.insert(P(100, 1, 1, B, 6, key=9))


def test_withdraw_matches_key_and_node_not_port() -> None:
    t = NameTable(OWN)
    p = P(100, 1, 1, B, 5, key=9)
    t.insert(p)
    assert t.remove(100, 1, C, 9, 1) is None  # wrong node
    assert t.remove(100, 1, B, 8, 1) is None  # wrong key
    assert t.remove(100, 1, B, 9, 2) is None  # wrong range
    assert t.remove(100, 1, B, 9, 1) is p
    t.insert(p)
    assert t.remove(100, 1, 0, 9) is p  # node 0 = any node; upper unknown
    assert len(t) == 0 and t.service_count() == 0


def test_mcast_groups_every_overlapping_socket_by_node() -> None:
    t = NameTable(OWN)
    t.insert(P(100, 0, 9, OWN, 1))
    t.insert(P(100, 5, 15, OWN, 1, key=50))  # same socket, second range
    t.insert(P(100, 10, 10, B, 2))
    t.insert(P(100, 20, 30, B, 3))
    t.insert(P(100, 8, 8, C, 4, scope=CL))
    t.insert(P(100, 8, 8, OWN, 5, scope=ND))
    t.insert(P(101, 8, 8, C, 6))
    got = t.lookup_mcast(100, 8, 12)
    assert {n: sorted(ps) for n, ps in got.items()} == {OWN: [1, 5], B: [2], C: [4]}
    assert t.lookup_mcast(100, 16, 19) == {}
    assert t.lookup_mcast(100, 30, 99) == {B: [3]}
    assert sorted(t.lookup_mcast(100, 0, 99, exclude=(OWN, 1))) == [OWN, B, C]
    assert t.lookup_mcast(100, 0, 99, exclude=(OWN, 1))[OWN] == [5]
    assert set(t.lookup_mcast(100, 0, 99, scope=ND)) == {OWN}
    assert t.lookup_mcast_nodes(100, 8, 8) == {OWN, C}
    assert sorted(t.lookup_mcast_local(100, 0, 99)) == [1, 5]
    assert t.lookup_mcast_local(100, 0, 99, CL) == [1]
    assert t.lookup_mcast_local(100, 0, 99, TIPC_ANY_SCOPE) != []


def test_withdraw_node_purges_only_that_node_and_notifies() -> None:
    t = NameTable(OWN)
    seen: list[tuple[int, bool, bool]] = []
    t.add_observer(lambda p, pub, edge: seen.append((p.port, pub, edge)))
    for i in range(5):
        t.insert(P(100 + i, 1, 1, B, i))
    t.insert(P(100, 1, 1, C, 9))
    t.insert(P(0, B, B, B, 0, key=B))
    gone = t.withdraw_node(B)
    assert [p.port for p in gone] == [0, 1, 2, 3, 4, 0]
    assert t.node_count(B) == 0 and len(t) == 1
    assert t.lookup_anycast(100, 1) == (C, 9)
    assert t.lookup_anycast(101, 1) is None
    # insert edges: first in range except the second {100,1,1}; remove: last except {100}
    assert seen[:7] == [(0, True, True), (1, True, True), (2, True, True), (3, True, True),
                        (4, True, True), (9, True, False), (0, True, True)]  # fmt: skip
    assert seen[7] == (0, False, False)  # {100,1,1} still has C's binding
    assert all(pub is False and edge for _, pub, edge in seen[8:])
    assert t.withdraw_node(B) == []


def test_observer_edges_are_per_exact_range() -> None:
    t = NameTable(OWN)
    ev: list[tuple[int, int, bool, bool]] = []
    t.add_observer(lambda p, pub, edge: ev.append((p.lower, p.upper, pub, edge)))
    a, b, c = P(100, 1, 5, B, 1), P(100, 1, 5, C, 2), P(100, 1, 6, C, 3)
    for p in (a, b, c):
        t.insert(p)
    t.remove_publication(a)
    t.remove_publication(b)
    t.remove_publication(c)
    assert ev == [(1, 5, True, True), (1, 5, True, False), (1, 6, True, True),
                  (1, 5, False, False), (1, 5, False, True), (1, 6, False, True)]  # fmt: skip


def test_check_bind_errnos() -> None:
    assert check_bind(64, 1, 1, 2) == 2
    assert check_bind(64, 1, 1, 0) == 2
    assert check_bind(64, 1, 1, 1) == 2  # deprecated zone scope = cluster
    assert check_bind(64, 1, 1, 3) == 3
    cases = [
        (dict(type=64, lower=2, upper=1, scope=2), errno.EINVAL),
        (dict(type=63, lower=1, upper=1, scope=2), errno.EACCES),
        (dict(type=0, lower=1, upper=1, scope=2), errno.EACCES),
        (dict(type=64, lower=1, upper=1, scope=4), errno.EINVAL),
        (dict(type=64, lower=1, upper=1, scope=-1), errno.EINVAL),
        (dict(type=64, lower=1, upper=1 << 32, scope=2), errno.EINVAL),
        (dict(type=64, lower=1, upper=1, scope=2, local_count=65535), errno.EINVAL),
    ]
    for kw, want in cases:
        with pytest.raises(OSError) as ei:
            check_bind(**kw)  # type: ignore[arg-type]
        assert ei.value.errno == want, kw
        assert str(ei.value)
    assert check_bind(0, 1, 1, 2, internal=True) == 2
    assert check_bind(64, 1, 1, 2, local_count=65534) == 2


def test_set_own_addr_moves_node_zero_publications() -> None:
    t = NameTable(0)
    p = P(100, 1, 1, 0, 5)
    t.insert(p)
    assert t.lookup_anycast(100, 1) == (0, 5)
    t.set_own_addr(OWN)
    assert p.node == OWN
    assert t.lookup_anycast(100, 1) == (OWN, 5)
    assert t.lookup_anycast(100, 1, OWN) == (OWN, 5)
    assert t.publications_of(OWN) == [p]
    assert t.local_count == 1


def _show_rows(text: str) -> list[tuple[int, int, int, str]]:
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 6 and f[0].isdigit() and f[3] in ("cluster", "node"):
            rows.append((int(f[0]), int(f[1]), int(f[2]), f[3]))
    return rows


def test_iteration_order_is_tipc_nametable_show_order_from_capture() -> None:
    status = CAPTURES / "pair-multicast-kpeer-a-status.txt"
    if not status.exists():
        pytest.skip(f"capture status file not found: {status}")
    text = status.read_text()
    show = text[text.index("--- tipc nametable show") :]
    show = show[: show.index("--- tipc socket list")]
    want = _show_rows(show)
    assert want[:4] == [(0, 425526373, 425526373, "cluster"), (0, 425527141, 425527141, "cluster"),
                        (1, 1, 1, "node"), (2, 425527141, 425527141, "node")]  # fmt: skip
    # insert in a different order than printed: order must come from the table
    t = NameTable(425526373)
    for i, (ty, lo, up, sc) in enumerate(reversed(want)):
        t.insert(Publication(ty, lo, up, 2 if sc == "cluster" else 3, 425526373, i, i + 1))
    assert [(p.type, p.lower, p.upper, scope_name(p.scope)) for p in t] == want
    # the capture's order: 2000.. (bucket 976) before 1000.. (bucket 1000)
    types = [r[0] for r in want]
    assert types.index(2000) < types.index(1000)


def test_scale_smoke_many_bindings() -> None:
    t = NameTable(OWN)
    n = 20000
    for i in range(n):
        t.insert(P(64 + i % 100, i // 100, i // 100, (B, C, OWN)[i % 3], i + 1))
    assert len(t) == n
    for i in range(0, n, 997):
        assert t.lookup_anycast(64 + i % 100, i // 100) == ((B, C, OWN)[i % 3], i + 1)
    assert sum(1 for _ in t) == n
    gone = t.withdraw_node(B)
    assert len(gone) == len(range(0, n, 3)) and len(t) == n - len(gone)


# ---------------------------------------------------------------------------- twin test
# The compact table (a lone publication stored as its own range, tombstones in the
# sorted lists, bags with lazy deletion, the batch insert_items / remove_many /
# withdraw_port) against the plain table it replaced (tests/unit/name_table_ref.py),
# operation by operation: every answer, every observer call and the full listing equal.

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import tipcpy.core.name_table as nt_mod  # noqa: E402
from tests.unit import name_table_ref as ref_mod  # noqa: E402

TW_NODES = (0, OWN, B, C)
Tup = tuple[int, int, int, int, int, int, int]


def _t(p: object) -> Tup:
    return (p.type, p.lower, p.upper, p.scope, p.node, p.port, p.key)  # type: ignore[attr-defined]


def _ts(ps: object) -> list[Tup]:
    return [_t(p) for p in ps]  # type: ignore[attr-defined]


class TableTwin(RuleBasedStateMachine):
    @initialize(compact_min=st.sampled_from([0, 1, 3, 32]))
    def setup(self, compact_min: int) -> None:
        self.saved_min = nt_mod._COMPACT_MIN
        nt_mod._COMPACT_MIN = compact_min  # small: tombstones and bags compact often
        self.new = NameTable(OWN)
        self.ref = ref_mod.NameTable(OWN)
        self.ev_new: list[tuple[Tup, bool, bool]] = []
        self.ev_ref: list[tuple[Tup, bool, bool]] = []
        self.new.add_observer(lambda p, pub, edge: self.ev_new.append((_t(p), pub, edge)))
        self.ref.add_observer(lambda p, pub, edge: self.ev_ref.append((_t(p), pub, edge)))
        self.pairs: list[tuple[Publication, ref_mod.Publication]] = []
        self.addr_set = False

    def teardown(self) -> None:
        if hasattr(self, "saved_min"):
            nt_mod._COMPACT_MIN = self.saved_min

    def _same(self, a: object, b: object) -> None:
        assert a == b, (a, b)
        assert self.ev_new == self.ev_ref
        self.ev_new.clear()
        self.ev_ref.clear()

    # ------------------------------------------------------------ mutations
    @rule(type=st.sampled_from([64, 65]), lower=st.integers(0, 6),
          width=st.sampled_from([0, 0, 0, 1, 3]), node=st.sampled_from(TW_NODES),
          port=st.integers(1, 4), key=st.integers(1, 5), scope=st.sampled_from([CL, CL, ND]))
    def insert(self, type: int, lower: int, width: int, node: int, port: int, key: int,
               scope: int) -> None:  # fmt: skip
        a = Publication(type, lower, lower + width, scope, node, port, key)
        b = ref_mod.Publication(type, lower, lower + width, scope, node, port, key)
        ra, rb = self.new.insert(a), self.ref.insert(b)
        if ra:
            self.pairs.append((a, b))
        self._same(ra, rb)

    @rule(node=st.sampled_from([B, C]), data=st.data())
    def insert_items(self, node: int, data: st.DataObject) -> None:
        items = data.draw(st.lists(st.tuples(
            st.sampled_from([64, 65]), st.integers(0, 9), st.sampled_from([0, 0, 1, -1]),
            st.integers(1, 4), st.integers(1, 5)), max_size=8))  # fmt: skip
        items = [(t, lo, lo + w, port, key) for t, lo, w, port, key in items]
        got = self.new.insert_items(node, CL, items)
        want = [0, 0, 0]
        for t, lo, up, port, key in items:
            if lo > up:
                want[2] += 1
            elif self.ref.insert(ref_mod.Publication(t, lo, up, CL, node, port, key)):
                want[0] += 1
            else:
                want[1] += 1
        self._same(got, tuple(want))

    @rule(type=st.sampled_from([64, 65]), lower=st.integers(0, 9),
          node=st.sampled_from(TW_NODES), key=st.integers(1, 5),
          upper=st.one_of(st.none(), st.integers(0, 9)))
    def remove(self, type: int, lower: int, node: int, key: int, upper: int | None) -> None:
        a = self.new.remove(type, lower, node, key, upper)
        b = self.ref.remove(type, lower, node, key, upper)
        self._same(a and _t(a), b and _t(b))

    @precondition(lambda self: self.pairs)
    @rule(data=st.data())
    def remove_publication(self, data: st.DataObject) -> None:
        a, b = data.draw(st.sampled_from(self.pairs))
        self._same(self.new.remove_publication(a), self.ref.remove_publication(b))

    @precondition(lambda self: self.pairs)
    @rule(data=st.data())
    def remove_many(self, data: st.DataObject) -> None:
        pick = data.draw(st.lists(st.sampled_from(self.pairs), max_size=6))
        got = self.new.remove_many([a for a, _ in pick])
        want = [b for _, b in pick if self.ref.remove_publication(b)]
        self._same(_ts(got), _ts(want))

    @rule(port=st.integers(1, 4), limit=st.sampled_from([None, 1, 2, 5]))
    def withdraw_port(self, port: int, limit: int | None) -> None:
        got, more = self.new.withdraw_port(port, limit)
        own = self.ref.own_addr
        mine = sorted(
            [b for n in ({0, own} if own else {0}) for b in self.ref.publications_of(n)
             if b.port == port], key=lambda b: b.id)  # fmt: skip
        want = [b for b in mine[:limit] if self.ref.remove_publication(b)]
        self._same((_ts(got), more), (_ts(want), len(mine) > len(want)))

    @rule(node=st.sampled_from(TW_NODES))
    def withdraw_node(self, node: int) -> None:
        self._same(_ts(self.new.withdraw_node(node)), _ts(self.ref.withdraw_node(node)))

    @precondition(lambda self: not self.addr_set)
    @rule()
    def set_own_addr(self) -> None:
        self.addr_set = True
        self.new.set_own_addr(OWN + 0x100)
        self.ref.set_own_addr(OWN + 0x100)
        self._same(self.new.own_addr, self.ref.own_addr)

    # ------------------------------------------------------------ lookups (rotate RR)
    @rule(type=st.sampled_from([64, 65, 66]), inst=st.integers(-1, 10),
          dom=st.sampled_from(["zero", "own", "other"]), times=st.integers(1, 3))
    def anycast(self, type: int, inst: int, dom: str, times: int) -> None:
        d = {"zero": 0, "own": self.ref.own_addr, "other": C}[dom]
        for _ in range(times):
            self._same(self.new.lookup_anycast(type, inst, d),
                       self.ref.lookup_anycast(type, inst, d))

    @rule(type=st.sampled_from([64, 65]), lower=st.integers(0, 9), width=st.integers(0, 4),
          scope=st.sampled_from([TIPC_ANY_SCOPE, CL, ND]), ports=st.booleans())
    def range_queries(self, type: int, lower: int, width: int, scope: int, ports: bool) -> None:
        up = lower + width
        n, r = self.new, self.ref
        self._same(n.lookup_mcast(type, lower, up, scope=scope, exclude=(B, 2)),
                   r.lookup_mcast(type, lower, up, scope=scope, exclude=(B, 2)))
        self._same(n.lookup_mcast_nodes(type, lower, up), r.lookup_mcast_nodes(type, lower, up))
        self._same(n.lookup_mcast_local(type, lower, up, scope),
                   r.lookup_mcast_local(type, lower, up, scope))
        self._same(_ts(n.subscription_snapshot(type, lower, up, ports)),
                   _ts(r.subscription_snapshot(type, lower, up, ports)))
        self._same(_ts(n.find(type, lower, up)), _ts(r.find(type, lower, up)))

    # ------------------------------------------------------------ whole state
    @invariant()
    def same_listing(self) -> None:
        if not hasattr(self, "new"):
            return
        n, r = self.new, self.ref
        assert [(_t(p), p.id) for p in n] == [(_t(p), p.id) for p in r]
        assert len(n) == len(r)
        assert n.nodes() == r.nodes()
        assert n.service_count() == r.service_count()
        assert n.local_count == r.local_count
        for node in TW_NODES + (OWN + 0x100,):
            assert n.node_count(node) == r.node_count(node)
            assert [(_t(p), p.id) for p in n.publications_of(node)] == [
                (_t(p), p.id) for p in r.publications_of(node)]
        for a, b in self.pairs:
            assert n.contains(a) == r.contains(b)
        # every lookup after every step (both round-robins advance alike)
        for type in (64, 65):
            for inst in range(-1, 11):
                for d in (0, r.own_addr):
                    assert n.lookup_anycast(type, inst, d) == r.lookup_anycast(type, inst, d)
            for lower, upper in ((0, 9), (2, 4), (5, 5)):
                assert n.lookup_mcast(type, lower, upper) == r.lookup_mcast(type, lower, upper)
                assert _ts(n.subscription_snapshot(type, lower, upper, False)) == _ts(
                    r.subscription_snapshot(type, lower, upper, False))


TableTwin.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTableTwin = TableTwin.TestCase

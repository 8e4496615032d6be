"""The codec against real Linux 6.1 kernel TIPC traffic - the foundation's Must-show.

For every capture under ../shared/reference/captures:

1. every TIPC message decodes and re-encodes to the captured bytes, and so does every
   message inside a bundle and every message rebuilt from fragments (the inner bytes
   are cut out here independently of the codec's unbundle()/Reassembler, then compared);
2. the decoded fields agree with what the kernels themselves reported at the time, in
   the status files beside the capture (`tipc node get`, `node list`, `bearer get mtu`,
   `link list`, `link stat show`, `nametable show`) and with the traffic log (which
   socket sent how many bytes to which service, and what came back).

Nothing about the nodes is hard-coded here: identities, hashes, net id, MTU, tolerance,
bearer names and bindings are all read from the kernel's own output.  A mismatch is a
codec bug (or a wrong assumption in the reference) - never something to tune away.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tipcpy.addr import hash128to32
from tipcpy.wire import DecodeError, decode
from tipcpy.wire.bundle import unbundle
from tipcpy.wire.fragment import Reassembler
from tipcpy.wire.pcap import PcapRecord, read_pcap

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CAPTURES_DIR = SHARED / "reference" / "captures"
CAPTURES = sorted(p for p in CAPTURES_DIR.glob("*.pcap*")) if CAPTURES_DIR.is_dir() else []

pytestmark = pytest.mark.skipif(
    not CAPTURES, reason=f"no reference captures at {CAPTURES_DIR} (../shared absent)")

# Wire numbers used to select messages.  They are the kernel's (msg.h) and deliberately
# spelled out here rather than imported, so a wrong constant in the codec cannot hide.
LINK_PROTOCOL, MSG_BUNDLER, NAME_DISTRIBUTOR, MSG_FRAGMENTER, LINK_CONFIG = 7, 6, 11, 12, 13
BCAST_PROTOCOL = 5
STATE, RESET, ACTIVATE = 0, 1, 2
PUBLICATION, WITHDRAWAL = 0, 1
FIRST_FRAGMENT, LAST_FRAGMENT = 0, 2
DATA_USERS = (0, 1, 2, 3)
MCAST, NAMED = 1, 2


# ------------------------------------------------------------------------- loading


@dataclass
class Seen:
    """One decoded message: on the wire (`via` "") or inner ("bundle"/"reassembled")."""

    rec: PcapRecord
    msg: Any
    raw: bytes
    via: str = ""


@dataclass
class Capture:
    path: Path
    records: list[PcapRecord]
    messages: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def outer(self) -> list[Seen]:
        return [s for s in self.messages if not s.via]


def _split_bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big") & 0x1FFFF
        assert size >= 24 and pos + size <= len(data), f"bad inner size {size} at {pos}"
        out.append(data[pos:pos + size])
        pos += (size + 3) & ~3
    return out


def _roundtrip(raw: bytes, where: str, problems: list[str]) -> Any:
    try:
        m = decode(raw)
    except DecodeError as exc:
        problems.append(f"{where}: does not decode: {exc}")
        return None
    again = m.encode()
    if again != raw:
        n = next((i for i in range(min(len(again), len(raw))) if again[i] != raw[i]),
                 min(len(again), len(raw)))
        problems.append(f"{where}: re-encodes differently from byte {n} (word w{n // 4}): "
                        f"got {again[n // 4 * 4:n // 4 * 4 + 4].hex()}, "
                        f"captured {raw[n // 4 * 4:n // 4 * 4 + 4].hex()}")
    return m


@cache
def load(path: Path) -> Capture:
    cap = Capture(path, read_pcap(path))
    frag_bytes: dict[tuple[str, str], bytearray] = {}
    reasm: dict[tuple[str, str], Reassembler] = defaultdict(Reassembler)
    for rec in cap.records:
        where = f"{path.name} frame {rec.frame}"
        if rec.error:
            cap.problems.append(f"{where}: unreadable frame: {rec.error}")
            continue
        m = _roundtrip(rec.payload, where, cap.problems)
        if m is None:
            continue
        cap.messages.append(Seen(rec, m, rec.payload))
        if m.user == MSG_BUNDLER:
            parts = _split_bundle(bytes(m.data))
            if [x.encode() for x in unbundle(m)] != parts:
                cap.problems.append(f"{where}: unbundle() disagrees with the bundle's bytes")
            if m.msgcnt != len(parts):
                cap.problems.append(f"{where}: msgcnt {m.msgcnt} but {len(parts)} messages")
            for i, raw in enumerate(parts):
                inner = _roundtrip(raw, f"{where} bundle[{i}]", cap.problems)
                if inner is not None:
                    cap.messages.append(Seen(rec, inner, raw, "bundle"))
        elif m.user == MSG_FRAGMENTER:
            key = (rec.src, rec.dst)
            if m.mtype == FIRST_FRAGMENT:
                frag_bytes[key] = bytearray()
            frag_bytes.setdefault(key, bytearray()).extend(m.data)
            try:
                whole = reasm[key].feed(m)
            except DecodeError as exc:
                cap.problems.append(f"{where}: Reassembler refused the fragment: {exc}")
                continue
            if m.mtype != LAST_FRAGMENT:
                if whole is not None:
                    cap.problems.append(f"{where}: Reassembler finished before LAST_FRAGMENT")
                continue
            ours = bytes(frag_bytes.pop(key))
            if whole is None:
                cap.problems.append(f"{where}: LAST_FRAGMENT did not complete a message")
                continue
            if whole.encode() != ours:
                cap.problems.append(f"{where}: reassembled message differs from fragments")
            inner = _roundtrip(ours, f"{where} reassembled", cap.problems)
            if inner is not None:
                cap.messages.append(Seen(rec, inner, ours, "reassembled"))
    return cap


# ------------------------------------------------------------------ status files


@dataclass
class Binding:
    type: int
    lower: int
    upper: int
    scope: str
    port: int
    node: str  # node identity as printed


@dataclass
class Status:
    """What one `tipc` status dump (or a bare `nametable show`) says."""

    path: Path
    identity: str | None = None
    hash: int | None = None
    netid: int | None = None
    bearers: list[str] = field(default_factory=list)
    bearer_mtu: int | None = None
    peers: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (hash, state)
    links: dict[str, str] = field(default_factory=dict)  # name -> up/down
    link_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    nametable: list[Binding] = field(default_factory=list)


_BINDING = re.compile(r"^(\d+)\s+(\d+)\s+(\d+)\s+(cluster|node|zone)\s+(\d+)\s+(\S+)\s*$")


def parse_status(path: Path) -> Status:
    st = Status(path)
    section = ""
    lines = path.read_text().splitlines()
    cur_link: str | None = None
    for i, line in enumerate(lines):
        if line.startswith("--- "):
            section = line[4:]
            continue
        if line.startswith("===="):
            continue
        m = _BINDING.match(line)
        if m and (section.startswith("tipc nametable") or not section):
            t, lo, up, scope, port, node = m.groups()
            st.nametable.append(Binding(int(t), int(lo), int(up), scope, int(port), node))
            continue
        if section.startswith("tipc node get identity"):
            parts = line.split()
            if len(parts) == 2 and parts[0] != "Node":
                st.identity, st.hash = parts[0], int(parts[1], 16)
            elif len(parts) == 1 and st.netid is None and lines[i - 1].split() == [
                    f"{st.hash:08x}" if st.hash is not None else ""]:
                st.netid = int(parts[0])
        elif section == "tipc bearer list" and line.strip():
            st.bearers.append(line.strip())
        elif section.startswith("tipc bearer get mtu") and line.strip().isdigit():
            st.bearer_mtu = int(line)
        elif section == "tipc node list":
            parts = line.split()
            if len(parts) == 3 and parts[0] != "Node":
                st.peers[parts[0]] = (int(parts[1], 16), parts[2])
        elif section == "tipc link list" and ": " in line:
            name, state = line.rsplit(": ", 1)
            st.links[name] = state
        elif section == "tipc link stat show":
            if line.startswith("Link <"):
                cur_link = line[6:-1]
                st.link_stats[cur_link] = {}
            elif cur_link is not None:
                stats = st.link_stats[cur_link]
                for key, val in re.findall(r"(MTU|Priority|Tolerance|Window):(\d+)", line):
                    stats[key.lower()] = int(val)
                mm = re.match(r"\s+(RX|TX) packets:(\d+) fragments:(\d+)/(\d+)", line)
                if mm:
                    d = mm.group(1).lower()
                    stats[f"{d}_packets"] = int(mm.group(2))
                    stats[f"{d}_fragments"] = int(mm.group(3))
                    stats[f"{d}_fragmented"] = int(mm.group(4))
    return st


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def beside(capture: Path, kind: str) -> list[Path]:
    """Text files that belong to `capture`: those sharing the longest name prefix with it
    among all captures (`pair-multicast-kpeer-a-status.txt` -> `pair-multicast.pcap`)."""
    out = []
    for txt in sorted(capture.parent.glob("*.txt")):
        best = max(CAPTURES, key=lambda c: _common_prefix(c.stem, txt.stem))
        if best == capture and _common_prefix(capture.stem, txt.stem) > 0 and kind in txt.stem:
            out.append(txt)
    return out


def statuses(capture: Path) -> list[Status]:
    return [parse_status(p) for p in beside(capture, "") if "traffic" not in p.stem]


def node_ids(capture: Path) -> dict[str, int]:
    """Every node identity -> hash that the status files beside `capture` state."""
    ids: dict[str, int] = {}
    for st in statuses(capture):
        if st.identity is not None and st.hash is not None:
            ids[st.identity] = st.hash
        for ident, (h, _state) in st.peers.items():
            ids[ident] = h
    return ids


def _one(values: set[Any], what: str, capture: Path) -> Any:
    assert len(values) == 1, f"status files beside {capture.name} disagree on {what}: {values}"
    return next(iter(values))


def _msgs(cap: Capture, user: int, mtypes: tuple[int, ...] | None = None,
          outer: bool = True) -> list[Seen]:
    src = cap.outer if outer else cap.messages
    return [s for s in src if s.msg.user == user and (mtypes is None or s.msg.mtype in mtypes)]


ids_of = [p.name for p in CAPTURES]


# ------------------------------------------------------------------------- tests


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_every_message_decodes_and_reencodes_byte_identically(capture: Path) -> None:
    cap = load(capture)
    assert cap.records, f"{capture.name}: no TIPC packets found"
    assert not cap.problems, "\n".join(cap.problems)
    assert len(cap.outer) == len(cap.records)


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_node_identities_and_hashes_match_the_kernels(capture: Path) -> None:
    cap = load(capture)
    ids = node_ids(capture)
    assert ids, f"no status file beside {capture.name} names a node"
    by_hash = {h: ident for ident, h in ids.items()}
    seen_ids = set()
    for s in _msgs(cap, LINK_CONFIG):
        m = s.msg
        where = f"frame {s.rec.frame}"
        assert m.prevnode in by_hash, f"{where}: prevnode {m.prevnode:08x} is no known node"
        assert m.node_id_str == by_hash[m.prevnode], where
        assert hash128to32(m.node_id) == m.prevnode, where
        seen_ids.add(m.node_id_str)
    own = {st.identity for st in statuses(capture) if st.identity}
    assert own <= seen_ids, f"nodes never seen in discovery: {own - seen_ids}"
    for s in cap.outer:  # every packet on the wire comes from a node the kernels know
        assert s.msg.prevnode in by_hash, f"frame {s.rec.frame}: prevnode {s.msg.prevnode:08x}"


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_discovery_media_address_is_the_senders_udp_endpoint(capture: Path) -> None:
    cap = load(capture)
    dsc = _msgs(cap, LINK_CONFIG)
    assert dsc
    ip_to_hash = {}
    for s in dsc:
        ma = s.msg.media_addr
        assert f"{ma.ip}:{ma.port}" == s.rec.src, f"frame {s.rec.frame}"
        ip_to_hash[s.rec.src] = s.msg.prevnode
    for s in dsc:
        if s.msg.mtype == 1:  # RESP is unicast and names the node it answers
            assert s.msg.dest_domain == ip_to_hash[s.rec.dst], f"frame {s.rec.frame}"
        elif s.msg.mtype in (0, 2):  # REQ and TRIAL are for anyone
            assert s.msg.dest_domain == 0, f"frame {s.rec.frame}"


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_net_id_in_every_link_config_and_broadcast_packet(capture: Path) -> None:
    cap = load(capture)
    netid = _one({st.netid for st in statuses(capture) if st.netid is not None}, "net id",
                 capture)
    dsc = _msgs(cap, LINK_CONFIG)
    assert dsc and all(s.msg.net_id == netid for s in dsc), \
        [(s.rec.frame, s.msg.net_id) for s in dsc if s.msg.net_id != netid]
    # Packets sent on the broadcast link carry the net id in w5 (reference §2.2).
    bcast = [s for s in cap.outer if s.msg.non_seq and s.msg.user != LINK_CONFIG]
    assert all(s.msg.mc_netid == netid for s in bcast), \
        [(s.rec.frame, s.msg.mc_netid) for s in bcast if s.msg.mc_netid != netid]


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_link_setup_carries_mtu_tolerance_and_bearer_name(capture: Path) -> None:
    cap = load(capture)
    sts = statuses(capture)
    mtu = _one({st.bearer_mtu for st in sts if st.bearer_mtu}, "bearer MTU", capture)
    link_mtus = {v["mtu"] for st in sts for v in st.link_stats.values() if "mtu" in v}
    assert link_mtus <= {mtu}
    tolerances = {v["tolerance"] for st in sts for v in st.link_stats.values()
                  if "tolerance" in v}
    bearer_names = {b.split(":", 1)[1] for st in sts for b in st.bearers}
    proto = _msgs(cap, LINK_PROTOCOL)
    setup = [s for s in proto if s.msg.mtype in (RESET, ACTIVATE)]
    if not any(st.links.keys() - {"broadcast-link"} for st in sts):
        assert not setup, "link set-up seen although no kernel reported a link"
        return
    assert setup, "kernels report a link but no RESET/ACTIVATE was captured"
    for s in setup:
        m, where = s.msg, f"frame {s.rec.frame}"
        assert m.max_pkt == mtu, where
        assert m.if_name in bearer_names, where
    # The kernel sends tolerance 0 = "unchanged" except when it changes; never another value.
    for s in proto:
        assert s.msg.tolerance in {0} | tolerances, f"frame {s.rec.frame}"


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_link_names_are_built_from_identities_and_captured_interface_names(
        capture: Path) -> None:
    cap = load(capture)
    ids = node_ids(capture)
    by_hash = {h: i for i, h in ids.items()}
    if_of: dict[str, set[str]] = defaultdict(set)  # node identity -> if names it sent
    for s in _msgs(cap, LINK_PROTOCOL, (RESET, ACTIVATE)):
        if_of[by_hash[s.msg.prevnode]].add(s.msg.if_name)
    names = {n for st in statuses(capture) for n in st.links} - {"broadcast-link"}
    for st in statuses(capture):
        for name in st.links.keys() - {"broadcast-link"}:
            own, peer = name.split("-", 1)[0], None
            # "<own-id>:<if>-<peer-id>:<if>"; identities may contain '-', so match peers.
            for ident in ids:
                for pif in if_of.get(ident, ()):
                    if name.endswith(f"-{ident}:{pif}"):
                        peer = (ident, pif)
            assert peer is not None, f"{name}: no captured RESET/ACTIVATE explains the peer"
            assert st.identity is not None
            own_ifs = if_of.get(st.identity, set())
            assert any(name == f"{st.identity}:{oi}-{peer[0]}:{peer[1]}" for oi in own_ifs), \
                (name, own, own_ifs)
    assert names or not _msgs(cap, LINK_PROTOCOL, (RESET, ACTIVATE))


def _published(cap: Capture) -> dict[tuple[int, int, int, int, int], int]:
    """(type, lower, upper, port, orignode) -> frame of the PUBLICATION carrying it."""
    out = {}
    for s in _msgs(cap, NAME_DISTRIBUTOR, (PUBLICATION,), outer=False):
        for it in s.msg.items:
            out[(it.type, it.lower, it.upper, it.port, s.msg.orignode)] = s.rec.frame
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_cluster_bindings_in_the_name_tables_were_distributed(capture: Path) -> None:
    cap = load(capture)
    ids = node_ids(capture)
    published = _published(cap)
    peers_seen = {s.msg.prevnode for s in _msgs(cap, LINK_PROTOCOL, (STATE,))}
    for st in statuses(capture):
        for b in st.nametable:
            key = (b.type, b.lower, b.upper, b.port, ids[b.node])
            if b.scope == "node":
                assert key not in published, f"node-scope {b} was distributed"
                continue
            if ids[b.node] not in peers_seen:
                continue  # a node with no link in this capture sends no name updates
            assert key in published, f"{st.path.name}: {b} never published in {capture.name}"
            if b.type == 0:  # the node-state binding {0, addr, addr}
                assert b.lower == b.upper == ids[b.node] and b.port == 0


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_every_distributed_binding_is_known_to_the_kernels(capture: Path) -> None:
    cap = load(capture)
    ids = node_ids(capture)
    tables = [{(b.type, b.lower, b.upper, b.port, ids[b.node]) for b in st.nametable
               if b.scope == "cluster"} for st in statuses(capture)]
    known = set().union(*tables) if tables else set()
    published = _published(cap)
    for key, frame in published.items():
        assert key in known, f"frame {frame}: published {key} is in no kernel name table"
    for s in _msgs(cap, NAME_DISTRIBUTOR, (WITHDRAWAL,), outer=False):
        for it in s.msg.items:
            key = (it.type, it.lower, it.upper, it.port, s.msg.orignode)
            assert key in published, f"frame {s.rec.frame}: withdrew unpublished {key}"
            assert any(key not in t for t in tables), \
                f"frame {s.rec.frame}: {key} withdrawn but still in every name table"


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_link_packet_and_fragment_counts_match_link_statistics(capture: Path) -> None:
    cap = load(capture)
    ids = node_ids(capture)
    # Sequenced packets per direction: everything on the unicast link except link protocol.
    seqnos: dict[tuple[int, int], list[int]] = defaultdict(list)
    frags: dict[tuple[int, int], int] = defaultdict(int)
    joined: dict[tuple[int, int], int] = defaultdict(int)
    for s in cap.outer:
        m = s.msg
        if m.non_seq or m.user in (LINK_PROTOCOL, LINK_CONFIG):
            continue
        d = (m.prevnode, m.destnode if len(m.w) > 7 else None)
        seqnos[d].append(m.seqno)
        if m.user == MSG_FRAGMENTER:
            frags[d] += 1
            joined[d] += m.mtype == LAST_FRAGMENT
    # SHORT-header packets have no destnode; attribute them by the other direction.
    for (src, dst), seq in list(seqnos.items()):
        if dst is None:
            others = {d for (s_, d) in seqnos if s_ == src and d is not None}
            assert len(others) == 1
            seqnos[(src, others.pop())].extend(seq)
            del seqnos[(src, dst)]
    checked = 0
    for st in statuses(capture):
        for name, stats in st.link_stats.items():
            if name == "broadcast-link" or st.links.get(name) != "up" or st.identity is None:
                continue
            peer = next(i for i in ids if f"-{i}:" in name and i != st.identity)
            rx = (ids[peer], ids[st.identity])
            tx = (ids[st.identity], ids[peer])
            for d, key in ((rx, "rx"), (tx, "tx")):
                got = sorted(seqnos[d])
                assert got == list(range(1, len(got) + 1)), f"{name} {key}: seqnos {got}"
                assert len(got) == stats[f"{key}_packets"], (name, key)
                assert frags[d] == stats[f"{key}_fragments"], (name, key)
                assert joined[d] == stats[f"{key}_fragmented"], (name, key)
            checked += 1
    if any(st.links.get(n) == "up" for st in statuses(capture) for n in st.links
           if n != "broadcast-link"):
        assert checked


# ------------------------------------------------------------------ traffic log

_CLIENT = re.compile(r"client socket id <node=0x([0-9a-f]+) port=(\d+)>")
_SENT = re.compile(r"(?:sent|multicast) (\d+) bytes to \{(\d+),(\d+)(?:\.\.(\d+))?\}")
_REPLY = re.compile(r'reply (\d+) bytes(?: from <node=0x([0-9a-f]+) port=(\d+)>)?: "([^"]*)"')


def _data_msgs(cap: Capture) -> list[Seen]:
    return [s for s in cap.messages if s.msg.user in DATA_USERS and s.msg.user != MSG_FRAGMENTER
            and len(s.msg.data) > 0]


@pytest.mark.parametrize("capture", CAPTURES, ids=ids_of)
def test_application_traffic_in_the_log_is_in_the_capture(capture: Path) -> None:
    logs = beside(capture, "traffic")
    if not logs:
        pytest.skip(f"no traffic log beside {capture.name}")
    cap = load(capture)
    data = _data_msgs(cap)
    checked = 0
    for log in logs:
        client: tuple[int, int] | None = None
        for line in log.read_text().splitlines():
            if m := _CLIENT.search(line):
                client = (int(m.group(1), 16), int(m.group(2)))
            elif (m := _SENT.search(line)) and client is not None:
                n, t, lo, up = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
                node, port = client
                hits = [s for s in data if s.msg.orignode == node and s.msg.origport == port
                        and len(s.msg.data) == n]
                assert hits, f"{log.name}: {line.strip()} not in capture"
                named = [s for s in hits if s.msg.mtype in (NAMED, MCAST)]
                if up is not None:  # multicast: a MCAST message to the range
                    assert any(s.msg.mtype == MCAST and (s.msg.nametype, s.msg.lower,
                               s.msg.upper) == (t, lo, int(up)) for s in named), line
                elif named:  # RDM: a NAMED message to {type, instance}
                    assert any((s.msg.nametype, s.msg.nameinst) == (t, lo) for s in named), line
                checked += 1
            elif (m := _REPLY.search(line)) and client is not None:
                n, text = int(m.group(1)), m.group(4).encode()
                _node, port = client
                hits = [s for s in data if s.msg.destport == port and len(s.msg.data) == n
                        and s.msg.data.startswith(text)]
                if m.group(2):
                    hits = [s for s in hits if s.msg.orignode == int(m.group(2), 16)
                            and s.msg.origport == int(m.group(3))]
                assert hits, f"{log.name}: {line.strip()} not in capture"
                checked += 1
    assert checked, f"nothing checked in {logs}"

"""Hostile input against real tipcd processes (issue 12): no datagram, request or client
may stall or break the node.

Two daemons, ``a`` and ``b``, linked over UDP on 127.0.0.1 (one pair per module: the cases
run one after the other against the same pair, which is also what a node under attack
lives through). Each case attacks ``a`` the way the issue's defect did, while a watcher
thread asks ``a`` over its control socket every 20 ms (what `tipc` does), and then checks:

* ``a`` answered every request, the worst answer time stays under ANSWER_MS;
* the loop lag ``a`` measured itself (``tipc node get stats``) stays under LAG_MS;
* the link a-b never went down (no "link down" line in either log), no traceback in
  ``a``'s log, the timers kept firing;
* RSS after the attack is within RSS_SLACK_KB of the baseline taken before it;
* every refusal is a clear error with the kernel's errno.

The figures of each case (worst answer, lag, longest callback in wall and CPU time, GC
pause, RSS before/peak/after) are printed (``pytest -s``) for the closing note. Default
sizes keep the suite to seconds; the ``slow`` variants use the issue's full sizes.

Time bounds on a shared 2-core machine: a process can wait tens of milliseconds for a
CPU, so a case that misses ANSWER_MS or LAG_MS is run once more (retry_timing) and fails
if it misses again; every other check must hold on every run. The printed CPU time of
the longest callback tells tipcd's own cost from the machine's load.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tipcpy import _uds as P
from tipcpy.runtime import ctlclient
from tipcpy.wire.consts import User
from tipcpy.wire.items import EthMediaAddr, RawMediaAddr, UdpMediaAddr
from tipcpy.wire.msg import Msg

from .conftest import REPO, TipcNode, _cmd, free_udp_port

ANSWER_MS = 100.0
LAG_MS = 100.0
RSS_SLACK_KB = 16 * 1024
NETID = 4711


# ====================================================================== the pair
def _start(tmp: Path, name: str, port: int, peer_port: int, ident: str) -> TipcNode:
    run_dir = tmp / name
    run_dir.mkdir()
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _cmd("tipcd") + ["--run-dir", str(run_dir), "--log-level", "info",
                             "--identity", ident],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    node = TipcNode(name, run_dir, port, proc, log_path)
    node.wait_for(lambda: (run_dir / "ctl.sock").exists() or proc.poll() is not None,
                  what="control socket")
    assert proc.poll() is None, node.log()
    node.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1",
              "localport", str(port), "remoteip", "127.0.0.1", "remoteport", str(peer_port))
    return node


def call(node: TipcNode, op: str, args: dict | None = None, timeout: float = 10.0):
    return ctlclient.call(op, args, path=node.run_dir / "ctl.sock", timeout=timeout)


def link_up(node: TipcNode) -> bool:
    try:
        links = call(node, "link.list")
    except Exception:
        return False
    return any(lk.get("up") and lk.get("name") != "broadcast-link" for lk in links)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TipcNode, TipcNode]]:
    tmp = tmp_path_factory.mktemp("hostile")
    pa, pb = free_udp_port(), free_udp_port()
    nodes: list[TipcNode] = []
    try:
        nodes.append(_start(tmp, "a", pa, pb, "h1"))
        nodes.append(_start(tmp, "b", pb, pa, "h2"))
        a, b = nodes
        a.wait_for(lambda: link_up(a) and link_up(b), timeout=20, what="link a-b up")
        yield a, b
    finally:
        for n in nodes:
            n.stop()


# ====================================================================== measuring
def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


_WATCHER = r"""
import json, sys, threading, time
from tipcpy.runtime import ctlclient
path, pid = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
worst = worst_at = 0.0
answers, failures, peak = 0, [], 0
ctlclient.call("node.get", path=path, timeout=5)       # warm: first-call costs are ours
t_start = time.perf_counter()
print("ready", flush=True)
while not stop.is_set():
    t0 = time.perf_counter()
    try:
        ctlclient.call("node.get", path=path, timeout=5)
        answers += 1
    except Exception as e:
        failures.append(repr(e))
    dt = time.perf_counter() - t0
    if dt > worst:
        worst, worst_at = dt, t0 - t_start
    peak = max(peak, rss())
    time.sleep(0.02)
print(json.dumps({"worst": worst, "worst_at": worst_at, "answers": answers,
                  "failures": failures[:5], "rss_peak": peak}), flush=True)
"""


class Watch:
    """Asks the daemon every 20 ms during an attack, from a process of its own (so the
    attacking test process's own work does not count as the daemon's answer time);
    records the worst answer time, the failures and the peak RSS."""

    def __init__(self, node: TipcNode) -> None:
        self.node = node
        self.worst = 0.0
        self.worst_at = 0.0
        self.answers = 0
        self.failures: list[str] = []
        self.rss_peak = 0
        self._p: subprocess.Popen[str] | None = None

    def __enter__(self) -> Watch:
        self._p = subprocess.Popen(
            [sys.executable, "-c", _WATCHER, str(self.node.run_dir / "ctl.sock"),
             str(self.node.proc.pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert self._p.stdout is not None
        assert self._p.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        p = self._p
        assert p is not None
        try:
            out, _ = p.communicate("", timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        res = json.loads(out.strip().splitlines()[-1])
        self.worst, self.worst_at = res["worst"], res["worst_at"]
        self.answers, self.failures = res["answers"], res["failures"]
        self.rss_peak = res["rss_peak"]


class Attack:
    """Baseline before, checks and figures after (see the module docstring)."""

    def __init__(self, name: str, pair: tuple[TipcNode, TipcNode]) -> None:
        self.name = name
        self.a, self.b = pair
        call(self.a, "daemon.stats", {"reset": True})
        st = call(self.a, "daemon.stats")
        self.fires0 = st["runtime"]["timer_fires"]
        self.downs0 = (self.a.log().count("link down"), self.b.log().count("link down"))
        self.rss0 = rss_kb(self.a.proc.pid)
        self.watch = Watch(self.a)

    def __enter__(self) -> Attack:
        self.watch.__enter__()
        return self

    def __exit__(self, et: object, *exc: object) -> None:
        self.watch.__exit__()
        if et is not None:
            return
        a, b = self.a, self.b
        st = call(a, "daemon.stats")
        lag = st["loop"]["loop_lag_max_ms"]
        cb = st["loop"]["callback_max_ms"]
        site = st["loop"]["callback_max_site"]
        cpu = st["loop"]["callback_cpu_max_ms"]
        gcp = st["loop"]["gc_pause_max_ms"]
        gcg = st["loop"]["gc_pause_max_gen"]
        # memory goes back: give the frees a moment, then measure
        rss_after = rss_kb(a.proc.pid)
        end = time.monotonic() + 5
        while rss_after > self.rss0 + RSS_SLACK_KB and time.monotonic() < end:
            time.sleep(0.2)
            rss_after = rss_kb(a.proc.pid)
        t0 = time.perf_counter()
        a.tipc("node", "get", "identity")           # the real command, after the attack
        tipc_s = time.perf_counter() - t0
        print(f"\n[{self.name}] worst answer {self.watch.worst * 1000:.1f} ms "
              f"(at +{self.watch.worst_at:.2f} s) "
              f"({self.watch.answers} answers), loop lag max {lag:.1f} ms, longest "
              f"callback {cb:.1f} ms ({site}; CPU max {cpu:.1f} ms, GC pause max "
              f"{gcp:.1f} ms gen {gcg}), RSS {self.rss0} -> peak "
              f"{max(self.watch.rss_peak, rss_after)} -> {rss_after} kB, `tipc` after "
              f"{tipc_s * 1000:.0f} ms (process start included)")
        assert not self.watch.failures, self.watch.failures[:3]
        assert self.watch.answers > 0
        assert rss_after <= self.rss0 + RSS_SLACK_KB, \
            f"{self.name}: RSS {self.rss0} -> {rss_after} kB"
        a.wait_for(lambda: call(a, "daemon.stats")["runtime"]["timer_fires"] > self.fires0,
                   timeout=5, what="the timer still firing")
        assert (a.log().count("link down"), b.log().count("link down")) == self.downs0, \
            f"{self.name}: the link went down\n{a.log()[-2000:]}"
        assert link_up(a) and link_up(b)
        assert "Traceback" not in a.log(), a.log()[-3000:]
        assert a.proc.poll() is None
        # timing last: everything above must hold on every attempt
        if self.watch.worst * 1000 >= ANSWER_MS:
            raise TimingError(f"{self.name}: answer took {self.watch.worst * 1000:.1f} ms")
        if lag >= LAG_MS:
            raise TimingError(f"{self.name}: loop lag {lag} ms (callback {cb} ms in {site})")


class TimingError(AssertionError):
    """A time bound missed. On a 2-core machine shared with other work a process can be
    descheduled for tens of milliseconds, so a test that misses one is run once more
    (see retry_timing); missing it twice fails. Every other check holds every time."""


def retry_timing(fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except TimingError as e:
            print(f"\n!! {e}: once; running the case again (machine load?)")
            fn(*args, **kwargs)
    return run


# ====================================================================== raw clients
def client(node: TipcNode) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(node.run_dir / "tipc.sock"))
    return s


def read_frames(s: socket.socket, want: int, kinds: tuple[int, ...],
                timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """Frames from tipcd until ``want`` of the given kinds have come."""
    buf = b""
    got: list[tuple[int, bytes]] = []
    n = 0
    end = time.monotonic() + timeout
    while n < want:
        if time.monotonic() > end:
            raise AssertionError(f"got {n} of {want} frames")
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        off = 0
        while len(buf) - off >= 5:
            length, kind = P.HDR.unpack_from(buf, off)
            if len(buf) - off - 4 < length:
                break
            body = buf[off + 5:off + 4 + length]
            off += 4 + length
            got.append((kind, body))
            if kind in kinds:
                n += 1
        buf = buf[off:]
    return got


def open_rdm(s: socket.socket) -> int:
    s.sendall(P.frame(P.OPEN, P.U8.pack(socket.SOCK_RDM)))
    (kind, body), = read_frames(s, 1, (P.R_OK, P.R_ERR))
    assert kind == P.R_OK, body
    return struct.unpack_from("<I", body)[0]


def err_of(body: bytes) -> int:
    return struct.unpack_from("<i", body)[0]


# ====================================================================== defect 1 + fuzz
def _datagrams(seed: int, n: int, avoid: set[int]) -> Iterator[bytes]:
    """Every user, every message type (0..7 and a few beyond), every media type (LINK_CONFIG
    with udp/eth/ib/unknown addresses), random header fields; node addresses of the real
    pair are never forged (spoofing the peer is outside what TIPC without keys defends)."""
    rng = random.Random(seed)
    users = [int(u) for u in User]                 # 0..15: every user field value
    maddrs = [UdpMediaAddr(ip="127.0.0.1", port=rng.randrange(1, 65536)),
              EthMediaAddr(mac=bytes(rng.randrange(256) for _ in range(6))),
              RawMediaAddr(2, bytes(rng.randrange(256) for _ in range(20))),
              RawMediaAddr(rng.choice([0, 4, 5, 9, 255]), bytes(20))]
    for i in range(n):
        user = users[i % len(users)]
        mtype = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, rng.randrange(256)])
        node = rng.randrange(1, 1 << 32)
        while node in avoid:
            node = rng.randrange(1, 1 << 32)
        try:
            if user == User.LINK_CONFIG:
                m = Msg.build(user, mtype & 7, net_id=rng.choice([NETID, rng.randrange(1 << 32)]),
                              prevnode=node, media_addr=maddrs[i % len(maddrs)])
            else:
                m = Msg.build(user, mtype & 15, data=rng.randbytes(rng.randrange(0, 200)))
                m.prevnode = node
            raw = bytearray(m.encode())
        except Exception:          # noqa: BLE001 - a combination the builder refuses
            raw = bytearray(rng.randbytes(rng.randrange(24, 120)))
        # random fields: flip some header bytes (never the prevnode word, see above)
        for _ in range(rng.randrange(0, 6)):
            pos = rng.randrange(min(len(raw), 40))
            if not 12 <= pos < 16:
                raw[pos] = rng.randrange(256)
        if rng.random() < 0.1:
            raw = raw[:rng.randrange(1, len(raw) + 1)]     # cut short
        yield bytes(raw)


def _fuzz(pair: tuple[TipcNode, TipcNode], n: int, seed: int) -> None:
    a, b = pair
    avoid = {int(call(a, "node.get")["address"]), int(call(b, "node.get")["address"])}
    with Attack(f"network fuzz x{n}", pair):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", 0))
            for i, d in enumerate(_datagrams(seed, n, avoid)):
                s.sendto(d, ("127.0.0.1", a.port))
                if i % 200 == 199:
                    time.sleep(0.01)        # the kernel's socket buffer, not the daemon
        finally:
            s.close()
        time.sleep(0.5)
    st = call(a, "daemon.stats")
    b0 = next(iter(st["bearers"].values()))
    assert b0["rx_packets"] + b0.get("rx_bad_media", 0) > 0
    # a contained error is a bug found (logged once with its traceback by the guard):
    # report it by kind so the suite names it
    assert not st["loop"]["contained_by_kind"], st["loop"]["contained_by_kind"]


@retry_timing
def test_infiniband_link_config_keeps_timers(pair) -> None:
    """Defect 1: one LINK_CONFIG with an InfiniBand media address (and one of a media
    type nobody defines) is counted and dropped; the timers go on."""
    a, _b = pair
    before = call(a, "daemon.stats")
    with Attack("defect 1: ib LINK_CONFIG", pair):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for maddr in (RawMediaAddr(2, bytes(range(1, 21))), RawMediaAddr(9, bytes(20))):
                m = Msg.build(User.LINK_CONFIG, 0, net_id=NETID, prevnode=0x1001001,
                              media_addr=maddr)
                s.sendto(m.encode(), ("127.0.0.1", a.port))
        finally:
            s.close()
        time.sleep(1.0)
    after = call(a, "daemon.stats")
    b0 = next(iter(after["bearers"].values()))
    b1 = next(iter(before["bearers"].values()))
    assert b0["rx_bad_media"] - b1["rx_bad_media"] == 2
    assert after["runtime"]["timer_fires"] > before["runtime"]["timer_fires"] + 3


@retry_timing
def test_network_fuzz(pair) -> None:
    _fuzz(pair, 3000, seed=12)


@pytest.mark.slow
@retry_timing
def test_network_fuzz_full(pair) -> None:
    _fuzz(pair, 30000, seed=1212)


# ====================================================================== defect 2
@retry_timing
def test_control_junk_is_refused_with_einval(pair) -> None:
    """Defect 2: deep JSON, overflowing numbers, wrong types: EINVAL naming the field."""
    a, _ = pair
    path = a.run_dir / "ctl.sock"
    cases = [
        b"[" * 100_000 + b"\n",
        b'{"op":"link.set","args":{"link":"x","tolerance":1e400}}\n',
        b'{"op":"bearer.enable","args":{"media":"udp","name":["b9"]}}\n',
        b'{"op":"media.get","args":{"media":{"a":1}}}\n',
        b'{"op":"link.stat.show","args":{"link":5}}\n',
        b'{"op":"bearer.enable","args":{"media":"udp","name":"b9","localport":1.5}}\n',
        b'{"op":"node.key.set","args":{"key":18446744073709551616}}\n',
    ]
    with Attack("defect 2: control junk", pair):
        for line in cases * 20:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(str(path))
            f = s.makefile("rwb")
            try:
                f.write(line)
                f.flush()
            except (BrokenPipeError, ConnectionResetError):
                # an over-long line is answered and the connection closed as soon as
                # 64 KiB are in: the rest of our write can find it closed; the
                # answer is already in our receive buffer
                assert len(line) > 65536
            ans = json.loads(f.readline())
            s.close()
            want = errno.EMSGSIZE if len(line) > 65536 else errno.EINVAL
            assert ans["ok"] is False and ans["errno"] == want, (line[:80], ans)
            assert "internal error" not in ans["error"]
    assert call(a, "bearer.list") == call(a, "bearer.list")
    assert "udp:b9" not in json.dumps(call(a, "bearer.list"))


# ====================================================================== defect 3
def _pipelined_sends(pair, n: int) -> None:
    a, _ = pair
    s = client(a)
    try:
        open_rdm(s)
        dest = P.ADDR.pack(2, 0, 3_999_999, 1, 0)          # a name nobody binds
        frames = b"".join(P.frame(P.SEND, b"\0" + dest + b"x" * 16) for _ in range(n))
        before = call(a, "daemon.stats")["clients"]["async_errors"]
        with Attack(f"defect 3: {n} pipelined SENDs to a missing name", pair):
            s.sendall(frames)
            got = read_frames(s, n, (P.E_ASYNCERR,), timeout=60)
        errs = [err_of(b) for k, b in got if k == P.E_ASYNCERR]
        assert len(errs) == n
        assert set(errs) <= {errno.EHOSTUNREACH, errno.ENOENT, errno.EHOSTDOWN}, set(errs)
        assert call(a, "daemon.stats")["clients"]["async_errors"] - before == n
        # twin: the same SENDs one by one with an answer each (the plain sendto path,
        # no run through sendto_many) fail the same way, frame for frame
        m = 200
        s.sendall(b"".join(P.frame(P.SEND, bytes([P.SEND_SYNC]) + dest + b"x" * 16)
                           for _ in range(m)))
        sync = [err_of(b) for k, b in read_frames(s, m, (P.R_OK, P.R_ERR)) if k == P.R_ERR]
        assert sync == errs[:m]
    finally:
        s.close()


@retry_timing
def test_pipelined_sends_to_missing_name(pair) -> None:
    _pipelined_sends(pair, 4000)


@pytest.mark.slow
@retry_timing
def test_pipelined_sends_to_missing_name_full(pair) -> None:
    _pipelined_sends(pair, 16000)


def test_cli_waits_out_a_full_backlog(tmp_path: Path) -> None:
    """Defect 3's second half: a full listen backlog is no `BlockingIOError`; the CLI's
    client waits (bounded) and then says EAGAIN in words."""
    path = tmp_path / "ctl.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(0)
    held = []
    try:
        while True:                     # fill the backlog: nobody accepts
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(str(path))
            except BlockingIOError:
                c.close()
                break
            held.append(c)
            assert len(held) < 100
        with pytest.raises(ctlclient.ControlError) as ei:
            ctlclient.call("node.get", path=path, timeout=0.3)
        assert ei.value.errno == errno.EAGAIN and "busy" in ei.value.message
        # room again (one accepted): the same call connects
        srv.accept()[0].close()
        cl = ctlclient.ControlClient(path, timeout=0.5).connect()
        cl.close()
    finally:
        for c in held:
            c.close()
        srv.close()


# ====================================================================== defect 4
def _many_bindings(pair, n: int) -> None:
    a, b = pair
    def count(node: TipcNode) -> int:
        return int(call(node, "daemon.stats")["names"]["publications"])

    base_a, base_b = count(a), count(b)
    rss_before_binding = rss_kb(a.proc.pid)
    s = client(a)
    try:
        open_rdm(s)
        typ = 4_100_000 + n
        s.sendall(b"".join(P.frame(P.BIND, P.ADDR.pack(1, 2, typ, i, i)) for i in range(n)))
        got = read_frames(s, n, (P.R_OK, P.R_ERR), timeout=120)
        assert all(k == P.R_OK for k, _ in got if k in (P.R_OK, P.R_ERR))

        a.wait_for(lambda: count(b) >= base_b + n, timeout=60,
                   what=f"{n} bindings replicated")
        with Attack(f"defect 4: close a socket with {n} bindings", pair):
            s.close()
            a.wait_for(lambda: count(a) == base_a and count(b) == base_b, timeout=60,
                       what="bindings withdrawn on both nodes")
        assert call(a, "daemon.stats")["clients"]["withdraw_chunks"] > 0
        rss_after = rss_kb(a.proc.pid)
        print(f"[defect 4: {n} bindings] RSS before binding {rss_before_binding} kB, "
              f"after the close {rss_after} kB")
        assert rss_after <= rss_before_binding + RSS_SLACK_KB
    finally:
        s.close()


@retry_timing
def test_close_socket_with_many_bindings(pair) -> None:
    _many_bindings(pair, 8000)


@pytest.mark.slow
@retry_timing
def test_close_socket_with_many_bindings_full(pair) -> None:
    _many_bindings(pair, 65531)


def _control_disconnects(pair, n: int) -> None:
    a, _ = pair
    path = str(a.run_dir / "ctl.sock")
    with Attack(f"defect 4: {n} control disconnects at once", pair):
        conns = []
        for _ in range(n):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path)
            c.sendall(b'{"op":"node.get"')          # half a request each
            conns.append(c)
        time.sleep(0.3)
        for c in conns:
            c.close()
        time.sleep(0.5)
    a.wait_for(lambda: call(a, "daemon.stats")["control"]["conns_now"] == 1,   # this call
               timeout=5, what="control connections closed")


@retry_timing
def test_control_disconnects(pair) -> None:
    _control_disconnects(pair, 200)


@pytest.mark.slow
@retry_timing
def test_control_disconnects_full(pair) -> None:
    _control_disconnects(pair, 1000)


# ====================================================================== defect 5
def _control_megabytes(pair, n: int, size: int) -> None:
    """n control connections each sending ``size`` bytes without a newline."""
    a, _ = pair
    path = str(a.run_dir / "ctl.sock")
    junk = b"x" * size
    answers: list[int] = []
    with Attack(f"defect 5: {n} control connections x {size >> 10} kB, no newline", pair):
        conns = []
        for _ in range(n):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path)
            c.setblocking(False)
            conns.append([c, 0])
        end = time.monotonic() + 20
        while conns and time.monotonic() < end:
            for ent in list(conns):
                c, sent = ent
                try:
                    if sent < size:
                        ent[1] += c.send(junk[sent:sent + 262144])
                    else:
                        raise BlockingIOError
                except BlockingIOError:
                    try:
                        data = c.recv(4096)
                    except BlockingIOError:
                        continue
                    except ConnectionError:
                        data = b""
                    if data:
                        answers.append(json.loads(data.split(b"\n")[0])["errno"])
                    c.close()
                    conns.remove(ent)
                except (BrokenPipeError, ConnectionError):
                    try:
                        data = c.recv(4096)
                        if data:
                            answers.append(json.loads(data.split(b"\n")[0])["errno"])
                    except OSError:
                        pass
                    c.close()
                    conns.remove(ent)
        for c, _ in conns:
            c.close()
    assert answers and set(answers) <= {errno.EMSGSIZE, errno.ENOBUFS, errno.EMFILE}, \
        set(answers)
    st = call(a, "daemon.stats")["control"]
    assert st["refused_too_long"] > 0 and st["in_bytes"] < 1024


@retry_timing
def test_control_connections_sending_megabytes(pair) -> None:
    _control_megabytes(pair, 100, 1 << 20)


@pytest.mark.slow
@retry_timing
def test_control_connections_sending_megabytes_full(pair) -> None:
    _control_megabytes(pair, 1000, 1 << 20)


def _client_partial_frames(pair, n: int) -> None:
    """n client connections, each with a 128 kB frame begun and never finished."""
    a, _ = pair
    partial = P.HDR.pack(P.MAX_FRAME, P.SEND) + b"\0" * (128 * 1024 - 5)
    refused: list[int] = []
    with Attack(f"defect 5: {n} clients x 128 kB partial frames", pair):
        conns = []
        for _ in range(n):
            c = client(a)
            c.sendall(P.frame(P.OPEN, P.U8.pack(socket.SOCK_RDM)))
            conns.append(c)
        for c in conns:
            c.setblocking(False)
            try:
                c.send(partial)
            except (BlockingIOError, BrokenPipeError, ConnectionError):
                pass
        time.sleep(1.0)
        for c in conns:
            try:
                data = c.recv(1 << 16)
            except (BlockingIOError, ConnectionError):
                data = b""
            # OPEN's answer, then maybe R_ERR: the budget refusal
            off = 0
            while len(data) - off >= 5:
                length, kind = P.HDR.unpack_from(data, off)
                if kind == P.R_ERR:
                    refused.append(err_of(data[off + 5:]))
                off += 4 + length
        st = call(a, "daemon.stats")["clients"]
        assert st["in_bytes"] <= 40 << 20
        for c in conns:
            c.close()
        time.sleep(0.5)
    st = call(a, "daemon.stats")["clients"]
    assert st["in_bytes"] == 0 and st["clients_now"] == 0
    if n * 128 * 1024 > 32 << 20:
        assert st["refused_in_budget"] > 0 and set(refused) == {errno.ENOBUFS}, refused


@retry_timing
def test_clients_with_partial_frames(pair) -> None:
    _client_partial_frames(pair, 300)


@pytest.mark.slow
@retry_timing
def test_clients_with_partial_frames_full(pair) -> None:
    _client_partial_frames(pair, 1000)


def _unread_event_streams(pair, streams: int, churn: int) -> None:
    """``tipc events`` streams that never read while bindings come and go. The streams
    are opened before the measured window: their connects queue in the kernel's accept
    queue in front of `tipc`'s, first come first served, which is not what is measured."""
    a, _ = pair
    path = str(a.run_dir / "ctl.sock")
    conns = []
    for _ in range(streams):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(path)
        c.sendall(b'{"op":"events"}\n')
        conns.append(c)
    a.wait_for(lambda: call(a, "daemon.stats")["streams"]["streams"] == streams,
               timeout=20, what="streams open")
    with Attack(f"defect 5: {streams} unread event streams, {churn} binding changes", pair):
        s = client(a)
        open_rdm(s)
        typ = 4_200_000
        for lo in range(0, churn, 500):
            batch = b"".join(P.frame(P.BIND, P.ADDR.pack(1, 2, typ, i, i))
                             for i in range(lo, lo + 500))
            batch += b"".join(P.frame(P.BIND, P.ADDR.pack(1, -2, typ, i, i))
                              for i in range(lo, lo + 500))
            s.sendall(batch)
            read_frames(s, 1000, (P.R_OK, P.R_ERR))
        s.close()
        st = call(a, "daemon.stats")["streams"]
        assert st["queued"] <= st["cap"]
        for c in conns:
            c.close()
        time.sleep(0.5)
    st = call(a, "daemon.stats")["streams"]
    assert st["streams"] == 0 and st["queued"] == 0
    if streams * churn * 2 > 100_000:
        assert st["refused_overflow"] > 0


@retry_timing
def test_unread_event_streams(pair) -> None:
    _unread_event_streams(pair, 16, 4000)


@pytest.mark.slow
@retry_timing
def test_unread_event_streams_full(pair) -> None:
    _unread_event_streams(pair, 64, 40000)


def test_event_stream_cap(pair) -> None:
    """More streams than MAX_STREAMS: the extra ones get one EMFILE answer."""
    from tipcpy.runtime.budget import MAX_STREAMS

    a, _ = pair
    path = str(a.run_dir / "ctl.sock")
    conns = []
    try:
        for _ in range(MAX_STREAMS):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path)
            c.sendall(b'{"op":"events","args":{"type":4300000}}\n')
            conns.append(c)
        a.wait_for(lambda: call(a, "daemon.stats")["streams"]["streams"] == MAX_STREAMS,
                   timeout=10, what="streams open")
        with pytest.raises(ctlclient.ControlError) as ei:
            list(ctlclient.ControlClient(a.run_dir / "ctl.sock").stream("events"))
        assert ei.value.errno == errno.EMFILE
    finally:
        for c in conns:
            c.close()


# ====================================================================== defect 6
def test_sigterm_with_streams_open_and_link_down_reason(tmp_path: Path) -> None:
    """Defect 6: SIGTERM with `tipc events` streams open logs no traceback; the peer's
    link-down line says why (peer stopping), and so does a silent peer's."""
    pa, pb, pc = free_udp_port(), free_udp_port(), free_udp_port()
    a = _start(tmp_path, "a", pa, pb, "s1")
    b = _start(tmp_path, "b", pb, pa, "s2")
    nodes = [a, b]
    try:
        a.wait_for(lambda: link_up(a) and link_up(b), timeout=20, what="link up")
        streams = [subprocess.Popen(_cmd("tipc") + ["events"], env=a.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                   for _ in range(3)]
        a.wait_for(lambda: call(a, "daemon.stats")["streams"]["streams"] == 3,
                   what="streams open")
        os.kill(a.proc.pid, signal.SIGTERM)
        assert a.proc.wait(10) == 0
        for p in streams:
            p.wait(10)
        assert "Traceback" not in a.log() and "CancelledError" not in a.log(), a.log()
        b.wait_for(lambda: "link down:" in b.log(), timeout=5, what="link down on b")
        assert "(peer stopping)" in b.log(), b.log()
        # a peer that goes silent (SIGKILL: no RESET): the tolerance is the reason
        c = _start(tmp_path, "c", pc, pb, "s3")
        nodes.append(c)
        b.tipc("bearer", "disable", "media", "udp", "name", "b0")
        b.tipc("bearer", "enable", "media", "udp", "name", "b0", "localip", "127.0.0.1",
               "localport", str(pb), "remoteip", "127.0.0.1", "remoteport", str(pc))
        b.wait_for(lambda: link_up(b) and link_up(c), timeout=20, what="link b-c up")
        os.kill(c.proc.pid, signal.SIGKILL)
        c.proc.wait(5)
        b.wait_for(lambda: "peer silent for the tolerance" in b.log(), timeout=10,
                   what="silent-peer reason")
    finally:
        for n in nodes:
            n.stop()

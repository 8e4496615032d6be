"""Communication groups through real tipcd daemons on 127.0.0.1 with tipcpy.socket
clients: TIPC_GROUP_JOIN/LEAVE with the kernel's struct, member events as the kernel
delivers them, the four sends across two daemons, a sender blocked by a slow member,
bad input; `tipc socket list` and `tipc events group` show the group."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

from tipcpy import aio
from tipcpy import socket as ts

from .conftest import REPO, _cmd
from .sockhelp import Daemon, assert_silent, module_pair, wait_for

GT = 42420
EVTS = ts.TIPC_GROUP_MEMBER_EVTS


pair = module_pair("grp")


_gt = [GT]


def gtype() -> int:
    """A fresh group type per test (the daemons are shared by the module)."""
    _gt[0] += 1
    return _gt[0]


def member(d: Daemon, typ: int, inst: int, flags: int = EVTS, scope: int = 2) -> ts.socket:
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=d.rd)
    s.settimeout(10)
    s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN, struct.pack("=IIII", typ, inst, scope, flags))
    return s


def events(s: ts.socket, n: int, timeout: float = 15.0) -> list[tuple[bytes, int, Any]]:
    """The next ``n`` messages/events: (data, msg_flags, address)."""
    out = []
    end = time.monotonic() + timeout
    while len(out) < n:
        s.settimeout(max(0.01, end - time.monotonic()))
        data, _anc, flags, addr = s.recvmsg(70000)
        out.append((data, flags, addr))
    s.settimeout(10)
    return out


def sockid(s: ts.socket) -> tuple[int, int]:
    a = s.getsockname()
    return (a[1], a[2])


def test_join_leave_events_like_the_kernel(pair: tuple[Daemon, Daemon]) -> None:
    """A member sees another join (empty message, MSG_OOB, its socket address and
    {type, instance}) and leave (MSG_OOB|MSG_EOR); getsockopt(TIPC_GROUP_JOIN) gives
    the type; the binding shows in `tipc socket list` with the group."""
    a, b = pair
    t = gtype()
    x = member(a, t, 1)
    assert x.getsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN) == t
    y = member(b, t, 2)
    ((data, flags, addr),) = events(x, 1)
    assert data == b"" and flags & ts.MSG_OOB and not flags & ts.MSG_EOR
    assert (addr[1], addr[2]) == sockid(y) and addr[0] == ts.TIPC_ADDR_ID
    assert addr.member == (ts.TIPC_ADDR_NAME, t, 2, 0, 0)
    ((data, flags, addr),) = events(y, 1)
    assert flags & ts.MSG_OOB and addr.member[1:3] == (t, 1)
    out = subprocess.run(_cmd("tipc") + ["socket", "list"], capture_output=True, text=True,
                         env={**os.environ, "TIPCPY_RUN_DIR": b.rd, "PYTHONPATH": str(REPO)},
                         timeout=30)
    port = sockid(y)[1]
    block = out.stdout.split(f"socket {port}\n")[1].split("socket ")[0]
    assert f"bound to {{{t},2,2}}" in block and f"group {{{t},2}}" in block, out.stdout
    y.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_LEAVE, 0)
    ((data, flags, addr),) = events(x, 1)
    assert data == b"" and flags & ts.MSG_OOB and flags & ts.MSG_EOR
    assert (addr[1], addr[2]) == sockid(y)
    assert y.getsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN) == 0
    x.close()
    y.close()


def test_four_sends_across_two_daemons(pair: tuple[Daemon, Daemon]) -> None:
    """Broadcast (send without address), unicast (socket address), anycast (service
    address) and multicast (range: members with instance == lower) from a member on
    one daemon to members on the other; recvfrom's address is the sender's."""
    a, b = pair
    t = gtype()
    s = member(a, t, 1, flags=0)
    r1, r2 = member(b, t, 7, flags=0), member(b, t, 8, flags=0)
    r3 = member(a, t, 7, flags=0)
    time.sleep(0.5)  # JOIN/ADV exchange
    s.send(b"bcast")
    s.sendto(b"ucast", (ts.TIPC_ADDR_ID, sockid(r2)[0], sockid(r2)[1], 0))
    s.sendto(b"any8", (ts.TIPC_ADDR_NAME, t, 8, 0))
    s.sendto(b"mcast7", (ts.TIPC_ADDR_NAMESEQ, t, 7, 7))
    got: dict[int, list[bytes]] = {}
    for r, n in ((r1, 2), (r2, 3), (r3, 2)):
        for data, _f, addr in events(r, n):
            assert (addr[1], addr[2]) == sockid(s) and addr.member[1:3] == (t, 1)
            got.setdefault(id(r), []).append(data)
    assert got[id(r1)] == [b"bcast", b"mcast7"]
    assert got[id(r2)] == [b"bcast", b"ucast", b"any8"]
    assert got[id(r3)] == [b"bcast", b"mcast7"]
    for r in (r1, r2, r3):
        assert_silent(r, 0.3)
    for x in (s, r1, r2, r3):
        x.close()


def test_slow_member_blocks_the_sender_no_loss(pair: tuple[Daemon, Daemon]) -> None:
    """A member that does not read: the sender's blocking sends stop (time out), a
    non-blocking send gets EAGAIN; when the member reads, all arrive once, in order."""
    a, b = pair
    t = gtype()
    s = member(a, t, 1, flags=0)
    r = member(b, t, 2, flags=0)
    time.sleep(0.5)
    dst = (ts.TIPC_ADDR_ID, sockid(r)[0], sockid(r)[1], 0)
    s.settimeout(2.0)
    sent = 0
    with pytest.raises((TimeoutError, BlockingIOError)):
        for i in range(20000):
            s.sendto(struct.pack("!I", i) + bytes(1000), dst)
            sent += 1
    assert sent < 20000
    s.setblocking(False)
    with pytest.raises(BlockingIOError) as e:
        s.sendto(struct.pack("!I", sent) + bytes(1000), dst)
    assert e.value.errno == errno.EAGAIN
    # what the blocked send wrote may still be delivered: it was handed to tipcd
    got = []
    r.settimeout(5)
    while True:
        try:
            data = r.recv(2000)
        except TimeoutError:
            break
        got.append(struct.unpack("!I", data[:4])[0])
        r.settimeout(1.0)
    assert got == list(range(len(got))) and sent <= len(got) <= sent + 1
    s.setblocking(True)
    s.settimeout(10)
    for i in range(len(got), len(got) + 50):
        s.sendto(struct.pack("!I", i) + bytes(1000), dst)
    more = [struct.unpack("!I", r.recv(2000)[:4])[0] for _ in range(50)]
    assert more == list(range(len(got), len(got) + 50))
    s.close()
    r.close()


def test_bad_input_errnos(pair: tuple[Daemon, Daemon]) -> None:
    """Reserved type EACCES, scope 7 EINVAL, short struct EINVAL, leave without join
    EINVAL, a second join EACCES, bind on a member EACCES; the socket still works."""
    a, _ = pair
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=a.rd)
    for raw, err in ((struct.pack("=IIII", 5, 1, 2, 0), errno.EACCES),
                     (struct.pack("=IIII", GT, 1, 7, 0), errno.EINVAL),
                     (struct.pack("=II", GT, 1), errno.EINVAL)):
        with pytest.raises(OSError) as e:
            s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN, raw)
        assert e.value.errno == err
    with pytest.raises(OSError) as e:
        s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_LEAVE, 0)
    assert e.value.errno == errno.EINVAL
    t = gtype()
    s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN, struct.pack("=IIII", t, 0xFFFFFFFF, 2, 0))
    with pytest.raises(OSError) as e:
        s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN, struct.pack("=IIII", t, 1, 2, 0))
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        s.bind((ts.TIPC_ADDR_NAME, 50000, 1, 0))
    assert e.value.errno == errno.EACCES
    s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_LEAVE, 0)
    s.bind((ts.TIPC_ADDR_NAME, 50000, 1, 0))
    s.sendto(b"ok", (ts.TIPC_ADDR_NAME, 50000, 1, 0))
    s.settimeout(5)
    assert s.recv(10) == b"ok"
    s.close()


def test_asyncio_join_events_and_sends(pair: tuple[Daemon, Daemon]) -> None:
    """tipcpy.aio: join, the member-event iterator, the four sends."""
    a, b = pair
    t = gtype()

    async def main() -> tuple[list[Any], list[bytes]]:
        x = await aio.join_group(t, 1, run_dir=a.rd)
        y = await aio.join_group(t, 2, run_dir=b.rd)
        evs = []
        async for ev in x.member_events():
            evs.append(ev)
            break
        async for ev in y.member_events():
            evs.append(ev)
            break
        await asyncio.sleep(0.3)
        await x.send_bcast(b"b")
        await x.send_unicast(y.getsockname(), b"u")
        await x.send_anycast(2, b"a")
        await x.send_mcast(2, 2, b"m")
        got = [(await y.recv_group()).data for _ in range(4)]
        y.close()
        async for ev in x.member_events():
            evs.append(ev)
            break
        x.close()
        return evs, got

    evs, got = asyncio.run(asyncio.wait_for(main(), 30))
    assert [(e.joined, e.type, e.instance) for e in evs] == [
        (True, t, 2), (True, t, 1), (False, t, 2)]
    assert got == [b"b", b"u", b"a", b"m"]


def test_tipc_events_group_watches_membership(pair: tuple[Daemon, Daemon]) -> None:
    """`tipc -j events group TYPE` prints a JSON line per member joining and leaving,
    the ones already there first."""
    a, b = pair
    t = gtype()
    x = member(a, t, 3)
    env = {**os.environ, "TIPCPY_RUN_DIR": b.rd, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cmd("tipc") + ["-j", "events", "group", str(t)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["what"] == "member" and first["event"] == "join"
        assert (first["type"], first["instance"], first["port"]) == (t, 3, sockid(x)[1])
        y = member(b, t, 4)
        second = json.loads(proc.stdout.readline())
        assert (second["event"], second["instance"]) == ("join", 4)
        y.close()
        third = json.loads(proc.stdout.readline())
        assert (third["event"], third["instance"]) == ("leave", 4)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    x.close()
    wait_for(lambda: True)


def _man_blocks() -> tuple[str, str]:
    """The group example program of tipcpy(7) EXAMPLES and the output it documents."""
    src = (REPO / "man" / "tipcpy.7").read_text()
    ex = src.split(".SH EXAMPLES", 1)[1]
    blocks = [b.split("\n.fi", 1)[0] for b in ex.split(".nf\n")[1:]]
    i = next(k for k, b in enumerate(blocks) if "TIPC_GROUP_JOIN, req)" in b)

    def unroff(t: str) -> str:
        return t.replace("\\-", "-").replace("\\e", "\\").replace("\\(aq", "'")

    return unroff(blocks[i]), unroff(blocks[i + 1])


def test_manpage_group_example_prints_what_it_says(pair: tuple[Daemon, Daemon]) -> None:
    """The example program in tipcpy(7) runs against a real tipcd and prints exactly
    the output the page shows."""
    a, _ = pair
    prog, want = _man_blocks()
    assert "a.send(b\"to all\")" in prog and "member {4711, 2} joined" in want
    r = subprocess.run([sys.executable,
                        "-c", prog], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TIPCPY_RUN_DIR": a.rd, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == want.strip().splitlines()


def test_asyncio_sender_throttled_by_slow_member(pair: tuple[Daemon, Daemon]) -> None:
    """An asyncio member broadcasting to a member that does not read is held back
    (its send task does not finish) without blocking the event loop; when the member
    reads, every message arrives once and in order."""
    a, b = pair
    t = gtype()
    n = 3000

    async def main() -> tuple[bool, int, list[int]]:
        r = await aio.join_group(t, 2, flags=0, run_dir=b.rd)
        s = await aio.join_group(t, 1, run_dir=a.rd)
        async for ev in s.member_events():
            assert ev.joined
            break

        async def sender() -> None:
            for i in range(n):
                await s.send_bcast(struct.pack("!I", i) + bytes(1000))

        task = asyncio.create_task(sender())
        ticks = 0
        for _ in range(20):  # the loop keeps running while the sender is held
            await asyncio.sleep(0.05)
            ticks += 1
        held = not task.done()
        got = []
        while len(got) < n:
            m = await asyncio.wait_for(r.recv_group(), 20)
            got.append(struct.unpack("!I", m.data[:4])[0])
        await asyncio.wait_for(task, 20)
        s.close()
        r.close()
        return held, ticks, got

    held, ticks, got = asyncio.run(asyncio.wait_for(main(), 90))
    assert held, "3000 broadcasts of 1 KB went out although the member read nothing"
    assert ticks == 20
    assert got == list(range(n))

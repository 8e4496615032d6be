"""Interop: communication groups between a tipcpy node and a real Linux 6.1 kernel node.

Kernel side: `tipc-peer group TYPE INST SECS` (a member that prints MEMBER JOIN/LEAVE
and echoes every group message to its sender by group unicast) and `tipc-peer gsend
bcast|anycast|mcast|unicast TYPE INST MSG [ms [n]]` (joins, waits for n members, sends
once, counts the echoes), `tipc-peer mcast` for a plain multicast to our bindings.
Our side: tipcpy.socket members in threads of this process, on a tipcd inside the
guest's network namespace.
"""

from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.interop.conftest import NsNode, linked_node
from tests.interop.kpeer import GUEST_HASH, KernelPeer
from tipcpy import socket as ts

pytestmark = pytest.mark.interop

OUR_ID = "tipcpyg"
GT = 6100  # group types used here: 6100..6199


@pytest.fixture(scope="module")
def _kp(_kernels: Any) -> KernelPeer:
    """The unicast-mode guest (shared with the other interop files)."""
    kp: KernelPeer = _kernels.get({"KP_REMOTE": "10.77.0.1"})
    return kp


@pytest.fixture
def kernel_unicast(_kp: KernelPeer) -> KernelPeer:
    return _kp


@pytest.fixture(scope="module")
def node(_kp: KernelPeer) -> Iterator[NsNode]:
    """One tipcd for the whole file (each test uses its own group type): linking to
    the guest costs seconds, the CI budget of this file is ~90 s."""
    n = linked_node(_kp, OUR_ID, retry=True)
    try:
        yield n
    finally:
        n.stop()


class EchoMember:
    """A group member on our node: records member events, echoes every message back to
    its sender by group unicast (what `tipc-peer group` does on the kernel side)."""

    def __init__(self, run_dir: str, typ: int, inst: int, echo: bool = True) -> None:
        self.s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=run_dir)
        self.s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN,
                          struct.pack("=IIII", typ, inst, ts.TIPC_CLUSTER_SCOPE,
                                      ts.TIPC_GROUP_MEMBER_EVTS))
        self.events: list[tuple[str, int, int, int]] = []  # (JOIN|LEAVE, node, port, inst)
        self.msgs: list[tuple[bytes, int, int]] = []
        self.echo = echo
        self.errors: list[BaseException] = []
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        s = self.s
        s.settimeout(0.2)
        while not self._stop:
            try:
                data, _anc, flags, addr = s.recvmsg(70000)
            except TimeoutError:
                continue
            except OSError as e:
                if not self._stop:
                    self.errors.append(e)
                return
            if flags & ts.MSG_OOB:
                kind = "LEAVE" if flags & ts.MSG_EOR else "JOIN"
                self.events.append((kind, addr[1], addr[2], addr.member[2]))
                continue
            self.msgs.append((data, addr[1], addr[2]))
            if self.echo:
                try:
                    s.settimeout(10)
                    s.sendto(data, addr)
                except OSError as e:
                    self.errors.append(e)
                finally:
                    s.settimeout(0.2)

    def addr(self) -> tuple[int, int]:
        a = self.s.getsockname()
        return a[1], a[2]

    def close(self) -> None:
        self._stop = True
        self.t.join(5)
        self.s.close()


def _wait(pred: Any, timeout: float = 15.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _bg(kp: KernelPeer, cmd: str, log: str) -> None:
    rc, out = kp.exec(f"{cmd} > {log} 2>&1 &")
    assert rc == 0, out


def _kernel_member_and_ours(kp: KernelPeer, node: NsNode, typ: int, secs: int, log: str
                            ) -> EchoMember:
    """A kernel member {typ,1} living ``secs`` s (logging to ``log``), joined before our
    non-echoing member {typ,2} joins."""
    _bg(kp, f"tipc-peer group {typ} 1 {secs}", log)
    kp.wait_for(f"cat {log}", lambda o: "joined group" in o, timeout=10)
    return EchoMember(str(node.run_dir), typ, 2, echo=False)


def test_kernel_member_and_ours_see_each_other_and_echo(node: NsNode, kernel_unicast: KernelPeer
                                                        ) -> None:
    """The kernel's member and ours see each other's JOIN; our broadcast, anycast,
    multicast and unicast reach the kernel's member and its echoes come back to us;
    our leave and the kernel member's exit are each seen as LEAVE on the other side."""
    kp = kernel_unicast
    typ = GT + 1
    log = "/tmp/grp1.log"
    m = _kernel_member_and_ours(kp, node, typ, 8, log)
    try:
        _wait(lambda: any(e[0] == "JOIN" for e in m.events), what="the kernel member's JOIN")
        (_, knode, kport, kinst) = m.events[0]
        assert (knode, kinst) == (GUEST_HASH, 1)
        my_node, my_port = m.addr()
        kp.wait_for(f"cat {log}", lambda o: f"MEMBER JOIN <node=0x{my_node:08x} port={my_port}>"
                    f" instance=2" in o)
        time.sleep(0.3)
        s = m.s
        s.settimeout(10)
        s.send(b"g-bcast")
        s.sendto(b"g-anycast", (ts.TIPC_ADDR_NAME, typ, 1, 0))
        s.sendto(b"g-mcast", (ts.TIPC_ADDR_NAMESEQ, typ, 1, 0xFFFFFFFF))
        s.sendto(b"g-unicast", (ts.TIPC_ADDR_ID, knode, kport, 0))
        _wait(lambda: len(m.msgs) >= 4, what="4 echoes from the kernel member")
        assert [d for d, _, _ in m.msgs] == [b"g-bcast", b"g-anycast", b"g-mcast", b"g-unicast"]
        assert all((n, p) == (knode, kport) for _, n, p in m.msgs)
        out = kp.wait_for(f"cat {log}", lambda o: o.count("GROUP rx") >= 4)
        assert "instance=2: \"g-bcast\"" in out
        m.s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_LEAVE, 0)
        kp.wait_for(f"cat {log}", lambda o: f"MEMBER LEAVE <node=0x{my_node:08x} "
                    f"port={my_port}>" in o)
        # join again and wait for the kernel member to end: its LEAVE reaches us
        m.s.setsockopt(ts.SOL_TIPC, ts.TIPC_GROUP_JOIN,
                       struct.pack("=IIII", typ, 3, 2, ts.TIPC_GROUP_MEMBER_EVTS))
        _wait(lambda: [e[0] for e in m.events].count("JOIN") >= 2, what="JOIN after rejoin")
        _wait(lambda: any(e[0] == "LEAVE" for e in m.events), timeout=20,
              what="the kernel member's LEAVE")
        assert [e for e in m.events if e[0] == "LEAVE"][0][1:] == (knode, kport, 1)
        assert not m.errors
    finally:
        m.close()


@pytest.mark.parametrize("mode", ["bcast", "anycast", "mcast", "unicast"])
def test_kernel_gsend_reaches_our_members(node: NsNode, kernel_unicast: KernelPeer,
                                          mode: str) -> None:
    """`tipc-peer gsend MODE` from the kernel reaches our members (two, both instance
    5) and their echoes go back: RESULT OK (two echoes for bcast/mcast, one for
    anycast/unicast)."""
    kp = kernel_unicast
    typ = GT + 10 + ["bcast", "anycast", "mcast", "unicast"].index(mode)
    a = EchoMember(str(node.run_dir), typ, 5)
    b = EchoMember(str(node.run_dir), typ, 5)
    try:
        rc, out = kp.exec(f"tipc-peer gsend {mode} {typ} 9 hello-{mode} 8000 2", timeout=20)
        assert rc == 0 and "RESULT OK" in out, out
        want = 2 if mode in ("bcast", "mcast") else 1
        got = [d for m in (a, b) for d, _, _ in m.msgs]
        assert got == [f"hello-{mode}".encode()] * want, got
        for m in (a, b):
            assert any(e[0] == "JOIN" and e[1] == GUEST_HASH and e[3] == 9 for e in m.events)
            assert not m.errors
        # the kernel member left when gsend ended
        _wait(lambda: all(any(e[0] == "LEAVE" and e[3] == 9 for e in m.events)
                          for m in (a, b)), what="LEAVE of the kernel's gsend member")
    finally:
        a.close()
        b.close()


def test_kernel_multicast_once_per_socket(node: NsNode, kernel_unicast: KernelPeer) -> None:
    """A kernel multicast (`tipc-peer mcast`) to ranges bound on our node arrives once
    per socket, also at a socket bound to two overlapping ranges; every socket echoes,
    so the kernel counts one reply per socket."""
    kp = kernel_unicast
    typ = GT + 50
    rd = str(node.run_dir)
    socks = [ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=rd) for _ in range(3)]
    got: list[list[bytes]] = [[], [], []]
    stop = threading.Event()

    def echo(i: int) -> None:
        s = socks[i]
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(100)
            except TimeoutError:
                continue
            except OSError:
                return
            got[i].append(data)
            s.sendto(data, addr)

    threads = [threading.Thread(target=echo, args=(i,), daemon=True) for i in range(3)]
    try:
        socks[0].bind((ts.TIPC_ADDR_NAMESEQ, typ, 1, 10))
        socks[0].bind((ts.TIPC_ADDR_NAMESEQ, typ, 5, 20))
        socks[1].bind((ts.TIPC_ADDR_NAMESEQ, typ, 8, 8))
        socks[2].bind((ts.TIPC_ADDR_NAMESEQ, typ, 30, 40))  # outside the range sent to
        for t in threads:
            t.start()
        kp.wait_for("tipc nametable show", lambda o: len(re.findall(rf"^{typ}\s", o, re.M)) >= 4)
        rc, out = kp.exec(f"tipc-peer mcast {typ} 2 9 mc-hello 2000", timeout=15)
        assert rc == 0 and "RESULT OK: 2 replies" in out, out
        time.sleep(0.3)
        assert got == [[b"mc-hello"], [b"mc-hello"], []]
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        for s in socks:
            s.close()


def test_our_node_going_away_is_a_leave_for_the_kernel(node: NsNode,
                                                       kernel_unicast: KernelPeer) -> None:
    """Our member's node dies (tipcd killed, no LEAVE sent): the kernel member sees it
    leave when the link fails. Runs last in the file: it ends the module's node."""
    kp = kernel_unicast
    typ = GT + 60
    log = "/tmp/grp9.log"
    m = _kernel_member_and_ours(kp, node, typ, 12, log)
    my_node, my_port = m.addr()
    try:
        kp.wait_for(f"cat {log}", lambda o: f"MEMBER JOIN <node=0x{my_node:08x} "
                    f"port={my_port}>" in o)
        node.proc.kill()  # SIGKILL: no polite LEAVE, no bearer disable
        node.proc.wait(10)
        out = kp.wait_for(f"cat {log}", lambda o: f"MEMBER LEAVE <node=0x{my_node:08x} "
                          f"port={my_port}>" in o, timeout=15)
        assert out.count("MEMBER LEAVE") == 1
    finally:
        m._stop = True
        m.s.close()

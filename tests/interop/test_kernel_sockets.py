"""Interop: applications on a tipcpy node talk to applications on a real Linux 6.1
kernel node, by service name, with every socket type; bindings and topology events
cross in both directions.

Kernel side: the guest's `tipc-peer` echo services {1000,1} RDM, {1001,1} STREAM,
{1002,1} SEQPACKET, and `tipc-peer send|stream|seqpkt|mcast|sub` as clients.
Our side: tipcpy.socket / tipcpy.aio clients and servers in this process, talking to a
tipcd that runs inside the guest's network namespace.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator

import pytest

import tipcpy.aio as aio
from tests.interop.conftest import NsNode, kernel_echoes, linked_node
from tests.interop.kpeer import GUEST_HASH, KernelPeer
from tipcpy import socket as tsock
from tipcpy.addr import hash128to32, node_id_from_str

pytestmark = pytest.mark.interop

OUR_ID = "tipcpy2"
SVC = 5000  # our echo services: RDM {5000,1}, STREAM {5001,1}, SEQPACKET {5002,1}


@pytest.fixture
def node(kernel_unicast: KernelPeer) -> Iterator[NsNode]:
    n = linked_node(kernel_unicast, OUR_ID)
    try:
        yield n
    finally:
        n.stop()


def _pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize("size", [1, 5000, 40000])
def test_our_clients_get_kernel_echoes(node: NsNode, size: int) -> None:
    addr, peers = kernel_echoes(str(node.run_dir), _pattern(size), 10)
    assert addr[0] == tsock.TIPC_ADDR_ID and addr[1] == GUEST_HASH  # (type, node, ref, ...)
    assert peers == [GUEST_HASH, GUEST_HASH]


class EchoServers:
    """RDM, STREAM and SEQPACKET echo services on our node, in threads of this process."""

    def __init__(self, run_dir: str) -> None:
        self.rd = run_dir
        self.socks: list[tsock.socket] = []
        self.errors: list[BaseException] = []
        rdm = self._sock(tsock.SOCK_RDM, SVC)
        threading.Thread(target=self._rdm, args=(rdm,), daemon=True).start()
        for sotype, svc in ((tsock.SOCK_STREAM, SVC + 1), (tsock.SOCK_SEQPACKET, SVC + 2)):
            lst = self._sock(sotype, svc)
            lst.listen(8)
            threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def _sock(self, sotype: int, svc: int) -> tsock.socket:
        s = tsock.socket(tsock.AF_TIPC, sotype, run_dir=self.rd)
        s.bind((tsock.TIPC_ADDR_NAMESEQ, svc, 1, 1))
        self.socks.append(s)
        return s

    def _rdm(self, s: tsock.socket) -> None:
        try:
            while True:
                data, addr = s.recvfrom(70000)
                s.sendto(data, addr)
        except OSError:
            pass

    def _accept(self, lst: tsock.socket) -> None:
        try:
            while True:
                c, _ = lst.accept()
                self.socks.append(c)
                threading.Thread(target=self._echo, args=(c,), daemon=True).start()
        except OSError:
            pass

    def _echo(self, c: tsock.socket) -> None:
        try:
            while True:
                d = c.recv(70000)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        for s in self.socks:
            s.close()


def kernel_clients_get_echoes(kp: KernelPeer, ident: str, cmds: tuple[str, ...]) -> None:
    """Once the guest lists EchoServers' three bindings on our node ``ident``, each
    `tipc-peer CMD` client there must end with RESULT OK."""
    kp.wait_for("tipc nametable show",
                lambda out: all(re.search(rf"^{t}\s+1\s+1\s+cluster\s+\d+\s+{ident}",
                                          out, re.M) for t in (SVC, SVC + 1, SVC + 2)),
                timeout=10)
    for cmd in cmds:
        rc, out = kp.exec(f"tipc-peer {cmd}", timeout=30)
        assert rc == 0 and "RESULT OK" in out, f"tipc-peer {cmd}:\n{out}"


def test_kernel_clients_get_our_echoes(kernel_unicast: KernelPeer, node: NsNode) -> None:
    kp = kernel_unicast
    servers = EchoServers(str(node.run_dir))
    try:
        ours = node.tipc("nametable", "show").stdout
        for t in (SVC, SVC + 1, SVC + 2):
            assert re.search(rf"^{t}\s+1\s+1\s+cluster\s+\d+\s+{OUR_ID}", ours, re.M), ours
        # the kernel's own table lists the bindings made on our node
        kernel_clients_get_echoes(kp, OUR_ID, (
            f"send {SVC} 1 hello", f"stream {SVC + 1} 1 hello", f"seqpkt {SVC + 2} 1 hello",
            f"send {SVC} 1 @5000", f"stream {SVC + 1} 1 @40000", f"seqpkt {SVC + 2} 1 @40000",
            f"send {SVC} 1 @40000", f"mcast {SVC} 0 10 hi"))
    finally:
        servers.close()


async def _collect(run_dir: str, type_: int, want: int, timeout: float) -> list[aio.TopologyEvent]:
    got: list[aio.TopologyEvent] = []

    async def run() -> None:
        async for ev in aio.subscribe(type_, 0, 0xFFFFFFFF, run_dir=run_dir):
            got.append(ev)
            if len(got) >= want:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        pass
    return got


def test_topology_both_ways_and_kernel_withdrawal(kernel_unicast: KernelPeer,
                                                    node: NsNode) -> None:
    kp = kernel_unicast
    rd = str(node.run_dir)
    servers = EchoServers(rd)
    try:
        # The kernel's subscriber sees our binding (reported at subscribe time).
        rc, out = kp.exec(f"tipc-peer sub {SVC} 0 10 2", timeout=20)
        our_hash = hash128to32(node_id_from_str(OUR_ID))
        assert re.search(rf"PUBLISHED.*node=0x{our_hash:08x}", out), out

        # Our subscriber sees the kernel's {1000,1,1}, then its withdrawal when the
        # kernel's server dies; the binding leaves our table.
        result: list[aio.TopologyEvent] = []

        def subscriber() -> None:
            result.extend(asyncio.run(_collect(rd, 1000, 2, 20.0)))

        t = threading.Thread(target=subscriber)
        t.start()
        end = time.monotonic() + 10
        while time.monotonic() < end and not result:
            time.sleep(0.1)
        kp.exec("kill $(pidof tipc-peer)")
        t.join(25)
        names = [(e.event, e.found_lower, e.node) for e in result]
        assert (tsock.TIPC_PUBLISHED, 1, GUEST_HASH) in names, names
        assert (tsock.TIPC_WITHDRAWN, 1, GUEST_HASH) in names, names
        table = node.tipc("nametable", "show").stdout
        assert not re.search(r"^100[012]\s", table, re.M), table
    finally:
        servers.close()
        # bring the kernel's echo services back for whoever runs next
        kp.exec("tipc-peer server 1000 1 >/dev/null 2>&1 &")

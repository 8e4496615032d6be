"""The embedded node (tipcpy/node.py): two of them in one asyncio loop over UDP on
127.0.0.1, one beside a real tipcd, one serving its run dir to `tipcpy.socket` clients
and the `tipc` command, and a clean shutdown.  Every test is bounded in time and closes
what it opened (the nodes' sockets are closed by ``async with``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import tipcpy.aio as aio
from tipcpy import socket as ts
from tipcpy.node import Node, NodeSocket

from .conftest import REPO, _cmd, free_udp_port
from .sockhelp import bearer

pytestmark = pytest.mark.timeout(120)

SVC = 18888


async def until(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
                ) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def links_up(node: Node) -> int:
    return sum(1 for lk in node.control_op("link.list")
               if lk.get("up") and lk.get("name") != "broadcast-link")


def bound(node: Node, typ: int) -> list[dict[str, Any]]:
    return [b for b in node.control_op("nametable.show") if b["type"] == typ]


@contextlib.asynccontextmanager
async def two_nodes(**kw: Any) -> AsyncIterator[tuple[Node, Node]]:
    pa, pb = free_udp_port(), free_udp_port()
    async with Node(identity="emb1", bearers=[bearer(pa, pb)], **kw) as n1, \
            Node(identity="emb2", bearers=[bearer(pb, pa)], **kw) as n2:
        await until(lambda: links_up(n1) == 1 and links_up(n2) == 1, what="link up")
        yield n1, n2


async def wait_bound(node: Node, typ: int, count: int = 1) -> None:
    await until(lambda: len(bound(node, typ)) >= count, what=f"binding of {typ}")


async def serving(n2: Node, n1: Node, sotype: int, listen: bool = False) -> NodeSocket:
    """A socket on ``n2`` bound to {SVC, 1} (listening if ``listen``), once ``n1``
    sees the binding."""
    s = n2.socket(sotype)
    s.bind((ts.TIPC_ADDR_NAME, SVC, 1, 0))
    if listen:
        s.listen()
    await wait_bound(n1, SVC)
    return s


# ------------------------------------------------------------------ connectionless
def test_rdm_and_dgram_between_embedded_nodes() -> None:
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            assert n1.address and n2.address and n1.address != n2.address
            for sotype in (ts.SOCK_RDM, ts.SOCK_DGRAM):
                srv = n2.socket(sotype)
                srv.bind((ts.TIPC_ADDR_NAMESEQ, SVC, 0, 99))
                await wait_bound(n1, SVC)
                cli = n1.socket(sotype)
                await cli.sendto(b"ping", (ts.TIPC_ADDR_NAME, SVC, 17, 0))
                data, addr = await asyncio.wait_for(srv.recvfrom(), 10)
                assert data == b"ping"
                assert addr == cli.getsockname()
                assert addr[1] == n1.address
                await srv.sendto(b"pong" * 300, addr)
                data, addr2 = await asyncio.wait_for(cli.recvfrom(), 10)
                assert data == b"pong" * 300
                assert addr2 == srv.getsockname()
                # truncation as the kernel: the rest of the datagram is dropped
                await srv.sendto(b"0123456789", addr)
                data, _ = await asyncio.wait_for(cli.recvfrom(4), 10)
                assert data == b"0123"
                # a burst keeps order and loses nothing
                for i in range(2000):
                    await cli.sendto(struct.pack("!I", i) + bytes(96),
                                     (ts.TIPC_ADDR_NAME, SVC, 5, 0))
                got = [struct.unpack_from("!I", (await asyncio.wait_for(srv.recv(), 10)))[0]
                       for _ in range(2000)]
                assert got == list(range(2000))
                srv.close()
                cli.close()
                await until(lambda: not bound(n1, SVC), what="withdrawal")

    asyncio.run(main())


def test_multicast_and_unreachable() -> None:
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            a, b = n2.socket(ts.SOCK_RDM), n2.socket(ts.SOCK_RDM)
            a.bind((ts.TIPC_ADDR_NAMESEQ, SVC, 0, 9))
            b.bind((ts.TIPC_ADDR_NAMESEQ, SVC, 10, 19))
            local = n1.socket(ts.SOCK_RDM)
            local.bind((ts.TIPC_ADDR_NAMESEQ, SVC, 5, 5))
            await wait_bound(n1, SVC, 3)
            cli = n1.socket(ts.SOCK_RDM)
            await cli.sendto(b"all", (ts.TIPC_ADDR_NAMESEQ, SVC, 0, 19))
            for s in (a, b, local):
                data, addr = await asyncio.wait_for(s.recvfrom(), 10)
                assert (data, addr) == (b"all", cli.getsockname())
            # the kernel's synchronous error, not a pipelined one
            with pytest.raises(OSError) as ei:
                await cli.sendto(b"x", (ts.TIPC_ADDR_NAME, SVC + 1, 1, 0))
            assert ei.value.errno == errno.EHOSTUNREACH
            with pytest.raises(OSError) as ei:
                await cli.send(b"x")
            assert ei.value.errno == errno.EDESTADDRREQ
            # connect() on RDM: default destination
            await cli.connect((ts.TIPC_ADDR_NAME, SVC, 15, 0))
            await cli.send(b"default")
            assert await asyncio.wait_for(b.recv(), 10) == b"default"

    asyncio.run(main())


def test_returned_message_and_options() -> None:
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            srv = await serving(n2, n1, ts.SOCK_RDM)
            cli = n1.socket(ts.SOCK_RDM)
            cli.setsockopt(ts.SOL_TIPC, ts.TIPC_DEST_DROPPABLE, 0)
            assert cli.getsockopt(ts.SOL_TIPC, ts.TIPC_DEST_DROPPABLE) == 0
            cli.setsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE, ts.TIPC_HIGH_IMPORTANCE)
            assert cli.getsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE) == ts.TIPC_HIGH_IMPORTANCE
            with pytest.raises(OSError):
                cli.setsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE, 9)
            dead = srv.getsockname()
            srv.close()
            await until(lambda: not bound(n1, SVC), what="withdrawal")
            await cli.sendto(b"lost", dead)         # to a port that no longer exists
            data, anc, _flags, addr = await asyncio.wait_for(cli.recvmsg(100, 1024), 10)
            assert data == b""
            kinds = {k: v for _lvl, k, v in anc}
            err, dlen = struct.unpack("=II", kinds[ts.TIPC_ERRINFO])
            assert err == ts.TIPC_ERR_NO_PORT and dlen == 4
            assert kinds[ts.TIPC_RETDATA] == b"lost"
            # receive-queue accounting sees what was read
            r = n1.socket(ts.SOCK_RDM)
            for _ in range(3):
                await cli.sendto(b"q", r.getsockname())
            await until(lambda: r.pending() == 3, what="3 queued")
            assert r.getsockopt(ts.SOL_TIPC, ts.TIPC_SOCK_RECVQ_DEPTH) == 3
            await r.recv()
            assert r.getsockopt(ts.SOL_TIPC, ts.TIPC_SOCK_RECVQ_DEPTH) == 2

    asyncio.run(main())


def test_answer_leaves_in_the_same_loop_iteration() -> None:
    """An answer sent right after a receive is on the wire when ``sendto`` returns (no
    extra loop iteration per hop); later sends of the same iteration are flushed
    together on the next one."""
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            srv = await serving(n2, n1, ts.SOCK_RDM)
            cli = n1.socket(ts.SOCK_RDM)
            assert n2.runtime is not None
            tx = n2.runtime.counters
            for _ in range(20):
                await cli.sendto(b"ping", (ts.TIPC_ADDR_NAME, SVC, 1, 0))
                # (no wait_for: its task would end one loop iteration later)
                data, addr = await srv.recvfrom()
                before = tx.tx_packets
                await srv.sendto(data, addr)
                assert tx.tx_packets == before + 1          # out already
                before = tx.tx_packets
                await srv.sendto(data, addr)                # same iteration: held
                assert tx.tx_packets == before
                await asyncio.sleep(0)
                assert tx.tx_packets >= before + 1          # flushed with the next one
                for _ in range(2):
                    assert await asyncio.wait_for(cli.recv(), 10) == b"ping"

    asyncio.run(main())


def test_recv_fast_path_equals_recvfrom() -> None:
    """Twin: recv() takes a plain datagram inline; it gives what recvfrom() gives (data,
    truncation, empty messages) and leaves the same receive-queue accounting."""
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            a, b = n2.socket(ts.SOCK_RDM), n2.socket(ts.SOCK_RDM)
            a.bind((ts.TIPC_ADDR_NAME, SVC, 1, 0))
            b.bind((ts.TIPC_ADDR_NAME, SVC, 2, 0))
            await wait_bound(n1, SVC, 2)
            cli = n1.socket(ts.SOCK_RDM)
            msgs = [os.urandom(n) for n in (0, 1, 10, 100, 5000, 66000)] * 3
            for m in msgs:
                await cli.sendto(m, (ts.TIPC_ADDR_NAME, SVC, 1, 0))
                await cli.sendto(m, (ts.TIPC_ADDR_NAME, SVC, 2, 0))
            await until(lambda: a.pending() == b.pending() == len(msgs), what="queued")
            for i, m in enumerate(msgs):
                size = (4, 66000, 50)[i % 3]
                ra = await a.recv(size)
                rb = (await b.recvfrom(size))[0]
                assert ra == rb == m[:size]
                await asyncio.sleep(0)          # the credit reaches the layer
                assert (a.getsockopt(ts.SOL_TIPC, ts.TIPC_SOCK_RECVQ_USED)
                        == b.getsockopt(ts.SOL_TIPC, ts.TIPC_SOCK_RECVQ_USED))
                assert (a.getsockopt(ts.SOL_TIPC, ts.TIPC_SOCK_RECVQ_DEPTH)
                        == b.getsockopt(ts.SOL_TIPC, ts.TIPC_SOCK_RECVQ_DEPTH)
                        == len(msgs) - i - 1)

    asyncio.run(main())


# ------------------------------------------------------------------ connections
async def _echo_server(ls: NodeSocket, n: int) -> None:
    for _ in range(n):
        s, _addr = await ls.accept()
        try:
            while True:
                data = await s.recv(70000)
                if not data:
                    break
                await s.sendall(data)
        except ConnectionResetError:
            pass
        finally:
            s.close()


@pytest.mark.parametrize("sotype", [ts.SOCK_SEQPACKET, ts.SOCK_STREAM])
def test_connections_between_embedded_nodes(sotype: int) -> None:
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            ls = await serving(n2, n1, sotype, listen=True)
            server = asyncio.create_task(_echo_server(ls, 2))
            c = n1.socket(sotype)
            await asyncio.wait_for(c.connect((ts.TIPC_ADDR_NAME, SVC, 1, 0)), 10)
            assert c.getpeername()[1] == n2.address
            for size in (1, 5000, 66000):
                msg = os.urandom(size)
                await c.send(msg)
                got = b""
                while len(got) < size:
                    part = await asyncio.wait_for(c.recv(70000), 10)
                    assert part
                    got += part
                    if sotype == ts.SOCK_SEQPACKET:
                        break                       # one message = one record
                assert got == msg
            if sotype == ts.SOCK_STREAM:
                # larger than one TIPC message: split on send, read in pieces
                blob = os.urandom(200_000)
                await c.sendall(blob)
                got = b""
                while len(got) < len(blob):
                    got += await asyncio.wait_for(c.recv(7000), 10)
                assert got == blob
            c.shutdown()
            assert await asyncio.wait_for(c.recv(), 10) == b""      # our side is shut
            c.close()
            # implicit connect: sendto on an unconnected connection socket (SYN + data)
            c2 = n1.socket(sotype)
            await c2.sendto(b"syn-data", (ts.TIPC_ADDR_NAME, SVC, 1, 0))
            assert await asyncio.wait_for(c2.recv(), 10) == b"syn-data"
            c2.close()
            await asyncio.wait_for(server, 10)
            # refused: nobody bound there
            c3 = n1.socket(sotype)
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(c3.connect((ts.TIPC_ADDR_ID, n2.address, 12345, 0)),
                                       10)
            assert ei.value.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH)

    asyncio.run(main())


def test_peer_close_resets_connection() -> None:
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            ls = await serving(n2, n1, ts.SOCK_SEQPACKET, listen=True)
            c = n1.socket(ts.SOCK_SEQPACKET)
            await c.connect((ts.TIPC_ADDR_NAME, SVC, 1, 0))
            s, addr = await asyncio.wait_for(ls.accept(), 10)
            assert addr == c.getsockname()
            c.close()                        # FIN with NO_PORT, as the kernel's close()
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(s.recv(), 10)

    asyncio.run(main())


# ------------------------------------------------------------------ topology
def test_topology_subscriptions() -> None:
    async def main() -> None:
        async with two_nodes() as (n1, n2):
            events: list[aio.TopologyEvent] = []

            async def watch() -> None:
                async for ev in n1.subscribe(SVC, 0, 99):
                    events.append(ev)
                    if ev.event == ts.TIPC_WITHDRAWN:
                        return

            w = asyncio.create_task(watch())
            await asyncio.sleep(0.2)
            s = n2.socket(ts.SOCK_RDM)
            s.bind((ts.TIPC_ADDR_NAMESEQ, SVC, 10, 20))
            await until(lambda: len(events) >= 1, what="PUBLISHED")
            ev = events[0]
            assert (ev.event, ev.found_lower, ev.found_upper, ev.node, ev.port) == (
                ts.TIPC_PUBLISHED, 10, 20, n2.address, s.getsockname()[2])
            s.close()
            await asyncio.wait_for(w, 10)
            assert events[1].event == ts.TIPC_WITHDRAWN
            # node state: the peer is up; a timed subscription ends with TIMEOUT
            nodes = []
            async for ev in n1.subscribe(ts.TIPC_NODE_STATE, 0, 0xFFFFFFFF, timeout_ms=500):
                nodes.append((ev.event, ev.found_lower))
            assert (ts.TIPC_PUBLISHED, n2.address) in nodes
            assert nodes[-1][0] == ts.TIPC_SUBSCR_TIMEOUT
            # aio re-exports the same classes
            assert aio.Node is Node and aio.NodeSocket is NodeSocket

    asyncio.run(main())


# ------------------------------------------------------------------ with a tipcd
def test_embedded_node_and_tipcd(tipcd: Any) -> None:
    pe, pd = free_udp_port(), free_udp_port()
    d = tipcd("d", "--identity", "daemon1", "--bearer", bearer(pd, pe), port=pd)
    srv = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=str(d.run_dir))
    lsrv = ts.socket(ts.AF_TIPC, ts.SOCK_SEQPACKET, run_dir=str(d.run_dir))
    try:
        srv.bind((ts.TIPC_ADDR_NAME, SVC, 2, 0))
        srv.settimeout(20)
        lsrv.bind((ts.TIPC_ADDR_NAME, SVC + 1, 2, 0))
        lsrv.listen()
        lsrv.settimeout(20)

        def daemon_side() -> tuple[bytes, bytes]:
            data, addr = srv.recvfrom(100)
            srv.sendto(data.upper(), addr)
            conn, _ = lsrv.accept()
            conn.settimeout(20)
            with conn:
                m = conn.recv(100)
                conn.send(m[::-1])
            return data, m

        async def main() -> None:
            async with Node(identity="emb1", bearers=[bearer(pe, pd)]) as n:
                await until(lambda: links_up(n) == 1, what="link to tipcd")
                await wait_bound(n, SVC + 1)
                helper = asyncio.create_task(asyncio.to_thread(daemon_side))
                c = n.socket(ts.SOCK_RDM)
                await c.sendto(b"hello", (ts.TIPC_ADDR_NAME, SVC, 2, 0))
                assert await asyncio.wait_for(c.recv(), 20) == b"HELLO"
                k = n.socket(ts.SOCK_SEQPACKET)
                await asyncio.wait_for(k.connect((ts.TIPC_ADDR_NAME, SVC + 1, 2, 0)), 20)
                await k.send(b"abc")
                assert await asyncio.wait_for(k.recv(), 20) == b"cba"
                assert await asyncio.wait_for(helper, 20) == (b"hello", b"abc")
                # and the other way: the daemon's client reaches the embedded socket
                e = n.socket(ts.SOCK_RDM)
                e.bind((ts.TIPC_ADDR_NAME, SVC + 2, 7, 0))
                await until(lambda: bool(d.tipc("nametable", "show").stdout.count(
                    f"{SVC + 2}")), what="binding at the daemon")
                cl = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=str(d.run_dir))
                with cl:
                    cl.sendto(b"from-daemon", (ts.TIPC_ADDR_NAME, SVC + 2, 7, 0))
                    data, addr = await asyncio.wait_for(e.recvfrom(), 20)
                    assert data == b"from-daemon" and addr == cl.getsockname()
                # DGRAM to a socket of the daemon; STREAM from a client of the daemon to
                # an embedded listener: every socket type crosses between the two
                dg = ts.socket(ts.AF_TIPC, ts.SOCK_DGRAM, run_dir=str(d.run_dir))
                with dg:
                    dg.bind((ts.TIPC_ADDR_NAME, SVC + 3, 1, 0))
                    dg.settimeout(20)
                    await wait_bound(n, SVC + 3)
                    ed = n.socket(ts.SOCK_DGRAM)
                    await ed.sendto(b"dgram", (ts.TIPC_ADDR_NAME, SVC + 3, 1, 0))
                    data, addr = await asyncio.to_thread(dg.recvfrom, 100)
                    assert data == b"dgram" and addr == ed.getsockname()
                ls = n.socket(ts.SOCK_STREAM)
                ls.bind((ts.TIPC_ADDR_NAME, SVC + 4, 1, 0))
                ls.listen()
                server = asyncio.create_task(_echo_server(ls, 1))
                blob = os.urandom(100_000)

                def stream_client() -> bytes:
                    with ts.socket(ts.AF_TIPC, ts.SOCK_STREAM, run_dir=str(d.run_dir)) as s:
                        s.settimeout(20)
                        s.connect((ts.TIPC_ADDR_NAME, SVC + 4, 1, 0))
                        assert s.getpeername()[1] == n.address
                        s.sendall(blob)
                        got = b""
                        while len(got) < len(blob):
                            got += s.recv(65536)
                        return got

                for _ in range(200):                 # the binding reached the daemon
                    if f"{SVC + 4}" in (await asyncio.to_thread(
                            d.tipc, "nametable", "show")).stdout:
                        break
                    await asyncio.sleep(0.05)
                assert await asyncio.wait_for(asyncio.to_thread(stream_client), 30) == blob
                await asyncio.wait_for(server, 10)

        asyncio.run(main())
    finally:
        srv.close()
        lsrv.close()


# ------------------------------------------------------------------ serving a run dir
def _tipc(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIPCPY_RUN_DIR": str(run_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(_cmd("tipc") + list(args), env=env, capture_output=True,
                          text=True, timeout=30)


def test_serve_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    async def main() -> None:
        pa, pb = free_udp_port(), free_udp_port()
        async with Node(identity="emb1", bearers=[bearer(pa, pb)],
                        serve_run_dir=run_dir) as n1, \
                Node(identity="emb2", bearers=[bearer(pb, pa)]) as n2:
            assert (run_dir / "ctl.sock").exists() and (run_dir / "tipc.sock").exists()
            await until(lambda: links_up(n1) == 1, what="link up")
            # a second node cannot take the same run dir
            with pytest.raises(OSError) as ei:
                await Node(identity="emb3", serve_run_dir=run_dir).start()
            assert ei.value.errno == errno.EADDRINUSE
            # the tipc command, as against tipcd
            r = await asyncio.to_thread(_tipc, run_dir, "link", "list")
            assert r.returncode == 0, r.stderr
            assert "emb1:b0-emb2:b0: up" in r.stdout
            emb = n1.socket(ts.SOCK_RDM)
            emb.bind((ts.TIPC_ADDR_NAME, SVC, 3, 0))
            r = await asyncio.to_thread(_tipc, run_dir, "nametable", "show")
            assert any(line.split()[:3] == [str(SVC), "3", "3"]
                       for line in r.stdout.splitlines()), r.stdout
            remote = n2.socket(ts.SOCK_RDM)
            remote.bind((ts.TIPC_ADDR_NAME, SVC, 4, 0))
            await wait_bound(n1, SVC, 2)

            # a tipcpy.socket client of the run dir: to the embedded socket of the same
            # node, to the remote node, and answered by both
            def client() -> list[Any]:
                with ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=str(run_dir)) as s:
                    s.settimeout(20)
                    s.sendto(b"to-local", (ts.TIPC_ADDR_NAME, SVC, 3, 0))
                    s.sendto(b"to-remote", (ts.TIPC_ADDR_NAME, SVC, 4, 0))
                    out = [s.getsockname(), s.recvfrom(100), s.recvfrom(100)]
                return out

            task = asyncio.create_task(asyncio.to_thread(client))
            d1, a1 = await asyncio.wait_for(emb.recvfrom(), 20)
            await emb.sendto(d1.upper(), a1)
            d2, a2 = await asyncio.wait_for(remote.recvfrom(), 20)
            await remote.sendto(d2.upper(), a2)
            name, r1, r2 = await asyncio.wait_for(task, 20)
            assert (d1, d2) == (b"to-local", b"to-remote")
            assert a1 == a2 == name and name[1] == n1.address
            assert sorted([r1, r2]) == sorted([(b"TO-LOCAL", emb.getsockname()),
                                               (b"TO-REMOTE", remote.getsockname())])
            # a connection from the client to an embedded listener
            ls = n1.socket(ts.SOCK_STREAM)
            ls.bind((ts.TIPC_ADDR_NAME, SVC + 1, 1, 0))
            ls.listen()
            srv = asyncio.create_task(_echo_server(ls, 1))

            def stream_client() -> bytes:
                with ts.socket(ts.AF_TIPC, ts.SOCK_STREAM, run_dir=str(run_dir)) as s:
                    s.settimeout(20)
                    s.connect((ts.TIPC_ADDR_NAME, SVC + 1, 1, 0))
                    s.sendall(b"x" * 100_000)
                    got = b""
                    while len(got) < 100_000:
                        got += s.recv(65536)
                    return got

            assert await asyncio.wait_for(asyncio.to_thread(stream_client), 30) == \
                b"x" * 100_000
            await asyncio.wait_for(srv, 10)
        # served sockets are gone with the node
        assert not (run_dir / "ctl.sock").exists()
        assert not (run_dir / "tipc.sock").exists()

    asyncio.run(main())


# ------------------------------------------------------------------ shutdown
def test_clean_shutdown() -> None:
    async def main() -> None:
        pa, pb = free_udp_port(), free_udp_port()
        async with Node(identity="emb2", bearers=[bearer(pb, pa)]) as n2:
            n1 = await Node(identity="emb1", bearers=[bearer(pa, pb)]).start()
            await until(lambda: links_up(n1) == 1 and links_up(n2) == 1, what="link up")
            s = n1.socket(ts.SOCK_RDM)
            s.bind((ts.TIPC_ADDR_NAME, SVC, 1, 0))
            await wait_bound(n2, SVC)
            pending = asyncio.create_task(s.recv())
            await asyncio.sleep(0.05)
            t0 = asyncio.get_running_loop().time()
            await n1.aclose()
            # a polite stop: RESET with peer_stopping, the peer drops the link at once
            # (well before the 1.5 s tolerance) and withdraws the node's bindings
            await until(lambda: links_up(n2) == 0 and not bound(n2, SVC), timeout=1.0,
                        what="peer sees the node leave")
            assert asyncio.get_running_loop().time() - t0 < 1.0
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(pending, 5)
            assert ei.value.errno in (errno.EBADF, errno.ENETDOWN)
            with pytest.raises(OSError):
                n1.socket(ts.SOCK_RDM)
            await n1.aclose()                       # twice is fine
        # the UDP ports are free again
        for p in (pa, pb):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", p))
            u.close()

    asyncio.run(main())


def test_node_in_a_program_of_its_own(tmp_path: Path) -> None:
    """What the interop test does inside netns kpeer: a small program that runs an
    embedded node (here on 127.0.0.1 beside another embedded node) and exits cleanly."""
    pa, pb = free_udp_port(), free_udp_port()
    prog = tmp_path / "echo.py"
    prog.write_text(ECHO_PROGRAM)

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(prog), bearer(pa, pb), stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            async with Node(identity="emb2", bearers=[bearer(pb, pa)]) as n2:
                await until(lambda: links_up(n2) == 1, what="link up")
                await wait_bound(n2, SVC)
                c = n2.socket(ts.SOCK_RDM)
                await c.sendto(b"abc", (ts.TIPC_ADDR_NAME, SVC, 1, 0))
                assert await asyncio.wait_for(c.recv(), 10) == b"ABC"
                await c.sendto(b"quit", (ts.TIPC_ADDR_NAME, SVC, 1, 0))
                assert proc.stdout is not None
                out = await asyncio.wait_for(proc.stdout.read(), 20)
                assert await asyncio.wait_for(proc.wait(), 20) == 0
                assert b"served 2" in out
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    asyncio.run(main())


ECHO_PROGRAM = f"""
import asyncio, sys
import tipcpy.aio as aio
from tipcpy import socket as ts

async def main():
    async with aio.Node(identity="prog", bearers=[sys.argv[1]]) as node:
        s = node.socket(ts.SOCK_RDM)
        s.bind((ts.TIPC_ADDR_NAME, {SVC}, 1, 0))
        n = 0
        while True:
            data, addr = await s.recvfrom()
            n += 1
            if data == b"quit":
                break
            await s.sendto(data.upper(), addr)
        print("served", n, flush=True)

asyncio.run(main())
"""

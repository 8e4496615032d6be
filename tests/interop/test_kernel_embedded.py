"""Interop: an embedded node (tipcpy.aio.Node) links with a real Linux 6.1 kernel node and
echoes with its services, both ways.

The node must run inside netns kpeer (where the guest's 10.77.0.0/24 is), and Python 3.11
has no setns(), so the embedded node lives in a small program of its own started with
``ip netns exec kpeer``: it prints ``LINKED`` once the kernel's bindings reached it, waits
for ``go`` on stdin (meanwhile the test reads the kernel's own view and has the kernel's
`tipc-peer` call the program's echo service), then echoes with {1000,1} RDM, {1001,1}
STREAM and {1002,1} SEQPACKET and prints ``RESULT <json>``. The program is stopped by pid.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.kpeer import GUEST_HASH, GUEST_IP, HOST_IP, REPO, KernelPeer, ns_cmd
from tests.tools.procs import stop_proc

pytestmark = pytest.mark.interop

OUR_ID = "tipcemb1"
SVC = 5300          # the program's RDM echo service {5300,1}

PROGRAM = r"""
import asyncio, json, sys
import tipcpy.aio as aio
from tipcpy import socket as ts

SIZES = (1, 5000, 40000)


def pattern(n):
    return bytes(i % 251 for i in range(n))


async def main(identity, bearer, svc):
    loop = asyncio.get_running_loop()
    async with aio.Node(identity=identity, bearers=[bearer]) as node:
        table = node.stack.name_table
        for _ in range(600):                          # up to 30 s
            if table.lookup_anycast(1002, 1, 0) is not None:
                break
            await asyncio.sleep(0.05)
        else:
            print("NOLINK", flush=True)
            return 1
        echo = node.socket(ts.SOCK_RDM)
        echo.bind((ts.TIPC_ADDR_NAME, svc, 1, 0))

        async def serve():
            while True:
                data, addr = await echo.recvfrom()
                await echo.sendto(data, addr)

        server = asyncio.ensure_future(serve())
        print("LINKED", hex(node.address), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        out = {}
        for size in SIZES:
            msg = pattern(size)
            s = node.socket(ts.SOCK_RDM)
            await s.sendto(msg, (ts.TIPC_ADDR_NAME, 1000, 1, 0))
            data, addr = await asyncio.wait_for(s.recvfrom(70000), 10)
            out[f"rdm-{size}"] = [data == msg, addr[1]]
            s.close()
            for name, sotype, svc_k in (("stream", ts.SOCK_STREAM, 1001),
                                        ("seqpacket", ts.SOCK_SEQPACKET, 1002)):
                c = node.socket(sotype)
                await asyncio.wait_for(c.connect((ts.TIPC_ADDR_NAME, svc_k, 1, 0)), 10)
                await c.sendall(msg)
                got = b""
                while len(got) < size:
                    part = await asyncio.wait_for(c.recv(70000), 10)
                    if not part:
                        break
                    got += part
                out[f"{name}-{size}"] = [got == msg, c.getpeername()[1]]
                c.close()
        server.cancel()
        print("RESULT", json.dumps(out), flush=True)
    return 0


sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
"""


def _readline(p: subprocess.Popen[str], timeout: float) -> str:
    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise AssertionError(f"no output from the embedded node in {timeout} s")
        return p.stdout.readline()
    finally:
        sel.close()


def test_embedded_node_links_and_echoes_with_kernel(kernel_unicast: KernelPeer,
                                                    tmp_path: Path) -> None:
    kp = kernel_unicast
    prog = tmp_path / "embedded_echo.py"
    prog.write_text(PROGRAM)
    bearer = f"media udp name b1 localip {HOST_IP} remoteip {GUEST_IP}"
    err = open(tmp_path / "stderr.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(ns_cmd(sys.executable, str(prog), OUR_ID, bearer, str(SVC)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)
    try:
        line = _readline(proc, 60)
        assert line.startswith("LINKED"), line + (tmp_path / "stderr.log").read_text()
        # the kernel's own view: our link is up, our echo binding is in its table
        kp.wait_for("tipc link list", lambda out: f"-{OUR_ID}:b1: up" in out, timeout=30)
        kp.wait_for("tipc nametable show",
                    lambda out: re.search(rf"^{SVC}\s+1\s+1\s+cluster\s+\d+\s+{OUR_ID}",
                                          out, re.M) is not None, timeout=10)
        # the kernel's client against the embedded node's echo service
        for cmd in (f"send {SVC} 1 hello", f"send {SVC} 1 @40000"):
            rc, out = kp.exec(f"tipc-peer {cmd}", timeout=30)
            assert rc == 0 and "RESULT OK" in out, f"tipc-peer {cmd}:\n{out}"
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = _readline(proc, 90)
        assert line.startswith("RESULT "), line + (tmp_path / "stderr.log").read_text()
        res = json.loads(line[7:])
        assert set(res) == {f"{k}-{n}" for k in ("rdm", "stream", "seqpacket")
                            for n in (1, 5000, 40000)}
        for key, (ok, node) in res.items():
            assert ok, f"{key}: echo differs"
            assert node == GUEST_HASH, f"{key}: answered by {node:#x}"
        assert proc.wait(20) == 0
    finally:
        stop_proc(proc)
        err.close()

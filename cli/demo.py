"""`make run`: a live three-node tipcpy cluster on 127.0.0.1, no configuration, no root.

Why this is the demo: it shows the whole point of tipcpy in a few seconds -- real `tipcd`
processes find each other and bring links up, a service bound by *name* on one node is
reached from another without anybody knowing host or port, the topology service reports
it coming and going, and the real `tipc` command shows the links and the cluster-wide
name table. Everything it starts lives in a temporary directory and is stopped (by pid,
SIGTERM then SIGKILL) on the way out, also on Ctrl-C or an error.

``python -m cli.demo --dump`` shows the older demo: tipcpy decoding a capture of two
Linux 6.1 kernel TIPC nodes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket as _std
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAPTURE = "pair-multicast.pcap"
SERVICE = 18888
INSTANCE = 17
REPO = Path(__file__).resolve().parents[1]

HEADER = """\
tipcpy demo: decoding real Linux 6.1 kernel TIPC traffic
=========================================================
{path}
Two kernel nodes, kpeer-a (10.77.1.2, hash 195d0465) and kpeer-b (10.77.1.3, hash
195d0765), on a UDP bearer (port 6118, multicast discovery to 228.0.18.103, net id 4711):
address trial and discovery, RESET/ACTIVATE link set-up, STATE probes, bulk name
distribution, RDM/STREAM/SEQPACKET exchanges, a multicast, and 30000/40000-byte
messages that TIPC fragments (each fragment itself travelling as IP fragments).
Lines marked \\_ are the messages rebuilt from fragments (or carried in a bundle).
"""


def capture_dir() -> Path:
    """../shared/reference/captures next to the repository root."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "captures"


def dump_main() -> int:
    """The capture demo (``--dump``)."""
    from cli.tipc import main as tipc

    path = capture_dir() / CAPTURE
    if not path.is_file():
        print(f"tipcpy demo: the reference capture {path} is not present; nothing to show.")
        return 0
    print(HEADER.format(path=path))
    print(f"$ tipc dump {path.name}")
    rc = tipc.main(["dump", str(path)], prog_name="tipc", standalone_mode=False)
    if rc:
        return int(rc)
    print()
    print(f"$ tipc dump --check {path.name}")
    rc = tipc.main(["dump", "--check", str(path)], prog_name="tipc", standalone_mode=False)
    return int(rc or 0)


# ---------------------------------------------------------------------------------- live
def _free_udp_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = _std.socket(_std.AF_INET, _std.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _say(text: str) -> None:
    print(text, flush=True)


class Cluster:
    """Three tipcd processes we started (and only those), in one temp dir."""

    def __init__(self, n: int = 3) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tipcpy-demo-"))
        self.names = [f"node{i + 1}" for i in range(n)]
        self.ports = _free_udp_ports(n)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep
                    + os.environ.get("PYTHONPATH", "")}

    def run_dir(self, i: int) -> str:
        return str(self.tmp / self.names[i])

    def start(self) -> None:
        n = len(self.names)
        for i, name in enumerate(self.names):
            peer = self.ports[(i + 1) % n]       # a ring: each node learns the others
            bearer = (f"media udp name b0 localip 127.0.0.1 localport {self.ports[i]} "
                      f"remoteip 127.0.0.1 remoteport {peer}")
            log = open(self.tmp / f"{name}.log", "wb")
            cmd = [sys.executable, "-m", "cli.tipcd_start", "--run-dir", self.run_dir(i),
                   "--identity", name, "--bearer", bearer, "--log-level", "info"]
            _say(f"$ tipcd --run-dir {self.run_dir(i)} --identity {name} "
                 f"--bearer \"{bearer}\" &")
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, env=self.env,
                                               cwd=str(REPO), start_new_session=True))
            log.close()
        deadline = time.monotonic() + 20
        for i in range(n):
            ctl = Path(self.run_dir(i)) / "ctl.sock"
            while not ctl.exists():
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"tipcd {self.names[i]} exited:\n{self.log(i)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tipcd {self.names[i]} did not start:\n{self.log(i)}")
                time.sleep(0.05)

    def log(self, i: int) -> str:
        try:
            return (self.tmp / f"{self.names[i]}.log").read_text()[-3000:]
        except OSError:
            return ""

    def links_up(self, i: int) -> int:
        from tipcpy.runtime.ctlclient import ControlClient

        try:
            with ControlClient(Path(self.run_dir(i)) / "ctl.sock", timeout=5) as c:
                links = c.call("link.list")
        except Exception:
            return 0
        return sum(1 for lk in links if lk.get("up") and lk.get("name") != "broadcast-link")

    def tipc(self, i: int, *args: str) -> None:
        _say(f"\n$ TIPCPY_RUN_DIR={self.run_dir(i)} tipc {' '.join(args)}")
        r = subprocess.run([sys.executable, "-m", "cli.tipc", *args], capture_output=True,
                           text=True, env={**self.env, "TIPCPY_RUN_DIR": self.run_dir(i)},
                           cwd=str(REPO), timeout=30)
        sys.stdout.write(r.stdout)
        if r.returncode:
            sys.stdout.write(r.stderr)
        sys.stdout.flush()

    def stop(self) -> None:
        """SIGTERM every daemon we started, SIGKILL the ones that do not go; remove the
        temp dir. Safe to call twice."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        self.procs = []
        shutil.rmtree(self.tmp, ignore_errors=True)


def _topsrv(run_dir: str, typ: int, lower: int, upper: int) -> object:
    """A topology subscription (SEQPACKET to {1,1}): PORTS events for the range."""
    from tipcpy import socket as ts

    s = ts.socket(ts.AF_TIPC, ts.SOCK_SEQPACKET, run_dir=run_dir)
    s.connect((ts.TIPC_ADDR_NAME, ts.TIPC_TOP_SRV, ts.TIPC_TOP_SRV, 0))
    s.send(struct.pack("=5I8s", typ, lower, upper, 0xFFFFFFFF, ts.TIPC_SUB_PORTS,
                       b"demo"))
    return s


def _events(sub: object, wait: float, nodes: bool = False) -> list[str]:
    from tipcpy import socket as ts

    out: list[str] = []
    sub.settimeout(wait)  # type: ignore[attr-defined]
    while True:
        try:
            raw = sub.recv(48)  # type: ignore[attr-defined]
        except TimeoutError:
            return out
        if len(raw) != 48:
            return out
        ev, lo, up, port, node = struct.unpack_from("=5I", raw)
        name = {ts.TIPC_PUBLISHED: "PUBLISHED", ts.TIPC_WITHDRAWN: "WITHDRAWN"}.get(ev, ev)
        if nodes:
            out.append(f"  {name:<9} {{0, {lo:#010x}}}: node {lo:08x} is "
                       f"{'up' if ev == ts.TIPC_PUBLISHED else 'down'}")
            sub.settimeout(0.3)  # type: ignore[attr-defined]
            continue
        out.append(f"  {name:<9} {{{struct.unpack_from('=I', raw, 20)[0]}, {lo}, {up}}} "
                   f"port {port:#010x} on node {node:08x}")
        sub.settimeout(0.3)  # type: ignore[attr-defined]


def live_main() -> int:
    from tipcpy import socket as ts

    t0 = time.monotonic()
    _say("tipcpy demo: a live three-node TIPC cluster on 127.0.0.1\n"
         "=======================================================\n"
         "Three tipcd daemons, each with a UDP bearer on its own port of 127.0.0.1 and one\n"
         "unicast peer (a ring); each learns the others from their discovery messages.\n")
    cluster = Cluster(3)
    socks: list[object] = []
    try:
        cluster.start()
        _say("\n-- waiting for the links (discovery, address trial, RESET/ACTIVATE) ...")
        deadline = time.monotonic() + 30
        while not all(cluster.links_up(i) >= 2 for i in range(3)):
            if time.monotonic() > deadline:
                raise RuntimeError("links did not come up within 30 s:\n"
                                   + "\n".join(cluster.log(i) for i in range(3)))
            time.sleep(0.1)
        _say(f"   full mesh up after {time.monotonic() - t0:.1f} s")
        rd = [cluster.run_dir(i) for i in range(3)]

        _say(f"\n-- node1 subscribes to service {SERVICE} and to node state (topology server "
             "{1,1})")
        sub = _topsrv(rd[0], SERVICE, 0, 0xFFFFFFFF)
        nodes = _topsrv(rd[0], ts.TIPC_NODE_STATE, 0, 0xFFFFFFFF)
        socks += [sub, nodes]
        for line in _events(nodes, 1.0, nodes=True):
            _say(line)

        _say(f"\n-- node3 binds an RDM socket to {{{SERVICE}, 10..20}}")
        srv = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=rd[2])
        socks.append(srv)
        srv.bind((ts.TIPC_ADDR_NAMESEQ, SERVICE, 10, 20))
        _say(f"   node3's socket: {srv.getsockname()}")
        _say("   node1 sees (binding replicated by the name distributor):")
        for line in _events(sub, 5.0):
            _say(line)

        _say(f"\n-- node1 sends to the *name* {{{SERVICE}, {INSTANCE}}}; "
             "nobody said which node")
        cli = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=rd[0])
        socks.append(cli)
        cli.sendto(b"hello from node1", (ts.TIPC_ADDR_NAME, SERVICE, INSTANCE, 0))
        srv.settimeout(5)
        data, src = srv.recvfrom(1024)
        _say(f"   node3 got {data!r} from {src} (= node1's socket {cli.getsockname()})")
        srv.sendto(b"hello back from node3", src)
        cli.settimeout(5)
        data, src = cli.recvfrom(1024)
        _say(f"   node1 got the answer {data!r} from {src}")
        n = 200
        t = time.perf_counter()
        for _ in range(n):
            cli.sendto(b"ping", (ts.TIPC_ADDR_NAME, SERVICE, INSTANCE, 0))
            d, a = srv.recvfrom(64)
            srv.sendto(b"pong", a)
            cli.recv(64)
        _say(f"   {n} round trips node1 -> node3 -> node1: "
             f"{(time.perf_counter() - t) / n * 1e6:.0f} us each")

        cluster.tipc(0, "link", "list")
        cluster.tipc(0, "nametable", "show")

        _say("\n-- node3 closes its socket; node1 sees the binding go:")
        srv.close()
        for line in _events(sub, 5.0):
            _say(line)
        _say("\n-- stopping the three daemons")
        return 0
    except KeyboardInterrupt:
        _say("\ninterrupted; stopping the daemons")
        return 130
    except Exception as e:
        _say(f"\ndemo failed: {e}")
        return 1
    finally:
        for s in socks:
            try:
                s.close()  # type: ignore[attr-defined]
            except Exception:
                pass
        cluster.stop()
        _say(f"done in {time.monotonic() - t0:.1f} s; nothing left running.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--dump" in argv:
        return dump_main()
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m cli.demo [--dump]\n  (no argument) a live three-node "
              "cluster on 127.0.0.1\n  --dump        decode the Linux 6.1 reference capture")
        return 0
    return live_main()


if __name__ == "__main__":
    sys.exit(main())

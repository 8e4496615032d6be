"""`python -m cli.demo` (what `make run` runs for now): tipcpy reading real kernel traffic.

Why: until a live tipcpy cluster demo exists, the most convincing thing the project can
show is its codec reading a capture of two Linux 6.1 kernel TIPC nodes - discovery,
link set-up, name distribution, named/connection data, multicast, fragments - and
re-encoding every message to the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

CAPTURE = "pair-multicast.pcap"

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


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())

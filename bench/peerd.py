"""A real tipcd whose name bulk carries N synthetic bindings (``--bindings N``).

Why: to put a million bindings into another tipcd over the real wire (the join-bulk
path, §9.4) without a million sockets. This process is the unmodified daemon (same CLI
flags, runtime, Stack, link and codec); only ``NameDistributor.bulk`` is wrapped so
that, in front of the node's real bulk, it sends N extra cluster-scope items
``{BENCH_TYPE + i % 16, i, i}`` port ``i + 1`` key ``i + 1``.

The kernel caps one node at 65535 publications (TIPC_MAX_PUBL); a real cluster would
deliver a million bindings from 16+ nodes. The receiving table holds the same entries
either way, so its memory and apply time are what a million-binding node costs.

When the first bulk is built, ``time.monotonic()`` is written to ``RUN_DIR/bulk_start``
so the driver can time the whole join: build, send, receive, apply.

Usage: ``python -m bench.peerd --bindings 1000000 <tipcd flags>``.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from typing import Any

BENCH_TYPE = 70000
SPREAD = 16
#: file in the run dir: time.monotonic() when the first bulk started being built
STAMP = "bulk_start"


def synthetic_bulk(distr: Any, n: int, mss: int, dest: int) -> list[Any]:
    from tipcpy.core.name_distr import items_per_msg
    from tipcpy.wire.consts import NameDistrType

    per = items_per_msg(mss)
    pack = struct.Struct(">5I").pack
    msgs = []
    for start in range(0, n, per):
        data = b"".join(pack(BENCH_TYPE + i % SPREAD, i, i, i + 1, i + 1)
                        for i in range(start, min(n, start + per)))
        m = distr._build(NameDistrType.PUBLICATION, [], dest)
        m.data = data
        m.bulk = 1
        m.non_legacy = 1
        m.bc_ack_invalid = 1
        msgs.append(m)
    return msgs


def main() -> None:
    argv = sys.argv[1:]
    n = 0
    if "--bindings" in argv:
        i = argv.index("--bindings")
        n = int(argv[i + 1])
        del argv[i : i + 2]

    stamp = None
    if "--run-dir" in argv:
        stamp = os.path.join(argv[argv.index("--run-dir") + 1], STAMP)

    import tipcpy.core.stack as stack_mod

    base = stack_mod.Stack

    class BulkStack(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            distr = self.name_distr
            real_bulk = distr.bulk

            def bulk(mss: int, dest: int = 0) -> list[Any]:
                if stamp is not None and not os.path.exists(stamp):
                    # CLOCK_MONOTONIC is system-wide: the driver compares it with its own
                    with open(stamp + ".tmp", "w") as f:
                        f.write(repr(time.monotonic()))
                    os.replace(stamp + ".tmp", stamp)
                return synthetic_bulk(distr, n, mss, dest) + real_bulk(mss, dest)

            distr.bulk = bulk

    stack_mod.Stack = BulkStack  # type: ignore[misc]  # build_node looks Stack up at call time
    from cli.tipcd import main as tipcd_main

    sys.argv = ["tipcd", *argv]
    tipcd_main()


if __name__ == "__main__":
    main()

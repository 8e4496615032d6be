"""The ``tipcd`` program: :func:`cli.tipcd.main` with the cyclic GC off while it loads.

Why: start-up builds ~25,000 long-lived objects (modules, classes, the Stack), and
collecting cycles among them while they are made is wasted work: ~10 ms of a 120 ms
start, most of a second when 64 daemons start on 2 cores.  The daemon freezes them
and turns the collector back on once the node is built (``daemon._tune_gc``); the
``finally`` covers the ways out before that.  A module of its own so that importing
:mod:`cli.tipcd` (the man-page tests do) leaves the importer's collector alone.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from cli.tipcd import main as tipcd

        tipcd()
    finally:
        gc.enable()


if __name__ == "__main__":  # pragma: no cover
    main()

"""Containment and loop-lag accounting for everything tipcd runs on its event loop.

Why: the event loop is the node's heartbeat. While one callback runs, no datagram is
read and no link is supervised; a peer declares us dead after the link tolerance
(1.5 s by default). Two things follow:

* no exception may escape a callback into asyncio (an escaped exception in the timer
  callback used to stop the node's timers for good): every callback handles one input
  inside :meth:`Guard.contain`, which counts the failure by *site and exception type*,
  logs its traceback the first time that pair is seen (later ones only count, so a
  flood of bad input cannot flood the log), and lets the loop carry on;
* the time the loop is kept busy must be visible: :class:`Guard` records the longest
  single callback it timed (``callback_max``) and, with a probe timer every
  ``PROBE_INTERVAL`` seconds, how late the loop ran a timer (``lag``: what any timer,
  link supervision included, had to wait), as a maximum since start and over the last
  ``WINDOW`` seconds. ``tipc node get stats`` shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from typing import Any

log = logging.getLogger("tipcpy.daemon")

PROBE_INTERVAL = 0.025
"""Seconds between two lag probes: small enough to see a 30 ms stall, cheap (40/s)."""
WINDOW = 10.0
"""The ``recent`` maxima cover this many seconds."""


def clock() -> tuple[float, float]:
    """(wall, CPU) now, the start of a timed callback (see :meth:`Guard.timed`)."""
    return time.perf_counter(), time.thread_time()


_libc: Any = None


def release_memory() -> bool:
    """Hand freed heap pages back to the kernel (glibc ``malloc_trim(0)``); False where
    there is no glibc. Called after a big release (a socket's thousands of bindings
    withdrawn): without it glibc keeps the high-water mark of its heap resident."""
    global _libc
    if _libc is None:
        try:
            import ctypes
            import ctypes.util

            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    return bool(_libc.malloc_trim(0))


class Guard:
    """Per-daemon containment counters and loop-lag measurements (see module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.errors: dict[str, int] = {}          # "site: ExcType" -> count
        self.lag_max = 0.0
        self.callback_max = 0.0
        self.callback_max_site = ""
        self.callback_cpu_max = 0.0
        self.callback_cpu_max_site = ""
        self.gc_max = 0.0                # longest cyclic-GC pause
        self.gc_max_gen = -1
        self._gc_t0 = 0.0
        self.probes = 0
        # (second, worst lag in it, worst callback in it) for the recent window
        self._recent: deque[list[float]] = deque()
        self._probe: asyncio.TimerHandle | None = None
        self._probe_at = 0.0

    # -- containment --------------------------------------------------------------------
    def failed(self, site: str, exc: BaseException) -> None:
        """Count an unexpected exception of one callback; traceback once per kind."""
        key = f"{site}: {type(exc).__name__}"
        n = self.errors.get(key, 0) + 1
        self.errors[key] = n
        if n == 1:
            log.error("unexpected %s in %s (contained; further ones are only counted)",
                      type(exc).__name__, site, exc_info=exc)

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())

    # -- timing -------------------------------------------------------------------------
    def timed(self, site: str, t0: tuple[float, float]) -> None:
        """Record one callback that started at ``t0`` (:func:`clock`). Wall time is what
        the loop lost; CPU time is what the callback itself cost (the difference is
        the process waiting for a CPU: a loaded machine, not tipcd)."""
        dt = time.perf_counter() - t0[0]
        if dt > self.callback_max:
            self.callback_max = dt
            self.callback_max_site = site
        cpu = time.thread_time() - t0[1]
        if cpu > self.callback_cpu_max:
            self.callback_cpu_max = cpu
            self.callback_cpu_max_site = site
        self._note(0.0, dt)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0:
            dt = time.perf_counter() - self._gc_t0
            self._gc_t0 = 0.0
            if dt > self.gc_max:
                self.gc_max = dt
                self.gc_max_gen = info.get("generation", -1)

    def _note(self, lag: float, cb: float) -> None:
        sec = float(int(time.monotonic()))
        r = self._recent
        if r and r[-1][0] == sec:
            ent = r[-1]
            if lag > ent[1]:
                ent[1] = lag
            if cb > ent[2]:
                ent[2] = cb
        else:
            r.append([sec, lag, cb])
            while r and r[0][0] <= sec - WINDOW:
                r.popleft()

    def recent(self) -> tuple[float, float]:
        """(worst lag, worst callback) over the last WINDOW seconds."""
        lo = time.monotonic() - WINDOW
        lag = cb = 0.0
        for sec, la, c in self._recent:
            if sec >= lo - 1:
                lag = max(lag, la)
                cb = max(cb, c)
        return lag, cb

    def start(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self._probe_at = self.loop.time() + PROBE_INTERVAL
        self._probe = self.loop.call_at(self._probe_at, self._on_probe)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    def _on_probe(self) -> None:
        now = self.loop.time()
        lag = max(0.0, now - self._probe_at)
        self.probes += 1
        if lag > self.lag_max:
            self.lag_max = lag
        self._note(lag, 0.0)
        self._probe_at = now + PROBE_INTERVAL
        self._probe = self.loop.call_at(self._probe_at, self._on_probe)

    def reset_max(self) -> None:
        """Forget the maxima (``tipc node get stats reset``-style use by tests/tools)."""
        self.lag_max = 0.0
        self.callback_max = 0.0
        self.callback_max_site = ""
        self.callback_cpu_max = 0.0
        self.callback_cpu_max_site = ""
        self.gc_max = 0.0
        self.gc_max_gen = -1
        self._recent.clear()

    def as_dict(self) -> dict[str, Any]:
        lag, cb = self.recent()
        return {"loop_lag_max_ms": round(self.lag_max * 1000, 2),
                "loop_lag_recent_ms": round(lag * 1000, 2),
                "callback_max_ms": round(self.callback_max * 1000, 2),
                "callback_max_site": self.callback_max_site,
                "callback_recent_ms": round(cb * 1000, 2),
                "callback_cpu_max_ms": round(self.callback_cpu_max * 1000, 2),
                "callback_cpu_max_site": self.callback_cpu_max_site,
                "gc_pause_max_ms": round(self.gc_max * 1000, 2),
                "gc_pause_max_gen": self.gc_max_gen,
                "lag_probes": self.probes,
                "contained_errors": self.errors_total,
                "contained_by_kind": dict(self.errors)}


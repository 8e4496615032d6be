"""Sim tests run on virtual time only; nothing here sleeps or opens sockets.

Every SimCluster a test builds is checked when the test ends: no node or link FSM
refused an event, no socket layer swallowed an exception (SimCluster.bugs())."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tipcpy.sim.cluster import SimCluster


@pytest.fixture(autouse=True)
def no_hidden_bugs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    built: list[SimCluster] = []
    orig = SimCluster.__init__

    def init(self: SimCluster, *a: Any, **kw: Any) -> None:
        orig(self, *a, **kw)
        built.append(self)

    monkeypatch.setattr(SimCluster, "__init__", init)
    yield
    for c in built:
        assert c.bugs() == {}, f"seed {c.seed}: {c.bugs()}"

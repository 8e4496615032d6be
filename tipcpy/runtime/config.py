"""What tipcd is told at start: command-line flags and/or a TOML file.

Plain data with no dependency on the runtime, so the CLI, the daemon and the tests can
all build one without pulling in asyncio machinery.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBING = ("idle", "silent")
"""When an idle link probes its peer: on every tick (Linux >= 5.6, the default) or only
after a silent interval, silence counting only on links the neighbour monitor
supervises (Linux 4.7-5.5: above the monitor threshold, O(sqrt N) probes per node)."""


@dataclass
class DaemonConfig:
    """Everything tipcd is told at start (flags and/or a TOML file)."""

    run_dir: Path = Path("/run/tipcpy")
    identity: str | None = None
    netid: int = 4711
    bearers: list[dict[str, Any]] = field(default_factory=list)
    link: dict[str, int] = field(default_factory=dict)   # defaults: priority/tolerance/window
    log_level: str = "info"
    seed: int | None = None
    refuse_clear: bool = False       # drop clear TIPC packets once a key is set
    key_file: str | None = None      # `tipc node set key` words, applied before bearers
    probing: str = "idle"            # link probes: "idle" (Linux >= 5.6) or "silent" (4.7-5.5)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], base: DaemonConfig | None = None
                  ) -> DaemonConfig:
        """Read a TOML config. Keys: ``run_dir identity netid log_level refuse_clear
        key_file probing``, a ``[link]``
        table and ``[[bearer]]`` tables with the CLI's argument names (media, name,
        localip, localport, remoteip, remoteport, device, priority, tolerance, window)."""
        with open(path, "rb") as f:
            data = tomllib.load(f)
        cfg = base or cls()
        known = {"run_dir", "identity", "netid", "clusterid", "log_level", "link", "bearer",
                 "seed", "refuse_clear", "key_file", "probing"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        if "run_dir" in data:
            cfg.run_dir = Path(data["run_dir"])
        if "identity" in data:
            cfg.identity = str(data["identity"])
        if "netid" in data or "clusterid" in data:
            cfg.netid = int(data["netid"] if "netid" in data else data["clusterid"])
        if "log_level" in data:
            cfg.log_level = str(data["log_level"])
        if "seed" in data:
            cfg.seed = int(data["seed"])
        if "refuse_clear" in data:
            if not isinstance(data["refuse_clear"], bool):
                raise ValueError(f"{path}: refuse_clear must be true or false")
            cfg.refuse_clear = data["refuse_clear"]
        if "key_file" in data:
            cfg.key_file = str(data["key_file"])
        if "probing" in data:
            if data["probing"] not in PROBING:
                raise ValueError(f"{path}: probing must be one of {', '.join(PROBING)}")
            cfg.probing = str(data["probing"])
        link = data.get("link", {})
        if not isinstance(link, dict):
            raise ValueError(f"{path}: [link] must be a table")
        cfg.link.update({k: int(v) for k, v in link.items()})
        bearers = data.get("bearer", [])
        if not isinstance(bearers, list):
            raise ValueError(f"{path}: use [[bearer]] tables")
        for b in bearers:
            if "media" not in b:
                raise ValueError(f"{path}: a [[bearer]] lacks 'media'")
            cfg.bearers.append(dict(b))
        return cfg

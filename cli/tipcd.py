"""`tipcd` - the tipcpy node daemon (one process = one TIPC node).

Runs in the foreground (systemd's Type=simple; see contrib/tipcd.service) and logs to
stderr. Configure it at start with flags and/or ``--config FILE`` (TOML), then at run time
with the ``tipc`` command over ``$RUN_DIR/ctl.sock``. ``--bearer`` takes the same words as
``tipc bearer enable`` so the two never drift apart::

    tipcd --identity n1 --bearer "media udp name b0 localip 10.0.0.1 remoteip 10.0.0.2"
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from tipcpy.runtime.config import PROBING, DaemonConfig
from tipcpy.runtime.daemon import run, setup_logging
from tipcpy.runtime.words import WordError, parse_media


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run-dir", type=click.Path(file_okay=False), envvar="TIPCPY_RUN_DIR",
              default=None, help="Directory for ctl.sock and tipcd.pid "
              "[env TIPCPY_RUN_DIR; default /run/tipcpy].")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML file: identity, netid, [link], [[bearer]] tables.")
@click.option("--identity", help="Node identity (string of up to 16 chars, or hex).")
@click.option("--netid", "--clusterid", "netid", type=click.IntRange(1, 9999),
              help="Network (cluster) id, default 4711.")
@click.option("--bearer", "bearers", multiple=True, metavar="WORDS",
              help='Bearer to enable, in `tipc bearer enable` words, e.g. '
              '"media udp name b0 localip 127.0.0.1 remoteip 127.0.0.2". Repeatable.')
@click.option("--tolerance", type=click.IntRange(50, 30000), help="Default link tolerance (ms).")
@click.option("--priority", type=click.IntRange(0, 31), help="Default link priority.")
@click.option("--window", type=click.IntRange(16, 8191), help="Default link window.")
@click.option("--probing", type=click.Choice(PROBING), default=None,
              help="When idle links probe: every tick, as Linux >= 5.6 (idle, default), or "
              "only after a silent interval, as Linux 4.7-5.5 (silent: above the monitor "
              "threshold only the links the monitor supervises; big clusters).")
@click.option("--seed", type=int, help="Seed the node's random numbers (tests).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="File with the words of `tipc node set key` (KEY [algname ALGNAME] "
              "[master|nodeid NODEID]), applied before any bearer: nothing leaves in clear.")
@click.option("--refuse-clear", is_flag=True, default=None,
              help="Once a key is set, drop (and count) every clear TIPC packet received.")
@click.option("--log-level", default=None,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def main(run_dir: str | None, config_file: str | None, identity: str | None,
         netid: int | None, bearers: tuple[str, ...], tolerance: int | None,
         priority: int | None, window: int | None, probing: str | None, seed: int | None,
         key_file: str | None, refuse_clear: bool | None, log_level: str | None) -> None:
    """Run a tipcpy TIPC node."""
    cfg = DaemonConfig()
    if config_file:
        try:
            cfg = DaemonConfig.from_toml(config_file, cfg)
        except (ValueError, OSError) as e:
            raise click.UsageError(f"--config: {e}") from None
    if run_dir:
        cfg.run_dir = Path(run_dir)
    if identity:
        cfg.identity = identity
    if netid:
        cfg.netid = netid
    for key, val in (("tolerance", tolerance), ("priority", priority), ("window", window)):
        if val is not None:
            cfg.link[key] = val
    for words in bearers:
        try:
            cfg.bearers.append(parse_media(shlex.split(words)))
        except WordError as e:
            raise click.UsageError(f"--bearer {words!r}: {e}") from None
    if probing:
        cfg.probing = probing
    if seed is not None:
        cfg.seed = seed
    if key_file:
        cfg.key_file = key_file
    if refuse_clear:
        cfg.refuse_clear = True
    if log_level:
        cfg.log_level = log_level
    setup_logging(cfg.log_level)
    try:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        click.echo(f"tipcd: cannot create run dir {cfg.run_dir}: permission denied "
                   "(run as root, or use --run-dir DIR)", err=True)
        sys.exit(1)
    if not os.access(cfg.run_dir, os.W_OK):
        click.echo(f"tipcd: run dir {cfg.run_dir} is not writable (use --run-dir DIR)",
                   err=True)
        sys.exit(1)
    sys.exit(run(cfg))


if __name__ == "__main__":  # pragma: no cover
    main()

"""`tipc` - the root of the command line (same words as iproute2's `tipc`).

Each command family lives in its own module (`cli/bearer.py`, `cli/link.py`, ...) that
exposes a click command or group named `cmd`.  The root imports whichever of them exist,
so families can be written and merged independently: a module that is not there yet is
skipped; a module that is there but fails to import is a bug and is raised, not hidden.
"""

from __future__ import annotations

import importlib

import click

from cli.common import CONTEXT_SETTINGS, TipcGroup

#: Command families, in the order iproute2 lists them (plus tipcpy's `dump` and `events`).
COMMAND_MODULES = ("bearer", "link", "media", "nametable", "node", "peer", "socket",
                   "dump", "events")


@click.group(cls=TipcGroup, context_settings=CONTEXT_SETTINGS)
def main() -> None:
    """Configure and inspect a TIPC node (tipcpy).

    Words may be abbreviated to any unique prefix (`tipc link stat show`); -h, -j/--json
    and -p/--pretty are accepted anywhere on the line.

    Shell completion (bash; zsh_source / fish_source likewise):
    eval "$(_TIPC_COMPLETE=bash_source tipc)"
    """


def _load(name: str) -> click.Command | None:
    modname = f"cli.{name}"
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name == modname:  # the module itself is absent: not written yet
            return None
        raise  # it exists but imports something missing: a real error
    cmd = getattr(mod, "cmd", None)
    if not isinstance(cmd, click.Command):
        raise ImportError(f"{modname} has no click command named 'cmd'")
    return cmd


for _name in COMMAND_MODULES:
    _cmd = _load(_name)
    if _cmd is not None:
        main.add_command(_cmd, _name)


if __name__ == "__main__":  # pragma: no cover
    main()

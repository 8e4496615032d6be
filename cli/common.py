"""Shared machinery of the `tipc` command: word matching, global options, output, errors.

Why: iproute2's `tipc` lets people type `tipc l st sh`, accepts `-h` and `-j`/`-p`
anywhere on the line, and prints JSON in its own particular layout.  Scripts and fingers
trained on the kernel tool should work unchanged, so every command module builds on
the pieces here instead of re-deciding them:

* `TipcGroup` - a click Group that resolves unique prefixes of command words, shows the
  help of the last valid word when `-h/--help` appears anywhere, lifts `-j/--json` and
  `-p/--pretty` out of any position into `CliState`, and turns unexpected exceptions into
  a one-line error with exit status 1 (never a traceback).
* `group(...)` - decorator for sub-command groups (uses `TipcGroup`).
* `state(ctx)` - the `CliState` (json / pretty) of the current invocation.
* `emit_json` / `format_iproute2_json` - JSON exactly as iproute2 prints it.
* `print_table` - a rich table for human output.
* `fail(msg)` - the standard error path: message on stderr, exit status 1.
* `die(text)` / `choose(word, choices, what)` - iproute2's usage-error exit (255) and
  its unique-prefix matching of keyword values.

Exit statuses: 0 success, 1 runtime error (`fail`, unexpected exception), 2 usage error
(click's convention: unknown word, bad argument, missing file).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click

__all__ = [
    "CONTEXT_SETTINGS",
    "CliError",
    "CliState",
    "TipcGroup",
    "choose",
    "die",
    "emit_json",
    "fail",
    "format_iproute2_json",
    "group",
    "json_options",
    "print_table",
    "resolve_prefix",
    "state",
]

HELP_FLAGS = ("-h", "--help")
JSON_FLAGS = ("-j", "--json", "-json")
PRETTY_FLAGS = ("-p", "--pretty", "-pretty")

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": list(HELP_FLAGS)}


@dataclass
class CliState:
    """Options that apply to the whole command line (iproute2's global flags)."""

    json: bool = False
    pretty: bool = False


def state(ctx: click.Context | None = None) -> CliState:
    """The `CliState` of this invocation (created on first use)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


class CliError(click.ClickException):
    """A runtime error for the user: printed as ``error: MSG`` on stderr, exit 1."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click: a class default only

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(message: str, exit_code: int = 1) -> NoReturn:
    """Abort the command with a one-line error on stderr (never returns)."""
    raise CliError(message, exit_code)


# --------------------------------------------------------------------------------------
# Word matching
# --------------------------------------------------------------------------------------


def resolve_prefix(words: Iterable[str], typed: str) -> str | None:
    """Return the word `typed` stands for: itself, or the one word it is a prefix of.

    Mirrors iproute2's `find_cmd`: an exact match wins; otherwise exactly one candidate
    must start with `typed`.  Raises `click.UsageError` when several do.
    """
    words = list(words)
    if typed in words:
        return typed
    hits = [w for w in words if w.startswith(typed)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise click.UsageError(f"ambiguous command '{typed}': could be {', '.join(sorted(hits))}")
    return None


def _takes_value(cmd: click.Command, token: str) -> bool:
    """Whether `token` is an option of `cmd` that consumes the next token."""
    name = token.split("=", 1)[0]
    for p in cmd.params:
        if isinstance(p, click.Option) and name in (p.opts + p.secondary_opts):
            return not p.is_flag and not p.count and "=" not in token
    return False


def _walk(root: click.Command, ctx: click.Context, args: list[str]) -> tuple[
        list[tuple[str, click.Command]], list[str]]:
    """Follow command words from `root`: returns the path of resolved commands and `args`
    with every abbreviated command word replaced by its full name.

    Stops at the first word that does not name a sub-command (it is then an argument, or
    a mistake that click will report) - that is "the last valid word" for `-h`.
    """
    path: list[tuple[str, click.Command]] = []
    cur = root
    out = list(args)
    i = 0
    while i < len(out):
        tok = out[i]
        if tok == "--":
            break
        if tok.startswith("-") and tok != "-":
            i += 2 if _takes_value(cur, tok) else 1
            continue
        if not isinstance(cur, click.Group):
            break
        try:
            name = resolve_prefix(cur.list_commands(ctx), tok)
        except click.UsageError:
            break
        if name is None:
            break
        sub = cur.get_command(ctx, name)
        if sub is None:
            break
        out[i] = name
        path.append((name, sub))
        cur = sub
        i += 1
    return path, out


class TipcGroup(click.Group):
    """Click group with iproute2 behaviour (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", dict(CONTEXT_SETTINGS))
        super().__init__(*args, **kwargs)

    # Sub-groups created with @grp.group() get the same class.
    group_class = type

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = resolve_prefix(self.list_commands(ctx), cmd_name)
        return super().get_command(ctx, name) if name is not None else None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[
            str | None, click.Command | None, list[str]]:
        # Report the full word, so usage lines and errors say "statistics", not "stat".
        try:
            name, cmd, rest = super().resolve_command(ctx, args)
        except click.UsageError as e:
            if e.message.startswith("No such command"):   # say what would be valid
                raise click.UsageError(
                    f"{e.message} Valid: {', '.join(self.list_commands(ctx))}.",
                    e.ctx) from None
            raise
        return (cmd.name if cmd is not None else name), cmd, rest

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = self._lift_global_flags(ctx, args)
        return super().parse_args(ctx, args)

    def _lift_global_flags(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Handle the flags iproute2 accepts anywhere: -j, -p, -h (before any `--`)."""
        st = state(ctx)
        kept: list[str] = []
        want_help = False
        for i, tok in enumerate(args):
            if tok == "--":
                kept.extend(args[i:])
                break
            if tok in JSON_FLAGS:
                st.json = True
            elif tok in PRETTY_FLAGS:
                st.pretty = True
            elif tok in HELP_FLAGS:
                want_help = True
            else:
                kept.append(tok)
        path, kept = _walk(self, ctx, kept)
        if want_help:
            self._show_help(ctx, path)
        return kept

    def _show_help(self, ctx: click.Context, path: list[tuple[str, click.Command]]) -> None:
        sub_ctx = ctx
        for name, cmd in path:
            sub_ctx = click.Context(cmd, info_name=name, parent=sub_ctx)
        click.echo(sub_ctx.get_help(), color=ctx.color)
        ctx.exit(0)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        except Exception as exc:  # the "never a traceback" promise
            if not standalone_mode or os.environ.get("TIPCPY_DEBUG"):
                raise
            click.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)


def group(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], TipcGroup]:
    """`@group("link")` - a sub-command group with iproute2 word matching."""
    kwargs.setdefault("cls", TipcGroup)
    return click.group(name, **kwargs)  # type: ignore[return-value]


def json_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Give a leaf command its own `-j/-p` flags (merged into `CliState`).

    The root group already lifts `-j/-p` from anywhere on the line; this makes a command
    module also work on its own (tests invoking `cmd` directly).
    """

    def _set(attr: str) -> Callable[[click.Context, click.Parameter, bool], bool]:
        def cb(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
            if value:
                setattr(state(ctx), attr, True)
            return value
        return cb

    f = click.option("-j", "--json", "json_", is_flag=True, expose_value=False, hidden=True,
                     callback=_set("json"))(f)
    f = click.option("-p", "--pretty", is_flag=True, expose_value=False, hidden=True,
                     callback=_set("pretty"))(f)
    return f


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def format_iproute2_json(value: Any, pretty: bool = False) -> str:
    """Serialise like iproute2's json_writer (`tipc -j`, `tipc -j -p`).

    Compact: no spaces at all (``[{"window":50}]``).  Pretty: 4-space indent per level,
    objects open on the same line as the array (``[ {``), arrays of scalars stay inline
    (``[ "ACTIVE" ]``), and sibling objects join as ``},{``.  The byte layout matters
    because people diff and grep this output against the kernel tool's.
    """
    out: list[str] = []
    depth = 0
    sep = ""

    def eol() -> None:
        if pretty:
            out.append("\n" + "    " * depth)

    def eor() -> None:
        nonlocal sep
        if sep:
            out.append(sep)
        sep = ","

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "null"
        if isinstance(v, int | float):
            return json.dumps(v)
        return json.dumps(str(v), ensure_ascii=False)

    def emit(v: Any) -> None:
        nonlocal depth, sep
        if isinstance(v, dict):
            eor()
            out.append("{")
            depth += 1
            sep = ""
            for k, item in v.items():
                eor()
                eol()
                sep = ""
                out.append(json.dumps(str(k), ensure_ascii=False) + (": " if pretty else ":"))
                emit(item)
            depth -= 1
            if sep:
                eol()
            out.append("}")
            sep = ","
        elif isinstance(v, list | tuple):
            eor()
            out.append("[ " if pretty else "[")
            depth += 1
            sep = ""
            for item in v:
                emit(item)
            if pretty and sep:
                out.append(" ")
            depth -= 1
            out.append("]")
            sep = ","
        else:
            eor()
            out.append(scalar(v))

    emit(value)
    return "".join(out)


def emit_json(value: Any, ctx: click.Context | None = None) -> None:
    """Print `value` as iproute2 would with `-j` (and `-p` if given), newline-terminated."""
    click.echo(format_iproute2_json(value, state(ctx).pretty))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]],
                title: str | None = None) -> None:
    """Print rows as a rich table (for human output; use `emit_json` for machines)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=None, show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    Console(file=sys.stdout, soft_wrap=True).print(table)


def die(text: str, status: int = 255) -> NoReturn:
    """iproute2's way out of a usage error: the text on stderr, exit status 255."""
    print(text.rstrip("\n"), file=sys.stderr)
    sys.exit(status)


def choose(value: str, choices: Sequence[str], what: str) -> str:
    """The word ``value`` stands for (itself or its unique prefix, as iproute2 matches
    words); otherwise click's usage error listing the valid choices (exit status 2)."""
    if value in choices:
        return value
    hits = [c for c in choices if c.startswith(value)] if value else []
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(repr(c) for c in choices)
    raise click.BadParameter(f"{value!r} is not one of {listed}.",
                             ctx=click.get_current_context(silent=True), param_hint=f"'{what}'")

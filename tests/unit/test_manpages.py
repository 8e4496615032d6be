"""The man pages in man/: they render cleanly, they all exist, and they keep up with the CLI.

Why: the man pages are the only reference users get for the iproute2-style words
(`media udp name NAME localip IP ...`), which click's --help cannot describe. A command,
option or keyword added to the CLI without a word in its family's page is a bug; this
test finds it.

How the two sides are read:

* The CLI side walks the click tree of `cli.tipc.main` (every group, command and option)
  and collects the keyword words each family accepts as free arguments. A family module
  may declare them in a module-level ``KEYWORDS`` (an iterable of words, or a dict of
  command path -> words); until it does, they are read from what the modules already
  have: their ``*USAGE*`` texts (the iproute2 help they print) and, for modules that parse
  with ``tipcpy.runtime.words.parse_media``, that module's word lists.
* The page side reads the roff source: which words are set in bold (``.B``, ``.BR``,
  ``.RB``, ``.BI``, ``.IB``, ``\\fB...\\fR``), and the command entries of the SYNOPSIS (and
  of the ``TIPC DUMP``/``TIPC EVENTS`` sections of tipc(8)): a ``.B tipc FAMILY CMD ...``
  line gives the command path, the lines after it up to ``.br``/``.PP`` give its bold
  argument words and its options.

Forward (asserted): everything that exists in the CLI is documented in its family's page.
Reverse (`documented_but_missing`, reported, asserted only once `REVERSE_CHECK_ENABLED`
is switched on): everything documented exists in the CLI. It is off while the media,
peer, socket and events families and several link/node commands are still being written;
the list of what is missing is printed as the skip reason (`pytest -ra`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import click
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MAN_DIR = REPO_ROOT / "man"

#: Switch on when the CLI implements everything the pages describe.
REVERSE_CHECK_ENABLED = True

EXPECTED_PAGES = (
    "tipc.8", "tipc-bearer.8", "tipc-link.8", "tipc-media.8", "tipc-nametable.8",
    "tipc-node.8", "tipc-peer.8", "tipc-socket.8", "tipcd.8", "tipcpy.7",
)

#: The page that documents each command family of `tipc` (dump and events live in tipc(8)).
FAMILY_PAGE = {
    "bearer": "tipc-bearer.8", "link": "tipc-link.8", "media": "tipc-media.8",
    "nametable": "tipc-nametable.8", "node": "tipc-node.8", "peer": "tipc-peer.8",
    "socket": "tipc-socket.8", "dump": "tipc.8", "events": "tipc.8",
}

GROFF_HINT = ("groff is not installed (apt-get install groff-base groff | dnf install groff "
              "| apk add groff); CI has it")


# ======================================================================================
# roff reading
# ======================================================================================

_ESCAPES = (
    ("\\-", "-"), ("\\(aq", "'"), ("\\(dq", '"'), ("\\(em", "-"), ("\\(en", "-"),
    ("\\(bu", ""), ("\\(co", ""), ("\\&", ""), ("\\c", ""), ("\\ ", " "), ("\\~", " "),
    ("\\|", ""), ("\\^", ""), ("\\e", "\\"),
)
# arguments in bold, by macro: which argument indexes (0-based) are bold
_BOLD_ARGS = {"B": "all", "SB": "all", "BR": "even", "BI": "even", "RB": "odd", "IB": "odd"}
_FONT_MACROS = {"B", "I", "BR", "RB", "BI", "IB", "IR", "RI", "SB", "SM"}
_TOKEN_SPLIT = re.compile(r"[\s{}\[\]|,\"]+")


def roff_args(text: str) -> list[str]:
    """Split macro arguments as roff does: blanks separate, double quotes group,
    ``""`` inside quotes is a literal quote."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == '"':
            i += 1
            buf = []
            while i < n:
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            args.append("".join(buf))
        else:
            j = i
            while j < n and text[j] not in " \t":
                j += 1
            args.append(text[i:j])
            i = j
    return args


def _strip_comment(line: str) -> str:
    if line.startswith(('.\\"', "'\\\"")):
        return ""
    k = line.find('\\"')
    return line[:k] if k >= 0 else line


def _unescape(s: str) -> str:
    for a, b in _ESCAPES:
        s = s.replace(a, b)
    return s


def _bold_runs(text: str, start_bold: bool) -> Iterator[str]:
    """Bold stretches of `text` (one macro argument or one text line), following inline
    font escapes ``\\fB``, ``\\fI``, ``\\fR``, ``\\fP`` from the starting font."""
    bold = prev = start_bold
    buf: list[str] = []
    for part in re.split(r"(\\f[BIRP]|\\f\(\w\w|\\f\[\w*\])", text):
        if part.startswith("\\f"):
            code = part[2:].strip("([]")
            if bold and buf:
                yield "".join(buf)
            buf = []
            new = prev if code == "P" else code.startswith("B")
            prev, bold = bold, new
        elif bold:
            buf.append(part)
    if bold and buf:
        yield "".join(buf)


def _tokens(runs: Iterable[str]) -> list[str]:
    out = []
    for r in runs:
        out.extend(t for t in _TOKEN_SPLIT.split(_unescape(r)) if t)
    return out


def line_bold_tokens(line: str) -> list[str]:
    """The words one source line sets in bold (escapes undone, split at blanks and at
    the grammar's punctuation ``{ } [ ] | ,``)."""
    line = _strip_comment(line)
    if line.startswith("."):
        name, _, rest = line[1:].partition(" ")
        name = name.strip()
        if name in _FONT_MACROS:
            which = _BOLD_ARGS.get(name)
            runs: list[str] = []
            for i, arg in enumerate(roff_args(rest)):
                is_bold = which == "all" or (which == "even" and i % 2 == 0) or (
                    which == "odd" and i % 2 == 1)
                runs.extend(_bold_runs(arg, is_bold))
            return _tokens(runs)
        if name in ("TP", "IP", "SH", "SS", "TH", "PP", "LP", "P", "RS", "RE", "br", "nf",
                    "fi", "nh", "hy", "ad", "sp", "in"):
            return _tokens(_bold_runs(rest, False)) if name == "IP" else []
        return []
    return _tokens(_bold_runs(line, False))


def bold_tokens(src: str) -> set[str]:
    """Every word a page sets in bold, with trailing sentence punctuation removed too
    (so ``\\fBlist\\fR.`` and ``.BR list ,`` both give ``list``)."""
    out: set[str] = set()
    for line in src.splitlines():
        for t in line_bold_tokens(line):
            out.add(t)
            out.add(t.rstrip(".;:)("))
    return out


@dataclass
class Entry:
    """One command of a page's SYNOPSIS: ``.B tipc link statistics show`` + its words."""

    page: str
    path: tuple[str, ...]                              # ("link", "statistics", "show")
    words: list[str] = field(default_factory=list)     # bold argument words (keywords)
    options: list[str] = field(default_factory=list)   # "-s", "--extended", ...
    definition: bool = False                           # a ``MEDIA-ARGS := {...}`` paragraph

    def __str__(self) -> str:
        return " ".join(("tipc",) + self.path)


def _sections(src: str) -> Iterator[tuple[str, list[str]]]:
    name, lines = "", []
    for line in src.splitlines():
        if line.startswith(".SH"):
            yield name, lines
            name, lines = _unescape(" ".join(roff_args(line[3:]))).upper(), []
        else:
            lines.append(line)
    yield name, lines


def synopsis_entries(src: str, page: str = "", prog: str = "tipc") -> list[Entry]:
    """Command entries of the SYNOPSIS (and of sections named ``TIPC ...``): a line
    ``.B PROG WORD...`` starts one; font-macro lines after it, up to ``.br``/``.PP``/the
    next entry, give its bold argument words and options.  A paragraph that starts with
    a ``NAME := ...`` line is a definition (``definition=True``, empty path)."""
    entries: list[Entry] = []
    for name, lines in _sections(src):
        if name != "SYNOPSIS" and not name.startswith("TIPC "):
            continue
        cur: Entry | None = None
        for line in lines:
            line = _strip_comment(line)
            if line.startswith(".B ") or line.rstrip() == f".B {prog}":
                words = _unescape(" ".join(roff_args(line[3:]))).split()
                if words and words[0] == prog:
                    cur = Entry(page, tuple(words[1:]))
                    entries.append(cur)
                    continue
            if line.startswith((".br", ".PP", ".LP", ".P ", ".SS")) or line.strip() == ".P":
                cur = None
                continue
            if cur is None:
                if ":=" not in line:
                    continue
                cur = Entry(page, (), definition=True)
                entries.append(cur)
            for tok in line_bold_tokens(line):
                if tok.startswith("-") and len(tok) > 1:
                    cur.options.append(tok)
                elif re.fullmatch(r"[A-Za-z][\w-]*", tok):
                    cur.words.append(tok)
    return entries


def read_page(name: str) -> str:
    return (MAN_DIR / name).read_text(encoding="utf-8")


# ======================================================================================
# CLI reading
# ======================================================================================

@dataclass
class CliCommand:
    path: tuple[str, ...]
    command: click.Command

    @property
    def is_group(self) -> bool:
        return isinstance(self.command, click.Group)

    def option_names(self, hidden: bool = False) -> list[str]:
        """Option strings of this command (not --help); hidden ones only if asked."""
        names = []
        for p in self.command.params:
            if isinstance(p, click.Option) and (hidden or not p.hidden):
                names.extend(p.opts + p.secondary_opts)
        return names


def walk_cli(root: click.Command) -> list[CliCommand]:
    """Every command of the click tree below `root` (root excluded), groups included."""
    out: list[CliCommand] = []
    ctx = click.Context(root, info_name="tipc")

    def visit(cmd: click.Command, path: tuple[str, ...]) -> None:
        if path:
            out.append(CliCommand(path, cmd))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.commands.get(name)
                if sub is not None:
                    visit(sub, path + (name,))

    visit(root, ())
    return out


def _family_module(family: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"cli.{family}")
    except ModuleNotFoundError as exc:
        if exc.name == f"cli.{family}":
            return None
        raise


def _usage_words(text: str) -> set[str]:
    """Keyword words in an iproute2 usage text: the lower-case literals of its
    ``Usage: tipc ...`` lines (and of further ``tipc ...`` lines of a multi-line usage),
    and the first word of each indented option line ``WORD [METAVAR] - description``;
    wrapped description lines and examples are not option lines."""
    words: set[str] = set()
    usage = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Usage:") or (usage and s.startswith("tipc ")):
            usage = True
            cand = _TOKEN_SPLIT.split(s.removeprefix("Usage:"))
        elif re.match(r"[ \t]+[a-z][a-z0-9]*(\s+[A-Z_][A-Z_0-9.]*)*\s+-\s", line):
            usage = False
            cand = [s.split()[0]]
        else:
            usage = False
            continue
        words.update(t for t in cand if re.fullmatch(r"[a-z][a-z0-9]*", t) and t != "tipc")
    return words


def family_keywords(family: str) -> set[str]:
    """The keyword words family `family` accepts as free arguments (see module doc)."""
    mod = _family_module(family)
    if mod is None:
        return set()
    declared = getattr(mod, "KEYWORDS", None)
    if declared is not None:
        if isinstance(declared, dict):
            return {w for ws in declared.values() for w in ws}
        return set(declared)
    words: set[str] = set()
    for name, value in vars(mod).items():
        if "USAGE" in name and isinstance(value, str):
            words |= _usage_words(value)
    from tipcpy.bearer.media import COMMON_KEYS, MEDIA
    from tipcpy.runtime import words as w

    if getattr(mod, "parse_media", None) is w.parse_media:
        words |= set(MEDIA) | {k for m in MEDIA.values() for k in m.keys} | set(COMMON_KEYS)
    return words


def tipc_root() -> click.Group:
    from cli.tipc import main

    return main


def global_flags() -> list[str]:
    from cli.common import HELP_FLAGS, JSON_FLAGS, PRETTY_FLAGS

    return [*HELP_FLAGS, *JSON_FLAGS, *PRETTY_FLAGS]


# ======================================================================================
# the two checks
# ======================================================================================

def undocumented(root: click.Group | None = None,
                 pages: dict[str, str] | None = None) -> list[str]:
    """Forward check: CLI commands, options and keywords missing from their page.

    `pages` maps page file name -> roff source (default: the files in man/)."""
    root = root or tipc_root()
    pages = pages if pages is not None else {
        p.name: p.read_text(encoding="utf-8") for p in MAN_DIR.iterdir() if p.is_file()}
    bold = {name: bold_tokens(src) for name, src in pages.items()}
    entries = {name: synopsis_entries(src, name) for name, src in pages.items()}
    problems: list[str] = []

    # the global options and the list of families, in tipc(8)
    top = pages.get("tipc.8")
    if top is None:
        return ["tipc.8 is missing"]
    for flag in global_flags():
        if flag not in bold["tipc.8"]:
            problems.append(f"tipc.8: global option {flag} is not documented")
    root_words = {w for e in entries["tipc.8"] if not e.path for w in e.words}

    families_seen: set[str] = set()
    for c in walk_cli(root):
        family = c.path[0]
        page = FAMILY_PAGE.get(family)
        where = " ".join(("tipc",) + c.path)
        if page is None:
            problems.append(f"{where}: no man page is assigned to family '{family}' "
                            "(add it to FAMILY_PAGE and write the page)")
            continue
        if page not in pages:
            problems.append(f"{where}: its page {page} is missing")
            continue
        if len(c.path) == 1:
            if family not in root_words:
                problems.append(f"tipc.8: family '{family}' is not in the SYNOPSIS")
        missing_words = [w for w in c.path if w not in bold[page]]
        if missing_words:
            problems.append(f"{page}: {where}: command word(s) {missing_words} not in bold")
        doc = any(e.path == c.path
                  or (e.path == c.path[:-1] and c.path[-1] in e.words)
                  or e.path[:len(c.path)] == c.path
                  for e in entries[page])
        if not doc:
            problems.append(f"{page}: {where} has no SYNOPSIS entry")
        for opt in c.option_names():
            if opt not in bold[page]:
                problems.append(f"{page}: option {opt} of {where} is not documented")
        if family not in families_seen:
            families_seen.add(family)
            for kw in sorted(family_keywords(family)):
                if kw not in bold[page]:
                    problems.append(f"{page}: keyword '{kw}' of tipc {family} is not "
                                    "documented in bold")
    return problems


def tipcd_undocumented(src: str | None = None) -> list[str]:
    from cli.tipcd import main as tipcd_main

    src = src if src is not None else read_page("tipcd.8")
    bold = bold_tokens(src)
    return [f"tipcd.8: option {opt} is not documented"
            for opt in CliCommand(("tipcd",), tipcd_main).option_names() + ["-h", "--help"]
            if opt not in bold]


def documented_but_missing(root: click.Group | None = None,
                           pages: dict[str, str] | None = None) -> list[str]:
    """Reverse check: SYNOPSIS commands, keywords and options the CLI does not have."""
    root = root or tipc_root()
    if pages is None:
        pages = {name: read_page(name) for name in EXPECTED_PAGES
                 if name.startswith("tipc") and (MAN_DIR / name).is_file()}
    flags = set(global_flags())
    missing: list[str] = []
    for page, src in sorted(pages.items()):
        if page == "tipcd.8":
            from cli.tipcd import main as tipcd_main

            have = set(CliCommand(("tipcd",), tipcd_main).option_names(hidden=True))
            for e in synopsis_entries(src, page, prog="tipcd"):
                missing += [f"tipcd option {o}" for o in e.options
                            if o not in have and o not in ("-h", "--help")]
            continue
        page_family = next((f for f, p in FAMILY_PAGE.items() if p == page), "")
        for e in synopsis_entries(src, page):
            if e.definition:
                if page == "tipc.8":
                    missing += [f"tipc {w}" for w in e.words if w not in root.commands]
                elif page_family in root.commands:
                    kws = family_keywords(page_family)
                    missing += [f"tipc {page_family}: keyword '{w}'" for w in e.words
                                if w not in kws]
                missing += [f"tipc: option {o}" for o in e.options if o not in flags]
                continue
            cmd: click.Command = root
            walked: list[str] = []
            rest = list(e.path)
            gone = False
            while rest and isinstance(cmd, click.Group):
                sub = cmd.commands.get(rest[0])   # exact words: pages spell them in full
                if sub is None:
                    missing.append(" ".join(["tipc", *walked, rest[0]]))
                    gone = True
                    break
                walked.append(rest.pop(0))
                cmd = sub
            if gone:
                continue
            family = e.path[0] if e.path else ""
            where = " ".join(["tipc", *walked])
            keywords = family_keywords(family) if family else set()
            if isinstance(cmd, click.Group):
                for w in e.words:
                    if w not in cmd.commands:
                        missing.append(f"{where} {w}")
            else:
                for w in rest + e.words:
                    if w not in keywords:
                        missing.append(f"{where}: keyword '{w}'")
            have = set(CliCommand(tuple(walked), cmd).option_names(hidden=True)) | flags
            missing += [f"{where}: option {o}" for o in e.options if o not in have]
    return sorted(dict.fromkeys(missing))


# ======================================================================================
# tests
# ======================================================================================

def all_pages() -> list[str]:
    return sorted(p.name for p in MAN_DIR.glob("*.[1-9]"))


@pytest.mark.parametrize("name", EXPECTED_PAGES)
def test_expected_page_exists(name: str) -> None:
    assert (MAN_DIR / name).is_file(), f"man/{name} is missing"


def test_no_stray_files_in_man() -> None:
    stray = [p.name for p in MAN_DIR.iterdir() if not re.fullmatch(r"[\w.-]+\.[1-9]", p.name)]
    assert not stray, f"man/ should hold only man pages (installed by setup.cfg): {stray}"


@pytest.mark.parametrize("name", EXPECTED_PAGES)
def test_page_has_the_usual_sections(name: str) -> None:
    src = read_page(name)
    section = name.rsplit(".", 1)[1]
    th = re.search(r"^\.TH\s+(\S+)\s+(\S+)", src, re.M)
    assert th, f"{name}: no .TH line"
    assert _unescape(th.group(1)).lower() == name.rsplit(".", 1)[0] and th.group(2) == section
    heads = {n for n, _ in _sections(src)}
    want = {"NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO"}
    if section == "8":
        want.add("EXIT STATUS")
    assert want <= heads, f"{name}: missing sections {sorted(want - heads)}"
    name_line = src.split(".SH NAME", 1)[1].strip().splitlines()[0]
    assert "\\-" in name_line, f"{name}: NAME line must be 'name \\- description'"


def test_bold_token_reader() -> None:
    """The roff reader itself: bold by macro, inline fonts, escapes, quoting."""
    src = "\n".join([
        '.B tipc link statistics show',
        '.RB [ \\-s " | " \\-\\-extended ]',
        '.IR LINK " | " all',
        '.BR list ", " get',
        'text \\fBinline\\fR and \\fIitalic\\fP \\fBpost\\fR.',
        '.BI \\-\\-port " PORT"',
        '.\\" .B commented',
    ])
    got = bold_tokens(src)
    assert {"tipc", "link", "statistics", "show", "-s", "--extended", "list", "get",
            "inline", "post", "--port"} <= got
    assert not {"LINK", "all", "italic", "PORT", "commented", "text"} & got
    (e,) = synopsis_entries(".SH SYNOPSIS\n" + src)
    assert e.path == ("link", "statistics", "show")
    assert e.options == ["-s", "--extended", "--port"]
    assert "list" in e.words and "LINK" not in e.words


def test_checks_can_fail() -> None:
    """An empty family page, or a page without one option, is reported."""
    pages = {p.name: p.read_text(encoding="utf-8") for p in MAN_DIR.iterdir() if p.is_file()}
    broken = dict(pages, **{"tipc-node.8": ".TH TIPC\\-NODE 8\n.SH SYNOPSIS\n.B tipc node\n"})
    probs = undocumented(pages=broken)
    assert any("tipc node list has no SYNOPSIS entry" in p for p in probs), probs
    no_check = dict(pages, **{"tipc.8": pages["tipc.8"].replace("\\-\\-check", "check")})
    assert any("--check" in p for p in undocumented(pages=no_check))
    assert tipcd_undocumented(".TH TIPCD 8\n.SH SYNOPSIS\n.B tipcd\n")
    fake = {"tipc-node.8": ".SH SYNOPSIS\n.B tipc node get\n.RB { bogus }\n"
                           ".br\n.B tipc node nosuch\n"}
    assert documented_but_missing(pages=fake) == ["tipc node get bogus", "tipc node nosuch"]


def test_usage_text_reader() -> None:
    text = ("Usage: tipc node set key KEY [algname ALGNAME] [PROPERTIES]\n"
            "       tipc node set key rekeying REKEYING\n\n"
            "PROPERTIES\n"
            "  master                - Set KEY as a cluster master key\n"
            "  nodeid NODEID         - Set KEY as a per-node key for own or peer\n"
            " ratio SIZE        - Set the AUTOSELECT criteria, percentage of\n"
            "                     destination nodes vs cluster size\n"
            " udp\t\t\t- User Datagram Protocol\n"
            "EXAMPLES\n"
            "  tipc node set key this_is_a_master_key master\n")
    assert _usage_words(text) == {"node", "set", "key", "algname", "rekeying", "master",
                                  "nodeid", "ratio", "udp"}


def test_cli_keywords_are_found() -> None:
    """The keyword reader sees what the bearer and link modules accept today."""
    assert {"media", "udp", "eth", "name", "localip", "localport", "remoteip", "remoteport",
            "device", "priority", "tolerance", "window", "mtu", "domain"} <= family_keywords(
        "bearer")
    assert "link" in family_keywords("link")


def test_every_cli_command_option_and_keyword_is_documented() -> None:
    problems = undocumented()
    assert not problems, "undocumented in man/:\n  " + "\n  ".join(problems)


def test_every_tipcd_option_is_documented() -> None:
    problems = tipcd_undocumented()
    assert not problems, "\n".join(problems)


def test_documented_commands_exist() -> None:
    missing = documented_but_missing()
    if not REVERSE_CHECK_ENABLED:
        if missing:
            pytest.skip("reverse check off; documented but not in the CLI yet: "
                        + "; ".join(missing))
        return
    assert not missing, "documented in man/ but missing from the CLI:\n  " + "\n  ".join(
        missing)

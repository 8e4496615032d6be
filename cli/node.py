"""`tipc node` - local node identity/address/network id, keys, and the peer nodes.

Output is byte-for-byte iproute2's (see ../shared/reference/cli/tipc-node.txt); like
iproute2, `-j` is ignored by this family (except by tipcpy's own `node get stats`).  `node set key` validates and stores the key
exactly as iproute2 + the kernel accept it, but tipcpy does not encrypt traffic yet: it
says so on stderr every time.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import die, emit_json, group, state
from tipcpy.runtime.ctlclient import cli_call

WORDS: dict[str, Any] = {"nargs": -1, "type": click.UNPROCESSED}
CTX = {"ignore_unknown_options": True}

ID_HEADER = f"{'Node Identity':<32} Hash"
LIST_HEADER = f"{'Node Identity':<32} {'Hash':<8} State"

GET_USAGE = """Usage: tipc node get PROPERTY

PROPERTIES
 identity              - Get node identity
 clusterid             - Get local clusterid"""

SET_USAGE = """Usage: tipc node set PROPERTY

PROPERTIES
 identity NODEID       - Set node identity
 clusterid CLUSTERID   - Set local cluster id
 key PROPERTY          - Set symmetric-key"""


KEY_USAGE = """Usage: tipc node set key KEY [algname ALGNAME] [PROPERTIES]
       tipc node set key rekeying REKEYING

KEY
  Symmetric KEY & SALT as a composite ASCII or hex string (0x...) in form:
  [KEY: 16, 24 or 32 octets][SALT: 4 octets]

ALGNAME
  Cipher algorithm [default: "gcm(aes)"]

PROPERTIES
  master                - Set KEY as a cluster master key
  <empty>               - Set KEY as a cluster key
  nodeid NODEID         - Set KEY as a per-node key for own or peer

REKEYING
  INTERVAL              - Set rekeying interval (in minutes) [0: disable]
  now                   - Trigger one (first) rekeying immediately

EXAMPLES
  tipc node set key this_is_a_master_key master
  tipc node set key 0x746869735F69735F615F6B657931365F73616C74
  tipc node set key this_is_a_key16_salt algname "gcm(aes)" nodeid 1001002
  tipc node set key rekeying 600
"""

STATS_USAGE = """Usage: tipc node get stats [reset]

OPTIONS
 reset                 - Forget the loop-lag and callback maxima"""

FLUSH_USAGE = """Usage: tipc node flush PROPERTY

PROPERTIES
 key                   - Flush all symmetric-keys"""

NOT_ENCRYPTED = ("warning: key accepted and stored, but tipcpy does not encrypt yet: "
                 "traffic is NOT encrypted")


@group("node")
def cmd() -> None:
    """List remote nodes, get, set and flush local node parameters.

    \b
    node list
    node get {address|identity|netid|clusterid}
    node get stats [reset]
    node set {address Z.C.N|identity NODEID|netid N|clusterid N}
    node set key KEY [algname ALGNAME] [master | nodeid NODEID]
    node set key rekeying {INTERVAL|now}
    node flush key
    """


@cmd.command("list")
def node_list() -> None:
    """List remote nodes."""
    nodes = cli_call("node.list")
    click.echo(LIST_HEADER)
    for n in nodes:
        click.echo(f"{n['identity']:<32} {n['address']:08x} {'up' if n['up'] else 'down'}")


@group("get", invoke_without_command=True)
@click.pass_context
def get(ctx: click.Context) -> None:
    """Get local node parameters (address, identity, netid, clusterid)."""
    if ctx.invoked_subcommand is None:
        die(GET_USAGE)


cmd.add_command(get)


@get.command("address")
def get_address() -> None:
    """Node address (hash of the identity), as %08x."""
    click.echo(f"{cli_call('node.get')['address']:08x}")


@get.command("identity")
def get_identity() -> None:
    """Node identity and its hash."""
    info = cli_call("node.get")
    click.echo(ID_HEADER)
    click.echo(f"{info['identity']:<32} {info['address']:08x}")


@get.command("netid")
def get_netid() -> None:
    """Network (cluster) id."""
    click.echo(str(cli_call("node.get")["netid"]))


@get.command("clusterid")
def get_clusterid() -> None:
    """Cluster id (the same value as netid)."""
    click.echo(str(cli_call("node.get")["clusterid"]))


@get.command("stats")
@click.argument("words", **WORDS)
def get_stats(words: tuple[str, ...]) -> None:
    """tipcpy's own: the daemon's loop lag, contained errors and refusals (`reset`
    forgets the maxima).  With -j: everything tipcd counts, as JSON."""
    reset = False
    for w in words:
        if w == "reset":
            reset = True
        else:
            die(STATS_USAGE)
    st = cli_call("daemon.stats", {"reset": True} if reset else {})
    if state().json:
        emit_json(st)
        return
    lp = st["loop"]
    click.echo(f"Loop lag max {lp['loop_lag_max_ms']:.1f} ms recent "
               f"{lp['loop_lag_recent_ms']:.1f} ms")
    click.echo(f"  callback max {lp['callback_max_ms']:.1f} ms "
               f"({lp['callback_max_site'] or '-'}) recent {lp['callback_recent_ms']:.1f} ms")
    click.echo(f"  callback cpu max {lp['callback_cpu_max_ms']:.1f} ms "
               f"({lp['callback_cpu_max_site'] or '-'}) gc pause max "
               f"{lp['gc_pause_max_ms']:.1f} ms")
    click.echo(f"  timer fires {st['runtime']['timer_fires']} "
               f"contained errors {lp['contained_errors']}")
    for kind, n in sorted(lp["contained_by_kind"].items()):
        click.echo(f"    {kind}: {n}")
    cl, ct, sm = st.get("clients", {}), st.get("control", {}), st["streams"]
    if cl:
        click.echo(f"Client sockets now {cl['clients_now']} total {cl['clients_total']} "
                   f"in {cl['in_bytes']} B out {cl['out_bytes']} B")
        click.echo(f"  refused too-many {cl['refused_too_many']} in-budget "
                   f"{cl['refused_in_budget']} out-budget {cl['refused_out_budget']} "
                   f"slow-reader {cl['disconnect_slow_reader']}")
    if ct:
        click.echo(f"Control connections now {ct['conns_now']} total {ct['conns_total']} "
                   f"requests {ct['requests']} in {ct['in_bytes']} B")
        click.echo(f"  refused too-many {ct['refused_too_many']} in-budget "
                   f"{ct['refused_in_budget']} too-long {ct['refused_too_long']}")
    click.echo(f"Event streams now {sm['streams']} queued {sm['queued']} "
               f"(high {sm['queued_high']} cap {sm['cap']})")
    click.echo(f"  refused too-many {sm['refused_too_many']} overflow "
               f"{sm['refused_overflow']}")
    mem = st.get("memory", {})
    if mem.get("rss_kb"):
        click.echo(f"Memory rss {mem['rss_kb']} kB peak {mem['rss_peak_kb']} kB")


@group("set", invoke_without_command=True)
@click.pass_context
def set_(ctx: click.Context) -> None:
    """Set local node parameters (identity, netid, clusterid)."""
    if ctx.invoked_subcommand is None:
        die(SET_USAGE)


cmd.add_command(set_)


def _one(value: tuple[str, ...], what: str) -> str:
    if not value:
        die("error, missing value")
    if len(value) > 1:
        die(f"error, unexpected argument \"{value[1]}\" after {what}")
    return value[0]


@set_.command("identity")
@click.argument("value", nargs=-1)
def set_identity(value: tuple[str, ...]) -> None:
    """Set the 128-bit node identity (string of up to 16 chars, or hex)."""
    cli_call("node.set", {"identity": _one(value, "identity")})


@set_.command("address")
@click.argument("value", nargs=-1)
def set_address(value: tuple[str, ...]) -> None:
    """Set the node address (Z.C.N, or a hash in hex) - only while no bearer is up."""
    if not value:
        die("Usage: tipc node set address ADDRESS")
    cli_call("node.set", {"address": _one(value, "address")})


@set_.command("key", context_settings=CTX)
@click.argument("words", metavar="KEY [algname ALGNAME] [master|nodeid NODEID] | rekeying "
                "{INTERVAL|now}", **WORDS)
def set_key(words: tuple[str, ...]) -> None:
    """Set a symmetric key: KEY [algname ALGNAME] [master | nodeid NODEID], or
    rekeying {INTERVAL|now}.  Stored only: tipcpy does not encrypt yet."""
    w = list(words)
    if not w:
        die(KEY_USAGE)
    args: dict[str, object] = {}
    if w[0] == "rekeying":
        if len(w) != 2:
            die(KEY_USAGE)
        args["rekeying"] = w[1]
    else:
        args["key"] = w[0]
        rest = w[1:]
        while rest:
            word = rest.pop(0)
            if word == "master":
                args["master"] = True
            elif word in ("algname", "nodeid"):
                if not rest:
                    die(f"error, missing value for \"{word}\"")
                args[word] = rest.pop(0)
            else:
                die(f"error, invalid option \"{word}\"\n{KEY_USAGE}")
        if args.get("master") and "nodeid" in args:
            die("error, master and nodeid are mutually exclusive")
    cli_call("node.key.set", args)
    click.echo(NOT_ENCRYPTED, err=True)


@set_.command("netid")
@click.argument("value", nargs=-1)
def set_netid(value: tuple[str, ...]) -> None:
    """Set the network id (1-9999)."""
    cli_call("node.set", {"netid": _one(value, "netid")})


@set_.command("clusterid")
@click.argument("value", nargs=-1)
def set_clusterid(value: tuple[str, ...]) -> None:
    """Set the cluster id (same as netid)."""
    cli_call("node.set", {"clusterid": _one(value, "clusterid")})


@group("flush", invoke_without_command=True)
@click.pass_context
def flush(ctx: click.Context) -> None:
    """Flush local node parameters: key."""
    if ctx.invoked_subcommand is None:
        die(FLUSH_USAGE)


cmd.add_command(flush)


@flush.command("key")
def flush_key() -> None:
    """Flush all symmetric keys."""
    cli_call("node.key.flush")

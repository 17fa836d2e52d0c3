"""hoplab's command line: one small class per verb, each turning arguments into calls on the
spec, the renderers or a backend. Bad input (a topology, an argument) exits 2 before anything
is created; a lab that cannot be brought to the asked state exits 1."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from hoplab import bounded, compose, graph, spec, userfile
from hoplab.backends.base import Backend, BackendError, NodeStatus, PreflightError
from hoplab.paths import CHAOS_JOURNAL, COMPOSE_DIR, DEFAULT_TOPOLOGY
from hoplab.progress import Progress
from hoplab.services import CatalogError

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A bad argument: reported like a bad topology, exit 2."""


BACKENDS = ("docker", "netns")


def make_backend(name: str) -> Backend:
    if name == "docker":
        from hoplab.backends.docker import DockerBackend

        return DockerBackend()
    if name == "netns":
        from hoplab.backends.netns import NetnsBackend

        return NetnsBackend()
    raise UsageError(f"--backend: unknown backend {name!r} (backends: {', '.join(BACKENDS)})")


def choose_backend(args: argparse.Namespace) -> tuple[str, str]:
    """The backend when --backend is not given, and why: the one the lab is running on; else
    Docker when an engine is reachable or installable (`make up` installs it); else netns."""
    from hoplab.backends.engine import Engine
    from hoplab.backends.netns import NetnsBackend

    try:
        lab = spec.load(args.topology).name if args.verb != "clean" or not args.all else None
    except (spec.TopologyError, CatalogError):
        lab = None  # the verb itself reports the bad file
    if lab and NetnsBackend().running(lab):
        return "netns", f"lab {lab!r} is running on it"
    if Engine().reachable():
        return "docker", "a Docker engine is reachable"
    installable = bounded.run(["apt-cache", "show", "docker.io"], capture_output=True, timeout=30).returncode == 0
    if installable:
        return "docker", "no engine is running, but docker.io can be installed (`make up` does)"
    return "netns", "no Docker engine is reachable or installable"


# ------------------------------------------------------------ the checks every door shares
# The CLI and the web UI (hoplab.ui) validate with these same functions: a bad value gets the
# same sentence from both.

MAX_URL_CHARS = 2000


def check_url(url: str) -> str:
    """A URL a lab client can load: http:// or https://, no whitespace or control characters."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"URL: {url!r} is not an http:// or https:// URL")
    if len(url) > MAX_URL_CHARS:
        raise UsageError(f"URL: longer than {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UsageError(f"URL: {url!r} contains whitespace or control characters")
    return url


def check_lab_url(topology: spec.Topology, url: str, what: str = "URL") -> str:
    """An http(s) URL whose host is a name of the lab's domain: load goes to the lab only."""
    from urllib.parse import urlsplit

    try:
        check_url(url)
    except UsageError as exc:
        raise UsageError(str(exc).replace("URL:", f"{what}:", 1)) from None
    host = urlsplit(url).hostname or ""
    domain = topology.domain.name
    if host != domain and not host.endswith("." + domain):
        raise UsageError(f"{what}: {host!r} is not a name of the lab's domain {domain!r}")
    return url


def check_node(topology: spec.Topology, node: str, what: str = "NODE") -> str:
    if node not in topology.nodes:
        raise UsageError(f"{what}: unknown node {node!r} (nodes: {', '.join(topology.nodes)})")
    return node


def visit_client(topology: spec.Topology, node: str | None) -> str:
    """The node `visit --from` names, else the first client."""
    clients = [n.name for n in topology.nodes_of("client")]
    node = node or (clients[0] if clients else None)
    if node is None:
        raise UsageError("--from: the topology has no client node; name one")
    return check_node(topology, node, "--from")


def check_trace_id(text: str) -> str:
    trace_id = text.strip().lower()
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        raise UsageError(f"ID: {text!r} is not a trace id (32 hex digits)")
    return trace_id


PARAM_KEY = re.compile(r"[a-z][a-z_]{0,31}")


def parse_params(items: list[str]) -> dict[str, str]:
    """`--param KEY=VALUE`, repeated: each key once. The values stay text here; the fault's
    declared kinds check them (`hoplab.chaos.params`), for every door alike."""
    params: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not PARAM_KEY.fullmatch(key):
            raise UsageError(f"--param: expected KEY=VALUE, got {item!r}")
        if key in params:
            raise UsageError(f"--param {key}: given twice")
        params[key] = value
    return params


def check_load(topology: spec.Topology, *, users: int, rate: float, seconds: int, shape: str | None = None,
               workers: int = 0, node: str | None = None, slo: Path | None = None,
               locustfile: Path | None = None, arrival_rate: float = 0, trace_sample: int | None = None) -> None:
    """`hoplab load`'s bounds: the first one a value breaks, as `--OPTION: ...`; then the SLO
    file against its schema."""
    from hoplab.load import DEFAULT_SLO, OPEN_SHAPE, SHAPE_NAMES, TRACED_RUN_MAX_S, SloError, read_slo

    clients = [n.name for n in topology.nodes_of("client")]
    checks = [(users < 1 or users > 5000, f"--users: {users} is outside 1..5000"),
              (rate <= 0 or rate > 1000, f"--spawn-rate: {rate} is outside (0, 1000]"),
              (seconds < 1 or seconds > 3600, f"--run-time: {seconds} s is outside 1 s..1h"),
              (shape == OPEN_SHAPE and not 0 < arrival_rate <= 10000,
               f"--arrival-rate: the open shape needs a rate in (0, 10000] tasks/s (given {arrival_rate:g})"),
              (shape != OPEN_SHAPE and arrival_rate != 0, "--arrival-rate: only the open shape (--shape open) takes it"),
              (workers < 0 or workers > 16, f"--workers: {workers} is outside 0..16"),
              (trace_sample is not None and not 1 <= trace_sample <= 1_000_000,
               f"--trace-sample: {trace_sample} is outside 1..1000000 (one request in N traced)"),
              (trace_sample is not None and seconds > TRACED_RUN_MAX_S,
               f"--trace-sample: a traced run lasts at most {TRACED_RUN_MAX_S} s (--run-time is {seconds} s)"),
              (shape is not None and shape not in SHAPE_NAMES,
               f"--shape: unknown shape {shape!r} (shapes: {', '.join(SHAPE_NAMES)})"),
              (node is not None and node not in clients,
               f"--from: {node!r} is not a client node (clients: {', '.join(clients)})"),
              (not clients, "the topology has no client node to load from"),
              (slo is not None and not slo.is_file(), f"--slo: {slo} is not a file"),
              (locustfile is not None and not locustfile.is_file(), f"--locustfile: {locustfile} is not a file"),
              (locustfile is not None and locustfile.suffix != ".py",
               f"--locustfile: {locustfile} is not a Python file (.py)")]
    for failed, message in checks:
        if failed:
            raise UsageError(message)
    try:
        read_slo(slo or DEFAULT_SLO)
    except SloError as exc:  # FILE: FIELD: REASON, one line each
        raise UsageError(f"invalid SLO file:\n{exc}") from None


class Command:
    name = ""
    help = ""
    needs_topology = True
    uses_backend = True  # False: the verb reads files only (no backend is chosen or named)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def check(self, args: argparse.Namespace) -> None:
        """Check every argument before anything acts (expired faults are reaped only after):
        raise UsageError. A verb that touches a lab (LAB_VERBS) checks all its arguments here;
        tests/unit/test_check_before_reap.py holds each of them to it."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    @staticmethod
    def topology(args: argparse.Namespace) -> spec.Topology:
        """The verb's topology, loaded (and so validated) once per command."""
        if getattr(args, "loaded_topology", None) is None:
            args.loaded_topology = spec.load(args.topology)
        return args.loaded_topology


def print_table(statuses: list[NodeStatus], stream=None, memory: dict[str, int] | None = None) -> None:
    """The nodes as a table; with `memory` (bytes per node), a MEMORY column and the lab's total."""
    from hoplab.memory import mib

    stream = stream or sys.stdout
    rows = [("NODE", "SERVICE", "STATE", "HEALTH", *(("MEMORY",) if memory is not None else ()), "ADDRESSES")]
    for s in statuses:
        addresses = ", ".join(f"{iface} {addr}" for iface, addr in sorted(s.addresses.items())) or "-"
        used = ((mib(memory[s.node]) if s.node in memory else "-",) if memory is not None else ())
        rows.append((s.node, s.service, s.state, s.health, *used, addresses))
    columns = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:columns])) + "  " + row[-1], file=stream)
    if memory is not None:
        print(f"lab total: {mib(sum(memory.values()))} (Pss of every process in the lab's nodes)", file=stream)


class Up(Command):
    name, help = "up", "build what is missing, start the lab, wait until every node is healthy"

    def add_arguments(self, parser):
        parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines")

    def run(self, args):
        topology = self.topology(args)
        progress = Progress(quiet=args.quiet)
        progress.say(f"lab {topology.name!r} from {topology.source} on the {args.backend} backend"
                     + (f" ({args.backend_reason})" if args.backend_reason else ""))
        print_table(make_backend(args.backend).up(topology, progress))
        return 0


class Down(Command):
    name, help = "down", "stop the lab and remove its containers, networks, volumes and host rules"

    def run(self, args):
        progress = Progress()
        return report_cleaned("down", make_backend(args.backend).down(self.topology(args), progress), progress)


def report_cleaned(verb: str, cleaned, progress: Progress) -> int:
    """What `down` or `clean` removed (progress lines), what it could not (always, on stderr);
    exit 1 when anything could not be removed."""
    for item in cleaned.removed:
        progress.say(f"removed {item}")
    for failure in cleaned.failed:
        print(f"hoplab {verb}: could not remove {failure}", file=sys.stderr)
    progress.say(f"{verb}: {len(cleaned.removed)} item(s) removed"
                 + (f", {len(cleaned.failed)} could not be removed" if cleaned.failed else ""))
    return 1 if cleaned.failed else 0


class Status(Command):
    name, help = "status", "show each node's state, health and addresses"

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args):
        from hoplab import balancing
        from hoplab.memory import node_memory

        topology = self.topology(args)
        backend = make_backend(args.backend)
        statuses = backend.status(topology)
        memory = node_memory(backend.node_pids(topology))
        agents = agent_report(backend, topology, statuses)
        balancers = balancing.read(backend, topology, statuses)
        impairments = {f"{node.name}:{i.network}": str(i.impairment) for node in topology.nodes.values()
                       for i in node.interfaces if i.impairment}  # the topology's, which each node applies
        if args.json:
            print(json.dumps({"lab": topology.name, "backend": args.backend,
                              "nodes": [{**s.to_json(), "memory_bytes": memory.get(s.node)} for s in statuses],
                              "memory_bytes": sum(memory.values()), "agents": agents, "balancers": balancers,
                              "impairments": impairments}, indent=2))
        else:
            print_table(statuses, memory=memory)
            for line in balancing.lines(balancers):
                print(f"balancer {line}")
            for end, said in impairments.items():
                print(f"impaired {end}: {said}")
            for node, said in agents.items():
                print(f"agent on {node}: {said}")
        return 0


AGENT_ASK_S = 5  # how long `status` waits for the control service's list of agents


def agent_report(backend: Backend, topology: spec.Topology, statuses: list[NodeStatus],
                 now_ns: int | None = None) -> dict[str, str]:
    """node -> what is wrong with its capture agent, as the control service knows it: not
    attached, or its last failure (it started over). Only running nodes' agents, and only when
    the control node runs; {} when all is well."""
    from hoplab.control.client import ControlClient

    running = {s.node for s in statuses if s.state == "running"}
    if topology.management is None or spec.CONTROL_NODE not in running:
        return {}
    try:
        client = ControlClient.of(backend, topology)
        try:
            attached = {n.name: n for n in client.nodes(timeout=AGENT_ASK_S)}
        finally:
            client.close()
    except BackendError as exc:
        return {spec.CONTROL_NODE: f"the control service did not list its agents: {exc}"}
    now_ns = time.time_ns() if now_ns is None else now_ns
    report = {}
    for node in sorted(running - {spec.CONTROL_NODE}):
        agent = attached.get(node)
        if agent is None:
            report[node] = "not attached to the control service (no trace sees this node)"
        elif agent.last_error:
            ago = max(now_ns - agent.last_error_ns, 0) / 1e9
            report[node] = (f"started over {agent.restarts} time(s); last failure {ago:.0f} s ago: "
                            f"{agent.last_error}")
    return report


class Exec(Command):
    name, help = "exec", "run a command in a node: hoplab exec NODE -- CMD..."

    def add_arguments(self, parser):
        parser.add_argument("node")
        parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")

    def check(self, args):
        check_node(self.topology(args), args.node)
        if not (args.command[1:] if args.command[:1] == ["--"] else args.command):
            raise UsageError("CMD: no command given (hoplab exec NODE -- CMD...)")

    def run(self, args):
        topology = self.topology(args)
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return make_backend(args.backend).exec(topology, args.node, command, sys.stdin.isatty())


class NodeCommand(Command):
    """stop, start, restart: one node's service, as `docker compose stop|start|restart` does."""

    def add_arguments(self, parser):
        parser.add_argument("node", metavar="NODE")
        parser.add_argument("--time", type=float, default=5,
                            help="seconds to wait for a clean stop before SIGKILL (default 5)")

    def check(self, args):
        check_node(self.topology(args), args.node)
        if not 0 <= args.time <= 600:
            raise UsageError(f"--time: {args.time:g} is outside 0..600 seconds")

    def run(self, args):
        topology = self.topology(args)
        backend, progress = make_backend(args.backend), Progress()
        if self.name in ("stop", "restart"):
            backend.stop_node(topology, args.node, args.time)
            progress.say(f"{args.node}: stopped")
        if self.name in ("start", "restart"):
            backend.start_node(topology, args.node, progress)
        return 0


class Stop(NodeCommand):
    name, help = "stop", "stop one node's service (the node keeps its addresses)"


class Start(NodeCommand):
    name, help = "start", "start a stopped node's service and wait until it is healthy"


class Restart(NodeCommand):
    name, help = "restart", "stop, then start, one node's service"


class Clean(Command):
    name, help = "clean", "remove everything hoplab made for the lab, whatever state it was left in"

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="every hoplab lab, not just this topology's")
        parser.add_argument("--images", action="store_true",
                            help="also what labs share: every Docker image hoplab built (hoplab/*; never "
                                 "another's) and the netns backend's service caches")

    def run(self, args):
        from hoplab.backends.base import Cleaned

        lab = None if args.all else self.topology(args).name
        progress = Progress()
        # Without --backend, every backend: after a crash nothing says where the lab ran, and
        # each backend removes only what it made (found by its marks).
        backends = (args.backend,) if args.backend_explicit else BACKENDS
        cleaned = Cleaned()
        for name in backends:
            cleaned.extend(make_backend(name).clean(lab, progress))
        for name in backends if args.images else ():
            cleaned.extend(make_backend(name).clean_images(progress))
        return report_cleaned("clean", cleaned, progress)


class Render(Command):
    name, help = "render", "write compose/<lab>.yml and its runtime JSON from the topology"
    uses_backend = False

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
        parser.add_argument("--output-dir", type=Path, default=COMPOSE_DIR)

    def run(self, args):
        topology = self.topology(args)
        runtime_name = f"{topology.name}{compose.RUNTIME_FILE_SUFFIX}"
        files = {
            args.output_dir / f"{topology.name}.yml": compose.render(topology, topology.services, runtime_name),
            args.output_dir / runtime_name: topology.runtime_json(),
        }
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        if args.check:
            for path in stale:
                print(f"{path}: stale; run `hoplab render --topology {args.topology}`", file=sys.stderr)
            return 1 if stale else 0
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text)
            print(path)
        return 0


class Graph(Command):
    name, help = "graph", "draw the topology (SVG, PNG, DOT or Mermaid)"
    uses_backend = False

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", type=Path, help="file to write; the suffix picks the format")
        parser.add_argument("--format", choices=graph.FORMATS, help="override the format the suffix implies")

    def run(self, args):
        topology = self.topology(args)
        if args.output is None:
            fmt = args.format or "dot"
            if fmt not in ("dot", "mermaid"):
                raise UsageError(f"--format {fmt} needs -o FILE")
            sys.stdout.write(graph.to_dot(topology) if fmt == "dot" else graph.to_mermaid(topology))
            return 0
        try:
            fmt = args.format or graph.format_for(args.output)
        except graph.GraphError as exc:
            raise UsageError(f"-o: {exc}") from None
        print(graph.write(topology, args.output, fmt))
        return 0


def timeout(args) -> dict:
    """--max-time for visit(), when given (else its own default)."""
    return {} if args.max_time is None else {"max_time": args.max_time}


def report_traced(verb: str, result, trace, as_json: bool) -> int:
    """A traced exchange (a visit, a game) and its trace, as text or JSON (`{VERB: ..., "trace":
    ...}`); the exit status: a trace that misses packets is no success."""
    from hoplab.trace import render

    if as_json:
        print(json.dumps({verb: result.to_json(), "trace": render.to_json(trace)}, indent=2))
    else:
        print(result.render() + "\n\n" + render.to_table(trace))
    for line in render.gaps_text(trace):
        print(f"hoplab {verb}: {line}", file=sys.stderr)
    return 0 if result.ok and not trace.gaps else 1


class Visit(Command):
    name, help = "visit", "load a URL from a lab client and report each phase, the replica and the cache"

    def add_arguments(self, parser):
        parser.add_argument("url")
        parser.add_argument("--from", dest="node", help="the client node (default: the first client)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--trace", action="store_true", help="capture on every node and print the hop table")
        parser.add_argument("--renew", action="store_true", help="renew the client's DHCP lease first (implies --trace)")
        parser.add_argument("--max-time", type=float, metavar="SECONDS",
                            help="curl's bound on the whole page load, 1..120 (default: hoplab.visit.TIMEOUT_S, 15)")

    def check(self, args):
        visit_client(self.topology(args), args.node)
        check_url(args.url)
        if args.max_time is not None and not 1 <= args.max_time <= 120:
            raise UsageError(f"--max-time: {args.max_time:g} is outside 1..120 seconds")

    def run(self, args):
        from hoplab.visit import traced_visit, visit

        topology = self.topology(args)
        node = visit_client(topology, args.node)
        backend = make_backend(args.backend)
        if args.trace or args.renew:
            result, trace = traced_visit(backend, topology, args.url, node, renew=args.renew, **timeout(args))
            return report_traced("visit", result, trace, args.json)
        result = visit(backend, topology, args.url, node, **timeout(args))
        print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
        return 0 if result.ok else 1


class Play(Command):
    name, help = "play", "play the lab's online game (UDP) from a lab client: round trips, lost moves, the NAT's address"

    def add_arguments(self, parser):
        parser.add_argument("target", nargs="?", help="udp://HOST[:PORT], a name of the lab's domain "
                                                      "(default: udp://game.DOMAIN:7777)")
        parser.add_argument("--from", dest="node", help="the client node (default: the first client)")
        parser.add_argument("--moves", type=int, default=20, help="moves to send (default 20)")
        parser.add_argument("--interval", type=float, default=0.05, help="seconds between moves (default 0.05)")
        parser.add_argument("--wait", type=float, default=1.0, help="seconds to wait for late answers (default 1)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--trace", action="store_true", help="capture on every node and print the hop table")

    def check(self, args):
        from hoplab.node.game import check_bounds
        from hoplab.play import default_target, parse_target

        topology = self.topology(args)
        visit_client(topology, args.node)
        args.target = args.target or default_target(topology)
        try:
            parse_target(args.target, topology)
        except ValueError as exc:
            raise UsageError(f"target: {exc}") from None
        said = check_bounds(args.moves, args.interval, args.wait)
        if said:
            raise UsageError(said)

    def run(self, args):
        from hoplab.play import play, traced_play

        topology = self.topology(args)
        node = visit_client(topology, args.node)
        backend = make_backend(args.backend)
        bounds = {"moves": args.moves, "interval": args.interval, "wait": args.wait}
        if not args.trace:
            result = play(backend, topology, node, args.target, **bounds)
            print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
            return 0 if result.ok else 1
        result, trace = traced_play(backend, topology, node, args.target, **bounds)
        return report_traced("play", result, trace, args.json)


class Trace(Command):
    name, help = "trace", "list the traces the control service keeps, or show one"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="traces kept by the control service", parents=[common_options()])
        show = sub.add_parser("show", help="one trace as a table, JSON, HTML or pcapng", parents=[common_options()])
        show.add_argument("trace_id", metavar="ID")
        show.add_argument("--format", "-f", default="table", choices=["table", "json", "html", "pcapng"])
        show.add_argument("-o", "--output", type=Path, help="write to FILE (html and pcapng need one)")
        show.add_argument("--every-hop", action="store_true",
                          help="pcapng: every sighting of each packet (one interface block per node:iface), "
                               "not each wire packet once")
        show.add_argument("--keylog", type=Path, metavar="FILE",
                          help="more TLS session keys to decrypt with (SSLKEYLOGFILE, NSS key log format)")
        show.add_argument("--raw", action="store_true",
                          help="frames as captured, credentials (SMTP AUTH, IMAP LOGIN, SQL passwords) in clear; "
                               "by default they are masked with '*'")

    def check(self, args):
        from hoplab.trace.tls import KeyLog, KeyLogError

        if args.action != "show":
            return
        check_trace_id(args.trace_id)
        if args.format in ("html", "pcapng") and args.output is None:
            raise UsageError(f"--format {args.format} needs -o FILE")
        args.keys = ""
        if args.keylog:
            try:
                args.keys = KeyLog.parse(args.keylog.read_text(), source=f"--keylog {args.keylog}").text
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"--keylog {args.keylog}: cannot read it: {exc}") from None
            except KeyLogError as exc:
                raise UsageError(str(exc)) from None

    def run(self, args):
        from hoplab.control.client import ControlClient
        from hoplab.trace import render

        if args.action == "list":
            for summary in ControlClient.of(make_backend(args.backend), self.topology(args)).traces():
                print(f"{summary.trace_id}  {summary.status or '-':>3}  {summary.hops:6d} records  {summary.url}")
            return 0
        control = ControlClient.of(make_backend(args.backend), self.topology(args))  # every argument checked first
        trace = control.trace(check_trace_id(args.trace_id), tls_keylog=args.keys, raw=args.raw)
        if args.format in ("json", "pcapng"):  # the outputs that carry frames or say what they hold
            print(f"hoplab trace: {render.credentials_note(trace)}", file=sys.stderr)
        if args.format == "table":
            text = render.to_table(trace) + "\n"
        elif args.format == "json":
            text = json.dumps(render.to_json(trace), indent=2) + "\n"
        elif args.format == "html":
            text = render.to_html(trace)
        else:
            args.output.write_bytes(render.to_pcapng(trace, every_hop=args.every_hop))
            print(args.output)
            return 0
        if args.output:
            args.output.write_text(text)
            print(args.output)
        else:
            sys.stdout.write(text)
        return 0


def timespan(text: str) -> int:
    """argparse type for Locust's run-time syntax (its error names the option)."""
    from hoplab.load import parse_timespan

    try:
        return parse_timespan(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Load(Command):
    name, help = "load", "run Locust headless from lab clients; reports in reports/<timestamp>/, exit 1 on an SLO breach"

    def add_arguments(self, parser):
        # Locust's option names (-u, -r, --run-time; -t stays every verb's --topology), with
        # hoplab's first names kept as aliases
        parser.add_argument("-u", "--users", type=int, default=10, help="concurrent users (default 10)")
        parser.add_argument("-r", "--spawn-rate", "--rate", dest="rate", type=float, default=5,
                            help="users started per second (default 5)")
        parser.add_argument("--run-time", "--time", dest="time", type=timespan, default=30,
                            help="the run's bound in Locust's units: 90, 30s, 5m, 1h30m (default 30s)")
        parser.add_argument("--shape", help="a load shape from loadtests/shapes.py: steady, step, spike (closed "
                                            "models), open (a constant arrival rate: --arrival-rate)")
        parser.add_argument("--arrival-rate", type=float, default=0,
                            help="tasks started per second across the users, whatever the answers' pace "
                                 "(--shape open only)")
        parser.add_argument("--workers", type=int, default=0, help="Locust workers on client nodes (distributed)")
        parser.add_argument("--from", dest="node", help="the client node that runs Locust (default: the first)")
        parser.add_argument("--slo", type=Path, help="SLO thresholds (default loadtests/slo.yaml)")
        parser.add_argument("--no-cache", action="store_true", help="bust the CDN cache (unique query strings)")
        parser.add_argument("--locustfile", type=Path,
                            help="your own locustfile (default: the topology's load.locustfile, else loadtests/)")
        parser.add_argument("--host", help="Locust's --host, a URL in the lab's domain "
                                           "(default: https://www.DOMAIN; with your own locustfile: its users' host)")
        parser.add_argument("--trace-sample", type=int, metavar="N",
                            help="trace about one request in N end to end while the load runs; the report lists "
                                 "the slowest sampled requests, where their time went, and their traces")

    def check(self, args):
        topology = self.topology(args)
        check_load(topology, users=args.users, rate=args.rate, seconds=args.time, shape=args.shape,
                   workers=args.workers, node=args.node, slo=args.slo, locustfile=args.locustfile,
                   arrival_rate=args.arrival_rate, trace_sample=args.trace_sample)
        if args.host is not None:
            check_lab_url(topology, args.host, "--host")

    def run(self, args):
        from hoplab.load import DEFAULT_SLO, LoadOptions, run_load
        from hoplab.load_traces import text_lines

        topology = self.topology(args)
        options = LoadOptions(users=args.users, rate=args.rate, seconds=args.time, shape=args.shape,
                              workers=args.workers, node=args.node, slo=args.slo or DEFAULT_SLO,
                              no_cache=args.no_cache, locustfile=args.locustfile or topology.locustfile,
                              host=args.host.rstrip("/") if args.host else None, arrival_rate=args.arrival_rate,
                              trace_sample=args.trace_sample or 0)
        result = run_load(make_backend(args.backend), topology, options, Progress())
        total = result.summary["total"]
        print(f"model: {result.summary['model']['said']}")
        # THROTTLED: 429s from the edge's rate limit, never counted as failures
        print(f"{'ENDPOINT':<28}{'REQS':>8}{'FAILS':>7}{'THROTTLED':>10}{'REQ/S':>9}{'P50':>8}{'P95':>8}{'P99':>8}")
        for row in [*result.summary["endpoints"], total]:
            print(f"{row['name'] if row is not total else 'all':<28}{row['requests']:>8}{row['failures']:>7}"
                  f"{row['throttled']:>10}{row['rps']:>9.1f}{row['p50_ms']:>8.0f}{row['p95_ms']:>8.0f}{row['p99_ms']:>8.0f}")
        if total["throttled"]:
            print(f"throttled: {total['throttled']} of {total['requests']} requests ({total['throttled_ratio']:.1%}) "
                  "answered 429 by the edge's rate limit; not failures")
        samples = result.summary.get("samples")
        if samples is not None:
            print("\n".join(text_lines(samples)))
            for row in samples["slowest"]:  # a trace that misses packets is no success
                for gap in row.get("gaps", ()):
                    print(f"hoplab load: trace {row['trace_id']}: {gap}", file=sys.stderr)
        print(f"reports: {result.report_dir}")
        for breach in result.breaches:
            print(f"SLO breached: {breach}", file=sys.stderr)
        return 1 if result.breaches or (samples and samples["incomplete"]) else 0


class ChaosCommand(Command):
    name, help = "chaos", "break the lab on purpose, bounded in time: list, inject, status, halt, run FILE"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="the faults there are", parents=[common_options()])
        inject = sub.add_parser("inject", help="inject a fault until its deadline (Ctrl-C reverts it)",
                                parents=[common_options()])
        inject.add_argument("fault", metavar="FAULT")
        inject.add_argument("--target", required=True, help="NODE or NODE:IFACE")
        inject.add_argument("--duration", type=float, default=60, help="seconds until it is reverted (default 60)")
        inject.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        inject.add_argument("--detach", action="store_true", help="return at once; the deadline still holds")
        sub.add_parser("status", help="active faults and what they did", parents=[common_options()])
        sub.add_parser("halt", help="revert every active fault now", parents=[common_options()])
        sub.add_parser("reap", help=argparse.SUPPRESS, parents=[common_options()])
        experiment = sub.add_parser("run", help="run a chaos experiment file; writes a JSON journal",
                                    parents=[common_options()])
        experiment.add_argument("file", metavar="FILE", type=Path)
        experiment.add_argument("--journal", type=Path, help="where to write it (default build/run/<lab>/experiments/)")
        experiment.add_argument("--from", dest="node", help="the client that probes (default: the first)")

    def check(self, args):
        from hoplab.chaos import experiment
        from hoplab.chaos.faults import FaultError, prepare

        if args.action == "inject":
            try:
                prepare(self.topology(args), args.fault, args.target, args.duration, parse_params(args.param))
            except FaultError as exc:
                raise UsageError(str(exc)) from None
        elif args.action == "run":
            try:
                experiment.load(args.file, self.topology(args))
            except experiment.ExperimentError as exc:  # FILE: FIELD: REASON, one line each
                raise UsageError(f"invalid experiment:\n{exc}") from None
            client_node(self.topology(args), args.node)

    def run(self, args):
        from hoplab.chaos.faults import CATALOGUE, FaultError
        from hoplab.chaos.journal import Chaos

        if args.action == "list":
            for fault in CATALOGUE.values():
                params = ", ".join(f"{k}={p.default} ({p.describe()})" for k, p in fault.params.items())
                target = "NODE:IFACE" if fault.needs_iface else (f"a {fault.service} node" if fault.service else "NODE")
                print(f"{fault.name:<20}{fault.family:<11}{target:<16}{fault.description}" + (f" [{params}]" if params else ""))
            return 0
        chaos = Chaos(make_backend(args.backend), self.topology(args))
        if args.action == "reap":
            chaos.reap()
            return 0
        if args.action == "run":
            return self.experiment(args, chaos)
        if args.action == "halt":
            for entry in chaos.halt():
                print(f"reverted {entry.id} {entry.fault} on {entry.node}")
            return 0
        if args.action == "status":
            now = time.time()
            for entry in chaos.entries()[-20:]:
                left = f"{entry.deadline - now:5.0f} s left" if entry.state == "active" else entry.state
                print(f"{entry.id}  {entry.fault:<20}{entry.node + (':' + entry.iface if entry.iface else ''):<18}"
                      f"{left:<14}{entry.symptom}" + ("".join(f"  ({n})" for n in entry.notes)))
            return 0
        params = parse_params(args.param)
        try:
            entry = chaos.inject(args.fault, args.target, args.duration, params)
        except FaultError as exc:
            raise UsageError(str(exc)) from None
        chaos.start_reaper()
        print(f"injected {entry.id} {entry.fault} on {args.target} for {args.duration:g} s: {entry.symptom}")
        if args.detach:
            return 0
        try:
            while time.time() < entry.deadline:
                time.sleep(min(0.5, max(entry.deadline - time.time(), 0)))
        except KeyboardInterrupt:
            pass
        chaos.revert(entry.id)
        print(f"reverted {entry.id}")
        return 0

    @staticmethod
    def experiment(args, chaos) -> int:
        from hoplab.chaos import experiment

        try:
            loaded = experiment.load(args.file, chaos.topology)
        except experiment.ExperimentError as exc:
            raise UsageError(str(exc)) from None
        client = client_node(chaos.topology, args.node)
        path = args.journal or experiment.default_journal(chaos.topology, loaded)
        journal = experiment.run(chaos.backend, chaos.topology, loaded, client, path)
        for phase in ("steady_state_before", "steady_state_after"):
            for probe in journal[phase]:
                print(f"{phase.replace('_', ' '):<20}{probe['probe']:<18}success {probe.get('success', 0):.0%}"
                      f"{'' if probe['within_tolerance'] else '  OUTSIDE TOLERANCE'}")
        for step in journal["method"]:
            said = f"pause {step['pause']:g} s" if "pause" in step else f"{step['fault']} on {step['target']}"
            print(f"{'method':<20}{said}" + (f": {step['error']}" if "error" in step else ""))
        print(f"verdict: {journal['verdict']} ({loaded.title})\njournal: {path}")
        return 0 if journal["verdict"] == "held" else 1


class Diagnose(Command):
    name, help = "diagnose", "walk the page load hop by hop and name the first broken hop, with evidence"

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="node", help="the client node (default: the first client)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def check(self, args):
        client_node(self.topology(args), args.node)

    def run(self, args):
        from hoplab.diagnose import diagnose

        topology = self.topology(args)
        report = diagnose(make_backend(args.backend), topology, client_node(topology, args.node))
        print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
        return 0 if report.broken is None else 1


class DrillCommand(Command):
    name, help = "drill", "troubleshooting practice: list, start NAME, hint, check, give-up"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="the drills there are, with their difficulty", parents=[common_options()])
        start = sub.add_parser("start", help="break something (hidden) and describe the symptom",
                               parents=[common_options()])
        start.add_argument("drill", metavar="NAME")
        start.add_argument("--duration", type=float, help="seconds until the fault reverts by itself (default 900)")
        start.add_argument("--from", dest="node", help="the client that sees the symptom (default: the first)")
        sub.add_parser("hint", help="one more hint", parents=[common_options()])
        sub.add_parser("check", help="is it repaired? exit 0 when the service works again",
                       parents=[common_options()])
        sub.add_parser("give-up", help="show the fault and the fix, and revert it", parents=[common_options()])

    def check(self, args):
        from hoplab.drill import DEFAULT_DURATION_S, DrillError, prepare_start

        if args.action == "start":
            topology = self.topology(args)
            duration = DEFAULT_DURATION_S if args.duration is None else args.duration
            try:
                prepare_start(topology, args.drill, client_node(topology, args.node), duration)
            except DrillError as exc:
                raise UsageError(str(exc)) from None

    def run(self, args):
        from hoplab.drill import (DEFAULT_DURATION_S, DRILLS, DrillError, Drills, available, describe_fault,
                                  elapsed, fill, fix_commands, roles)

        topology = self.topology(args)
        drills = Drills(make_backend(args.backend), topology)
        try:
            if args.action == "list":
                values = roles(topology, client_node(topology, None))
                for drill in DRILLS.values():
                    if available(drill, values):
                        print(f"{drill.name:<24}{drill.difficulty:<8}{fill(drill.symptom, values)}")
                return 0
            if args.action == "start":
                state, drill = drills.start(args.drill, client_node(topology, args.node),
                                            DEFAULT_DURATION_S if args.duration is None else args.duration)
                values = drills.values(state.client)
                print(f"drill {drill.name} ({drill.difficulty}) from {state.client}: "
                      f"{fill(drill.symptom, values)}\n"
                      f"the fault reverts by itself in {state.deadline - state.started:.0f} s; "
                      "`hoplab drill hint`, `check`, `give-up`")
                return 0
            if args.action == "hint":
                hints = drills.hint()
                for number, hint in enumerate(hints, 1):
                    print(f"hint {number}: {hint}")
                return 0
            if args.action == "check":
                state, outcomes = drills.check()
                if state.state == "expired":
                    print("time is up: the fault was reverted at its deadline (or by chaos halt)")
                    return 1
                for outcome in outcomes:
                    print(f"{'ok' if outcome.ok else 'still broken':<14}{outcome.check.what}"
                          + ("" if outcome.ok else f": {outcome.reason}"))
                if state.state == "solved":
                    print(f"solved in {elapsed(state)} with {state.hints_shown} hint(s)")
                    return 0
                return 1
            state, drill, values = drills.give_up()
            print(f"the fault: {describe_fault(drill, values)}\n{fill(drill.fix, values)}\nthe fix:")
            for command in fix_commands(drill, values):
                print(f"  {command}")
            print("(reverted now)")
            return 0
        except DrillError as exc:
            raise UsageError(str(exc)) from None


def client_node(topology: spec.Topology, node: str | None) -> str:
    """The client a verb acts from: the one named by --from, else the first."""
    clients = [n.name for n in topology.nodes_of("client")]
    if node is None and not clients:
        raise UsageError("--from: the topology has no client node")
    if node is not None and node not in clients:
        raise UsageError(f"--from: {node!r} is not a client node (clients: {', '.join(clients)})")
    return node or clients[0]


def check_port(port: int) -> int:
    if not 1024 <= port <= 65535:
        raise UsageError(f"--port: {port} is outside 1024..65535")
    return port


class Ui(Command):
    name, help = "ui", "serve the lab in a browser on 127.0.0.1 (live graph, traced visits); Ctrl-C stops it"

    def add_arguments(self, parser):
        from hoplab.ui import DEFAULT_PORT

        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")

    def check(self, args):
        check_port(args.port)

    def run(self, args):
        from hoplab.ui.app import serve

        port = check_port(args.port)
        topology = self.topology(args)
        progress = Progress()
        serve(make_backend(args.backend), args.backend, topology, port,
              lambda url: progress.say(f"lab {topology.name!r} on the {args.backend} backend: open {url}"))
        return 0


class Validate(Command):
    name, help = "validate", "check a topology file and exit 0, or name every problem and exit 2"
    uses_backend = False

    def run(self, args):
        topology = self.topology(args)
        compose.render(topology, topology.services, "")  # what the Docker backend adds: room for its addresses
        print(f"{topology.source}: valid: lab {topology.name!r}, {len(topology.networks)} networks, "
              f"{len(topology.nodes)} nodes")
        return 0


COMMANDS = [Up(), Down(), Status(), Exec(), Stop(), Start(), Restart(), Visit(), Play(), Trace(), Load(), ChaosCommand(),
            Diagnose(), DrillCommand(), Ui(), Clean(), Render(), Graph(), Validate()]


def common_options() -> argparse.ArgumentParser:
    """What every verb (and sub-verb) takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--topology", "-t", type=Path, default=DEFAULT_TOPOLOGY,
                        help=f"topology file (default: {DEFAULT_TOPOLOGY.relative_to(DEFAULT_TOPOLOGY.parents[1])})")
    common.add_argument("--backend", choices=BACKENDS,
                        help="where the lab runs: docker (containers) or netns (Mininet namespaces); "
                             "default: the one the lab runs on, else docker when it is reachable or installable")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="hoplab", description="A small internet on one machine, observable hop by hop.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help, parents=[common])
        command.add_arguments(p)
        p.set_defaults(handler=command)
    return parser


# Verbs that touch a running lab: before them, faults past their deadline are reverted (the
# CLI that injected them may have been killed, and its reaper with it).
LAB_VERBS = {"up", "status", "exec", "stop", "start", "restart", "visit", "play", "trace", "load", "chaos", "diagnose",
             "drill", "ui"}


def revert_expired_faults(args: argparse.Namespace) -> None:
    if args.verb not in LAB_VERBS or getattr(args, "action", None) == "reap":
        return
    topology = Command.topology(args)
    backend = make_backend(args.backend)
    if not (backend.state_root / topology.name / CHAOS_JOURNAL).exists():
        return  # nothing was ever injected: the chaos code need not even load
    from hoplab.chaos.journal import Chaos

    chaos = Chaos(backend, topology)
    if chaos.path.exists():
        for entry in chaos.revert_expired():
            print(f"hoplab: reverted expired fault {entry.id} ({entry.fault} on {entry.node})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.backend_reason = ""
    args.backend_explicit = args.backend is not None
    try:
        # A bad topology is refused before anything else happens, a backend's choice included.
        if args.handler.needs_topology and not (args.verb == "clean" and args.all):
            Command.topology(args)
        if args.backend is None and args.handler.uses_backend:
            args.backend, args.backend_reason = choose_backend(args)
            if args.backend != "docker" and args.verb != "clean":
                print(f"hoplab: using the {args.backend} backend ({args.backend_reason})", file=sys.stderr)
        args.handler.check(args)  # bad arguments are refused before any fault is reaped
        revert_expired_faults(args)
        return args.handler.run(args)
    except (spec.TopologyError, PreflightError) as exc:
        print(f"hoplab: invalid topology:\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CatalogError as exc:  # a service folder the topology brings (service_dirs)
        print(f"hoplab: invalid service folder:\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except userfile.FileError as exc:  # an experiment, SLO file... (FILE: FIELD: REASON)
        print(f"hoplab {args.verb}: invalid {exc.kind}:\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as exc:
        print(f"hoplab {args.verb}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (BackendError, graph.GraphError) as exc:
        print(f"hoplab {args.verb}: {exc}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as exc:  # a command past its time limit (hoplab.bounded)
        print(f"hoplab {args.verb}: {bounded.explain(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hoplab {args.verb}: interrupted", file=sys.stderr)
        return 130

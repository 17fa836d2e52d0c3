"""`hoplab diagnose`: walk the chain a page load depends on, hop by hop, the way an experienced
engineer would, and name the first broken hop with its evidence (the command and its output).

Each hop is tested from its neighbour in front of it, so that a check fails only when that hop
(or the link to it) is broken, not when something behind it is: the edge is asked for a page
it answers itself, a replica's 503 "database unavailable" counts as the replica being up, and
the database is then asked directly from the replicas. The walk:

  lease -> gateway -> nat -> dns -> path-mtu -> edge (TCP+TLS, a burst over its link, quick
  page loads not refused with 429) -> cache -> lb -> db -> each web replica -> db from each
  replica -> mail -> page

NAT comes before DNS because the client's lookup itself crosses the NAT. The database is asked
(by its own node, over TCP, as the app) before the replicas: a replica whose workers all wait
on a hung database does not answer either, and would take the blame. Checks are data
(hop, node, command, judge), built from the topology; one engine runs them through the
backend, so every backend gets them."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Callable

from hoplab.backends.base import Backend
from hoplab.node.game import PORT as GAME_PORT
from hoplab.spec import Topology
from hoplab.visit import named_failure

RUN = "${HOPLAB_RUN_DIR:-/run/hoplab}"
SLOW_DNS_MS = 300  # an authoritative server on the same segment answers in about 1 ms
BURST_MAX_LOSS = 20  # percent of a 20-packet burst to the edge; a healthy lab link loses none
QUICK_RELOADS = 10  # page loads in a row the edge answers without a 429 (fewer if its topology's limit allows fewer)
EVIDENCE_LINES = 12

Judge = Callable[[int, str], str | None]  # (exit status, output) -> None when fine, else why not


@dataclass(frozen=True)
class Check:
    hop: str
    what: str  # what it verifies, in a user's words
    node: str
    argv: tuple[str, ...]
    judge: Judge
    input: str | None = None
    timeout: float = 15
    # More evidence, gathered only when the check fails: (node, argv) -- where an engineer
    # would look next (the router's NAT table, the balancer's view of its servers).
    explain: tuple[str, tuple[str, ...]] | None = None
    subject: str = ""  # the node the hop is (the one to blame when it fails); "" when it is `node` itself

    @property
    def command(self) -> str:
        if self.argv[:2] == ("sh", "-c"):
            return self.argv[2]
        return shlex.join(self.argv)


@dataclass
class Outcome:
    check: Check
    ok: bool
    reason: str
    output: str
    seconds: float
    explanation: str = ""

    def evidence(self) -> str:
        lines = [f"{self.check.node}$ {self.check.command}", *_trim(self.output)]
        if self.explanation:
            node, argv = self.check.explain
            lines += [f"{node}$ {_shown(argv)}", *_trim(self.explanation)]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"hop": self.check.hop, "node": self.check.node, "subject": self.check.subject or self.check.node,
                "what": self.check.what, "ok": self.ok,
                "reason": self.reason, "command": self.check.command, "output": self.output,
                "explanation": self.explanation, "seconds": round(self.seconds, 3)}


def _shown(argv: tuple[str, ...]) -> str:
    return argv[2] if argv[:2] == ("sh", "-c") else shlex.join(argv)


def _trim(text: str) -> list[str]:
    lines = text.rstrip().splitlines() or ["(no output)"]
    if len(lines) > EVIDENCE_LINES:
        lines = lines[:EVIDENCE_LINES] + [f"... ({len(lines) - EVIDENCE_LINES} more lines)"]
    return ["  " + line for line in lines]


def run_check(backend: Backend, topology: Topology, check: Check) -> Outcome:
    started = time.monotonic()
    try:
        result = backend.run(topology, check.node, list(check.argv), timeout=check.timeout, input=check.input)
        status, output = result.returncode, (result.stdout + result.stderr).strip()
    except Exception as exc:  # noqa: BLE001 -- a node that cannot even run a command is evidence too
        status, output = 255, f"could not run in {check.node}: {exc}"
    reason = check.judge(status, output)
    outcome = Outcome(check, reason is None, reason or "", output, time.monotonic() - started)
    if not outcome.ok and check.explain:
        node, argv = check.explain
        try:
            result = backend.run(topology, node, list(argv), timeout=10)
            outcome.explanation = (result.stdout + result.stderr).strip()
        except Exception as exc:  # noqa: BLE001
            outcome.explanation = f"could not run in {node}: {exc}"
    return outcome


def run_checks(backend: Backend, topology: Topology, checks: list[Check], stop_at_first: bool = True) -> list[Outcome]:
    outcomes = []
    for check in checks:
        outcomes.append(run_check(backend, topology, check))
        if stop_at_first and not outcomes[-1].ok:
            break
    return outcomes


# ------------------------------------------------------------ the page-load path, from the topology


@dataclass
class PagePath:
    """Who is who on the way from a client to the page, and by which address each hop is
    reached from the one in front of it."""

    topology: Topology
    client: str
    network: str = ""
    gateway: str = ""
    dns: str = ""
    site: str = ""
    www: str = ""
    outside: list[str] = field(default_factory=list)
    router: str | None = None
    edge: str | None = None
    lbs: list[tuple[str, str]] = field(default_factory=list)  # (node, address seen from the edge)
    webs: list[tuple[str, str]] = field(default_factory=list)  # (node, address seen from the first lb)
    mail: str | None = None  # the mail node, when the web replicas share a network with one

    @classmethod
    def of(cls, topology: Topology, client: str) -> "PagePath":
        path = cls(topology, client)
        (path.network,) = [i.network for i in topology.nodes[client].interfaces if i.address is None][:1] or [""]
        scope = topology.networks[path.network].dhcp if path.network else None
        if scope:
            path.gateway = str(topology.nodes[scope.gateway].address_on(path.network))
            path.router = scope.gateway
        path.dns = str(topology.dns_address)
        path.site = f"www.{topology.domain.name}"
        caches = topology.nodes_of("cache")
        www = topology.domain.records.get("www")
        path.edge = next((n.name for n in caches if www in [a for _, a in n.static_addresses]),
                         caches[0].name if caches else None)
        path.www = str(www or (caches[0].static_addresses[0][1] if caches else ""))
        if path.router and topology.nodes[path.router].nat:
            outside = topology.nodes[path.router].nat.outside
            path.outside = [str(n.address_on(outside)) for n in topology.nodes.values()
                            if n.name != path.router and n.address_on(outside)]
        if path.edge:
            path.lbs = peers(topology, path.edge, "lb")
            upstream = topology.nodes[path.edge].upstream
            if upstream:  # the balancers the edge sends to, when the topology names them (duo has more)
                path.lbs = [(n, a) for n, a in path.lbs if n in {name for name, _ in upstream.servers}]
        if path.lbs:
            path.webs = peers(topology, path.lbs[0][0], "web")
        if path.webs:
            mails = peers(topology, path.webs[0][0], "mail")
            path.mail = mails[0][0] if mails else None
        return path


def peers(topology: Topology, node: str, service: str) -> list[tuple[str, str]]:
    mine = {i.network for i in topology.nodes[node].interfaces}
    found = []
    for peer in topology.nodes_of(service):
        shared = [str(i.address) for i in peer.interfaces if i.network in mine and i.address]
        if shared:
            found.append((peer.name, shared[0]))
    return found


def sh(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


# ------------------------------------------------------------ judges


def lease_judge(path: PagePath) -> Judge:
    scope = path.topology.networks[path.network].dhcp

    def judge(status: int, output: str) -> str | None:
        lease_line = next((line for line in output.splitlines() if line.startswith("{")), None)
        if lease_line is None:
            return f"{path.client} holds no DHCP lease on {path.network}: it has no address"
        try:
            lease = json.loads(lease_line)
            address = ipaddress.IPv4Address(lease["ip"])
        except (ValueError, KeyError, TypeError) as exc:
            return f"{path.client}'s lease record on {path.network} is damaged ({exc})"
        if address not in scope:
            return f"the lease's address {lease['ip']} is outside the pool {scope.first}-{scope.last}"
        if f"inet {lease['ip']}/" not in output:
            return f"the lease says {lease['ip']} but {path.network} does not hold it"
        if lease["router"] != path.gateway:
            return f"the lease names gateway {lease['router'] or 'none'}; the lab's router is {path.gateway}"
        if lease["dns"].split() != [path.dns]:
            return f"the lease names DNS {lease['dns'] or 'none'}; the lab's DNS server is {path.dns}"
        if f"nameserver {path.dns}" not in output:
            return f"/etc/resolv.conf does not name the lab's DNS server {path.dns}"
        return None

    return judge


def _gateway_judge(path: PagePath) -> Judge:
    def judge(status: int, output: str) -> str | None:
        if f"default via {path.gateway} " not in output:
            route = next((line for line in output.splitlines() if line.startswith("default")), "no default route")
            return f"the default route is '{route.strip()}', not via the router {path.gateway}"
        if status != 0:
            return f"the router {path.gateway} does not answer a ping from {path.client}"
        return None

    return judge


def _nat_judge(status: int, output: str) -> str | None:
    if "answers" in output:
        return None
    return "no node beyond the router answers: packets are not forwarded or not translated (NAT)"


def _dns_judge(path: PagePath) -> Judge:
    def judge(status: int, output: str) -> str | None:
        header = re.search(r"status: (\w+)", output)
        if header is None:
            return f"no answer from the DNS server {path.dns}" + (" (timed out)" if "timed out" in output else "")
        if header[1] != "NOERROR":
            return f"{path.site}: {header[1]}"
        answers = re.findall(rf"^{re.escape(path.site)}\.\s+\d+\s+IN\s+A\s+(\S+)", output, re.M)
        if answers != [path.www]:
            return f"{path.site} resolves to {', '.join(answers) or 'nothing'}; the edge is {path.www}"
        took = re.search(r"Query time: (\d+) msec", output)
        if took and int(took[1]) > SLOW_DNS_MS:
            return f"the answer took {took[1]} ms (over {SLOW_DNS_MS} ms): DNS is slow"
        return None

    return judge


def status_is(expected: int, failure: str) -> Judge:
    def judge(status: int, output: str) -> str | None:
        return None if status == 0 and output.strip().split()[:1] == [str(expected)] else failure

    return judge


def _page_judge(status: int, output: str) -> str | None:
    """The page as the client sees it: 200, or what it got instead, named as `visit` names it
    (connection refused (ECONNREFUSED), host unreachable (EHOSTUNREACH), timed out, HTTP error)."""
    found = re.search(r"\bcode=(\d{3})\b", output)  # curl -w's, wherever -v's lines fall around it
    code = int(found[1]) if found else 0
    if status == 0 and code == 200:
        return None
    named = named_failure(status, output, code)
    return "the page does not load" + (f": {named}" if named else "")


def _edge_judge(path: PagePath) -> Judge:
    def judge(status: int, output: str) -> str | None:
        timing = re.search(r"(\d{3}) connect=([\d.]+) tls=([\d.]+)", output)
        code, connect, tls = (timing[1], float(timing[2]), float(timing[3])) if timing else ("000", 0.0, 0.0)
        if status == 0 and code == "200":
            return None
        if connect == 0:
            named = named_failure(status, output, 0)
            return f"no TCP connection to the edge {path.www}:443" + (f": {named}" if named else "")
        if tls == 0:
            return "TCP connected, but the TLS handshake with the edge did not finish"
        return f"the edge answered its own health page with {code}"

    return judge


def _cache_judge(status: int, output: str) -> str | None:
    if re.search(r"x-cache=HIT", output, re.I):
        return "the edge served a page the origin marks no-store from its cache: stale copies"
    return None


def _game_judge(status: int, output: str) -> str | None:
    """The game as a player sees it: its moves answered, or how many were lost."""
    try:
        said = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"the game client said nothing readable (exit {status})"
    if said.get("error"):
        return f"the player cannot reach the game: {said['error']}"
    if said.get("answered"):
        return None
    refused = f"; {said['refused']} ICMP port unreachable: nothing listens" if said.get("refused") else ""
    return f"no move was answered ({said.get('lost', 0)} of {said.get('sent', 0)} lost){refused}"


def game_check(topology: Topology, client: str) -> Check | None:
    """The lab's online game (UDP), played from `client`; when it fails, who holds the game's
    port on its node (a squatter shows there) and which server pid the game expects. None when
    the lab has no game."""
    games = topology.nodes_of("game")
    if not games:
        return None
    name = f"game.{topology.domain.name}"
    # --wait 1.5: a server that restarts (once a second) shows its failed bind while the check runs
    return Check("game", f"{client} plays the game at {name}: its moves over UDP are answered", client,
                 ("python3", "-m", "hoplab.node.game", "play", name, "--moves", "3", "--interval", "0.05",
                  "--wait", "1.5"), _game_judge, subject=games[0].name,
                 explain=(games[0].name, sh(f"echo \"the game's server: pid $(cat {RUN}/server.pid 2>/dev/null)\"; "
                                            f"echo 'UDP port {GAME_PORT} held by:'; ss -Huanp 'sport = :{GAME_PORT}'")))


def _connects_judge(what: str) -> Judge:
    return lambda status, output: None if status == 0 else f"cannot open a TCP connection to {what}"


def _lb_servers_judge(status: int, output: str) -> str | None:
    # The command's status is `cut`'s: an answer is HAProxy's CSV, header first.
    if status != 0 or not any(line.startswith("# pxname") for line in output.splitlines()):
        return "the balancer's admin socket does not answer"
    maint = [line.split(",")[1] for line in output.splitlines()
             if line.count(",") >= 2 and line.split(",")[1] not in ("BACKEND", "FRONTEND")
             and line.split(",")[2].startswith("MAINT")]
    return f"the balancer has {', '.join(maint)} disabled (MAINT): it sends it nothing" if maint else None


def _web_judge(name: str) -> Judge:
    def judge(status: int, output: str) -> str | None:
        if "no TCP connection" in output:
            return f"{name} refuses or drops connections to port 8080"
        if re.search(r"^HTTP/1\.\d (200|503)", output, re.M):
            return None  # 503 is the replica saying its database is down: the next hop's problem
        return f"{name} accepts connections on port 8080 but does not answer HTTP"

    return judge


def _burst_judge(status: int, output: str) -> str | None:
    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", output)
    if loss is None or float(loss[1]) > BURST_MAX_LOSS:
        return (f"a burst of full-size packets to the edge loses {loss[1] if loss else 100}%: "
                "its link is congested, rate-limited or lossy")
    return None


def _throttle_judge(status: int, output: str) -> str | None:
    answers = re.findall(r"^(\d{3}) retry-after=(\S*)$", output, re.M)
    refused = [after for code, after in answers if code == "429"]
    if refused:
        return (f"the edge answered {len(refused)} of {len(answers)} quick page loads with 429 Too Many Requests "
                f"(Retry-After: {refused[0] or 'none'}): it throttles this client more than its topology says")
    return None  # other failures are other checks' business


def _ok_exit(failure: str) -> Judge:
    return lambda status, output: None if status == 0 else failure


# ------------------------------------------------------------ the checks


DB_PROBE = """
import json, os, sys, psycopg2
config = json.load(open(os.path.join(os.environ.get("HOPLAB_RUN_DIR", "/run/hoplab"), "web.json")))["db"]
try:
    conn = psycopg2.connect(connect_timeout=2, **{k: config[k] for k in ("host", "port", "dbname", "user", "password")})
    conn.cursor().execute("SELECT 1")
    print(f"connected to {config['dbname']} at {config['host']} as {config['user']}: SELECT 1 ok")
except psycopg2.Error as exc:
    print(str(exc).strip())
    sys.exit(1)
"""

SMTP_PROBE = """
import json, os, smtplib, sys
domain = sys.argv[1]
config = json.load(open(os.path.join(os.environ.get("HOPLAB_RUN_DIR", "/run/hoplab"), "web.json")))["mail"]
try:
    with smtplib.SMTP(config["host"], config["port"], timeout=3) as smtp:
        smtp.ehlo(f"diagnose.{domain}")
        for verb, arg in (("MAIL FROM", f"shop@{domain}"), ("RCPT TO", f"buyer@{domain}")):
            code, reply = smtp.mail(arg) if verb == "MAIL FROM" else smtp.rcpt(arg)
            print(f"{verb}:<{arg}> -> {code} {reply.decode()}")
            if code != 250:
                sys.exit(1)
        smtp.rset()
except (OSError, smtplib.SMTPException) as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
"""


def curl(path: PagePath, url_path: str, write_out: str, seconds: int = 4, resolve: bool = True,
         verbose: bool = False) -> str:
    """A page load from the client; `verbose` (curl -v) for a judge that names a failed
    connect by its socket error (visit.named_failure)."""
    pin = f"--resolve {path.site}:443:{path.www} " if resolve else ""
    return (f"curl -sS {'-v ' if verbose else ''}-o /dev/null --max-time {seconds} {pin}-w '{write_out}' "
            f"https://{path.site}{url_path}")


def quick_reloads(topology: Topology, edge: str) -> int:
    """How many page loads in a row from one client the edge must answer without a 429: ten,
    or what the topology's own limit lets through at once (its burst and one), if that is less."""
    limit = topology.nodes[edge].rate_limit
    return QUICK_RELOADS if limit is None else min(QUICK_RELOADS, limit.burst + 1)


def throttle_check(p: PagePath) -> Check:
    """The edge's rate limit, as a user meets it: a few quick reloads of the page. The loop
    stops at an answer that is neither 200 nor 429: a broken origin is a later hop's, and
    should cost one time-out here, not ten."""
    count = quick_reloads(p.topology, p.edge)
    load = curl(p, "/", "%{http_code} retry-after=%header{retry-after}", 3)
    return Check("edge", f"{count} quick page loads in a row are not refused with 429 (the edge's rate limit)",
                 p.client, sh(f"for i in $(seq {count}); do answer=$({load}); echo \"$answer\"; "
                              "case \"$answer\" in 200\\ *|429\\ *) ;; *) break;; esac; done; true"),
                 _throttle_judge, subject=p.edge,
                 explain=(p.edge, sh(f"nginx -T -c {RUN}/nginx.conf 2>/dev/null | "
                                     "grep -e '^# configuration file' -e 'limit_req'")))


def walk(topology: Topology, client: str) -> list[Check]:
    """The page-load chain from `client`, as checks in the order a packet needs them."""
    p = PagePath.of(topology, client)
    checks: list[Check] = []
    if p.network:
        dhcp_server = topology.networks[p.network].dhcp.server
        checks.append(Check("lease", f"{client} holds a lease from the pool, with the lab's gateway and DNS",
                            client, sh(f"cat {RUN}/lease-{p.network} 2>/dev/null; echo; "
                                       f"ip -4 -o addr show dev {p.network}; grep nameserver /etc/resolv.conf"),
                            lease_judge(p), explain=(dhcp_server, sh(f"cat {RUN}/dhcp-options; "
                                                                       f"echo \"reserved: $(wc -l < {RUN}/dhcp-hosts)\"")),
                            subject=dhcp_server))
        checks.append(Check("gateway", f"the default route goes via the router {p.gateway}, which answers", client,
                            sh(f"ip route show default; ping -c 1 -W 1 {p.gateway}"), _gateway_judge(p),
                            subject=p.router or client))
    if p.outside:
        pings = " ".join(f"(ping -c 1 -W 1 {a} >/dev/null && echo '{a} answers' || echo '{a} silent') &"
                         for a in p.outside)
        checks.append(Check("nat", "nodes beyond the router answer (forwarding and masquerade work)", client,
                            sh(f"{pings} wait"), _nat_judge,
                            explain=(p.router, sh("iptables -w 5 -S FORWARD; iptables -w 5 -t nat -S POSTROUTING")),
                            subject=p.router))
    checks.append(Check("dns", f"the lab DNS {p.dns} answers {p.site} with the edge {p.www}, promptly", client,
                        ("dig", "+time=1", "+tries=1", f"@{p.dns}", p.site, "A"), _dns_judge(p),
                        subject=topology.domain.server))
    if p.router:
        checks.append(Check("path-mtu", f"full-size packets with DF set reach {p.dns} (no MTU black hole)", client,
                            sh(f"ping -c 1 -W 1 -M do -s $(($(cat /sys/class/net/{p.network}/mtu) - 28)) {p.dns}"),
                            _ok_exit("full-size packets are lost where small ones pass: a link has a smaller "
                                     "MTU and the ICMP that would say so does not come back"),
                            explain=(p.router, ("ip", "-o", "link", "show")), subject=p.router))
    if p.edge:
        checks.append(Check("edge", f"TCP and TLS to the edge {p.www}:443; it answers its own health page", client,
                            sh(curl(p, "/edge-health", "%{http_code} connect=%{time_connect} "
                                                        "tls=%{time_appconnect}", verbose=True)),
                            _edge_judge(p), subject=p.edge))
        checks.append(Check("edge", "the link to the edge carries a burst of full-size packets", client,
                            ("ping", "-q", "-c", "20", "-i", "0.01", "-s", "1400", "-W", "1", p.www), _burst_judge,
                            subject=p.edge))
        checks.append(throttle_check(p))
        checks.append(Check("cache", "the edge does not serve pages marked no-store from its cache", client,
                            sh("for i in 1 2; do " + curl(p, "/order", "%{http_code} x-cache=%header{x-cache} "
                                                                        "served-by=%header{x-served-by}\\n", 2)
                               + "; done; true"), _cache_judge, subject=p.edge))
    for lb, address in p.lbs:
        checks.append(Check("lb", f"the edge opens a connection to the balancer {lb} ({address}:80)", p.edge,
                            ("nc", "-z", "-w", "2", address, "80"), _connects_judge(f"the balancer {lb}"),
                            subject=lb))
        checks.append(Check("lb", f"{lb} has every replica enabled", lb,
                            sh("echo 'show stat' | socat -t 2 stdio /run/haproxy/admin.sock | cut -d, -f1,2,18"),
                            _lb_servers_judge))
    db = topology.nodes_of("db")
    if db and p.webs:
        address = peers(topology, p.webs[0][0], "db")[0][1]
        checks.append(Check("db", f"{db[0].name} accepts the app's login over TCP ({address}:5432) and a query",
                            db[0].name, sh(f"PGPASSWORD=$(cat ${{HOPLAB_SERVICE:-/opt/hoplab/service}}/shop_app.password) "
                                           f"PGCONNECT_TIMEOUT=2 psql -X -h {address} -U shop_app -d shop -Atc "
                                           "'SELECT 1'"),
                            _ok_exit("the database refuses or does not answer the app's login")))  # asked by itself
    for web, address in p.webs:
        checks.append(Check(web, f"{web} answers HTTP on {address}:8080 (asked by the balancer)", p.lbs[0][0],
                            sh(f"if nc -z -w 2 {address} 8080; then printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | "
                               f"nc -w 5 {address} 8080; else echo 'no TCP connection to {address}:8080'; fi"),
                            _web_judge(web), subject=web))
    for web, _ in p.webs:
        checks.append(Check("db", f"{web} reaches the database as the app and runs a query", web,
                            ("python3", "-"), _ok_exit(f"{web} cannot use the database"), input=DB_PROBE,
                            subject=db[0].name if db else web))
    if p.mail and p.webs:
        checks.append(Check("mail", "the mail server accepts the shop's order mail (MAIL FROM, RCPT TO)",
                            p.webs[0][0], ("python3", "-", topology.domain.name),
                            _ok_exit("the mail server refuses the shop's mail"), input=SMTP_PROBE,
                            subject=p.mail))
    if p.edge:
        checks.append(Check("page", f"{client} loads https://{p.site}/ through its own resolver", client,
                            sh(curl(p, "/", "code=%{http_code}", seconds=5, resolve=False, verbose=True)),
                            _page_judge))  # what the client itself sees
    game = game_check(topology, client)
    if game:
        checks.append(game)
    return checks



@dataclass
class Report:
    client: str
    outcomes: list[Outcome]
    kernel: list[str] = field(default_factory=list)  # the kernel's drops and refused binds meanwhile
    kernel_view: str = ""  # "" when watched (or nothing was broken); else why not

    @property
    def broken(self) -> Outcome | None:
        return next((o for o in self.outcomes if not o.ok), None)

    def to_json(self) -> dict:
        broken = self.broken
        return {"client": self.client, "healthy": broken is None, "broken_hop": broken.check.hop if broken else None,
                "broken_node": (broken.check.subject or broken.check.node) if broken else None,
                "reason": broken.reason if broken else None, "evidence": broken.evidence() if broken else None,
                "kernel_drops": self.kernel, "kernel_view": self.kernel_view or "on",
                "checks": [o.to_json() for o in self.outcomes]}

    def render(self) -> str:
        lines = [f"diagnosing the page load from {self.client}"]
        for o in self.outcomes:
            lines.append(f"  {o.check.hop:<9}{'ok' if o.ok else 'BROKEN':<8}{o.check.what}")
        broken = self.broken
        if broken is None:
            lines.append("every hop works")
        else:
            lines += ["", f"first broken hop: {broken.check.hop} -- {broken.reason}", "evidence:",
                      *("  " + line for line in broken.evidence().splitlines())]
            if self.kernel:
                lines += ["what the kernel dropped or refused while it was checked again:",
                          *(f"  {line}" for line in self.kernel)]
            elif self.kernel_view:
                lines.append(f"kernel view {self.kernel_view}")
        return "\n".join(lines)


KERNEL_WATCH_S = 30  # the bound of the kernel tracer while the broken hop is checked again


def diagnose(backend: Backend, topology: Topology, client: str, kernel: bool = True) -> Report:
    """Walk the page load; with `kernel`, check the first broken hop once more while the host's
    kernel tracer watches, and cite the drops it saw (a firewall's, a missing route's...)."""
    report = Report(client, run_checks(backend, topology, walk(topology, client)))
    broken = report.broken
    if kernel and broken is not None:
        from hoplab.kernel_view import KernelView

        with KernelView(backend, topology, KERNEL_WATCH_S) as view:
            if view.unavailable is None:
                run_check(backend, topology, broken.check)
        report.kernel, report.kernel_view = view.summary(), view.status
    return report

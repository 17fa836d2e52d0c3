"""`hoplab drill`: troubleshooting practice. A drill injects a hidden fault from the chaos
catalogue (bounded in time like any fault: the chaos journal holds its undo), tells only what a
user would report, gives hints on demand, and checks the repair with probes of what the user
sees -- so any repair that makes the service work again passes, not only the documented one.

Drills name nodes by role ({dns}, {router}, ...), filled from the topology, so they run on any
lab that has the roles they need. State: drill.json in the backend's state folder for the lab."""

from __future__ import annotations

import json
import os
import re
import shlex
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hoplab.backends.base import Backend
from hoplab.chaos.faults import CATALOGUE, FaultError, prepare
from hoplab.chaos.journal import Chaos
from hoplab.diagnose import (Check, Outcome, PagePath, curl, game_check, lease_judge, run_checks, sh, status_is,
                             throttle_check, walk)
from hoplab.node.game import PORT as GAME_PORT
from hoplab.spec import Topology

DEFAULT_DURATION_S = 900
FAST_PAGE_S = 0.5


class DrillError(Exception):
    """A drill that cannot be started or acted on (bad name, none active): exit 2."""


@dataclass(frozen=True)
class Drill:
    name: str
    difficulty: str  # easy, medium, hard
    fault: str
    target: str  # "{role}" or "{role}:{network}"
    symptom: str  # what the user reports; never the fault
    hints: tuple[str, ...]
    fix: str  # what was wrong and how to repair it, in words
    fix_steps: tuple[tuple[str, str], ...]  # (node, shell script): the documented repair
    probes: tuple[str, ...]  # user-level probes that must all pass
    params: dict = field(default_factory=dict)


DIFFICULTIES = ("easy", "medium", "hard")
RUN = "/run/hoplab"

# The repair of a www record that points away from the edge (nobody-home, nowhere-to-go).
WWW_BACK_TO_THE_EDGE = (("{dns}", f"sed -i 's/^www IN A .*/www IN A {{www}}/' {RUN}/bind/db.{{domain}} && "
                                  f"kill -HUP $(cat {RUN}/service.pid) && sleep 0.5"),)

DRILLS = {d.name: d for d in [
    Drill("site-not-found", "easy", "dns-nxdomain", "{dns}",
          "The browser says {site} cannot be found. It worked this morning.",
          ("Does the name resolve from {client}? `dig {site}`: read the status line.",
           "Ask the lab's DNS server {dns} directly, and look at what it serves for {domain}.",
           f"The zone file named loads is {RUN}/bind/db.{{domain}} on {{dns}}; named re-reads it on SIGHUP."),
          "The www record was deleted from the zone: the server answered NXDOMAIN. Put the A record back and "
          "reload named.",
          (("{dns}", f"echo 'www IN A {{www}}' >> {RUN}/bind/db.{{domain}} && kill -HUP $(cat {RUN}/service.pid)"),),
          ("page",), {"name": "www"}),
    Drill("frozen-lookups", "easy", "process-stop", "{dns}",
          "Nothing resolves any more: every lookup times out.",
          ("Is it every name? Does the DNS server answer a ping?",
           "The server is reachable but silent: look at its process on {dns} (`ps -o pid,stat,cmd -e`).",
           "A process in state T is stopped; it resumes on SIGCONT."),
          "named was frozen with SIGSTOP: the host answers, the server never does. Send it SIGCONT.",
          (("{dns}", f"kill -CONT $(cat {RUN}/service.pid)"),), ("page",)),
    Drill("wrong-turn", "easy", "wrong-default-route", "{client}:{home}",
          "My computer reaches the router, but nothing beyond it: not the shop, not even DNS.",
          ("What does {client}'s routing table say? `ip route`",
           "Which address should the default route use? Compare with the DHCP lease.",
           "The default route points at an address nobody holds."),
          "The client's default route pointed at an address that does not route. Point it at the router.",
          (("{client}", "ip route replace default via {gateway} dev {home}"),), ("page",)),
    Drill("https-refused", "easy", "port-block", "{cache}",
          "The shop says 'connection refused' over HTTPS.",
          ("Does the name resolve, and to the right address? Then is it the network or the server?",
           "Ping works, TCP port 443 is refused: who sends the reset? Look at {cache}'s firewall.",
           "`iptables -S INPUT` on {cache}."),
          "The edge's firewall rejected TCP port 443. Delete the REJECT rule.",
          (("{cache}", "iptables -D INPUT 1"),), ("page",), {"port": 443}),
    # The socket errors a client meets, each staged by its classic cause; `hoplab visit --trace`
    # names the error and the packet behind it (the RST, the ICMP message, the SYN nobody answered).
    Drill("nobody-home", "easy", "dns-wrong-a", "{dns}",
          "The browser says 'connection refused' at once, yet the edge's admins say nginx is up and nothing "
          "blocks port 443.",
          ("Which address does the browser connect to? `curl -v https://{site}/` from {client}: the 'Trying' line.",
           "Who sends the reset (`hoplab visit --trace`, or tcpdump on {client})? Is that address the edge's, "
           "{www}? What listens on port 443 there?",
           f"The name points at the wrong machine: the zone file named loads is {RUN}/bind/db.{{domain}} on "
           "{dns}; named re-reads it on SIGHUP."),
          "www resolved to the DNS server's own address, where nothing listens on port 443: its kernel answered "
          "every SYN with a RST, which the client's connect() returns as ECONNREFUSED. Point the A record back at "
          "the edge and reload named.",
          WWW_BACK_TO_THE_EDGE,
          ("page",), {"name": "www", "address": "{dns_address}"}),
    Drill("nowhere-to-go", "medium", "dns-wrong-a", "{dns}",
          "The browser spins for a few seconds, then says there is no route to the shop's host.",
          ("Which address does the browser try? `curl -v https://{site}/` from {client}.",
           "Who says 'no route'? Capture on {client} (`hoplab visit --trace`): an ICMP message comes back. From "
           "which node, and why would it give up on that address?",
           f"{{router}} asked for the address on its outside link (ARP) and nobody answered: nobody holds it. Why "
           f"does www point there? The zone file is {RUN}/bind/db.{{domain}} on {{dns}}."),
          "www resolved to an address that nobody holds on the internet segment: the router's ARP requests went "
          "unanswered, so it sent the client ICMP host unreachable, which connect() returns as EHOSTUNREACH. Point "
          "the A record back at the edge and reload named.",
          WWW_BACK_TO_THE_EDGE,
          ("page",), {"name": "www"}),
    Drill("silent-edge", "medium", "partition-two-way", "{cache}",
          "The shop never answers: the browser waits, then says the connection timed out. Names still resolve.",
          ("Does a SYN leave {client}, and does a SYN-ACK come back? `hoplab visit --trace`, or tcpdump on "
           "{client}'s {home} while you curl.",
           "Follow the SYN: does it reach {cache}? Does nginx ever see it? Look at {cache}'s firewall "
           "(`iptables -S`), and at the kernel's drop reasons in the trace.",
           "Behind the home router every client has the router's address, and {cache} drops everything from it."),
          "The edge's firewall dropped every packet from and to the router's addresses, and behind the NAT every "
          "home client is the router: each SYN died at the edge without an answer, and connect() gave up with "
          "ETIMEDOUT. Delete the DROP rules.",
          (("{cache}", "iptables -w 5 -S | grep -e ' -j DROP' | sed 's/^-A /-D /' | xargs -L1 iptables -w 5"),),
          ("page",), {"peer": "{router}"}),
    Drill("port-taken", "medium", "port-squat", "{game}",
          "The online game stopped answering: every move I send is lost. Its admins restarted the server and "
          "say it keeps crashing at start.",
          ("Does anything answer on the game's port? `hoplab play --trace`: do the moves reach {game}, and does "
           "anything come back? What does the kernel say at {game}?",
           "Which process holds UDP port {game_port} on {game}? `ss -uanp 'sport = :{game_port}'`. Is it the "
           f"game's server (its pid is in {RUN}/server.pid)?",
           "A second program bound the port first: each start of the real server fails at bind() with "
           "EADDRINUSE. Stop the squatter; the server's supervisor starts it again within a second."),
          "Another process bound UDP port {game_port} while the game's server restarted. It read every move and "
          "answered none, and every restart of the real server failed at bind() with EADDRINUSE (address already in use). "
          "Kill the process that holds the port; the supervisor's next restart takes it.",
          (("{game}", "kill $(ss -Huanp 'sport = :{game_port}' | grep -o 'pid=[0-9]*' | cut -d= -f2) && sleep 1.5"),),
          ("game",)),
    Drill("idle-replica", "medium", "lb-backend-down", "{lb}",
          "Every page says 'served by' the same replica; {web} gets no traffic although it is healthy.",
          ("Is {web} up? Ask it directly from {lb}.",
           "{web} answers: so why does the balancer skip it? Ask HAProxy (`show stat` on its admin socket).",
           "A server in MAINT was disabled by hand; the runtime API can enable it again."),
          "{web} was disabled (MAINT) in the balancer. Enable it on the admin socket.",
          (("{lb}", "echo 'enable server web/{web}' | socat stdio /run/haproxy/admin.sock"),),
          ("every-replica",), {"server": "{web}"}),
    Drill("no-way-out", "medium", "masquerade-removed", "{router}",
          "From my computer nothing on the internet answers, yet the router answers pings.",
          ("Packets leave {client}: do they leave {router}? Capture on its outside interface (`tcpdump -ni {outside}`).",
           "They leave with the client's private source address: who should have rewritten it?",
           "`iptables -t nat -S POSTROUTING` on {router}."),
          "The router's masquerade rule was removed: packets left with a private source address, and replies "
          "had no way back. Add the rule again.",
          (("{router}", "iptables -t nat -A POSTROUTING -s {inside_subnet} -o {outside} -j MASQUERADE"),), ("page",)),
    Drill("names-after-renewal", "medium", "dhcp-wrong-dns", "{dhcp}",
          "Since my computer renewed its address no name resolves, but the shop's IP address still connects.",
          ("Which DNS server does {client} ask? `cat /etc/resolv.conf`",
           "Who told it that? The DHCP lease (`cat {run}/lease-{home}`).",
           "dnsmasq's options live in {run}/dhcp-options on {dhcp}; it re-reads them on SIGHUP. Clients renew "
           "on SIGUSR1."),
          "The DHCP server handed out a DNS server that does not answer. Fix the option, reload dnsmasq, renew.",
          (("{dhcp}", f"sed -i 's/option:dns-server,.*/option:dns-server,{{dns_address}}/' {RUN}/dhcp-options && "
                      f"kill -HUP $(cat {RUN}/service.pid)"),
           ("{client}", f"kill -USR1 $(cat {RUN}/service.pid); sleep 1")),
          ("renewed-lease", "page")),
    Drill("no-address", "hard", "dhcp-pool-exhausted", "{dhcp}",
          "My computer lost its network after renewing: it has no IP address at all.",
          ("Does {client} get any answer from the DHCP server? Watch the server's log or capture on {home}.",
           "The server answers NAK, then offers nothing: why would a pool of addresses be empty?",
           "Look at the reservations dnsmasq reads ({run}/dhcp-hosts on {dhcp})."),
          "Every pool address was reserved for machines that do not exist: renewals were refused. Remove the "
          "reservations and reload dnsmasq; the client gets an address again.",
          (("{dhcp}", f": > {RUN}/dhcp-hosts && kill -HUP $(cat {RUN}/service.pid)"),
           ("{client}", f"kill -USR1 $(cat {RUN}/service.pid); sleep 2")),
          ("renewed-lease", "page")),
    Drill("same-old-page", "medium", "stale-cache", "{cache}",
          "The order page always shows the same replica in its footer, and changes never show up.",
          ("Look at the response headers of /order: X-Cache, Cache-Control.",
           "The origin says no-store, yet the edge answers HIT: what overrides it? `nginx -T` on {cache}.",
           f"Look for drop-in files under {RUN}/edge.d; nginx reloads on SIGHUP."),
          "A drop-in told the edge to ignore the origin's Cache-Control and keep every page. Remove it and reload "
          "nginx.",
          (("{cache}", f"rm -f {RUN}/edge.d/*.conf && kill -HUP $(cat {RUN}/service.pid) && sleep 1"),),
          ("fresh-order-page",)),
    Drill("too-many-reloads", "medium", "edge-rate-limit", "{cache}",
          "The shop loads, but when I reload a few times quickly it says '429 Too Many Requests', and my "
          "flatmate's laptop gets it at the same moment.",
          ("Who answers the 429: the edge, the balancer or a replica? `curl -si https://{site}/` a few times from "
           "{client} and read the headers (X-Edge, X-Served-By, Retry-After).",
           "The edge refuses by itself (nginx limit_req), per client address. Why would two computers share a "
           "limit? Which address does {cache} see (its access log)? Which limits does it run? "
           f"`nginx -T -c {RUN}/nginx.conf | grep -e limit_req -e 'configuration file'` on {{cache}}.",
           f"Look at the drop-in files under {RUN}/edge.d and {RUN}/edge-http.d on {{cache}}; nginx reloads on "
           "SIGHUP."),
          "A drop-in limited every client address to 1 request per second with a burst of 2 (nginx limit_req): "
          "quick reloads were answered 429. Behind the home router every computer has the router's address, so "
          "the whole home shared that limit. Remove the drop-in (the limit and its zone) and reload nginx.",
          (("{cache}", f"rm -f {RUN}/edge.d/*.conf {RUN}/edge-http.d/*.conf && kill -HUP $(cat {RUN}/service.pid) "
                       "&& sleep 1"),),
          ("quick-reloads", "page"), {"requests_per_second": 1, "burst": 2}),
    Drill("shop-unavailable", "medium", "db-connection-limit", "{db}",
          "The shop answers 503 Service Unavailable on the order page.",
          ("Where does the 503 come from: the edge, the balancer or a replica? Read the body and the headers.",
           "The replicas say the database is unavailable. Try to log in as the app: "
           "`psql -h <db address> -U shop_app -d shop` from {db}.",
           "Look at the role's settings: `\\du` or pg_roles.rolconnlimit."),
          "The app's database role was limited to zero connections. Lift the limit.",
          (("{db}", "psql -X -q -U postgres -d postgres -c 'ALTER ROLE shop_app CONNECTION LIMIT -1'"),),
          ("order-page",), {"role": "shop_app"}),
    Drill("missing-confirmations", "hard", "smtp-refuse", "{mail}",
          "Orders go through, but no confirmation e-mail ever arrives.",
          ("Do the web replicas try to send? Their log says why a mail was not sent.",
           "Talk SMTP to {mail} yourself from {web}: what does it answer at RCPT TO?",
           "`postconf -n` on {mail}: which restriction refuses every client?"),
          "Postfix was told to reject every client (smtpd_client_restrictions = reject). Clear it and reload.",
          (("{mail}", "postconf -e 'smtpd_client_restrictions =' && postfix reload"),), ("order-mail",)),
    Drill("big-pages-hang", "hard", "mtu-blackhole", "{router}:{home}",
          "The connection opens and small things load, but the shop's pages hang forever.",
          ("Small requests work, big responses hang: think about packet sizes.",
           "`ping -M do -s 1472` towards the shop from {client}; then smaller sizes.",
           "Compare the MTU of every interface on the way (`ip link` on {router}), and whether the ICMP "
           "'fragmentation needed' comes back."),
          "The router's LAN link had a smaller MTU and dropped the ICMP that would tell senders: a path MTU "
          "black hole. Restore the MTU (or let the ICMP through).",
          (("{router}", "ip link set dev {home} mtu 1500"),), ("page",)),
    Drill("slow-start", "medium", "dns-slow", "{dns}",
          "Every new page takes almost a second before anything happens; once it starts it is fast.",
          ("Time each phase: `hoplab visit` or curl's -w timings.",
           "The lookup is slow. Is the server slow, or something in front of it? Compare a query on {dns} "
           "itself (@127.0.0.1) with one from outside.",
           "`iptables -t nat -S` on {dns}: where do queries go?"),
          "Queries were redirected to a relay that answered after 700 ms. Remove the redirect.",
          (("{dns}", "iptables -t nat -D PREROUTING 1"),), ("page-fast",), {"ms": 700}),
]}


# ------------------------------------------------------------ roles and probes, from the topology


def roles(topology: Topology, client: str) -> dict[str, str]:
    path = PagePath.of(topology, client)

    def first(service: str) -> str:
        nodes = topology.nodes_of(service)
        return nodes[0].name if nodes else ""

    router = path.router or first("router")
    nat = topology.nodes[router].nat if router else None
    return {"client": client, "home": path.network, "gateway": path.gateway, "router": router,
            "dns": first("dns"), "dhcp": first("dhcp"), "cache": path.edge or "", "lb": first("lb"),
            "web": first("web"), "db": first("db"), "game": first("game"), "game_port": str(GAME_PORT),
            "mail": path.mail or "", "domain": topology.domain.name,
            "site": path.site, "www": path.www, "dns_address": path.dns, "run": RUN,
            "outside": nat.outside if nat else "",
            "inside_subnet": str(topology.networks[path.network].subnet) if path.network else ""}


def fill(text: str, values: dict[str, str]) -> str:
    return string.Formatter().vformat(text, (), values)


def needed_roles(drill: Drill) -> set[str]:
    texts = [drill.target, drill.symptom, *(text for step in drill.fix_steps for text in step),
             *(v for v in drill.params.values() if isinstance(v, str))]
    return {name for text in texts for _, name, _, _ in string.Formatter().parse(text) if name}


def available(drill: Drill, values: dict[str, str]) -> bool:
    return all(values.get(role) for role in needed_roles(drill))


def _spread_judge(webs: list[str]) -> callable:
    def judge(status: int, output: str) -> str | None:
        seen = set(re.findall(r"served-by=(\S+)", output))
        missing = sorted(set(webs) - seen)
        return f"no request was served by {', '.join(missing)}" if missing else None

    return judge


def _fast_judge(status: int, output: str) -> str | None:
    timing = re.search(r"^200 ([\d.]+)", output)
    if timing is None:
        return "the page does not load"
    return None if float(timing[1]) <= FAST_PAGE_S else f"the page took {float(timing[1]):.2f} s"


def probes(topology: Topology, client: str) -> dict[str, Check]:
    """What a user can see, as checks: these decide whether a drill is repaired."""
    path = PagePath.of(topology, client)
    by_hop = {}
    for check in walk(topology, client):
        by_hop.setdefault(check.hop, check)
    webs = [name for name, _ in path.webs]
    renew = (f"before=$(cat {RUN}/lease-{path.network} 2>/dev/null | md5sum); kill -USR1 $(cat {RUN}/service.pid); "
             f"for i in $(seq 50); do sleep 0.1; [ \"$(cat {RUN}/lease-{path.network} 2>/dev/null | md5sum)\" != "
             f"\"$before\" ] && break; done; ")
    lease = by_hop.get("lease")
    found = {
        "page": by_hop.get("page"),
        "order-page": Check("order-page", f"{client} loads https://{path.site}/order (never cached)", client,
                            sh(curl(path, "/order", "%{http_code}", 5, resolve=False)),
                            status_is(200, "the order page does not load")),
        "page-fast": Check("page-fast", f"{client} loads https://{path.site}/ in under {FAST_PAGE_S} s, lookup "
                                        "included", client,
                           sh(curl(path, "/?fresh=$(date +%s%N)", "%{http_code} %{time_total}", 5, resolve=False)),
                           _fast_judge),
        "fresh-order-page": by_hop.get("cache"),
        "quick-reloads": throttle_check(path) if path.edge else None,
        "every-replica": Check("every-replica", f"requests through the edge reach every replica ({', '.join(webs)})",
                               client, sh(f"for i in $(seq {3 * len(webs)}); do "
                                          + curl(path, "/order", "served-by=%header{x-served-by}\\n", 3, False)
                                          + "; done; true"), _spread_judge(webs)),
        "order-mail": by_hop.get("mail"),
        "game": game_check(topology, client),
        "renewed-lease": lease and Check("renewed-lease", f"{client} renews its lease and gets a good one", client,
                                         sh(renew + lease.argv[2]), lease_judge(path)),
    }
    return {name: check for name, check in found.items() if check is not None}


# ------------------------------------------------------------ state and verbs


@dataclass
class DrillState:
    drill: str
    client: str
    entry: str  # the chaos journal entry of its fault
    started: float
    deadline: float
    hints_shown: int = 0
    state: str = "active"  # active, solved, given-up, expired
    checks: int = 0


def prepare_start(topology: Topology, name: str, client: str, duration: float) -> tuple[Drill, str, dict]:
    """Check a drill start's every argument -- NAME a drill, --from a client node, --duration
    within the fault's bounds, the drill's filled parameters typed as its fault declares them --
    and plan its fault. Pure: the CLI runs it before anything else. Returns the drill, its
    target and its parameters."""
    drill = DRILLS.get(name)
    if drill is None:
        raise DrillError(f"NAME: unknown drill {name!r} (drills: {', '.join(DRILLS)})")
    clients = [n.name for n in topology.nodes_of("client")]
    if client not in clients:
        raise DrillError(f"--from: {client!r} is not a client node (clients: {', '.join(clients) or 'none'})")
    values = roles(topology, client)
    if not available(drill, values):
        raise DrillError(f"NAME: drill {name!r} needs roles this lab lacks "
                         f"({', '.join(sorted(r for r in needed_roles(drill) if not values.get(r)))})")
    params = {k: fill(str(v), values) for k, v in drill.params.items()}
    target = fill(drill.target, values)
    try:
        prepare(topology, drill.fault, target, duration, params)
    except FaultError as exc:
        raise DrillError(str(exc)) from None
    return drill, target, params


class Drills:
    def __init__(self, backend: Backend, topology: Topology, state_root: Path | None = None):
        self.backend = backend
        self.topology = topology
        self.chaos = Chaos(backend, topology, state_root)
        self.path = (backend.state_root if state_root is None else state_root) / topology.name / "drill.json"

    def load(self) -> DrillState | None:
        return DrillState(**json.loads(self.path.read_text())) if self.path.exists() else None

    def save(self, state: DrillState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=1))
        os.replace(tmp, self.path)

    def current(self) -> tuple[DrillState, Drill]:
        state = self.load()
        if state is None or state.state != "active":
            raise DrillError("no drill is running: `hoplab drill start NAME` (`hoplab drill list` shows them)")
        return state, DRILLS[state.drill]

    def values(self, client: str) -> dict[str, str]:
        return roles(self.topology, client)

    def start(self, name: str, client: str, duration: float) -> tuple[DrillState, Drill]:
        drill, target, params = prepare_start(self.topology, name, client, duration)
        state = self.load()
        if state and state.state == "active" and self._fault_active(state):
            raise DrillError(f"drill {state.drill!r} is still running: `hoplab drill check` or `give-up` first")
        try:
            entry = self.chaos.inject(drill.fault, target, duration, params, owner="drill")
        except FaultError as exc:
            raise DrillError(str(exc)) from None
        self.chaos.start_reaper()
        state = DrillState(name, client, entry.id, entry.started, entry.deadline)
        self.save(state)
        return state, drill

    def _fault_active(self, state: DrillState) -> bool:
        return any(e.id == state.entry for e in self.chaos.active())

    def hint(self) -> list[str]:
        state, drill = self.current()
        state.hints_shown = min(state.hints_shown + 1, len(drill.hints))
        self.save(state)
        values = self.values(state.client)
        return [fill(h, values) for h in drill.hints[:state.hints_shown]]

    def check(self) -> tuple[DrillState, list[Outcome]]:
        """Run the drill's probes. All pass: solved, and the fault's undo runs (idempotent: it
        only clears what the repair left). The fault gone by its deadline or a halt: expired."""
        state, drill = self.current()
        state.checks += 1
        if not self._fault_active(state):
            state.state = "expired"
            self.save(state)
            return state, []
        available_probes = probes(self.topology, state.client)
        outcomes = run_checks(self.backend, self.topology, [available_probes[p] for p in drill.probes],
                              stop_at_first=False)
        if all(o.ok for o in outcomes):
            state.state = "solved"
            self.chaos.revert(state.entry, note="drill solved")
        self.save(state)
        return state, outcomes

    def give_up(self) -> tuple[DrillState, Drill, dict[str, str]]:
        state, drill = self.current()
        self.chaos.revert(state.entry, note="drill given up")
        state.state = "given-up"
        self.save(state)
        return state, drill, self.values(state.client)


def describe_fault(drill: Drill, values: dict[str, str]) -> str:
    fault = CATALOGUE[drill.fault]
    return f"{fault.name} ({fault.family}) on {fill(drill.target, values)}: {fault.description}"


def fix_commands(drill: Drill, values: dict[str, str]) -> list[str]:
    """The documented repair as the commands a user would type."""
    return [f"hoplab exec {fill(node, values)} -- sh -c {shlex.quote(fill(script, values))}"
            for node, script in drill.fix_steps]


def elapsed(state: DrillState) -> str:
    seconds = int(time.time() - state.started)
    return f"{seconds // 60} min {seconds % 60} s"

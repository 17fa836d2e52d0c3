"""`hoplab diagnose` without a lab: each judge accepts what a healthy hop prints and rejects
what a broken one prints with a reason; the walk visits the hops in the documented order from
the documented nodes on both topologies; and the engine, fed by a fake backend, stops at the
first broken hop and names it. The outputs below are what the commands in `walk` print (dig,
ping, curl -w, HAProxy's `show stat`, udhcpc's lease file), trimmed."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from hoplab import diagnose, spec
from hoplab.backends.base import Backend
from hoplab.diagnose import EVIDENCE_LINES, Check, PagePath, Report, run_check, run_checks, walk
from hoplab.paths import TOPOLOGY_DIR

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")
DUO = spec.load(TOPOLOGY_DIR / "duo.yaml")
PATH = PagePath.of(LAB, "client")

LAB_ORDER = ["lease", "gateway", "nat", "dns", "path-mtu", "edge", "cache", "lb", "db", "web1", "web2", "mail",
             "page", "game"]
DUO_ORDER = ["lease", "gateway", "nat", "dns", "path-mtu", "edge", "cache", "lb", "db", "app1", "app2", "app3",
             "page"]


def first_seen(hops: list[str]) -> list[str]:
    return [h for i, h in enumerate(hops) if h not in hops[:i]]


def checks_of(hop: str, topology=LAB, client="client") -> list[Check]:
    return [c for c in walk(topology, client) if c.hop == hop]


def the_check(hop: str, contains: str = "", topology=LAB, client="client") -> Check:
    (check,) = [c for c in checks_of(hop, topology, client) if contains in c.command]
    return check


# ------------------------------------------------------------ realistic outputs


def lease_output(ip="192.168.50.142", router="192.168.50.1", dns="198.51.100.53", held=None, resolv=None,
                 lease=True) -> str:
    line = json.dumps({"event": "bound", "at_ns": 1700000000000000000, "interface": "home", "ip": ip, "mask": 24,
                       "router": router, "dns": dns, "domain": "example.test", "lease": 3600,
                       "server": "192.168.50.2"})
    held = ip if held is None else held
    resolv = dns if resolv is None else resolv
    return "\n".join([line if lease else "",
                      f"2: home    inet {held}/24 brd 192.168.50.255 scope global home\\       valid_lft forever",
                      f"nameserver {resolv}"])


ROUTE_AND_PING = """default via 192.168.50.1 dev home 
PING 192.168.50.1 (192.168.50.1): 56 data bytes
64 bytes from 192.168.50.1: seq=0 ttl=64 time=0.081 ms

--- 192.168.50.1 ping statistics ---
1 packets transmitted, 1 packets received, 0% packet loss"""


def dig(status="NOERROR", answers=("198.51.100.80",), msec=1) -> str:
    answer = "".join(f"www.example.test.\t300\tIN\tA\t{a}\n" for a in answers)
    return f"""; <<>> DiG 9.18.24 <<>> +time=1 +tries=1 @198.51.100.53 www.example.test A
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: {status}, id: 40122
;; flags: qr aa rd; QUERY: 1, ANSWER: {len(answers)}, AUTHORITY: 0, ADDITIONAL: 1

;; QUESTION SECTION:
;www.example.test.\t\tIN\tA

;; ANSWER SECTION:
{answer}
;; Query time: {msec} msec
;; SERVER: 198.51.100.53#53(198.51.100.53) (UDP)
;; MSG SIZE  rcvd: 61"""


DIG_TIMEOUT = (";; communications error to 198.51.100.53#53: timed out\n"
               "; <<>> DiG 9.18.24 <<>> +time=1 +tries=1 @198.51.100.53 www.example.test A\n"
               ";; no servers could be reached")


def burst(loss: str) -> str:
    return ("PING 198.51.100.80 (198.51.100.80) 1400(1428) bytes of data.\n\n"
            "--- 198.51.100.80 ping statistics ---\n"
            f"20 packets transmitted, 20 received, {loss} packet loss, time 197ms\n"
            "rtt min/avg/max/mdev = 0.050/0.071/0.112/0.014 ms")


def show_stat(web2="UP") -> str:
    return ("# pxname,svname,status\nfe,FRONTEND,OPEN\nweb,web1,UP\n"
            f"web,web2,{web2}\nweb,BACKEND,UP\nstats,FRONTEND,OPEN\n")


HEALTH_200 = "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nContent-Type: text/plain\r\n\r\nok"
HEALTH_503 = "HTTP/1.1 503 SERVICE UNAVAILABLE\r\nContent-Type: text/plain\r\n\r\ndb unreachable: timeout"

# judge -> (status, output): what a healthy hop prints
HEALTHY = {
    "lease": (0, lease_output()),
    "gateway": (0, ROUTE_AND_PING),
    "nat": (0, "198.51.100.80 answers\n198.51.100.53 answers\n198.51.100.25 answers"),
    "dns": (0, dig()),
    "edge": (0, "200 connect=0.000412 tls=0.004127"),
    "burst": (0, burst("0%")),
    "reloads": (0, "200 retry-after=\n" * 10),
    "cache": (0, "200 x-cache=MISS served-by=web1\n200 x-cache=MISS served-by=web2"),
    "lb servers": (0, show_stat()),
    "web": (0, HEALTH_200),
    "page": (0, "code=200"),
    "game": (0, '{"server": "198.51.100.70:7777", "sent": 3, "answered": 3, "lost": 0, "refused": 0}'),
}

# (judge, status, output): more outputs of a hop that works
GOOD = [*((name, *answer) for name, answer in HEALTHY.items()),
        ("nat", 0, "198.51.100.53 silent\n198.51.100.80 answers\n198.51.100.25 silent"),  # one answer is enough
        ("burst", 0, burst("20%")),  # at the limit
        ("reloads", 28, "200 retry-after=\n000 retry-after=\n"),  # not throttled: a time-out is another check's
        ("web", 0, HEALTH_503),  # the replica is up; its database is the next hop's problem
        ("cache", 0, "200 x-cache=MISS served-by=web1\n200 x-cache=BYPASS served-by=web2")]

# (judge, status, output, a phrase the reason must contain): what a broken hop prints
BAD = [
    ("lease", 1, lease_output(lease=False), "holds no DHCP lease on home"),
    ("lease", 0, lease_output(ip="192.168.50.20"), "outside the pool 192.168.50.100-192.168.50.199"),
    ("lease", 0, lease_output(held="192.168.50.143"), "does not hold it"),
    ("lease", 0, lease_output(router="192.168.50.2"), "gateway 192.168.50.2; the lab's router is 192.168.50.1"),
    ("lease", 0, lease_output(router=""), "gateway none"),
    ("lease", 0, lease_output(dns="192.168.50.1"), "DNS 192.168.50.1; the lab's DNS server is 198.51.100.53"),
    ("lease", 0, lease_output(dns="198.51.100.53 192.168.50.1"), "the lab's DNS server is 198.51.100.53"),
    ("lease", 0, lease_output(resolv="127.0.0.11"), "/etc/resolv.conf does not name"),
    ("gateway", 2, "PING 192.168.50.1 (192.168.50.1): 56 data bytes\nping: sendto: Network unreachable",
     "'no default route'"),
    ("gateway", 1, ROUTE_AND_PING.replace("via 192.168.50.1 ", "via 192.168.50.254 ", 1),
     "'default via 192.168.50.254 dev home', not via the router 192.168.50.1"),
    ("gateway", 1, ROUTE_AND_PING.replace("1 packets received", "0 packets received"), "does not answer a ping"),
    ("nat", 0, "198.51.100.53 silent\n198.51.100.80 silent\n198.51.100.25 silent", "(NAT)"),
    ("dns", 9, DIG_TIMEOUT, "no answer from the DNS server 198.51.100.53 (timed out)"),
    ("dns", 9, "dig: couldn't get address for '198.51.100.53': failure", "no answer from the DNS server"),
    ("dns", 0, dig("NXDOMAIN", ()), "www.example.test: NXDOMAIN"),
    ("dns", 0, dig("SERVFAIL", ()), "www.example.test: SERVFAIL"),
    ("dns", 0, dig(answers=("198.51.100.254",)), "resolves to 198.51.100.254; the edge is 198.51.100.80"),
    ("dns", 0, dig(answers=()), "resolves to nothing"),
    ("dns", 0, dig(msec=702), "took 702 ms"),
    ("edge", 7, "000 connect=0.000000 tls=0.000000curl: (7) Failed to connect to www.example.test port 443",
     "no TCP connection to the edge 198.51.100.80:443"),
    ("edge", 35, "000 connect=0.000388 tls=0.000000curl: (35) OpenSSL SSL_connect: Connection reset by peer",
     "TLS handshake"),
    ("edge", 0, "502 connect=0.000401 tls=0.003980", "health page with 502"),
    ("edge", 28, "000 connect=0.000400 tls=0.004100curl: (28) Operation timed out", "health page with 000"),
    ("burst", 1, burst("35%"), "loses 35%"),
    ("burst", 1, "ping: sendmsg: Operation not permitted", "loses 100%"),
    ("reloads", 0, "200 retry-after=\n" * 3 + "429 retry-after=1\n" * 2,
     "answered 2 of 5 quick page loads with 429 Too Many Requests (Retry-After: 1)"),
    ("reloads", 0, "429 retry-after=\n", "(Retry-After: none)"),
    ("cache", 0, "200 x-cache=MISS served-by=web1\n200 x-cache=HIT served-by=web1", "stale copies"),
    ("lb connect", 1, "", "cannot open a TCP connection to the balancer lb"),
    ("lb servers", 0, show_stat(web2="MAINT"), "web2 disabled (MAINT)"),
    ("lb servers", 0, show_stat(web2="MAINT (resolution)"), "web2 disabled"),
    ("lb servers", 1, "", "admin socket does not answer"),
    ("web", 0, "no TCP connection to 172.31.50.11:8080", "web1 refuses or drops connections"),
    ("web", 0, "HTTP/1.1 500 INTERNAL SERVER ERROR\r\n\r\n", "does not answer HTTP"),
    ("web", 0, "", "does not answer HTTP"),
    ("db", 2, "psql: error: connection to server failed: FATAL:  too many connections for role \"shop_app\"",
     "database refuses"),
    ("path-mtu", 1, "ping: local error: message too long, mtu=1200", "full-size packets are lost"),
    ("mail", 1, "RCPT TO:<buyer@example.test> -> 554 5.7.1 Access denied", "refuses the shop's mail"),
    ("page", 7, "code=000curl: (7) Failed to connect", "the page does not load"),
    ("page", 0, "code=503", "the page does not load: HTTP error 503"),
    # what the client met, named from curl -v's own line, as `visit` names it
    ("page", 7, "code=000*   Trying 198.51.100.53:443...\n* connect to 198.51.100.53 port 443 failed: Connection refused\n"
                "curl: (7) Failed to connect to www.example.test port 443 after 1 ms: Couldn't connect to server",
     "the page does not load: connection refused (ECONNREFUSED)"),
    ("page", 7, "code=000* connect to 198.51.100.254 port 443 failed: No route to host\ncurl: (7) Failed to connect",
     "the page does not load: host unreachable (EHOSTUNREACH)"),
    ("page", 28, "code=000*   Trying 198.51.100.80:443...\ncurl: (28) Connection timed out after 5001 milliseconds",
     "the page does not load: timed out (ETIMEDOUT)"),
    ("edge", 28, "000 connect=0.000000 tls=0.000000*   Trying 198.51.100.80:443...\n"
                 "curl: (28) Connection timed out after 4001 milliseconds",
     "no TCP connection to the edge 198.51.100.80:443: timed out (ETIMEDOUT)"),
    ("game", 0, '{"sent": 3, "answered": 0, "lost": 3, "refused": 0}', "no move was answered (3 of 3 lost)"),
    ("game", 0, '{"sent": 3, "answered": 0, "lost": 3, "refused": 2}', "ICMP port unreachable: nothing listens"),
    ("game", 1, '{"error": "gaierror: [Errno -2] Name or service not known"}', "cannot reach the game: gaierror"),
    ("game", 1, "Traceback (most recent call last):", "said nothing readable (exit 1)"),
]


def judge(name: str):
    """The judge `walk` attaches to the default lab's check of this kind."""
    return {
        "lease": lambda: the_check("lease").judge,
        "gateway": lambda: the_check("gateway").judge,
        "nat": lambda: the_check("nat").judge,
        "dns": lambda: the_check("dns").judge,
        "edge": lambda: the_check("edge", "edge-health").judge,
        "burst": lambda: the_check("edge", "ping -q").judge,
        "reloads": lambda: the_check("edge", "retry-after").judge,
        "cache": lambda: the_check("cache").judge,
        "game": lambda: the_check("game").judge,
        "lb connect": lambda: the_check("lb", "nc -z").judge,
        "lb servers": lambda: the_check("lb", "show stat").judge,
        "web": lambda: the_check("web1").judge,
        "db": lambda: the_check("db", "psql").judge,
        "path-mtu": lambda: the_check("path-mtu").judge,
        "mail": lambda: the_check("mail").judge,
        "page": lambda: the_check("page").judge,
    }[name]()


@pytest.mark.parametrize("name, status, output", GOOD, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOOD)])
def test_judge_accepts_a_healthy_output(name, status, output):
    assert judge(name)(status, output) is None


@pytest.mark.parametrize("name, status, output, phrase", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_judge_rejects_a_broken_output_with_a_reason(name, status, output, phrase):
    reason = judge(name)(status, output)
    assert reason, f"{name} accepted a broken output"
    assert phrase in reason, reason


def test_exit_status_judges_go_by_the_status_alone():
    for name in ("db", "path-mtu", "mail", "lb connect"):
        assert judge(name)(0, "") is None and judge(name)(1, "") is not None


def test_the_lease_judge_follows_the_topology():
    # duo's pool, gateway and DNS server, not the default lab's
    duo_lease = the_check("lease", topology=DUO, client="pc1").judge
    good = (lease_output(ip="192.168.77.45", router="192.168.77.1", dns="172.30.77.53")
            .replace("/24", "/25").replace("home", "lan"))
    assert duo_lease(0, good) is None
    outside = good.replace("192.168.77.45", "192.168.77.70")
    assert "outside the pool 192.168.77.40-192.168.77.59" in duo_lease(0, outside)
    assert "the lab's router is 192.168.77.1" in duo_lease(0, good.replace('"router": "192.168.77.1"',
                                                                           '"router": "192.168.50.1"'))


def test_the_dns_judge_follows_the_topology():
    duo_dns = the_check("dns", topology=DUO, client="pc1").judge
    good = dig(answers=("172.30.77.80",)).replace("example.test", "corp.test")
    assert duo_dns(0, good) is None
    assert "the edge is 172.30.77.80" in duo_dns(0, dig())  # the default lab's name: no answer for www.corp.test


def test_status_is_needs_the_status_and_a_zero_exit():
    judge_200 = diagnose.status_is(200, "nope")
    assert judge_200(0, "200") is None and judge_200(0, " 200\n") is None
    assert judge_200(0, "2000") == "nope" and judge_200(1, "200") == "nope" and judge_200(0, "") == "nope"


# ------------------------------------------------------------ the walk


def test_the_default_lab_walk_follows_the_documented_order():
    assert first_seen([c.hop for c in walk(LAB, "client")]) == LAB_ORDER


def test_each_hop_is_asked_from_the_hop_in_front_of_it():
    checks = walk(LAB, "client")
    where = [(c.hop, c.node) for c in checks]
    assert where == [
        ("lease", "client"), ("gateway", "client"), ("nat", "client"), ("dns", "client"), ("path-mtu", "client"),
        ("edge", "client"), ("edge", "client"), ("edge", "client"), ("cache", "client"),
        ("lb", "cache"), ("lb", "lb"),            # the edge connects to the balancer; the balancer's own view
        ("db", "db"),                             # the database first, over TCP as the app
        ("web1", "lb"), ("web2", "lb"),           # each replica, asked by the balancer
        ("db", "web1"), ("db", "web2"),           # the database from each replica
        ("mail", "web1"), ("page", "client"),
        ("game", "client")]                       # the online game, played as a player plays it
    # where an engineer would look next, for the hops that have it
    assert {c.hop: c.explain[0] for c in checks if c.explain} == {"lease": "dhcp", "nat": "router",
                                                                 "path-mtu": "router", "edge": "cache",
                                                                 "game": "game"}


def test_checks_name_the_lab_addresses():
    commands = {c.hop + ("-burst" if "ping -q" in c.command else ""): c.command for c in walk(LAB, "client")}
    assert "lease-home" in commands["lease"] and "dev home" in commands["lease"]
    assert "ping -c 1 -W 1 192.168.50.1" in commands["gateway"]
    assert all(a in commands["nat"] for a in ("198.51.100.53", "198.51.100.80", "198.51.100.25"))
    assert commands["dns"] == "dig +time=1 +tries=1 @198.51.100.53 www.example.test A"
    assert "--resolve www.example.test:443:198.51.100.80" in commands["edge"]
    assert "198.51.100.80" in commands["edge-burst"]
    assert "--resolve" not in commands["page"], "the page goes through the client's own resolver"
    assert "172.31.50.10 80" in the_check("lb", "nc -z").command
    assert "172.31.50.11 8080" in the_check("web1").command and "172.31.50.12 8080" in the_check("web2").command


def test_quick_reloads_stay_within_what_the_topologys_own_limit_lets_through_at_once():
    data = yaml.safe_load((TOPOLOGY_DIR / "duo.yaml").read_text())
    data["nodes"]["edge"]["rate_limit"] = {"requests_per_second": 1, "burst": 3}
    strict = spec.from_data(data, TOPOLOGY_DIR / "duo.yaml")
    # no limit: ten; duo's own (10/s, burst 20): ten too; a strict one: its burst and one
    for topology, client, count in ((LAB, "client", 10), (DUO, "pc1", 10), (strict, "pc1", 4)):
        check = the_check("edge", "retry-after", topology, client)
        assert f"$(seq {count});" in check.command and check.subject == PagePath.of(topology, client).edge
        assert diagnose.quick_reloads(topology, check.subject) == count


def test_page_path_of_the_default_lab():
    assert (PATH.network, PATH.gateway, PATH.router, PATH.dns) == ("home", "192.168.50.1", "router", "198.51.100.53")
    assert (PATH.site, PATH.www, PATH.edge, PATH.mail) == ("www.example.test", "198.51.100.80", "cache", "mail")
    assert PATH.lbs == [("lb", "172.31.50.10")]
    assert PATH.webs == [("web1", "172.31.50.11"), ("web2", "172.31.50.12")]
    assert sorted(PATH.outside) == ["198.51.100.25", "198.51.100.53", "198.51.100.70", "198.51.100.80"]


def test_page_path_of_the_second_topology():
    p = PagePath.of(DUO, "pc1")
    assert (p.network, p.gateway, p.router, p.dns) == ("lan", "192.168.77.1", "gw", "172.30.77.53")
    assert (p.site, p.www, p.edge, p.mail) == ("www.corp.test", "172.30.77.80", "edge", None)
    assert p.lbs == [("balancer", "172.30.78.10")]
    assert p.webs == [("app1", "172.30.78.21"), ("app2", "172.30.78.22"), ("app3", "172.30.78.23")]


@pytest.mark.parametrize("client", ["pc1", "pc2"])
def test_the_second_topology_walks_its_own_replicas_from_its_own_client(client):
    checks = walk(DUO, client)
    assert first_seen([c.hop for c in checks]) == DUO_ORDER
    assert [c.node for c in checks if c.hop in ("app1", "app2", "app3")] == ["balancer"] * 3
    assert [c.node for c in checks if c.hop == "db"] == ["sql", "app1", "app2", "app3"]
    client_hops = {"lease", "gateway", "nat", "dns", "path-mtu", "edge", "cache", "page"}
    assert {c.node for c in checks if c.hop in client_hops} == {client}
    assert the_check("lb", "nc -z", DUO, client).node == "edge"
    assert "mail" not in {c.hop for c in checks}


# ------------------------------------------------------------ the engine, with a fake backend


def healthy_output(check: Check) -> tuple[int, str]:
    """What each check of the default lab prints when its hop works."""
    command = check.command
    if check.hop == "edge":
        return HEALTHY["burst"] if "ping -q" in command else HEALTHY["edge"]
    if check.hop == "lb":
        return HEALTHY["lb servers"] if "show stat" in command else (0, "")
    if check.hop in ("web1", "web2"):
        return HEALTHY["web"]
    if check.hop in HEALTHY:
        return HEALTHY[check.hop]
    return 0, "ok"  # db, path-mtu, mail: the exit status decides


# The first check of each hop, broken as it would be (status, output).
BROKEN = {
    "lease": (1, lease_output(lease=False)),
    "gateway": (1, ROUTE_AND_PING.replace("via 192.168.50.1 ", "via 192.168.50.254 ", 1)),
    "nat": (0, "198.51.100.53 silent\n198.51.100.80 silent\n198.51.100.25 silent"),
    "dns": (0, dig("NXDOMAIN", ())),
    "path-mtu": (1, "1 packets transmitted, 0 packets received, 100% packet loss"),
    "edge": (7, "000 connect=0.000000 tls=0.000000curl: (7) Failed to connect"),
    "cache": (0, "200 x-cache=HIT served-by=web1\n200 x-cache=HIT served-by=web1"),
    "lb": (1, ""),
    "db": (2, "psql: error: FATAL:  too many connections for role \"shop_app\""),
    "web1": (0, "no TCP connection to 172.31.50.11:8080"),
    "web2": (0, "no TCP connection to 172.31.50.12:8080"),
    "mail": (1, "RCPT TO:<buyer@example.test> -> 554 5.7.1 Access denied"),
    "page": (0, "code=502"),
    "game": (0, '{"server": "198.51.100.70:7777", "sent": 3, "answered": 0, "lost": 3, "refused": 0}'),
}


class FakeBackend(Backend):
    """Answers each (node, argv) from a table; records what ran."""

    name = "fake"

    def __init__(self, answers: dict[tuple[str, tuple[str, ...]], tuple[int, str]], explanations=None):
        self.answers = answers
        self.explanations = explanations or {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def run(self, topology, node, argv, timeout=60, input=None):
        key = (node, tuple(argv))
        self.calls.append(key)
        if key in self.explanations:
            answer = self.explanations[key]
            if isinstance(answer, Exception):
                raise answer
            return subprocess.CompletedProcess(argv, 0, answer, "")
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        status, output = answer
        return subprocess.CompletedProcess(argv, status, output, "")

    def up(self, topology, progress):
        raise NotImplementedError

    def down(self, topology, progress):
        raise NotImplementedError

    def status(self, topology):
        raise NotImplementedError

    def exec(self, topology, node, argv, interactive):
        raise NotImplementedError

    def stop_node(self, topology, node, timeout):
        raise NotImplementedError

    def start_node(self, topology, node, progress):
        raise NotImplementedError

    def clean(self, lab, progress):
        raise NotImplementedError


def answers_for(checks: list[Check], broken: str | None = None) -> dict:
    answers = {(c.node, c.argv): healthy_output(c) for c in checks}
    if broken:
        first = next(c for c in checks if c.hop == broken)
        answers[(first.node, first.argv)] = BROKEN[broken]
    return answers


def test_a_healthy_lab_passes_every_check():
    checks = walk(LAB, "client")
    backend = FakeBackend(answers_for(checks))
    report = Report("client", run_checks(backend, LAB, checks))
    assert all(o.ok for o in report.outcomes) and len(report.outcomes) == len(checks)
    assert report.broken is None
    data = report.to_json()
    assert data["healthy"] is True and data["broken_hop"] is None and data["reason"] is None
    assert first_seen([c["hop"] for c in data["checks"]]) == LAB_ORDER
    assert "every hop works" in report.render()
    assert backend.calls == [(c.node, c.argv) for c in checks]  # no explanation gathered when all is well


@pytest.mark.parametrize("hop", LAB_ORDER)
def test_the_walk_stops_at_the_first_broken_hop_and_names_it(hop):
    checks = walk(LAB, "client")
    explanations = {(c.explain[0], c.explain[1]): f"what {c.explain[0]} says" for c in checks if c.explain}
    backend = FakeBackend(answers_for(checks, broken=hop), explanations)
    outcomes = run_checks(backend, LAB, checks)
    index = next(i for i, c in enumerate(checks) if c.hop == hop)
    assert len(outcomes) == index + 1, "the walk went on past the broken hop"
    assert all(o.ok for o in outcomes[:-1]) and not outcomes[-1].ok
    report = Report("client", outcomes)
    assert report.broken is outcomes[-1] and report.broken.check.hop == hop
    data = report.to_json()
    assert data["healthy"] is False and data["broken_hop"] == hop and data["reason"] == outcomes[-1].reason
    broken = checks[index]
    assert data["evidence"].startswith(f"{broken.node}$ {broken.command}\n")
    assert f"first broken hop: {hop} -- {outcomes[-1].reason}" in report.render()
    if broken.explain:
        node, argv = broken.explain
        assert backend.calls[-1] == (node, argv)
        assert f"{node}$ " in data["evidence"] and f"what {node} says" in data["evidence"]
    else:
        assert backend.calls[-1] == (broken.node, broken.argv)


def test_the_second_topology_names_a_broken_replica():
    checks = walk(DUO, "pc1")
    answers = {}
    for c in checks:
        if c.hop == "lease":
            answers[(c.node, c.argv)] = (0, lease_output(ip="192.168.77.45", router="192.168.77.1",
                                                         dns="172.30.77.53").replace("home", "lan"))
        elif c.hop == "gateway":
            route = ROUTE_AND_PING.replace("192.168.50.1", "192.168.77.1").replace("home", "lan")
            answers[(c.node, c.argv)] = (0, route)
        elif c.hop == "dns":
            answers[(c.node, c.argv)] = (0, dig(answers=("172.30.77.80",)).replace("example.test", "corp.test"))
        elif c.hop in ("app1", "app2", "app3"):
            answers[(c.node, c.argv)] = (0, HEALTH_200)
        else:
            answers[(c.node, c.argv)] = healthy_output(c)
    app2 = the_check("app2", topology=DUO, client="pc1")
    answers[(app2.node, app2.argv)] = (0, "no TCP connection to 172.30.78.22:8080")
    report = diagnose.diagnose(FakeBackend(answers), DUO, "pc1")
    assert report.to_json()["broken_hop"] == "app2"
    assert report.broken.reason == "app2 refuses or drops connections to port 8080"
    assert [o.check.hop for o in report.outcomes if o.check.hop.startswith("app")] == ["app1", "app2"]


def test_stop_at_first_false_runs_every_check():
    checks = walk(LAB, "client")
    answers = answers_for(checks, broken="dns")
    outcomes = run_checks(FakeBackend(answers), LAB, checks, stop_at_first=False)
    assert len(outcomes) == len(checks)
    assert [o.check.hop for o in outcomes if not o.ok] == ["dns"]


def test_a_node_that_cannot_run_the_command_is_evidence_not_a_crash():
    check = the_check("gateway")
    backend = FakeBackend({(check.node, check.argv): RuntimeError("container client is not running")})
    outcome = run_check(backend, LAB, check)
    assert not outcome.ok
    assert outcome.output == "could not run in client: container client is not running"
    assert outcome.reason == "the default route is 'no default route', not via the router 192.168.50.1"


def test_an_explanation_that_cannot_be_gathered_says_so():
    check = the_check("nat")
    node, argv = check.explain
    backend = FakeBackend({(check.node, check.argv): BROKEN["nat"]},
                          {(node, argv): RuntimeError("router is gone")})
    outcome = run_check(backend, LAB, check)
    assert not outcome.ok and outcome.explanation == "could not run in router: router is gone"


def test_evidence_is_trimmed_to_a_readable_length():
    check = the_check("page")
    long_output = "\n".join(f"line {i}" for i in range(EVIDENCE_LINES + 5))
    outcome = run_check(FakeBackend({(check.node, check.argv): (1, long_output)}), LAB, check)
    lines = outcome.evidence().splitlines()
    assert lines[0] == f"client$ {check.command}"
    assert len(lines) == 1 + EVIDENCE_LINES + 1 and lines[-1] == "  ... (5 more lines)"
    empty = run_check(FakeBackend({(check.node, check.argv): (1, "")}), LAB, check)
    assert empty.evidence().splitlines()[1] == "  (no output)"


def test_stdout_and_stderr_are_both_judged():
    check = the_check("web1")

    class SplitBackend(FakeBackend):
        def run(self, topology, node, argv, timeout=60, input=None):
            return subprocess.CompletedProcess(argv, 0, "", "no TCP connection to 172.31.50.11:8080\n")

    outcome = run_check(SplitBackend({}), LAB, check)
    assert not outcome.ok and "refuses" in outcome.reason


# ------------------------------------------------------------ weaknesses found here, and fixed


def test_a_dead_admin_socket_fails_the_lb_hop():
    socat_error = ('2024/01/01 12:00:00 socat[42] E connect(5, AF=1 "/run/haproxy/admin.sock", 25): '
                   "No such file or directory")
    assert judge("lb servers")(0, socat_error) is not None


def test_a_damaged_lease_file_is_a_reason_not_a_crash():
    assert judge("lease")(0, '{"event": "bound", "ip": \nnameserver 198.51.100.53') is not None


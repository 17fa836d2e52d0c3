"""A second topology (two DHCP clients, other subnets and names) comes up beside the default
lab with no code change, passes the same DHCP and DNS checks, and leaves nothing behind. Its
three balancers in front of the same replicas show the balancing choices, one algorithm each.

It runs on the other backend than the default lab's, so it also shows a Docker lab and a netns
lab on the same host at the same time: each works, neither breaks the other (bridge netfilter
and Docker's FORWARD DROP policy apply to both), and taking one away leaves the other as it
was. Between them the two workers run duo on both backends."""

import csv
import json
import os
import signal
import subprocess
import time

import pytest

from helpers import (DUO_TOPOLOGY, HOPLAB, OTHER, assert_dhcp_lease, assert_dns, burst, concurrent_labs, hoplab,
                     host_state, lab_leftovers, load_lab, missing_prerequisite, quick_loads, suite_topology)

EMPTY = {"containers": [], "networks": [], "volumes": [], "iptables": [], "bridges": [], "processes": [],
         "folders": []}


@pytest.fixture(scope="module")
def duo(lab):
    """duo.yaml on the other backend, beside the default lab, for this module only (a lab left
    running would cost the rest of the suite its health checks)."""
    backend = OTHER[lab.backend]
    reason = missing_prerequisite(backend)
    if reason:
        pytest.skip(f"{backend} backend: {reason}")
    duo = load_lab(suite_topology(DUO_TOPOLOGY, lab.backend), backend)
    duo.hoplab("up", "--quiet")
    yield duo
    duo.hoplab("clean")


# ------------------------------------------------------------ beside the default lab


def visit(lab, client):
    return json.loads(lab.hoplab("visit", f"https://www.{lab.topology.domain.name}/order", "--from", client,
                                 "--json").stdout)


def test_both_backends_serve_page_loads_side_by_side(lab, duo):
    mine, theirs = visit(lab, lab.clients()[0]), visit(duo, duo.clients()[0])
    assert mine["status"] == theirs["status"] == 200
    assert mine["served_by"] in {n.name for n in lab.topology.nodes_of("web")}
    assert theirs["served_by"] in {n.name for n in duo.topology.nodes_of("web")}


def test_without_backend_each_lab_is_found_where_it_runs(lab, duo):
    for each in (lab, duo):
        data = json.loads(hoplab("status", "--json", "--topology", each.path).stdout)
        assert data["backend"] == each.backend
        assert [n["node"] for n in data["nodes"]] == list(each.topology.nodes)
        assert all(n["health"] == "healthy" for n in data["nodes"])


def test_the_netns_nodes_hold_no_mount_of_docker_or_of_a_namespace(lab, duo):
    """A netns node's mounts began as a copy of the host's: a Docker container's namespace file
    kept there would outlive the container, and after a restart its old veth would go on
    answering (with RSTs) for the container's address."""
    netns_lab = lab if lab.backend == "netns" else duo
    docker_up = bool(subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True,
                                    timeout=30).stdout.strip())
    for node in netns_lab.topology.nodes:
        table = netns_lab.exec(node, "findmnt", "-rn", "-o", "TARGET,FSTYPE").stdout.splitlines()
        kept = [line for line in table if line.endswith(" nsfs") or line.startswith(("/var/lib/docker/", "/run/docker/"))]
        assert kept == [], (node, kept)
    assert docker_up  # the Docker lab beside it was up, so there was something to leave out


# ------------------------------------------------------------ duo itself


def test_both_clients_get_distinct_leases(duo):
    assert duo.clients() == ["pc1", "pc2"]
    addresses = {assert_dhcp_lease(duo, client) for client in duo.clients()}
    assert len(addresses) == 2


@pytest.mark.parametrize("client", ["pc1", "pc2"])
def test_dns_from_each_client(duo, client):
    assert_dns(duo, client)


def test_every_one_of_three_replicas_serves(duo):
    replicas = {n.name for n in duo.topology.nodes_of("web")}
    assert replicas == {"app1", "app2", "app3"}
    served = set()
    for _ in range(24):
        out = duo.exec("pc1", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %header{x-served-by}",
                       f"{duo.www}/order").stdout.split()
        assert out[0] == "200"
        served.add(out[1])
    assert served == replicas


@pytest.mark.parametrize("client", ["pc1", "pc2"])
def test_visit_from_each_client(duo, client):
    out = duo.hoplab("visit", f"{duo.www}/", "--from", client, "--json").stdout
    visit = json.loads(out)
    assert visit["ok"] and visit["status"] == 200 and visit["edge"] == "edge"
    assert visit["remote"] == f"{duo.topology.domain.records['www']}:443"


def test_an_edge_offering_only_tls_1_2_shows_its_certificate_and_is_still_read(duo):
    """duo.yaml's edge offers TLS 1.2 alone: the certificate crosses the wire in clear, and the
    session keys curl logged (the master secret) still open the request."""
    trace = json.loads(duo.hoplab("visit", f"{duo.www}/", "--from", "pc1", "--trace", "--json").stdout)["trace"]
    summaries = [h["summary"] for h in trace["hops"] if h["node"] == "pc1"]
    assert any("ServerHello TLS1.2" in s and "Certificate" in s for s in summaries), summaries
    request = [h for h in trace["hops"] if h.get("decrypted", {}).get("summary") == "HTTP GET /"]
    assert request and all(h["decrypted"]["cipher"].startswith("TLS1.2 ") for h in request)
    assert request[0]["node"] == "pc1" and request[0]["decrypted"]["keys"]["http_host"] == f"www.{duo.topology.domain.name}"


def test_a_burst_past_the_edges_own_limit_is_answered_429_with_retry_after_then_served_again(duo):
    """duo.yaml's edge allows each client address 10 requests/s and a burst of 20: a script's
    burst of 120 page loads meets 429s with Retry-After; after waiting that long, 200 again."""
    limit = duo.topology.nodes["edge"].rate_limit
    started = time.monotonic()
    answers = burst(duo, "pc1", 120)
    took = time.monotonic() - started
    codes = [code for code, _ in answers]
    assert len(answers) == 120 and set(codes) <= {"200", "429"}, answers
    # nginx lets the burst and one through at once, and the rate after that
    allowed = limit.burst + 1 + limit.requests_per_second * took
    assert codes.count("200") >= limit.burst + 1 and codes.count("200") <= allowed, (codes.count("200"), took)
    throttled = [after for code, after in answers if code == "429"]
    assert len(throttled) >= 120 - allowed and set(throttled) == {"1"}, answers
    assert all(after == "" for code, after in answers if code == "200")
    time.sleep(int(throttled[0]))  # as Retry-After says
    assert quick_loads(duo, "pc1", 1) == [["200", ""]]


# Requests from a lab node straight to a balancer, one connection each (urllib: no keep-alive),
# as JSON: the replica that served each (X-Served-By). With `hold`, first a request the balancer
# passes on at once but whose body is not all sent, so a replica keeps a connection open while
# the others are made; then its body, and the replica that held it ("held").
REQUESTS = r"""
import json, socket, sys, time, urllib.request
address, count, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hold"
def served():
    with urllib.request.urlopen(f"http://{address}/order", timeout=5) as answer:
        return answer.headers["X-Served-By"]
if hold:  # the app reads the whole form before it answers: the connection stays open meanwhile
    held = socket.create_connection((address, 80), timeout=10)
    held.sendall(b"POST /order HTTP/1.1\r\nHost: balanced\r\nConnection: close\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 2\r\n\r\nx")
    time.sleep(0.5)  # HAProxy passes the headers on as they come: a replica has it by now
result = {"served": [served() for _ in range(count)]}
if hold:
    held.sendall(b"y")
    reply = b""
    while chunk := held.recv(65536):
        reply += chunk
    head = reply.split(b"\r\n\r\n")[0].decode()
    result["held"] = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                           if line.lower().startswith("x-served-by:")), head)
print(json.dumps(result))
"""


def balanced(lab, balancer: str, count: int, hold: bool = False, source: str = "edge") -> dict:
    """`count` requests from `source` to `balancer` (its address on the data centre's network)."""
    address = str(lab.topology.nodes[balancer].static_addresses[0][1])
    return json.loads(lab.exec(source, "python3", "-c", REQUESTS, address, str(count), "hold" if hold else "-",
                               timeout=60).stdout)


def servers_seen(lab, balancer: str) -> dict[str, tuple[str, int]]:
    """Each server of the balancer's backend: (HAProxy's status, its count of UP-to-DOWN turns)."""
    table = lab.sh(balancer, "echo 'show stat' | socat stdio /run/haproxy/admin.sock").stdout.splitlines()
    rows = csv.DictReader([table[0].removeprefix("# ")] + [line for line in table[1:] if line])
    return {row["svname"]: (row["status"], int(row["chkdown"] or 0)) for row in rows
            if row["pxname"] == "web" and row["svname"] not in ("FRONTEND", "BACKEND")}


def test_the_weighted_balancer_sends_each_replica_its_share(duo):
    """duo's balancer is weighted, app1 3, app2 and app3 1: of 80 requests, 48, 16 and 16
    (HAProxy's weighted round robin is exact over whole turns; a margin for anything else).
    Counted while every server stays UP: on a loaded machine a health check (500 ms) may time
    out, and a server taken out meanwhile gives its turns away -- then the count is taken again."""
    assert duo.topology.nodes["balancer"].algorithm == "weighted"
    for _ in range(3):
        deadline = time.monotonic() + 30
        before = servers_seen(duo, "balancer")
        while {status for status, _ in before.values()} != {"UP"}:
            assert time.monotonic() < deadline, before
            time.sleep(0.2)
            before = servers_seen(duo, "balancer")
        served = balanced(duo, "balancer", 80)["served"]
        if servers_seen(duo, "balancer") == before:
            break
    else:
        pytest.fail(f"a server of the weighted balancer went down during each of three counts: {before}")
    counts = {name: served.count(name) for name in ("app1", "app2", "app3")}
    assert sum(counts.values()) == 80, served
    assert 40 <= counts["app1"] <= 56 and all(8 <= counts[n] <= 24 for n in ("app2", "app3")), counts


def test_the_source_hash_balancer_sends_one_client_to_one_replica(duo):
    served = balanced(duo, "sticky", 20)["served"]
    assert len(served) == 20 and len(set(served)) == 1, served
    assert served[0] in {"app1", "app2", "app3"}
    # and not by weight: the weighted balancer beside it spreads the same client's requests
    assert len(set(balanced(duo, "balancer", 5)["served"])) > 1


def test_the_least_connections_balancer_steers_around_a_busy_replica(duo):
    """While one replica holds an unfinished request, every new request goes to the other two
    (round robin would give the busy one its turn: a third of them)."""
    found = balanced(duo, "least", 12, hold=True)
    held, served = found["held"], found["served"]
    assert held in {"app1", "app2", "app3"}, found
    assert held not in served and set(served) == {"app1", "app2", "app3"} - {held}, found


def test_status_shows_each_balancers_algorithm_and_weights_as_haproxy_reports_them(duo, lab):
    balancers = json.loads(duo.hoplab("status", "--json").stdout)["balancers"]
    weights = {name: {s["name"]: s["weight"] for s in seen["servers"]} for name, seen in balancers.items()}
    assert {name: (seen["algorithm"], seen["haproxy"]) for name, seen in balancers.items()} == {
        "balancer": ("weighted", "roundrobin"), "sticky": ("source-hash", "source"), "least": ("least-connections", "leastconn")}
    assert weights == {"balancer": {"app1": 3, "app2": 1, "app3": 1}, "sticky": {"app1": 1, "app2": 1, "app3": 1},
                       "least": {"app1": 1, "app2": 1, "app3": 1}}
    assert all(s["status"] == "UP" for seen in balancers.values() for s in seen["servers"])
    text = duo.hoplab("status").stdout
    assert "balancer balancer: weighted (HAProxy: balance roundrobin): app1 weight 3 UP, app2 weight 1 UP" in text
    # the default lab's balancer: round robin, every replica alike
    default = json.loads(lab.hoplab("status", "--json").stdout)["balancers"]
    assert {name: (seen["algorithm"], seen["haproxy"], [s["weight"] for s in seen["servers"]])
            for name, seen in default.items()} == {"lb": ("round-robin", "roundrobin", [1, 1])}


def test_default_lab_unaffected(duo, lab):
    assert lab.healthy()
    domain = lab.topology.domain
    assert lab.dig("client", f"www.{domain.name}") == [str(domain.records["www"])]


def lookalikes(lab) -> list[str]:
    """A veth pair named as the lab's own links are (`hv-<lab>-N` on netns, `hl-<lab>-…` as
    Docker's bridges), made by someone else: no hoplab mark."""
    prefix = "hv" if lab.backend == "netns" else "hl"
    names = [f"{prefix}-{lab.name}-98", f"{prefix}-{lab.name}-99"]
    subprocess.run(["ip", "link", "add", "name", names[0], "type", "veth", "peer", "name", names[1]],
                   check=True, timeout=30)
    return names


def test_down_leaves_nothing_and_touches_nothing_else(duo, lab):
    """duo goes down beside the default lab on the other backend: nothing of duo's is left, a
    lookalike of its links that someone else made survives, the rest of the host is as it was,
    and the default lab still serves its page."""
    others = {duo.name} | concurrent_labs(lab.backend)
    before = host_state(exclude=others)
    fakes = lookalikes(duo)
    try:
        removed = duo.hoplab("down")
        survivors = [n for n in fakes if subprocess.run(["ip", "link", "show", "dev", n], capture_output=True,
                                                        timeout=30).returncode == 0]
    finally:
        subprocess.run(["ip", "link", "del", "dev", fakes[0]], capture_output=True, timeout=30)
    assert survivors == fakes, f"{duo.name}'s removal deleted links it did not make:\n{removed.stderr}"
    assert "removed " in removed.stderr and "could not remove" not in removed.stderr
    assert lab_leftovers(duo.name) == EMPTY
    assert host_state(exclude=others) == before  # and nothing else was touched
    assert lab.healthy() and quick_loads(lab, lab.clients()[0], 1) == [["200", ""]]


def test_clean_after_up_killed_midway(lab):
    duo = load_lab(suite_topology(DUO_TOPOLOGY, lab.backend), lab.backend)
    others = {duo.name} | concurrent_labs(lab.backend)
    before = host_state(exclude=others)
    proc = subprocess.Popen([*HOPLAB, "up", "--topology", duo.path, "--backend", duo.backend],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Killed once nodes exist: containers, or namespaces with their processes.
    made = "containers" if duo.backend == "docker" else "processes"
    deadline = time.monotonic() + 120
    while not lab_leftovers(duo.name)[made]:
        assert proc.poll() is None, "up finished before it could be killed"
        assert time.monotonic() < deadline, f"up made no {made} in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lab_leftovers(duo.name)[made], "nothing to clean: the test proves nothing"
    duo.hoplab("clean")
    assert lab_leftovers(duo.name) == EMPTY
    assert host_state(exclude=others) == before
    assert lab.healthy()

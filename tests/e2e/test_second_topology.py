"""A second topology (two DHCP clients, other subnets and names) comes up beside the default
lab with no code change, passes the same DHCP and DNS checks, and leaves nothing behind."""

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import (DUO_TOPOLOGY, HOPLAB, assert_dhcp_lease, assert_dns, burst, concurrent_labs, host_state,
                     lab_leftovers, load_lab, quick_loads, suite_topology)

EMPTY = {"containers": [], "networks": [], "volumes": [], "iptables": [], "bridges": [], "processes": [],
         "folders": []}


@pytest.fixture(scope="module")
def duo(lab):
    # On the default lab's backend, beside it: the default lab must not notice.
    duo = load_lab(suite_topology(DUO_TOPOLOGY, lab.backend), lab.backend)
    duo.hoplab("up", "--quiet")
    yield duo
    duo.hoplab("clean")


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


def test_default_lab_unaffected(duo, lab):
    assert lab.healthy()
    domain = lab.topology.domain
    assert lab.dig("client", f"www.{domain.name}") == [str(domain.records["www"])]


def test_down_leaves_nothing(duo, lab):
    others = {duo.name} | concurrent_labs(lab.backend)
    before = host_state(exclude=others)
    duo.hoplab("down")
    assert lab_leftovers(duo.name) == EMPTY
    assert host_state(exclude=others) == before  # and nothing else was touched
    assert lab.healthy()


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

"""The topology model: every invalid file under tests/data/invalid is rejected with the field and
reason its first line announces, and the committed topologies load into the expected model."""

from __future__ import annotations

import copy
import json
import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml

from hoplab import spec
from hoplab.services import load_catalog

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY_DIR = ROOT / "topology"
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
EXPECT_LINE = re.compile(r"^# expect: (?P<field>.+?) :: (?P<reason>.+)$")


def expectation(path: Path) -> tuple[str, str]:
    """(field prefix, reason substring) from the file's `# expect: FIELD :: REASON` first line."""
    first = path.read_text().splitlines()[0]
    match = EXPECT_LINE.match(first)
    assert match, f"{path}: first line is not '# expect: FIELD :: REASON': {first!r}"
    return match["field"].strip(), match["reason"].strip()


def lab_data(name: str = "lab") -> dict:
    return yaml.safe_load((TOPOLOGY_DIR / f"{name}.yaml").read_text())


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(spec.TopologyError) as info:
        spec.from_data(data, "inline.yaml", load_catalog())
    return info.value.problems


# ---------------------------------------------------------------- invalid files


def test_every_invalid_file_says_what_it_expects():
    for path in INVALID:
        expectation(path)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file_is_rejected_with_field_and_reason(path):
    field, reason = expectation(path)
    with pytest.raises(spec.TopologyError) as info:
        spec.load(path)
    error = info.value
    assert any(f.startswith(field) and reason in r for f, r in error.problems), (
        f"expected ({field!r}..., ...{reason!r}...) among {error.problems}")
    assert str(path) in str(error)
    assert error.source == str(path)
    # every line of the message names the file, so a user can tell which file is wrong
    assert all(line.startswith(f"{path}: ") for line in str(error).splitlines())


def test_missing_file_is_a_topology_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(spec.TopologyError) as info:
        spec.load(missing)
    assert info.value.problems[0][0] == "(file)"
    assert str(missing) in str(info.value)


LAB_FILE = (TOPOLOGY_DIR / "lab.yaml").read_bytes()
# Files that once raised something else than a TopologyError, each refused by field and reason
# now: made by the fuzzer (fuzz/fuzz_topology.py), or written reading the loader beside it.
ONCE_CRASHING_FILES = [
    # keys of two types beside each other: the unknown ones were sorted together (TypeError)
    (b"0: x\nfoo: y\n", "(top level)", "unknown field(s) 0, foo"),
    # a node entry that is a list of mappings: service-or-image looked for its keys in a set of them
    (b"nodes:\n  router: [{}]\n", "nodes.router", "needs service (a service folder) or image"),
    # a list as a key: the duplicate-key check hashed it before PyYAML could refuse it
    (b"? [a, b]\n: 1\n", "(yaml, line 1 column 3)", "found unhashable key"),
    # nesting past Python's recursion limit in PyYAML's composer (RecursionError)
    (b"[" * 2000, "(yaml, line 1 column 65)", "nested deeper than 64 levels"),
    # JSON Schema's integer took 2.0, and range() did not (TypeError)
    (LAB_FILE.replace(b"replicas: 2", b"replicas: 2.0"), "nodes.web.replicas", "2.0 is not of type 'integer'"),
    # ...nor a port, which reached the model as a float (no exception: a control port 50051.0)
    (LAB_FILE.replace(b"control: 172.31.254.2", b"control: 172.31.254.2\n  port: 50051.0"), "management.port",
     "50051.0 is not of type 'integer'"),
]


@pytest.mark.parametrize("text, field, reason", ONCE_CRASHING_FILES, ids=[f for _, f, _ in ONCE_CRASHING_FILES])
def test_a_once_crashing_file_is_refused_by_field_and_reason(tmp_path, text, field, reason):
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(text)
    with pytest.raises(spec.TopologyError) as info:
        spec.load(path)
    assert any(f == field and reason in r for f, r in info.value.problems), info.value.problems


# ---------------------------------------------------------------- all problems at once


def test_two_defects_give_two_problems():
    data = lab_data()
    data["nodes"]["client"]["service"] = "webserver"
    data["domain"]["records"]["www"] = "203.0.113.80"
    problems = problems_of(data)
    assert len(problems) == 2, problems
    fields = {f for f, _ in problems}
    assert fields == {"nodes.client.service", "domain.records.www"}


def test_two_schema_defects_give_two_problems():
    data = lab_data()
    data["name"] = "Lab"
    data["networks"]["home"]["dhcp"]["lease_time"] = 60
    problems = problems_of(data)
    assert [f for f, _ in problems] == ["name", "networks.home.dhcp.lease_time"], problems


def test_error_message_names_source_field_and_reason():
    data = lab_data()
    data["domain"]["mx"] = "smtp"
    with pytest.raises(spec.TopologyError) as info:
        spec.from_data(data, "inline.yaml", load_catalog())
    assert str(info.value) == "inline.yaml: domain.mx: 'smtp' is neither a node nor a record"


def test_non_mapping_is_rejected():
    assert problems_of(["name", "lab"])[0][0] == "(top level)"


# ---------------------------------------------------------------- the committed topologies


@pytest.fixture(scope="module")
def lab() -> spec.Topology:
    return spec.load(TOPOLOGY_DIR / "lab.yaml")


@pytest.fixture(scope="module")
def duo() -> spec.Topology:
    return spec.load(TOPOLOGY_DIR / "duo.yaml")


def test_lab_nodes_and_networks(lab):
    assert lab.name == "lab"
    assert list(lab.nodes) == ["router", "dhcp", "dns", "client", "cache", "lb", "web1", "web2", "db", "mail", "game",
                                "control"]
    assert list(lab.networks) == ["home", "internet", "origin"]
    assert [n.name for n in lab.nodes_of("web")] == ["web1", "web2"]
    assert lab.nodes["web2"].address_on("origin") == IPv4Address("172.31.50.12")
    assert [n.name for n in lab.nodes_of("client")] == ["client"]


def test_duo_replicas_are_expanded(duo):
    assert list(duo.nodes) == ["gw", "dhcpd", "ns", "pc1", "pc2", "edge", "balancer", "sticky", "least", "app1", "app2",
                                 "app3", "sql", "control"]
    assert [str(n.address_on("dc")) for n in duo.nodes_of("web")] == ["172.30.78.21", "172.30.78.22", "172.30.78.23"]
    assert "pc" not in duo.nodes
    for name in ("pc1", "pc2"):
        node = duo.nodes[name]
        assert node.service == "client"
        assert [(i.network, i.address) for i in node.interfaces] == [("lan", None)]
        assert node.static_addresses == []


def test_lab_addresses(lab):
    router = lab.nodes["router"]
    assert router.address_on("home") == IPv4Address("192.168.50.1")
    assert router.address_on("internet") == IPv4Address("198.51.100.1")
    assert router.nat == spec.Nat(("home",), "internet")
    assert lab.nodes["dhcp"].static_addresses == [("home", IPv4Address("192.168.50.2"))]
    assert lab.nodes["client"].address_on("home") is None
    assert lab.nodes["client"].address_on("internet") is None
    assert lab.dns_address == IPv4Address("198.51.100.53")


def test_lab_dhcp_scope(lab):
    scope = lab.networks["home"].dhcp
    assert (scope.server, scope.gateway, scope.lease_time) == ("dhcp", "router", 3600)
    assert IPv4Address("192.168.50.100") in scope
    assert IPv4Address("192.168.50.199") in scope
    assert IPv4Address("192.168.50.200") not in scope
    assert lab.networks["internet"].dhcp is None


def test_replica_addresses_follow_the_first():
    data = lab_data()
    data["nodes"]["web"] = {"service": "client", "replicas": 3, "networks": {"internet": "198.51.100.90"}}
    topology = spec.from_data(data, "inline.yaml", load_catalog())
    assert [str(topology.nodes[f"web{i}"].address_on("internet")) for i in (1, 2, 3)] == [
        "198.51.100.90", "198.51.100.91", "198.51.100.92"]
    assert "web" not in topology.nodes


@pytest.mark.parametrize("name, network, gateway, first, last, lease", [
    ("lab", "home", "192.168.50.1", "192.168.50.100", "192.168.50.199", 3600),
    ("duo", "lan", "192.168.77.1", "192.168.77.40", "192.168.77.59", 600),
])
def test_runtime_resolves_dhcp_gateway(name, network, gateway, first, last, lease):
    runtime = spec.load(TOPOLOGY_DIR / f"{name}.yaml").to_runtime()
    scope = runtime["networks"][network]["dhcp"]
    assert scope["gateway"] == gateway  # the gateway node's address, not its name
    assert (scope["first"], scope["last"], scope["lease_time"]) == (first, last, lease)


def test_lab_runtime(lab):
    runtime = lab.to_runtime()
    assert runtime["lab"] == "lab"
    assert runtime["domain"] == "example.test"
    assert runtime["dns_server"] == "198.51.100.53"
    assert "dhcp" not in runtime["networks"]["internet"]
    assert runtime["nodes"]["client"]["interfaces"] == [{"network": "home", "address": None, "prefixlen": 24}]
    assert runtime["nodes"]["router"]["nat"] == {
        "inside": [{"network": "home", "subnet": "192.168.50.0/24"}], "outside": "internet"}
    assert "nat" not in runtime["nodes"]["dns"]
    assert json.loads(lab.runtime_json()) == json.loads(json.dumps(runtime))


def test_duo_runtime_prefixlen(duo):
    runtime = duo.to_runtime()
    assert runtime["networks"]["lan"]["subnet"] == "192.168.77.0/25"
    assert runtime["nodes"]["dhcpd"]["interfaces"] == [{"network": "lan", "address": "192.168.77.5", "prefixlen": 25}]
    assert set(runtime["nodes"]) == {"gw", "dhcpd", "ns", "pc1", "pc2", "edge", "balancer", "sticky", "least", "app1",
                                      "app2", "app3", "sql", "control"}


def test_lab_zone(lab):
    zone = lab.zone
    assert zone["name"] == "example.test"
    assert zone["ns"] == "dns"
    records = zone["records"]
    assert ("www", "A", "198.51.100.80") in records
    assert ("mail", "A", "198.51.100.25") in records
    assert ("mail", "A", "172.31.50.25") not in records  # the client could not reach it
    assert ("dns", "A", "198.51.100.53") in records
    assert ("game", "A", "198.51.100.70") in records
    assert ("router", "A", "192.168.50.1") in records
    # a multi-homed node is named by its first network's address only; PTRs cover both
    assert ("router", "A", "198.51.100.1") not in records
    assert ("@", "MX", "10 mail.example.test.") in records
    assert not any(name == "client" for name, _, _ in records)  # DHCP clients have no fixed A record
    assert set(zone["reverse"]) == {"100.51.198.in-addr.arpa", "50.168.192.in-addr.arpa",
                                    "50.31.172.in-addr.arpa"}
    assert zone["reverse"]["100.51.198.in-addr.arpa"] == [
        ("1", "router.example.test."), ("25", "mail.example.test."),
        ("53", "dns.example.test."), ("70", "game.example.test."), ("80", "cache.example.test.")]
    assert ("12", "web2.example.test.") in zone["reverse"]["50.31.172.in-addr.arpa"]
    assert zone["reverse"]["50.168.192.in-addr.arpa"] == [
        ("1", "router.example.test."), ("2", "dhcp.example.test.")]


def test_duo_zone(duo):
    zone = duo.zone
    assert zone["name"] == "corp.test"
    assert ("www", "A", "172.30.77.80") in zone["records"]
    assert ("@", "MX", "10 smtp.corp.test.") in zone["records"]
    assert ("53", "ns.corp.test.") in zone["reverse"]["77.30.172.in-addr.arpa"]
    assert ("5", "dhcpd.corp.test.") in zone["reverse"]["77.168.192.in-addr.arpa"]


def test_mx_may_name_a_node():
    data = lab_data()
    data["domain"]["mx"] = "dns"
    topology = spec.from_data(data, "inline.yaml", load_catalog())
    assert ("@", "MX", "10 dns.example.test.") in topology.zone["records"]


def test_topology_is_not_changed_by_loading():
    data = lab_data()
    before = copy.deepcopy(data)
    spec.from_data(data, "inline.yaml", load_catalog())
    assert data == before


# ---------------------------------------------------------------- known bugs


def test_replica_address_overflow_is_reported():
    data = lab_data()
    data["nodes"]["web"] = {"service": "client", "replicas": 3, "networks": {"internet": "255.255.255.254"}}
    fields = [f for f, _ in problems_of(data)]
    assert "nodes.web.networks.internet" in fields


def test_the_edge_offers_tls_1_3_unless_the_topology_says_otherwise(lab, duo):
    assert lab.nodes["cache"].tls_protocols == ("TLSv1.2", "TLSv1.3")
    assert lab.to_runtime()["nodes"]["cache"]["tls"] == {"protocols": ["TLSv1.2", "TLSv1.3"]}
    assert duo.to_runtime()["nodes"]["edge"]["tls"] == {"protocols": ["TLSv1.2"]}


def test_the_edge_limits_requests_only_when_the_topology_says_so(lab, duo):
    # the default lab: no limit (its load runs and benchmarks come from one NAT address)
    assert lab.nodes["cache"].rate_limit is None and "rate_limit" not in lab.to_runtime()["nodes"]["cache"]
    assert duo.nodes["edge"].rate_limit == spec.RateLimit(10, 20)
    assert duo.to_runtime()["nodes"]["edge"]["rate_limit"] == {"requests_per_second": 10, "burst": 20}


def test_a_rate_limit_without_a_burst_has_none():
    data = lab_data()
    data["nodes"]["cache"]["rate_limit"] = {"requests_per_second": 5}
    limit = spec.from_data(data, "inline.yaml", load_catalog()).nodes["cache"].rate_limit
    assert limit == spec.RateLimit(5, 0)


@pytest.mark.parametrize("limit, field, reason", [
    ({"requests_per_second": 0}, "requests_per_second", "0 is not a rate: at least 1 request per second"),
    ({"requests_per_second": True}, "requests_per_second", "True is not a whole number"),
    ({"requests_per_second": 5.0}, "requests_per_second", "5.0 is not a whole number"),  # as replicas: 2.0
    ({"requests_per_second": "10r/s"}, "requests_per_second", "'10r/s' is not a whole number"),
    ({"requests_per_second": 10, "burst": -3}, "burst", "-3 is not a burst: 0 or more requests"),
    ({"requests_per_second": 100001}, "requests_per_second", "100001 is greater than the maximum of 100000"),
    ({"burst": 5}, "", "'requests_per_second' is a required property"),
    ({"requests_per_second": 10, "zone": "x"}, "", "unknown field(s) zone"),
])
def test_a_bad_rate_limit_names_its_field(limit, field, reason):
    data = lab_data()
    data["nodes"]["cache"]["rate_limit"] = limit
    expected = "nodes.cache.rate_limit" + (f".{field}" if field else "")
    assert any(f == expected and reason in r for f, r in problems_of(data)), problems_of(data)


def test_a_balancer_balances_round_robin_unless_the_topology_says_otherwise(lab, duo):
    assert lab.nodes["lb"].algorithm == "round-robin" and lab.to_runtime()["nodes"]["lb"]["algorithm"] == "round-robin"
    assert {n.name: n.algorithm for n in duo.nodes_of("lb")} == {
        "balancer": "weighted", "sticky": "source-hash", "least": "least-connections"}
    # only balancers have one; weights only where the topology gives them
    assert all(n.algorithm is None for n in lab.nodes.values() if n.service != "lb")
    assert all(n.weight is None for n in lab.nodes.values())
    assert all("weight" not in entry for entry in lab.to_runtime()["nodes"].values())


def test_weights_are_one_for_every_replica_or_one_each():
    data = lab_data()
    data["nodes"]["lb"]["algorithm"] = "weighted"
    data["nodes"]["web"]["weight"] = [3, 1]
    each = spec.from_data(data, "inline.yaml", load_catalog())
    assert (each.nodes["web1"].weight, each.nodes["web2"].weight) == (3, 1)
    assert each.to_runtime()["nodes"]["web1"]["weight"] == 3 and each.to_runtime()["nodes"]["web2"]["weight"] == 1
    data["nodes"]["web"]["weight"] = 256
    same = spec.from_data(data, "inline.yaml", load_catalog())
    assert (same.nodes["web1"].weight, same.nodes["web2"].weight) == (256, 256)


def test_duo_weighs_its_replicas_three_to_one_to_one(duo):
    assert [n.weight for n in duo.nodes_of("web")] == [3, 1, 1]
    # the edge goes through the weighted balancer alone; the other two stand beside it
    assert [name for name, _ in duo.nodes["edge"].upstream.servers] == ["balancer"]


def test_a_weight_counts_if_one_of_its_balancers_is_weighted():
    data = lab_data()
    data["nodes"]["web"]["weight"] = [3, 1]
    data["nodes"]["lb"]["algorithm"] = "source-hash"
    data["nodes"]["lb2"] = {"service": "lb", "algorithm": "weighted", "networks": {"origin": "172.31.50.9"}}
    assert spec.from_data(data, "inline.yaml", load_catalog()).nodes["web1"].weight == 3
    # a node an upstream names is a backend too, whatever its service
    data = lab_data()
    data["nodes"]["lb"].update(algorithm="weighted", upstream={"nodes": ["web", "db"], "port": 8080})
    data["nodes"]["db"]["weight"] = 2
    assert spec.from_data(data, "inline.yaml", load_catalog()).nodes["db"].weight == 2


@pytest.mark.parametrize("node, key, value, field, reason", [
    ("lb", "algorithm", "random", "nodes.lb.algorithm", "'random' is not an algorithm: round-robin, least-connections"),
    ("lb", "algorithm", "roundrobin", "nodes.lb.algorithm", "'roundrobin' is not an algorithm"),  # HAProxy's word
    ("cache", "algorithm", "weighted", "nodes.cache.algorithm", "only a balancer (service 'lb') has an algorithm"),
    ("web", "weight", 0, "nodes.web.weight", "0 is not a weight: 1 to 256"),
    ("web", "weight", -1, "nodes.web.weight", "-1 is not a weight: 1 to 256"),
    ("web", "weight", [2, 0], "nodes.web.weight.1", "0 is not a weight: 1 to 256"),
    ("web", "weight", 257, "nodes.web.weight", "257 is not a weight: 1 to 256"),
    ("web", "weight", 1.5, "nodes.web.weight", "1.5 is not a weight: a whole number from 1 to 256"),
    ("web", "weight", 2.0, "nodes.web.weight", "2.0 is not a weight: a whole number"),  # as replicas: 2.0
    ("web", "weight", "3", "nodes.web.weight", "'3' is not a weight: a whole number"),
    ("web", "weight", True, "nodes.web.weight", "True is not a weight: a whole number"),
    ("web", "weight", [1.5, 1], "nodes.web.weight.0", "1.5 is not a weight: a whole number"),
    ("web", "weight", [3], "nodes.web.weight", "1 weights for 2 node(s) (web1, web2): give one for all, or one per replica"),
    ("db", "weight", 2, "nodes.db.weight", "'db': not behind a balancer"),
    ("cache", "weight", 2, "nodes.cache.weight", "'cache': not behind a balancer"),  # the edge's nginx has no weights
    ("lb", "weight", 2, "nodes.lb.weight", "'lb': not behind a balancer"),
])
def test_a_bad_algorithm_or_weight_names_its_field(node, key, value, field, reason):
    data = lab_data()
    data["nodes"]["lb"]["algorithm"] = "weighted"
    data["nodes"][node][key] = value
    assert any(f == field and reason in r for f, r in problems_of(data)), problems_of(data)


def test_a_weight_no_balancer_reads_is_refused_not_ignored():
    data = lab_data()
    data["nodes"]["web"]["weight"] = [3, 1]  # the default lab's balancer: round-robin
    assert problems_of(data) == [("nodes.web.weight", "no balancer of web1, web2 reads weights: lb (round-robin); "
                                                      "only algorithm 'weighted' does")]


def test_the_schema_and_the_model_know_the_same_algorithms():
    schema = json.loads((TOPOLOGY_DIR / "schema.json").read_text())
    node = schema["properties"]["nodes"]["additionalProperties"]["properties"]
    assert tuple(node["algorithm"]["enum"]) == spec.ALGORITHMS and spec.DEFAULT_ALGORITHM in spec.ALGORITHMS


def test_impairments_reach_their_link_ends_and_a_replicated_entry_gives_each_replica_its_own():
    data = lab_data()
    data["impairments"] = {"client:home": {"delay_ms": 50, "jitter_ms": 5}, "web:origin": {"loss_percent": 2.5},
                           "cache:internet": {"rate": "10mbit"}}
    lab = spec.from_data(data, "inline.yaml", load_catalog())
    runtime = lab.to_runtime()["nodes"]
    assert runtime["client"]["interfaces"][0]["impairment"] == {"delay_ms": 50, "jitter_ms": 5, "loss_percent": 0,
                                                                 "rate": ""}
    for web in ("web1", "web2"):
        assert runtime[web]["interfaces"][0]["impairment"]["loss_percent"] == 2.5
    cache = {i["network"]: i.get("impairment") for i in runtime["cache"]["interfaces"]}
    assert cache["internet"]["rate"] == "10mbit" and cache["origin"] is None  # one end of one link, not the node
    assert "impairment" not in runtime["dns"]["interfaces"][0]
    assert str(lab.nodes["client"].interfaces[0].impairment) == "delay 50 ms ± 5"
    assert str(lab.nodes["cache"].interfaces[0].impairment) == "rate 10mbit"

"""`upstream:` (a balancer's backends, an edge's origin) and `sites:` (an edge's other names,
with DNS records made for them) as the topology chooses them."""

from __future__ import annotations

import pytest
import yaml

from hoplab import spec
from hoplab.paths import TOPOLOGY_DIR


def lab(**changes) -> dict:
    data = yaml.safe_load((TOPOLOGY_DIR / "lab.yaml").read_text())
    for node, fields in changes.items():
        data["nodes"][node].update(fields)
    return data


def test_without_upstream_nothing_changes():
    topology = spec.load(TOPOLOGY_DIR / "lab.yaml")
    runtime = topology.to_runtime()["nodes"]
    assert "upstream" not in runtime["lb"] and "sites" not in runtime["cache"]


def test_a_replicated_entry_means_every_replica_and_a_name_one_node():
    topology = spec.from_data(lab(lb={"upstream": {"nodes": ["web", "mail"], "port": 9000, "health": "/ping"}}),
                              "inline.yaml")
    up = topology.nodes["lb"].upstream
    assert [(n, str(a)) for n, a in up.servers] == [("web1", "172.31.50.11"), ("web2", "172.31.50.12"),
                                                     ("mail", "172.31.50.25")]
    assert topology.to_runtime()["nodes"]["lb"]["upstream"] == {
        "servers": [["web1", "172.31.50.11"], ["web2", "172.31.50.12"], ["mail", "172.31.50.25"]],
        "port": 9000, "health": "/ping"}
    one = spec.from_data(lab(cache={"upstream": {"nodes": ["web2"], "port": 8080}}), "inline.yaml")
    assert one.to_runtime()["nodes"]["cache"]["upstream"]["servers"] == [["web2", "172.31.50.12"]]
    assert one.nodes["cache"].upstream.health == "/health"


def test_a_site_gets_its_record_pointing_at_the_edge_and_its_upstream():
    topology = spec.from_data(lab(cache={"sites": {"api": {"nodes": ["lb"], "port": 80}}}), "inline.yaml")
    assert ("api", "A", "198.51.100.80") in topology.zone["records"]
    sites = topology.to_runtime()["nodes"]["cache"]["sites"]
    assert sites == {"api.example.test": {"servers": [["lb", "172.31.50.10"]], "port": 80, "health": "/health"}}


@pytest.mark.parametrize("changes, field, reason", [
    ({"lb": {"upstream": {"nodes": ["nosuch"], "port": 80}}}, "nodes.lb.upstream.nodes", "unknown node 'nosuch'"),
    ({"lb": {"upstream": {"nodes": ["dns"], "port": 80}}}, "nodes.lb.upstream.nodes",
     "node 'dns' has no static address on a network 'lb' is on"),
    ({"lb": {"upstream": {"nodes": ["lb"], "port": 80}}}, "nodes.lb.upstream.nodes", "'lb' is the proxy itself"),
    ({"lb": {"upstream": {"nodes": ["web"]}}}, "nodes.lb.upstream.port",
     "required unless every node named declares the same first port (an image node's ports); web1: none, web2: none"),
    ({"lb": {"upstream": {"nodes": ["web"], "port": 0}}}, "nodes.lb.upstream.port", "less than the minimum"),
    ({"db": {"upstream": {"nodes": ["web"], "port": 80}}}, "nodes.db.upstream", "service 'db' reads no upstream"),
    ({"lb": {"sites": {"api": {"nodes": ["web"], "port": 80}}}}, "nodes.lb.sites", "only a cache"),
    ({"cache": {"sites": {"www": {"nodes": ["lb"], "port": 80}}}}, "nodes.cache.sites.www",
     "already a node or a record"),
    ({"cache": {"sites": {"Bad_Name": {"nodes": ["lb"], "port": 80}}}}, "nodes.cache.sites", "does not match"),
])
def test_a_bad_upstream_names_its_field(changes, field, reason):
    with pytest.raises(spec.TopologyError) as caught:
        spec.from_data(lab(**changes), "inline.yaml")
    assert any(f == field and reason in r for f, r in caught.value.problems), caught.value.problems


def test_a_proxy_starts_after_its_upstream_on_both_backends():
    from hoplab import compose
    from hoplab.backends.netns import NetnsBackend

    topology = spec.load(TOPOLOGY_DIR.parent / "examples" / "own-service" / "notes.yaml")
    assert topology.waits_for("balancer") == ["notes1", "notes2"]  # lb's own `after: [web]` finds no web
    assert topology.waits_for("edge") == ["balancer"]
    assert topology.waits_for("notes2") == ["kv"]
    rendered = yaml.safe_load(compose.render(topology, topology.services, "x.json"))
    assert set(rendered["services"]["balancer"]["depends_on"]) == {"notes1", "notes2"}
    assert set(rendered["services"]["edge"]["depends_on"]) == {"balancer"}
    waves = NetnsBackend()._waves(topology)
    at = {n: i for i, wave in enumerate(waves) for n in wave}
    assert at["kv"] < at["notes1"] < at["balancer"] < at["edge"] < at["client"]
    default = spec.load(TOPOLOGY_DIR / "lab.yaml")
    assert default.waits_for("lb") == ["web1", "web2"] and default.waits_for("cache") == []

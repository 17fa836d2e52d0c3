"""Renderers: the committed compose files are current, the compose document keeps the lab
isolated and its addressing consistent, and the graph names every node and network."""

from __future__ import annotations

import shutil
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from hoplab import cli, compose, graph, spec
from hoplab.services import load_catalog

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = sorted((ROOT / "topology").glob("*.yaml"))
IDS = [p.stem for p in TOPOLOGIES]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def variant(text: str) -> str:
    """lab.yaml with the longest names the schema allows, a pool at the top of the subnet and
    many DHCP clients: stresses bridge naming and Docker's share of the subnet."""
    return (text.replace("name: lab\n", "name: longlab1\n")
            .replace("home", "homenet123").replace("internet", "outsidenet")
            .replace("192.168.50.100-192.168.50.199", "192.168.50.200-192.168.50.254")
            .replace("    networks: {homenet123: dhcp}\n", "    replicas: 16\n    networks: {homenet123: dhcp}\n"))


def all_topologies() -> list[spec.Topology]:
    loaded = [spec.load(p) for p in TOPOLOGIES]
    data = yaml.safe_load(variant((ROOT / "topology" / "lab.yaml").read_text()))
    loaded.append(spec.from_data(data, "variant.yaml", load_catalog()))
    return loaded


TOPOLOGY_CASES = all_topologies()
CASE_IDS = [t.name for t in TOPOLOGY_CASES]


def rendered(topology: spec.Topology) -> dict:
    return yaml.safe_load(compose.render(topology, load_catalog(), f"{topology.name}.runtime.json"))


def static_addresses(topology: spec.Topology, network: str) -> set[IPv4Address]:
    return {n.address_on(network) for n in topology.nodes.values()} - {None}


# ---------------------------------------------------------------- hoplab render --check


@pytest.mark.parametrize("path", TOPOLOGIES, ids=IDS)
def test_committed_compose_files_are_current(path, capsys):
    assert cli.main(["render", "--check", "--topology", str(path)]) == 0, capsys.readouterr().err


def test_check_notices_a_changed_topology(tmp_path, capsys):
    topology = tmp_path / "lab.yaml"
    shutil.copy(ROOT / "topology" / "lab.yaml", topology)
    out = tmp_path / "out"
    check = ["render", "--check", "--topology", str(topology), "--output-dir", str(out)]
    assert cli.main(check) == 1  # nothing rendered yet
    assert cli.main(["render", "--topology", str(topology), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["lab.runtime.json", "lab.yml"]
    assert cli.main(check) == 0
    capsys.readouterr()
    topology.write_text(topology.read_text().replace("lease_time: 3600", "lease_time: 7200"))
    assert cli.main(check) == 1
    err = capsys.readouterr().err
    assert "lab.runtime.json: stale" in err
    assert "lab.yml" not in err  # the lease time is only in the runtime JSON


def test_check_does_not_write(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["render", "--check", "--topology", str(ROOT / "topology" / "lab.yaml"),
                     "--output-dir", str(out)]) == 1
    assert not out.exists()


# ---------------------------------------------------------------- compose structure


def test_variant_exercises_long_names():
    topology = TOPOLOGY_CASES[-1]
    assert topology.name == "longlab1"
    assert any(len(f"hl-{topology.name}-{net}") > 15 for net in topology.networks)


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_every_network_is_internal(topology):
    networks = rendered(topology)["networks"]
    assert set(networks) == set(topology.networks) | ({"mgmt"} if topology.management else set())
    for name, net in networks.items():
        assert net["internal"] is True, name
        assert net["driver"] == "bridge"
        assert net["labels"] == {compose.LABEL_LAB: topology.name}


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_bridge_names_are_short_and_unique(topology):
    networks = rendered(topology)["networks"]
    bridges = [net["driver_opts"]["com.docker.network.bridge.name"] for net in networks.values()]
    assert all(len(b) <= 15 for b in bridges), bridges
    assert len(set(bridges)) == len(bridges), bridges
    assert bridges == list(compose.bridge_names(topology).values())


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_docker_addressing_stays_clear_of_the_lab(topology):
    networks = rendered(topology)["networks"]
    for name, net in topology.networks.items():
        [config] = networks[name]["ipam"]["config"]
        assert IPv4Network(config["subnet"]) == net.subnet
        gateway = IPv4Address(config["gateway"])
        statics = static_addresses(topology, name)
        assert gateway in net.subnet and gateway not in (net.subnet.network_address, net.subnet.broadcast_address)
        assert gateway not in statics, f"{name}: host bridge takes a node's address {gateway}"
        if net.dhcp:
            assert gateway not in net.dhcp
            ip_range = IPv4Network(config["ip_range"])
            assert ip_range.subnet_of(net.subnet)
            clients = sum(1 for n in topology.nodes.values() for i in n.interfaces
                          if i.network == name and i.address is None)
            assert ip_range.num_addresses >= clients + 2
            for address in ip_range:
                assert address not in net.dhcp, f"{name}: ip_range {ip_range} overlaps the DHCP pool at {address}"
                assert address not in statics, f"{name}: ip_range {ip_range} holds static {address}"
                assert address != gateway
        else:
            assert "ip_range" not in config


def test_lab_has_an_ip_range_on_its_dhcp_network():
    networks = rendered(spec.load(ROOT / "topology" / "lab.yaml"))["networks"]
    assert "ip_range" in networks["home"]["ipam"]["config"][0]
    assert "ip_range" not in networks["internet"]["ipam"]["config"][0]


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_services_match_the_topology(topology):
    services = rendered(topology)["services"]
    assert list(services) == list(topology.nodes)
    for node in topology.nodes.values():
        entry = services[node.name]
        assert entry["image"] == f"hoplab/{node.service}:latest"
        assert entry["container_name"] == compose.container_name(topology, node.name)
        assert entry["hostname"] == node.name
        declared = load_catalog()[node.service]
        token = ["./control.token:/etc/hoplab/control.token:ro"] if node.name == "control" else []
        assert entry["volumes"] == [f"./{topology.name}.runtime.json:/etc/hoplab/lab.json:ro", *token,
                                    *(f"{node.name}-{v}:{p}" for v, p in declared.volumes.items()),
                                    *(f"{v}:{p}" for v, p in declared.shared.items())]
        assert entry["labels"] == {compose.LABEL_LAB: topology.name, compose.LABEL_NODE: node.name}
        expected = {i.network: ({"ipv4_address": str(i.address)} if i.address else {}) for i in node.interfaces}
        if topology.management:
            expected["mgmt"] = {"ipv4_address": str(topology.management.addresses[node.name])}
        assert entry["networks"] == expected


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_clients_wait_for_healthy_dhcp_router_and_edge(topology):
    services = rendered(topology)["services"]
    providers = {n.name for n in topology.nodes.values() if n.service in ("dhcp", "router", "cache")}
    clients = topology.nodes_of("client")
    assert clients and providers
    for client in clients:
        depends = services[client.name]["depends_on"]
        assert set(depends) == providers
        assert all(d == {"condition": "service_healthy"} for d in depends.values())
    for name, entry in services.items():
        assert set(entry.get("depends_on", {})) <= set(services), name
        assert name not in entry.get("depends_on", {}), f"{name} depends on itself"


# ---------------------------------------------------------------- graph


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_dot_mentions_every_node_and_network(topology):
    dot = graph.to_dot(topology)
    assert dot.startswith(f'graph "{topology.name}" {{')
    for name in topology.nodes:
        assert f'"{name}" [shape=box' in dot
    for name in topology.networks:
        assert f'"net:{name}" [shape=ellipse' in dot
    edges = sum(len(n.interfaces) for n in topology.nodes.values())
    assert dot.count(" -- ") == edges


@pytest.mark.parametrize("topology", TOPOLOGY_CASES, ids=CASE_IDS)
def test_mermaid_mentions_every_node_and_network(topology):
    mermaid = graph.to_mermaid(topology)
    assert mermaid.startswith("graph LR\n")
    for name in topology.nodes:
        assert f'  {name}["{name}<br/>' in mermaid
    for name, net in topology.networks.items():
        assert f'net_{name}(["{name}<br/>{net.subnet}"])' in mermaid
    edges = sum(len(n.interfaces) for n in topology.nodes.values())
    assert mermaid.count(" ---|") + mermaid.count(" -.-|") == edges  # -.-: an impaired link end


def test_dot_labels_dhcp_edges():
    dot = graph.to_dot(spec.load(ROOT / "topology" / "lab.yaml"))
    assert '"client" -- "net:home" [label="DHCP"];' in dot
    assert '"router" -- "net:internet" [label="198.51.100.1"];' in dot


needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")


@needs_dot
def test_an_impaired_link_end_says_its_impairment_and_is_drawn_apart():
    lab = spec.load(ROOT / "topology" / "lab.yaml")  # the game is 20 ms away
    game = next(line for line in graph.to_dot(lab).splitlines() if line.startswith('  "game" --'))
    assert 'label="198.51.100.70\\ndelay 20 ms ± 2"' in game and "dashed" in game
    assert "dashed" not in next(line for line in graph.to_dot(lab).splitlines() if line.startswith('  "dns" --'))
    assert '  game -.-|"198.51.100.70<br/>delay 20 ms ± 2"| net_internet' in graph.to_mermaid(lab).splitlines()


def test_graph_writes_svg(tmp_path):
    out = tmp_path / "x.svg"
    assert cli.main(["graph", "-t", str(ROOT / "topology" / "lab.yaml"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "<svg" in text
    for name in ("router", "dhcp", "dns", "client", "home", "internet"):
        assert name in text


@needs_dot
def test_graph_writes_png(tmp_path):
    out = tmp_path / "x.png"
    assert cli.main(["graph", "-t", str(ROOT / "topology" / "duo.yaml"), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("suffix, start", [(".dot", 'graph "lab"'), (".mmd", "graph LR")])
def test_graph_writes_text_formats_without_graphviz(tmp_path, suffix, start):
    out = tmp_path / f"x{suffix}"
    assert cli.main(["graph", "-t", str(ROOT / "topology" / "lab.yaml"), "-o", str(out)]) == 0
    assert out.read_text().startswith(start)

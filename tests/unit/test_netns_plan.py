"""The netns backend's plan (every name it makes on the host) and its start order, from the
topology alone; and the set-up script's reading of the service catalog."""

import re

import pytest

from hoplab import compose, spec
from hoplab.backends.netns import NetnsBackend, debian_packages
from hoplab.backends.netns_plan import lab_prefixes, plan
from hoplab.paths import SERVICES_DIR, TOPOLOGY_DIR
from hoplab.services import load_catalog

TOPOLOGIES = sorted(TOPOLOGY_DIR.glob("*.yaml"))


@pytest.fixture(params=TOPOLOGIES, ids=lambda p: p.stem)
def topology(request):
    return spec.load(request.param)


def test_every_interface_gets_a_veth_on_its_networks_bridge(topology):
    layout = plan(topology)
    for node in topology.nodes.values():
        ports = {p.iface: p for p in layout.ports_of(node.name)}
        assert set(ports) == {i.network for i in node.interfaces} | {"mgmt"}
        for iface in node.interfaces:
            port = ports[iface.network]
            assert port.bridge == layout.bridges[iface.network]
            prefix = topology.networks[iface.network].subnet.prefixlen
            assert port.address == (f"{iface.address}/{prefix}" if iface.address else None)
        assert ports["mgmt"].address.split("/")[0] == str(topology.management.addresses[node.name])


def test_host_names_fit_linux_and_never_meet_another_labs_or_dockers(topology):
    layout = plan(topology)
    names = list(layout.bridges.values()) + [p.veth for p in layout.ports]
    assert len(names) == len(set(names))
    assert all(len(n) <= 15 for n in names)
    assert all(n.startswith(lab_prefixes(topology.name)) for n in names)
    assert not set(layout.bridges.values()) & set(compose.bridge_names(topology).values())
    other = lab_prefixes(topology.name + "x")
    assert not any(n.startswith(other) for n in names)


def test_the_host_address_is_the_management_subnets_highest(topology):
    bridge, address = plan(topology).host_address
    assert bridge == plan(topology).bridges["mgmt"]
    assert address == f"{topology.management.subnet.broadcast_address - 1}/{topology.management.subnet.prefixlen}"
    assert topology.management.host_address not in topology.management.addresses.values()


def test_services_start_after_what_they_need(topology):
    catalog = load_catalog()
    waves = NetnsBackend(catalog=catalog)._waves(topology)
    assert sorted(n for wave in waves for n in wave) == sorted(topology.nodes)
    position = {n: i for i, wave in enumerate(waves) for n in wave}
    for node in topology.nodes.values():
        for dep in catalog[node.service].after:
            for other in topology.nodes_of(dep):
                assert position[other.name] < position[node.name], f"{node.name} before its {dep} {other.name}"


def test_setup_host_reads_every_services_packages():
    """scripts/setup-host reads `packages: [...]` and `wheels: [...]` with sed, one line each."""
    catalog = load_catalog()
    for service in catalog.values():
        text = (service.directory / "service.yaml").read_text()
        for key, wanted in (("packages", service.packages), ("wheels", service.wheels)):
            lines = re.findall(rf"^{key}: *\[(.*)\]", text, re.M)
            found = tuple(w.strip().strip('"') for line in lines for w in line.split(",") if w.strip())
            assert found == wanted, f"{service.directory}/service.yaml: {key} must be one `[a, b]` line"
    packages = debian_packages(catalog)
    assert "mininet" in packages and "postgresql-15" in packages and "python3" in packages
    assert (SERVICES_DIR / "base" / "packages.txt").read_text().count("\n") > 5

"""The host-side refusals made before a lab is created: a lab subnet must not shadow the host's
routes nor the resolver the host asks (its queries would be routed into the lab)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from hoplab import spec
from hoplab.backends.base import PreflightError, host_resolvers, route_clashes, subnets
from hoplab.paths import PROJECT_ROOT


def test_the_host_resolvers_are_read_from_the_file_ipv4_only(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.invalid\nnameserver 10.255.255.53\n"
                    "nameserver fd00::53\nnameserver not-an-address\n  nameserver 10.0.0.2  # trailing\n")
    assert host_resolvers(conf) == ["10.255.255.53", "10.0.0.2"]
    assert host_resolvers(tmp_path / "missing") == []


def lab_with_management(tmp_path: Path, subnet: ipaddress.IPv4Network) -> Path:
    data = yaml.safe_load((PROJECT_ROOT / "topology" / "lab.yaml").read_text())
    data["management"] = {"subnet": str(subnet), "control": str(subnet.network_address + 2)}
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_subnet_holding_the_hosts_resolver_is_refused_by_field(tmp_path):
    resolvers = host_resolvers()
    if not resolvers:
        pytest.skip("this host names no IPv4 resolver in /etc/resolv.conf")
    around = ipaddress.IPv4Network(f"{resolvers[0]}/24", strict=False)
    if any(around.overlaps(r) for r in spec.RESERVED_RANGES):
        pytest.skip(f"the resolver {resolvers[0]} lies in a range the schema already refuses")
    path = lab_with_management(tmp_path, around)
    topology = spec.load(path)
    with pytest.raises(PreflightError) as caught:
        route_clashes(topology, set())
    assert (f"{path}: management.subnet: {around} overlaps {resolvers[0]}/32 "
            "(the host's resolver in /etc/resolv.conf)") in str(caught.value)


def test_no_shipped_lab_holds_the_hosts_resolver():
    resolvers = [ipaddress.IPv4Address(r) for r in host_resolvers()]
    for path in [*(PROJECT_ROOT / "topology").glob("*.yaml"), *(PROJECT_ROOT / "examples").rglob("*.yaml")]:
        if "networks" not in (yaml.safe_load(path.read_text()) or {}):
            continue  # not a topology (a Compose file, an experiment)
        for field, subnet in subnets(spec.load(path)):
            assert not any(r in subnet for r in resolvers), f"{path}: {field}: {subnet}"

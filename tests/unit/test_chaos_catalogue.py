"""The fault catalogue as data: enough faults in every family, each planned on both lab
topologies with its defaults, every rule it adds removed by its undo, bad parameters refused."""

from __future__ import annotations

import re

import pytest

from hoplab import spec
from hoplab.chaos.faults import CATALOGUE, FAMILIES, FaultError, Target
from hoplab.paths import TOPOLOGY_DIR

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")

# A fitting target per fault in the default lab (NODE or NODE:IFACE) and what the CLI would pass.
TARGETS = {
    "process-stop": "dns", "process-pause": "db", "process-kill": "web1", "link-down": "cache:internet",
    "packet-loss": "client:home", "rate-limit": "cache:internet", "delay": "cache:internet", "port-block": "cache",
    "partition-one-way": "lb", "partition-two-way": "cache", "ip-forward-off": "router",
    "masquerade-removed": "router", "wrong-default-route": "client:home", "mtu-blackhole": "router:home",
    "dns-nxdomain": "dns", "dns-servfail": "dns", "dns-wrong-a": "dns", "dns-slow": "dns",
    "dhcp-pool-exhausted": "dhcp", "dhcp-wrong-gateway": "dhcp", "dhcp-wrong-dns": "dhcp",
    "lb-backend-down": "lb", "stale-cache": "cache", "db-connection-limit": "db", "smtp-refuse": "mail",
}


def plan(fault_name: str, **params):
    fault = CATALOGUE[fault_name]
    node, _, iface = TARGETS[fault_name].partition(":")
    values = {k: type(v)(params.get(k, v)) for k, v in fault.params.items()}
    return fault.plan(Target(node, iface or None, LAB), values)


def scripts(steps) -> str:
    return "\n".join(s.argv[2] for s in steps if s.kind == "run")


def test_every_family_has_a_fault_and_every_fault_a_target():
    assert {f.family for f in CATALOGUE.values()} == set(FAMILIES)
    assert set(TARGETS) == set(CATALOGUE), "every fault has a test target"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_fault_plans_an_act_and_an_undo(name):
    result = plan(name)
    assert result.act and result.undo and result.symptom
    fault = CATALOGUE[name]
    if fault.service:
        assert LAB.nodes[TARGETS[name].split(":")[0]].service == fault.service


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_rule_added_is_removed_by_the_undo(name):
    result = plan(name)
    added = re.findall(r"iptables -w -t (\w+) -I (.+?) -m comment --comment hoplab-chaos", scripts(result.act))
    undo = scripts(result.undo)
    for table, rule in added:
        assert f"iptables -w -t {table} -D {rule} -m comment --comment hoplab-chaos" in undo, rule


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_files_saved_by_the_act_are_removed_by_the_undo(name):
    result = plan(name)
    for saved in re.findall(r"(\$\{HOPLAB_RUN_DIR:-/run/hoplab\}/\S*chaos[^\s;]*)", scripts(result.act)):
        assert f"rm -f {saved}" in scripts(result.undo), saved


def test_process_faults_find_the_service_by_its_pid_file():
    for name in ("process-stop", "process-pause", "process-kill"):
        assert "service.pid" in scripts(plan(name).act)
        assert "pgrep -P 1" not in scripts(plan(name).act)
    assert [s.kind for s in plan("process-kill").undo] == ["restart"]


@pytest.mark.parametrize("name, params, word", [
    ("packet-loss", {"percent": 0}, "percent"), ("port-block", {"port": 99999}, "port"),
    ("mtu-blackhole", {"mtu": 100}, "mtu"), ("partition-two-way", {"peer": "nosuch"}, "peer"),
    ("partition-one-way", {"peer": "client"}, "peer"), ("dns-wrong-a", {"address": "not-an-ip"}, "address"),
    ("dns-nxdomain", {"name": "nosuch"}, "name"), ("lb-backend-down", {"server": "db"}, "server"),
    ("dns-slow", {"ms": 0}, "ms"), ("db-connection-limit", {"role": "x; drop"}, "role"),
])
def test_bad_parameters_are_refused_naming_them(name, params, word):
    with pytest.raises(FaultError, match=word):
        plan(name, **params)


def test_defaults_pick_addresses_nobody_holds():
    held = {str(a) for n in LAB.nodes.values() for _, a in n.static_addresses}
    wrong = re.search(r"IN A (\S+)/", scripts(plan("dns-wrong-a").act))[1]
    assert wrong not in held
    via = re.search(r"default via (\S+)", scripts(plan("wrong-default-route").act))[1]
    assert via not in held and via not in [str(LAB.nodes["router"].address_on("home"))]


def test_dhcp_faults_renew_every_client_of_the_scope():
    duo = spec.load(TOPOLOGY_DIR / "duo.yaml")
    fault = CATALOGUE["dhcp-wrong-dns"]
    result = fault.plan(Target("dhcpd", None, duo), {"address": ""})
    assert [s.node for s in result.act[1:]] == ["pc1", "pc2"] and [s.node for s in result.undo[1:]] == ["pc1", "pc2"]
    assert "option:dns-server,192.168.77.1" in scripts(result.act)  # the gateway: no DNS there

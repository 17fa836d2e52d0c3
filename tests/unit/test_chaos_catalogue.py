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
    "edge-rate-limit": "cache", "port-squat": "game",
}


def plan(fault_name: str, **params):
    fault = CATALOGUE[fault_name]
    node, _, iface = TARGETS[fault_name].partition(":")
    return fault.plan(Target(node, iface or None, LAB), params)


def scripts(steps) -> str:
    """The text of every shell script (never the values passed to it)."""
    return "\n".join(s.argv[2] for s in steps if s.kind == "run" and s.argv[0] == "sh")


def arguments(steps) -> list[str]:
    """Every argument that is not script text: argv words, and scripts' positional values."""
    return [a for s in steps for a in (s.argv[3:] if s.argv[:1] == ("sh",) else s.argv)]


def rules_added(steps) -> list[tuple]:
    return [(s.argv[4], s.argv[6:]) for s in steps if s.argv[:3] == ("iptables", "-w", "5") and s.argv[5] == "-I"]


def rules_removed(steps) -> list[tuple]:
    return [(s.argv[4], s.argv[5:]) for s in steps if s.argv[:2] == ("sh", "-c") and "iptables -w 5 -t \"$t\" -D" in s.argv[2]]


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
    removed = rules_removed(result.undo)
    for table, rule in rules_added(result.act):
        assert rule[-4:] == ("-m", "comment", "--comment", "hoplab-chaos"), rule
        assert (table, rule) in removed, rule


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_files_saved_by_the_act_are_removed_by_the_undo(name):
    result = plan(name)
    for saved in re.findall(r'(\$\{HOPLAB_RUN_DIR:-/run/hoplab\}/\S*chaos[^\s;)"]*)', scripts(result.act)):
        assert f"rm -f {saved}" in scripts(result.undo), saved


def test_process_faults_find_the_service_by_its_pid_file():
    for name in ("process-stop", "process-pause", "process-kill"):
        assert "service.pid" in scripts(plan(name).act)
        assert "pgrep -P 1" not in scripts(plan(name).act)
    assert [s.kind for s in plan("process-kill").undo] == ["restart"]


def test_the_port_squat_takes_the_port_the_game_wrote_down_and_hands_it_back():
    result = plan("port-squat")
    act, undo = scripts(result.act), scripts(result.undo)
    # the squatter binds the port the service's start wrote down, once the server is killed
    assert '"$(cat ${HOPLAB_RUN_DIR:-/run/hoplab}/port)"' in act and "kill $(cat ${HOPLAB_RUN_DIR:-/run/hoplab}/server.pid)" in act
    assert act.index("setsid timeout") < act.index("server.pid")  # waiting for the port before it is freed
    assert '"$HOPLAB_SERVICE/holds-port"' in act  # the game's own script says the squatter holds it
    (source,) = [a for a in arguments(result.act) if "sock.bind" in a]  # its code is an argument, not script text
    assert "recv" in source and "sendto" not in source  # reads every move, answers none
    assert "kill $(cat ${HOPLAB_RUN_DIR:-/run/hoplab}/chaos-port-squat.pid)" in undo and '"$HOPLAB_SERVICE/health"' in undo
    assert "EADDRINUSE" in result.symptom


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


def test_a_delay_runs_the_nodes_impairment_tool_and_refuses_jitter_past_its_delay():
    result = plan("delay", ms=50, jitter_ms=5)
    act, undo = scripts(result.act), scripts(result.undo)
    assert '"${HOPLAB_PYTHON:-python3}" -m hoplab.node.impair apply "$1"' in act and "--owner chaos" in act
    assert "--seconds 1860" in act  # the delayer ends by itself, past the longest fault
    assert arguments(result.act)[-3:] == ["internet", "50", "5"]  # values as arguments, never script text
    assert 'hoplab.node.impair clear "$1" --owner chaos' in undo
    with pytest.raises(FaultError, match="jitter_ms: 9 is more than ms"):
        plan("delay", ms=5, jitter_ms=9)


def test_defaults_pick_addresses_nobody_holds():
    held = {str(a) for n in LAB.nodes.values() for _, a in n.static_addresses}
    wrong = plan("dns-wrong-a").act[0].argv[-1]
    assert wrong not in held
    via = plan("wrong-default-route").act[0].argv[-1]
    assert via not in held and via not in [str(LAB.nodes["router"].address_on("home"))]


def test_dhcp_faults_renew_every_client_of_the_scope():
    duo = spec.load(TOPOLOGY_DIR / "duo.yaml")
    fault = CATALOGUE["dhcp-wrong-dns"]
    result = fault.plan(Target("dhcpd", None, duo), {"address": ""})
    assert [s.node for s in result.act[1:]] == ["pc1", "pc2"] and [s.node for s in result.undo[1:]] == ["pc1", "pc2"]
    assert "option:dns-server,$1" in scripts(result.act) and result.act[0].argv[4:] == ("192.168.77.1",)  # the gateway
    # each renewal goes on until the lease says what the server now serves (a request dnsmasq
    # answers before it re-read its files gets the old options)
    assert result.act[1].argv[4:] == ('"router": "192.168.77.1"', '"dns": "192.168.77.1"')
    assert result.undo[1].argv[4:] == ('"router": "192.168.77.1"', f'"dns": "{duo.dns_address}"')
    assert "for attempt in 1 2 3" in result.undo[1].argv[2] and "exit 1" in result.undo[1].argv[2]
    pool = CATALOGUE["dhcp-pool-exhausted"].plan(Target("dhcpd", None, duo), {})
    assert pool.act[1].argv[4:] == () and pool.undo[1].argv[4:]  # refused: no lease to check; then a good one


# A valid value of every parameter, unlike any default and any fixed text of a script: where it
# shows up says whether the value reached the command as an argument or as script text.
MARKED = {
    "packet-loss": {"percent": "37.5"}, "rate-limit": {"rate": "123kbit"}, "delay": {"ms": "4321", "jitter_ms": "1234"},
    "port-block": {"port": "4242"}, "partition-one-way": {"peer": "db"}, "partition-two-way": {"peer": "db"},
    "wrong-default-route": {"via": "192.168.50.77"}, "mtu-blackhole": {"mtu": "1234"},
    "dns-nxdomain": {"name": "mail"}, "dns-wrong-a": {"name": "mail", "address": "198.51.100.77"},
    "dns-slow": {"ms": "4321"}, "dhcp-wrong-gateway": {"address": "192.168.50.77"},
    "dhcp-wrong-dns": {"address": "192.168.50.77"}, "lb-backend-down": {"server": "web2"},
    "stale-cache": {"ttl": "4321"}, "db-connection-limit": {"role": "chaos_role"},
    "edge-rate-limit": {"requests_per_second": "4321", "burst": "1234"},
}


def test_every_parameter_has_a_marked_value():
    assert set(MARKED) == {name for name, f in CATALOGUE.items() if f.params}
    assert all(set(MARKED[name]) == set(CATALOGUE[name].params) for name in MARKED)


@pytest.mark.parametrize("name", sorted(MARKED))
def test_parameter_values_reach_commands_as_arguments_never_as_script_text(name):
    result = plan(name, **MARKED[name])
    steps = result.act + result.undo
    for key, value in MARKED[name].items():
        if CATALOGUE[name].params[key].kind == "node":  # a node's addresses, from the topology
            continue
        text = scripts(steps)
        assert value not in text, f"{key}={value} is pasted into a script"
        expected = {"37.5": "0.3750"}.get(value, value)  # packet-loss passes a probability
        assert any(expected in a for a in arguments(result.act)), f"{key}={value} never reaches the act"

"""The default lab's home network, checked from the nodes themselves: DHCP, DNS, NAT and
isolation."""

import json
import subprocess

import pytest

from helpers import HOPLAB, assert_dhcp_lease, assert_dns, hoplab_process

LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(float(sys.argv[2]))
print("listening", flush=True)
try:
    conn, peer = s.accept(); print("peer", peer[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])); print("connected")
except OSError as e:
    print("failed", type(e).__name__); sys.exit(1)
"""


def listen(lab, node, port, seconds):
    """A one-connection TCP listener in `node`; returns the process (its output names the peer)."""
    proc = subprocess.Popen([*HOPLAB, "exec", "--topology", lab.path, "--backend", lab.backend, node, "--",
                             "python3", "-c", LISTENER, str(port), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "listening"
    return proc


def connect(lab, node, address, port, seconds=2):
    return lab.exec(node, "python3", "-c", CONNECT, address, str(port), str(seconds), check=False)


def test_every_node_is_healthy(lab):
    status = lab.status()
    assert set(status) == set(lab.topology.nodes)
    assert {n: s["health"] for n, s in status.items()} == {n: "healthy" for n in status}
    topology, management = lab.topology, lab.topology.management
    for node in topology.nodes.values():
        assert status[node.name]["addresses"] == {
            **{net: f"{address}/{topology.networks[net].subnet.prefixlen}" for net, address in node.static_addresses},
            **{i.network: status[node.name]["addresses"][i.network] for i in node.interfaces if i.address is None},
            "mgmt": f"{management.addresses[node.name]}/{management.subnet.prefixlen}"}


@pytest.mark.parametrize("client", ["client"])
def test_client_lease_comes_from_dhcp(lab, client):
    address = assert_dhcp_lease(lab, client)
    assert lab.status()[client]["addresses"]["home"] == f"{address}/24"


def test_dns_answers_the_lab_zone(lab):
    assert_dns(lab, "client")


def test_name_outside_the_lab_is_refused_at_once(lab):
    out = lab.exec("client", "dig", "+time=2", "+tries=1", "nosuch.invalid", check=False).stdout
    # An answer (not a time-out), refused, and no recursion offered: nothing was forwarded.
    assert "status: REFUSED" in out
    flags = next(line for line in out.splitlines() if line.startswith(";; flags:"))
    assert " ra" not in flags.split(";")[1]


def test_nat_rewrites_the_client_source(lab):
    dns = lab.address("dns", "internet")
    listener = listen(lab, "dns", 8099, 10)
    assert connect(lab, "client", dns, 8099).stdout.strip() == "connected"
    seen = listener.communicate(timeout=15)[0].split()
    assert seen == ["peer", lab.address("router", "internet")]
    client_address = str(lab.lease_address("client", "home"))
    assert client_address not in seen


def test_internet_cannot_open_a_connection_to_the_client(lab):
    client_address = str(lab.lease_address("client", "home"))
    # Positive control: the listener is reachable from the client's own LAN.
    listener = listen(lab, "client", 8098, 10)
    assert connect(lab, "dhcp", client_address, 8098).stdout.strip() == "connected"
    listener.communicate(timeout=15)
    # From the internet segment, even with a route pointing at the router, the router refuses
    # to forward a new connection inward.
    listener = listen(lab, "client", 8098, 6)
    home = str(lab.topology.networks["home"].subnet)
    lab.exec("dns", "ip", "route", "add", home, "via", lab.address("router", "internet"))
    try:
        result = connect(lab, "dns", client_address, 8098, seconds=3)
    finally:
        lab.exec("dns", "ip", "route", "del", home)
    assert result.returncode == 1 and "failed" in result.stdout
    assert listener.communicate(timeout=15)[0].split()[-1] == "timeout"


def test_nothing_routes_outside_the_lab(lab):
    # Route checks first, on every node but the clients (docs/architecture.md): if one had a route,
    # a probe would leak.
    for node in lab.servers():
        result = lab.exec(node, "ip", "route", "get", "192.0.2.1", check=False)
        assert result.returncode != 0, f"{node} has a route off the lab: {result.stdout}"
        assert "unreachable" in result.stderr.lower()
    for client in lab.clients():
        route = lab.exec(client, "ip", "route", "get", "192.0.2.1").stdout
        assert f"via {lab.address('router', 'home')}" in route
        ping = lab.exec(client, "ping", "-n", "-c", "1", "-W", "2", "192.0.2.1", check=False)
        assert ping.returncode != 0
        assert "Unreachable" in ping.stdout  # the router says so: it has nowhere to send it


def test_exec_returns_the_command_status(lab):
    assert lab.sh("client", "exit 7", check=False).returncode == 7


def test_up_again_changes_nothing(lab):
    before = {n: (s["id"], s["addresses"]) for n, s in lab.status().items()}
    assert all(ident for ident, _ in before.values())
    lab.hoplab("up", "--quiet")
    assert {n: (s["id"], s["addresses"]) for n, s in lab.status().items()} == before, "nodes were recreated"


def test_status_json_is_machine_readable(lab):
    data = json.loads(lab.hoplab("status", "--json").stdout)
    assert data["lab"] == lab.name and data["backend"] == lab.backend
    assert {"node", "service", "state", "health", "addresses", "id"} <= set(data["nodes"][0])
    # each node's memory, the processes in its namespace: a database holds more than nothing,
    # and the nodes add up to the lab's total
    memory = {n["node"]: n["memory_bytes"] for n in data["nodes"]}
    assert memory["db"] > 2**20 and all(m > 0 for m in memory.values()), memory
    assert data["memory_bytes"] == sum(memory.values())
    text = lab.hoplab("status").stdout
    assert "MEMORY" in text.splitlines()[0] and "lab total: " in text
    # the topology's impairments: the game is 20 ms away
    assert data["impairments"] == {"game:internet": "delay 20 ms ± 2"} and "impaired game:internet: delay 20 ms ± 2" in text


def test_the_backend_in_use_is_named_without_asking(lab):
    # No --backend: the lab is found on the backend it runs on, and `up` says which.
    result = hoplab_process("up", "--topology", lab.path)
    assert f"on the {lab.backend} backend" in result.stderr

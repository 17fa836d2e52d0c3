"""Renders a topology as a Docker Compose file: one service per node, one internal bridge per
network. Pure: topology and service catalog in, text out. `hoplab render` commits the result
under compose/; `hoplab up` renders the same text into the lab's state folder."""

from __future__ import annotations

import yaml

from hoplab.paths import CONTROL_TOKEN_FILE, CONTROL_TOKEN_IN_NODE
from hoplab.services import Service
from hoplab.spec import CONTROL_NODE, MANAGEMENT_NETWORK, Topology, TopologyError

LABEL_LAB = "io.hoplab.lab"
LABEL_NODE = "io.hoplab.node"
# An image node is two containers: its sidecar (the node) and the image's, labelled with this.
LABEL_ROLE = "io.hoplab.role"
APP_ROLE = "app"
APP_SUFFIX = "-app"  # the image's Compose service: "<node>-app" (node names hold no "-")
IMAGE_PREFIX = "hoplab/"
RUNTIME_FILE_SUFFIX = ".runtime.json"
# Health checks every 2 s: each is an exec (about 75 ms of the engine's CPU), so a check a second
# on every node cost an idle lab most of a core; Compose's --wait and a restarted node see health
# within 2 s. (A fast check while starting and a slow one after, `start_interval`, needs Docker 25;
# Debian bookworm's engine is 20.10.) Unhealthy after 30 s of failures, as before.
HEALTH = {"interval": "2s", "timeout": "3s", "retries": 15}
BRIDGE_PREFIX = "hl"  # the netns backend's bridges are "hn-…": both can run side by side


def project_name(topology: Topology) -> str:
    return f"hoplab-{topology.name}"


def container_name(topology: Topology, node: str) -> str:
    return f"hoplab-{topology.name}-{node}"


def app_name(node: str) -> str:
    """An image node's second Compose service, the image's own container."""
    return f"{node}{APP_SUFFIX}"


def _ready(topology: Topology, node: str) -> tuple[str, dict]:
    """What a node waiting for `node` depends on: an image node is ready when the image's
    container is healthy (or merely started, when the topology gives it no health command)."""
    image = topology.nodes[node].image
    if image is None:
        return node, {"condition": "service_healthy"}
    return app_name(node), {"condition": "service_healthy" if image.health else "service_started"}


def _app(topology: Topology, node, labels: dict) -> dict:
    """The image's container: in the sidecar's network and process namespaces (so it has the
    node's addresses, DNS and routes, and the agent sees which of its processes holds a socket),
    started once the sidecar has prepared the node. Never pulled, never published on the host;
    no capability beyond Docker's defaults."""
    image = node.image
    entry: dict = {
        "image": image.ref,
        "pull_policy": "never",
        "container_name": container_name(topology, app_name(node.name)),
        "network_mode": f"service:{node.name}",
        "pid": f"service:{node.name}",
        "environment": {**dict(image.env), "HOPLAB_NODE": node.name},
    }
    if image.command:
        entry["command"] = list(image.command)
    if image.health:  # an argument list, run by the engine without a shell
        entry["healthcheck"] = {"test": ["CMD", *image.health], **HEALTH}
    entry["stop_grace_period"] = "3s"
    entry["labels"] = {**labels, LABEL_NODE: node.name, LABEL_ROLE: APP_ROLE}
    entry["depends_on"] = {node.name: {"condition": "service_healthy"}}
    return entry


def bridge_names(topology: Topology) -> dict[str, str]:
    """Host bridge per network, named so the host firewall rules can name them before Docker
    creates them."""
    return topology.bridge_names(BRIDGE_PREFIX)


def _docker_addressing(topology: Topology, network: str) -> dict:
    """Docker's own share of a subnet: the bridge's reserved gateway and, where DHCP clients
    attach, a small ip_range for the address Docker gives them before their DHCP client replaces
    it; both stay clear of static addresses and the DHCP pool (the spec chooses them)."""
    net = topology.networks[network]
    gateway = topology.bridge_address(network)
    if gateway is None:
        raise TopologyError(topology.source, [(f"networks.{network}.subnet",
                                               f"{net.subnet} has no free address left for the host bridge")])
    config = {"subnet": str(net.subnet), "gateway": str(gateway)}
    if any(i.network == network and i.address is None for n in topology.nodes.values() for i in n.interfaces):
        block = topology.interim_range(network)
        if block is None:
            raise TopologyError(topology.source, [(f"networks.{network}.subnet",
                                                   f"{net.subnet} has no free block for the DHCP clients' "
                                                   "interim addresses outside the pool and static addresses")])
        config["ip_range"] = str(block)
    return config


def render(topology: Topology, catalog: dict[str, Service], runtime_file: str) -> str:
    """`runtime_file` is the path of the lab's runtime JSON relative to the compose file."""
    bridges = bridge_names(topology)
    labels = {LABEL_LAB: topology.name}
    services, volumes = {}, {}
    for node in topology.nodes.values():
        service = catalog[node.service]
        entry: dict = {
            "image": service.image,
            "container_name": container_name(topology, node.name),
            "hostname": node.name,
            "init": True,
            "environment": {"HOPLAB_NODE": node.name},
            "volumes": [f"./{runtime_file}:/etc/hoplab/lab.json:ro"]
            + ([f"./{CONTROL_TOKEN_FILE}:{CONTROL_TOKEN_IN_NODE}:ro"] if node.name == CONTROL_NODE else []),
            "networks": {
                i.network: ({"ipv4_address": str(i.address)} if i.address else {})
                for i in node.interfaces
            },
            "healthcheck": {
                "test": ["CMD", "/opt/hoplab/service/health"],
                **HEALTH,
            },
            "stop_grace_period": "3s",
            "labels": {**labels, LABEL_NODE: node.name},
        }
        for volume, path in service.volumes.items():
            key = f"{node.name}-{volume}"
            entry["volumes"].append(f"{key}:{path}")
            volumes[key] = {"name": f"{project_name(topology)}-{key}", "labels": dict(labels)}
        for volume, path in service.shared.items():
            entry["volumes"].append(f"{volume}:{path}")
            volumes[volume] = {"name": f"{project_name(topology)}-{volume}", "labels": dict(labels)}
        if topology.management:
            entry["networks"][MANAGEMENT_NETWORK] = {
                "ipv4_address": str(topology.management.addresses[node.name])}
        if service.stop_signal:
            entry["stop_signal"] = service.stop_signal
        if service.capabilities:
            entry["cap_add"] = list(service.capabilities)
        if service.sysctls:
            entry["sysctls"] = dict(service.sysctls)
        depends = dict(_ready(topology, other) for other in topology.waits_for(node.name, catalog))
        if depends:
            entry["depends_on"] = depends
        services[node.name] = entry
        if node.image:
            services[app_name(node.name)] = _app(topology, node, labels)
    def network(name: str, ipam: dict, host_holds_address: bool) -> dict:
        options = {"com.docker.network.bridge.name": bridges[name]}
        if not host_holds_address:  # the gateway stays reserved, but off the bridge
            options["com.docker.network.bridge.inhibit_ipv4"] = "true"
        return {
            "name": f"{project_name(topology)}-{name}",
            "driver": "bridge",
            "internal": True,  # no route off the lab, no masquerade to the host's uplink
            "driver_opts": options,
            "ipam": {"config": [ipam]},
            "labels": dict(labels),
        }

    # The host is not part of the lab: it holds no address on a data network...
    networks = {name: network(name, _docker_addressing(topology, name), False) for name in topology.networks}
    if topology.management:  # ...only on the management one, to reach the control service
        subnet = topology.management.subnet
        networks[MANAGEMENT_NETWORK] = network(
            MANAGEMENT_NETWORK, {"subnet": str(subnet), "gateway": str(topology.management.host_address)}, True)
    document = {"name": project_name(topology), "services": services, "networks": networks}
    if volumes:
        document["volumes"] = volumes
    header = (f"# Rendered by `hoplab render` from {topology.source.name}; do not edit by hand.\n"
              "# Start it with `hoplab up`, which also builds the images and lets DHCP cross the bridges.\n")
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)

"""The Docker backend: a lab is a Compose project rendered from the topology, plus the host
firewall rules that let DHCP cross its bridges. Everything it makes carries the label
`io.hoplab.lab=<lab>` (or, for firewall rules, the comment `hoplab:<lab>`), which is all that
`down` and `clean` ever remove."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hoplab import compose
from hoplab.backends.base import Backend, BackendError, NodeStatus, route_clashes
from hoplab.backends.dockercli import DockerCLI
from hoplab.backends.hostfw import HostFirewall
from hoplab.backends.images import ImageBuilder
from hoplab.paths import BUILD_DIR
from hoplab.progress import Progress
from hoplab.services import Service, load_catalog
from hoplab.spec import Topology

UP_TIMEOUT = 240.0
POLL_INTERVAL = 0.5  # between clean passes


def _healthy(container: dict) -> bool:
    state = container["State"]
    return state["Status"] == "running" and (state.get("Health") or {}).get("Status", "healthy") == "healthy"


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, docker: DockerCLI | None = None, firewall: HostFirewall | None = None,
                 catalog: dict[str, Service] | None = None, state_root: Path = BUILD_DIR / "run"):
        self.docker = docker or DockerCLI()
        self.firewall = firewall or HostFirewall()
        self.catalog = catalog if catalog is not None else load_catalog()
        self.state_root = state_root

    # ------------------------------------------------------------ lifecycle

    def up(self, topology: Topology, progress: Progress) -> list[NodeStatus]:
        self.require_engine()
        self.preflight(topology)
        services = sorted({n.service for n in topology.nodes.values()})
        ImageBuilder(self.docker, progress).ensure([self.catalog[s] for s in services])
        compose_file = self.write_state(topology)
        self.firewall.allow_bridges(topology.name, list(compose.bridge_names(topology).values()))
        progress.say(f"starting {len(topology.nodes)} nodes of lab {topology.name!r}")
        proc = self.docker.compose(compose.project_name(topology), compose_file, "up", "--detach", "--wait",
                                   "--wait-timeout", str(int(UP_TIMEOUT)), "--remove-orphans", "--no-build")
        self._wait_healthy(topology, progress, proc)
        progress.say("all nodes healthy")
        return self.status(topology)

    def down(self, topology: Topology, progress: Progress) -> None:
        if self.require_engine(soft=True):
            progress.say(f"stopping lab {topology.name!r}")
            proc = self.docker.compose(compose.project_name(topology), None,
                                       "down", "--volumes", "--remove-orphans", "--timeout", "3")
            proc.communicate()
        for item in self.clean(topology.name, progress):
            progress.say(f"removed {item}")

    def clean(self, lab: str | None, progress: Progress) -> list[str]:
        removed = self.firewall.remove(lab)
        if self.require_engine(soft=True):
            label = f"{compose.LABEL_LAB}={lab}" if lab else compose.LABEL_LAB
            # Several passes: a killed `up` may have had creations in flight.
            for _ in range(3):
                containers = self.docker.ids("container", label)
                if containers:
                    self.docker.run("rm", "--force", "--volumes", *containers)
                networks = self.docker.ids("network", label)
                for network in networks:
                    self.docker.run("network", "rm", network, check=False)
                volumes = self.docker.ids("volume", label)
                if volumes:
                    self.docker.run("volume", "rm", "--force", *volumes, check=False)
                removed += [f"container {c[:12]}" for c in containers]
                removed += [f"network {n[:12]}" for n in networks] + [f"volume {v}" for v in volumes]
                if not (containers or networks or volumes):
                    break
                time.sleep(POLL_INTERVAL)
        else:
            progress.say("no Docker engine reachable: only host firewall rules were cleaned")
        for state in ([self.state_root / lab] if lab else list(self.state_root.glob("*"))):
            shutil.rmtree(state, ignore_errors=True)
        return removed

    # ------------------------------------------------------------ inspection

    def status(self, topology: Topology) -> list[NodeStatus]:
        self.require_engine()
        containers = self._containers(topology)
        statuses = []
        for node in topology.nodes.values():
            info = containers.get(node.name)
            if info is None:
                statuses.append(NodeStatus(node.name, node.service, "missing", "none"))
                continue
            state = info["State"]
            health = (state.get("Health") or {}).get("Status", "none")
            statuses.append(NodeStatus(node.name, node.service, state["Status"], health, id=info["Id"][:12]))
        running = [s for s in statuses if s.state == "running"]
        with ThreadPoolExecutor(8) as pool:
            for status, addresses in zip(running, pool.map(lambda s: self._addresses(topology, s.node), running)):
                status.addresses = addresses
        return statuses

    def _addresses(self, topology: Topology, node: str) -> dict[str, str]:
        """Addresses as the node itself sees them (a DHCP lease is invisible to Docker)."""
        result = self.docker.run("exec", compose.container_name(topology, node), "ip", "-j", "-4", "addr", "show",
                                 check=False)
        if result.returncode != 0:
            return {}
        return {link["ifname"]: f"{a['local']}/{a['prefixlen']}"
                for link in json.loads(result.stdout or "[]") if link["ifname"] != "lo"
                for a in link.get("addr_info", [])}

    def _containers(self, topology: Topology) -> dict[str, dict]:
        ids = self.docker.ids("container", f"{compose.LABEL_LAB}={topology.name}")
        return {c["Config"]["Labels"].get(compose.LABEL_NODE): c for c in self.docker.inspect(*ids)}

    def stop_node(self, topology: Topology, node: str, timeout: float) -> None:
        self.docker.run("stop", "--time", str(int(timeout)), self._running(topology, node))

    def start_node(self, topology: Topology, node: str, progress: Progress) -> None:
        self.require_engine()
        container = self._containers(topology).get(node)
        if container is None:
            raise BackendError(f"node {node!r} of lab {topology.name!r} does not exist (hoplab up makes it)")
        self.docker.run("start", container["Name"].lstrip("/"))
        deadline = time.monotonic() + UP_TIMEOUT
        while not _healthy(self._containers(topology)[node]):
            if time.monotonic() > deadline:
                raise BackendError(f"node {node} not healthy after {UP_TIMEOUT:.0f} s"
                                   + self._explain(topology, self._containers(topology)))
            time.sleep(POLL_INTERVAL)
        progress.say(f"{node}: healthy")

    def exec(self, topology: Topology, node: str, argv: list[str], interactive: bool) -> int:
        flags = ["-i", "-t"] if interactive else ["-i"]
        return subprocess.call([self.docker.docker, "exec", *flags, self._running(topology, node), *argv])

    def run(self, topology: Topology, node: str, argv: list[str], timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        flags = ["-i"] if input is not None else []
        return subprocess.run([self.docker.docker, "exec", *flags, self._running(topology, node), *argv],
                              capture_output=True, text=True, timeout=timeout, input=input)

    def _running(self, topology: Topology, node: str) -> str:
        self.require_engine()
        container = self._containers(topology).get(node)
        if container is None or container["State"]["Status"] != "running":
            raise BackendError(f"node {node!r} of lab {topology.name!r} is not running (hoplab up starts it)")
        return container["Name"].lstrip("/")

    # ------------------------------------------------------------ helpers

    def require_engine(self, soft: bool = False) -> bool:
        if self.docker.reachable():
            return True
        if soft:
            return False
        raise BackendError("no Docker engine is reachable: `make up` installs and starts one "
                           "(or start dockerd yourself)")

    def preflight(self, topology: Topology) -> None:
        """Refuse, before creating anything, subnets that clash with the host's routes or with
        Docker networks that are not this lab's."""
        others = []
        for net in self.docker.inspect(*self.docker.run("network", "ls", "-q").stdout.split(), kind="network"):
            if (net.get("Labels") or {}).get(compose.LABEL_LAB) == topology.name:
                continue
            for config in (net.get("IPAM") or {}).get("Config") or []:
                if "." in config.get("Subnet", ""):
                    others.append((ipaddress.IPv4Network(config["Subnet"]), f"Docker network {net['Name']}"))
        route_clashes(topology, set(compose.bridge_names(topology).values()), others)

    def write_state(self, topology: Topology) -> Path:
        state = self.state_root / topology.name
        state.mkdir(parents=True, exist_ok=True)
        runtime = f"{topology.name}{compose.RUNTIME_FILE_SUFFIX}"
        (state / runtime).write_text(topology.runtime_json())
        compose_file = state / "compose.yml"
        compose_file.write_text(compose.render(topology, self.catalog, runtime))
        return compose_file

    def _wait_healthy(self, topology: Topology, progress: Progress, proc: subprocess.Popen) -> None:
        """Compose's own `--wait` decides; Docker's event stream says what happens meanwhile
        (no polling: on two cores a poll loop slows the very bring-up it watches)."""
        events = self.docker.events(f"{compose.LABEL_LAB}={topology.name}")

        def report() -> None:
            for line in events.stdout:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                action = event.get("Action") or event.get("status") or ""
                node = (event.get("Actor") or {}).get("Attributes", {}).get(compose.LABEL_NODE)
                shown = action.replace("health_status: ", "")
                if node and shown in ("create", "start", "healthy", "unhealthy", "die", "kill"):
                    progress.say(f"{node}: {shown}")

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            output, _ = proc.communicate(timeout=UP_TIMEOUT + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        finally:
            events.kill()
            reporter.join(timeout=2)
        containers = self._containers(topology)
        if proc.returncode != 0:
            raise BackendError("nodes did not all become healthy (docker compose up --wait failed):\n" +
                               "\n".join(output.splitlines()[-15:]) + self._explain(topology, containers))
        # `--wait` lets a container that exited on its own pass: check each node once more.
        broken = [n for n in topology.nodes if n not in containers or not _healthy(containers[n])]
        if broken:
            raise BackendError(f"nodes not healthy: {', '.join(broken)}" + self._explain(topology, containers))

    def _explain(self, topology: Topology, containers: dict[str, dict]) -> str:
        """The evidence for a node that did not come up: its last health output and logs."""
        lines = []
        for node, info in sorted(containers.items()):
            state = info["State"]
            health = state.get("Health") or {}
            if _healthy(info):
                continue
            lines.append(f"\n--- {node}: {state['Status']} {health.get('Status', '')}")
            for entry in (health.get("Log") or [])[-2:]:
                lines.append(f"health check exit {entry['ExitCode']}: {entry['Output'].strip()}")
            logs = self.docker.run("logs", "--tail", "15", info["Name"].lstrip("/"), check=False)
            lines += (logs.stdout + logs.stderr).strip().splitlines()
        return "\n".join(lines)


"""The Docker backend: a lab is a Compose project rendered from the topology, plus the host
firewall rules that let DHCP cross its bridges. Everything it makes carries the label
`io.hoplab.lab=<lab>` (or, for firewall rules, the comment `hoplab:<lab>`), which is all that
`down` and `clean` ever remove, with the backend's own state folder (build/docker/<lab>/).
Compose brings the project up; every other call goes to the engine through the Docker SDK
(`engine.Engine`)."""

from __future__ import annotations

import ipaddress
import json
from contextlib import contextmanager
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hoplab import bounded, compose
from hoplab.backends.base import (Backend, BackendError, Cleaned, Failure, NodeStatus, PreflightError,
                                  ensure_control_token, route_clashes, subnets)
from hoplab.backends.engine import Compose, Engine, EngineError, NotFound, NotRunning
from hoplab.backends.hostfw import HostFirewall
from hoplab.backends.images import ImageBuilder
from hoplab.paths import DOCKER_STATE_DIR
from hoplab.progress import Progress
from hoplab.services import Service, load_catalog
from hoplab.spec import Topology

UP_TIMEOUT = 240.0
DOWN_TIMEOUT = 120.0  # `docker compose down`: every container stopped (3 s each, at once) and removed
# How `up` runs Compose (after `prepare`): start what is missing, wait for every health check.
COMPOSE_UP = ("up", "--detach", "--wait", "--wait-timeout", str(int(UP_TIMEOUT)), "--remove-orphans", "--no-build")
POLL_INTERVAL = 0.5  # between clean passes
STOP_TIMEOUT = 3  # seconds `down` gives each container after its stop signal, then SIGKILL


def _healthy(container: dict) -> bool:
    state = container["State"]
    return state["Status"] == "running" and (state.get("Health") or {}).get("Status", "healthy") == "healthy"


def _parts(topology: Topology, node: str) -> list[str]:
    """A node's containers by Compose service: the node's own, and an image node's image's
    (started after it, stopped before it)."""
    return [node, compose.app_name(node)] if topology.nodes[node].image else [node]


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, engine: Engine | None = None, firewall: HostFirewall | None = None,
                 catalog: dict[str, Service] | None = None, state_root: Path = DOCKER_STATE_DIR,
                 compose_cli: Compose | None = None):
        self.engine = engine or Engine()
        self.compose = compose_cli or Compose()
        self.firewall = firewall or HostFirewall(compose.BRIDGE_PREFIX)
        self.catalog = catalog if catalog is not None else load_catalog()
        self.state_root = state_root

    # ------------------------------------------------------------ lifecycle

    def up(self, topology: Topology, progress: Progress) -> list[NodeStatus]:
        compose_file = self.prepare(topology, progress)
        progress.say(f"starting {len(topology.nodes)} nodes of lab {topology.name!r}")
        proc = self.compose.start(compose.project_name(topology), compose_file, *COMPOSE_UP)
        self._wait_healthy(topology, progress, proc)
        self.finish(topology)
        progress.say("all nodes healthy")
        self.remove_superseded_images(progress)
        return self.status(topology)

    def remove_superseded_images(self, progress: Progress) -> None:
        """After a rebuild, its predecessors (hoplab's images left with no tag) go; one a
        container still uses stays until the next time, and the lab works either way."""
        try:
            superseded = ImageBuilder(self.engine, progress).remove_superseded()
        except EngineError as exc:
            progress.say(f"superseded images not looked for: {exc}")
            return
        for item in superseded.removed:
            progress.say(f"removed superseded {item}")
        for failure in superseded.failed:
            progress.say(f"kept superseded {failure}")

    def clean_images(self, progress: Progress) -> Cleaned:
        """`hoplab clean --images`: every image hoplab built (never another's)."""
        self.require_engine()
        return ImageBuilder(self.engine, progress).remove_all()

    def prepare(self, topology: Topology, progress: Progress) -> Path:
        """Everything before `docker compose up` (COMPOSE_UP) on the file this returns: the host
        check, the images, the rendered project, the host's guard and bridge rules. pytest-docker's
        fixtures run the same three steps as `up` (tests/e2e/conftest.py)."""
        self.require_engine()
        self.preflight(topology)
        services = sorted({n.service for n in topology.nodes.values()})
        ImageBuilder(self.engine, progress).ensure([self.services(topology)[s] for s in services])
        compose_file = self.write_state(topology)
        bridges = list(compose.bridge_names(topology).values())
        self.firewall.guard(topology.name, bridges, [str(subnet) for _, subnet in subnets(topology)])
        self.firewall.allow_bridges(topology.name, bridges)
        return compose_file

    def finish(self, topology: Topology) -> None:
        """After Compose: the per-bridge sysctls on the bridges Docker made (the guard table held
        meanwhile)."""
        self.firewall.harden(list(compose.bridge_names(topology).values()))

    def down(self, topology: Topology, progress: Progress) -> Cleaned:
        if self.require_engine(soft=True):
            progress.say(f"stopping lab {topology.name!r}")
            # Each container with its stop signal, as `docker compose stop` does; `clean` then
            # removes containers, networks and volumes by label, and says which.
            running = [c["Id"] for c in self.engine.containers(f"{compose.LABEL_LAB}={topology.name}")
                       if c.get("State") == "running"]
            with ThreadPoolExecutor(8) as pool:
                for container, outcome in zip(running, pool.map(self._stop_quietly, running)):
                    if outcome:
                        progress.say(f"container {container[:12]}: {outcome} (removed by force below)")
        return self.clean(topology.name, progress)

    def _stop_quietly(self, container: str) -> str:
        try:
            self.engine.stop(container, STOP_TIMEOUT)
        except NotFound:
            pass
        except EngineError as exc:
            return str(exc)
        return ""

    def clean(self, lab: str | None, progress: Progress) -> Cleaned:
        cleaned = self.firewall.remove(lab)
        if not self.require_engine(soft=True):
            progress.say("no Docker engine reachable: its containers, networks and volumes were not looked for")
        else:
            cleaned.extend(self._remove_labelled(f"{compose.LABEL_LAB}={lab}" if lab else compose.LABEL_LAB))
        for state in ([self.state_root / lab] if lab else sorted(self.state_root.glob("*"))):
            if state.exists():
                cleaned.attempt("folder", str(state), lambda state=state: shutil.rmtree(state))
        return cleaned

    def _remove_labelled(self, label: str) -> Cleaned:
        """Containers, then networks, then volumes carrying `label`. Several passes: a killed
        `up` may have had creations in flight. What is gone meanwhile (Compose's `down`, a
        container's anonymous volume) is neither removed nor failed; a failure counts only if
        the object is still there after the last pass."""
        cleaned, failed = Cleaned(), {}
        for _ in range(3):
            found = [("container", c["Id"], self.engine.remove_container) for c in self.engine.containers(label)]
            found += [("network", n["Id"], self.engine.remove_network) for n in self.engine.networks(label)]
            found += [("volume", v, self.engine.remove_volume) for v in self.engine.volumes(label)]
            if not found:
                break
            for kind, name, remove in found:
                shown = name[:12] if kind != "volume" else name
                try:
                    remove(name)
                except NotFound:
                    continue
                except EngineError as exc:
                    failed[(kind, shown)] = str(exc)
                    continue
                failed.pop((kind, shown), None)
                cleaned.removed.append(f"{kind} {shown}")
            time.sleep(POLL_INTERVAL)
        cleaned.failed += [Failure(kind, name, error) for (kind, name), error in failed.items()]
        return cleaned

    # ------------------------------------------------------------ inspection

    def status(self, topology: Topology, addresses: bool = True) -> list[NodeStatus]:
        containers = self._containers(topology)
        statuses = []
        for node in topology.nodes.values():
            parts = [containers.get(part) for part in _parts(topology, node.name)]
            if None in parts:
                statuses.append(NodeStatus(node.name, node.service, "missing", "none"))
                continue
            # An image node is as running as the less running of its two containers, and as
            # healthy as the image's (its sidecar's when the image has no health check).
            state = next((p["State"] for p in parts if p["State"]["Status"] != "running"), parts[-1]["State"])
            checked = [p["State"]["Health"] for p in reversed(parts) if p["State"].get("Health")]
            health = checked[0].get("Status", "none") if checked else "none"
            statuses.append(NodeStatus(node.name, node.service, state["Status"], health, id=parts[0]["Id"][:12]))
        running = [s for s in statuses if s.state == "running" and addresses]
        with ThreadPoolExecutor(8) as pool:
            for status, addresses in zip(running, pool.map(lambda s: self._addresses(topology, s.node), running)):
                status.addresses = addresses
        return statuses

    def _addresses(self, topology: Topology, node: str) -> dict[str, str]:
        """Addresses as the node itself sees them (a DHCP lease is invisible to Docker)."""
        try:
            result = self.engine.run(compose.container_name(topology, node), ["ip", "-j", "-4", "addr", "show"], 10)
        except (EngineError, subprocess.TimeoutExpired):
            return {}
        if result.returncode != 0:
            return {}
        return {link["ifname"]: f"{a['local']}/{a['prefixlen']}"
                for link in json.loads(result.stdout or "[]") if link["ifname"] != "lo"
                for a in link.get("addr_info", [])}

    def _containers(self, topology: Topology) -> dict[str, dict]:
        """The lab's containers by Compose service (a node's name; `<node>-app` for an image
        node's image), inspected (state, health, health log)."""
        listed = self.engine.containers(f"{compose.LABEL_LAB}={topology.name}")
        found = {}
        for summary in listed:
            try:
                info = self.engine.inspect(summary["Id"])
            except NotFound:
                continue  # removed between listing and inspection
            labels = info["Config"]["Labels"]
            node = labels.get(compose.LABEL_NODE)
            found[compose.app_name(node) if labels.get(compose.LABEL_ROLE) == compose.APP_ROLE else node] = info
        return found

    def node_pids(self, topology: Topology) -> dict[str, int]:
        # The sidecar's process stands for an image node: both share its namespaces.
        return {node: info["State"]["Pid"] for node, info in self._containers(topology).items()
                if node in topology.nodes and info["State"].get("Pid")}

    def stop_node(self, topology: Topology, node: str, timeout: float) -> None:
        with self._node_errors(topology, node):
            for part in reversed(_parts(topology, node)):
                self.engine.stop(compose.container_name(topology, part), timeout)

    def start_node(self, topology: Topology, node: str, progress: Progress) -> None:
        self._container(topology, node)  # a node of the lab
        containers = self._containers(topology)
        # The sidecar first: the image's container joins its namespaces when it starts.
        for part in _parts(topology, node):
            if part not in containers:
                raise BackendError(f"node {node!r} of lab {topology.name!r} does not exist (hoplab up makes it)")
            self.engine.start(containers[part]["Id"])
            deadline = time.monotonic() + UP_TIMEOUT
            while not _healthy(self._containers(topology)[part]):
                if time.monotonic() > deadline:
                    raise BackendError(f"node {node} not healthy after {UP_TIMEOUT:.0f} s"
                                       + self._explain(topology, self._containers(topology)))
                time.sleep(POLL_INTERVAL)
        progress.say(f"{node}: healthy")

    def exec(self, topology: Topology, node: str, argv: list[str], interactive: bool) -> int:
        """A user's command: in an image node's own container (its image's tools); `run`, for
        hoplab's own tools, runs in its sidecar, which shares its network and processes."""
        with self._node_errors(topology, node):
            return self.engine.attach(self._container(topology, node, app=True), argv, interactive)

    def run(self, topology: Topology, node: str, argv: list[str], timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        with self._node_errors(topology, node):
            return self.engine.run(self._container(topology, node), argv, timeout, input)

    def logs(self, topology: Topology, node: str, lines: int = 20) -> list[str]:
        """What the node's service wrote: an image node's, its image's container's."""
        with self._node_errors(topology, node):
            return self.engine.logs(self._container(topology, node, app=True), tail=lines).splitlines()[-lines:]

    @staticmethod
    def _container(topology: Topology, node: str, app: bool = False) -> str:
        """The container of `node`; with `app`, an image node's image's container."""
        if node not in topology.nodes:
            raise BackendError(f"lab {topology.name!r} has no node {node!r}")
        return compose.container_name(topology, _parts(topology, node)[-1 if app else 0])

    @contextmanager
    def _node_errors(self, topology: Topology, node: str):
        """The engine's "no such container" and "is not running" in the lab's words."""
        try:
            yield
        except (NotFound, NotRunning):
            raise BackendError(f"node {node!r} of lab {topology.name!r} is not running (hoplab up starts it)") from None

    # ------------------------------------------------------------ helpers

    def require_engine(self, soft: bool = False) -> bool:
        if self.engine.reachable():
            return True
        if soft:
            return False
        raise BackendError("no Docker engine is reachable: `make up` installs and starts one "
                           "(or start dockerd yourself)")

    def preflight(self, topology: Topology) -> None:
        """Refuse, before creating anything, an image node whose image is not here, and subnets
        that clash with the host's routes or with Docker networks that are not this lab's."""
        self.require_images(topology)
        others = []
        for net in self.engine.networks():
            if (net.get("Labels") or {}).get(compose.LABEL_LAB) == topology.name:
                continue
            for config in (net.get("IPAM") or {}).get("Config") or []:
                if "." in config.get("Subnet", ""):
                    others.append((ipaddress.IPv4Network(config["Subnet"]), f"Docker network {net['Name']}"))
        route_clashes(topology, set(compose.bridge_names(topology).values()), others)

    def require_images(self, topology: Topology) -> None:
        """Every image node's image is present locally: hoplab never pulls (the lab's engine
        may reach no registry, and a lab must not fetch from outside)."""
        problems = {}
        for node in topology.nodes.values():
            if node.image and node.image.entry not in problems and self.engine.image_id(node.image.ref) is None:
                problems[node.image.entry] = (f"{topology.source}: nodes.{node.image.entry}.image: image "
                                              f"{node.image.ref!r} is not present locally (hoplab never pulls; "
                                              f"docker build or docker load it first)")
        if problems:
            raise PreflightError("\n".join(problems.values()))

    def write_state(self, topology: Topology) -> Path:
        state = self.state_root / topology.name
        state.mkdir(parents=True, exist_ok=True)
        runtime = f"{topology.name}{compose.RUNTIME_FILE_SUFFIX}"
        (state / runtime).write_text(topology.runtime_json())
        if topology.management:  # bind-mounted into the control node only (compose.render)
            ensure_control_token(self.control_token_file(topology.name))
        compose_file = state / "compose.yml"
        compose_file.write_text(compose.render(topology, self.services(topology), runtime))
        return compose_file

    def _wait_healthy(self, topology: Topology, progress: Progress, proc: subprocess.Popen) -> None:
        """Compose's own `--wait` decides; Docker's event stream says what happens meanwhile
        (no polling: on two cores a poll loop slows the very bring-up it watches)."""
        events = self.engine.events(f"{compose.LABEL_LAB}={topology.name}")

        def report() -> None:
            for event in events:
                action = event.get("Action") or event.get("status") or ""
                attributes = (event.get("Actor") or {}).get("Attributes", {})
                node = attributes.get(compose.LABEL_NODE)
                if node and attributes.get(compose.LABEL_ROLE) == compose.APP_ROLE:
                    node = f"{node} (image)"
                shown = action.replace("health_status: ", "")
                if node and shown in ("create", "start", "healthy", "unhealthy", "die", "kill"):
                    progress.say(f"{node}: {shown}")

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            output, _ = bounded.communicate(proc, timeout=UP_TIMEOUT + 30, what="docker compose up --wait")
        finally:
            events.close()
            reporter.join(timeout=2)
        if proc.returncode != 0:
            raise BackendError("nodes did not all become healthy (docker compose up --wait failed):\n" +
                               "\n".join(output.splitlines()[-15:]) + self._explain(topology, self._containers(topology)))
        self.check_healthy(topology, output)

    def check_healthy(self, topology: Topology, compose_output: str = "") -> None:
        """After `docker compose up --wait`: every node there and healthy. `--wait` lets a
        container that exited on its own pass, and some refusals (a feature the engine lacks)
        leave nodes uncreated with Compose still exiting 0: its last lines go with the error."""
        containers = self._containers(topology)
        broken = [n for n in topology.nodes
                  if any(p not in containers or not _healthy(containers[p]) for p in _parts(topology, n))]
        if broken:
            said = "\n".join(compose_output.strip().splitlines()[-5:])
            raise BackendError(f"nodes not healthy: {', '.join(broken)}" + (f"\ndocker compose said:\n{said}" if said else "")
                               + self._explain(topology, containers))

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
            try:
                lines += self.engine.logs(info["Id"], 15).strip().splitlines()
            except EngineError as exc:
                lines.append(f"(no logs: {exc})")
        return "\n".join(lines)


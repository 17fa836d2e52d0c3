"""The netns backend: the same lab as Mininet hosts instead of containers. Each node is a pair
of network and mount namespaces running the host's own Debian daemons from the same
`services/<name>/` start scripts as the Docker images; private copies of the directories a
daemon writes (/etc, /var, /home, /root, /usr/local, /tmp overlaid; /run fresh) keep two
nodes' daemons, and the host's, from ever sharing state.

A lab lives on after `up` returns, as a Docker lab does: each node's namespaces are held by an
anchor process (`sleep infinity`) and every process the backend starts carries the marker
`HOPLAB_NETNS=<lab>`. What it makes on the host: bridges `hn-<lab>-*` and veths `hv-<lab>-*`,
each with the alias `hoplab:<lab>` from its creation, one FORWARD rule per bridge (comment
`hoplab:<lab>`), the host's address on the management bridge, and the folder
/run/hoplab-netns/<lab>/; and, shared by all labs as images are, what services keep across labs
(service.yaml `cache:`) under /run/hoplab-netns-cache/. `down` and `clean` remove exactly these, found by those marks (a link
that merely has a lab-like name is never touched)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from hoplab import bounded
from hoplab.backends import nodeproc
from hoplab.backends.base import (IP_TIMEOUT_S, Backend, BackendError, Cleaned, Failure, NodeStatus,
                                  PreflightError, ensure_control_token, route_clashes, subnets)
from hoplab.backends.hostfw import HostFirewall
from hoplab.backends.netns_plan import BRIDGE_PREFIX, NetnsPlan, link_mark, marked_links, plan
from hoplab.paths import CONTROL_TOKEN_IN_NODE, SERVICES_DIR, hash_tree
from hoplab.progress import Progress
from hoplab.services import Service, load_catalog
from hoplab.spec import CONTROL_NODE, Topology

UP_TIMEOUT = 240.0
# The nodes run the very hoplab this CLI runs (as a Docker node runs the wheel built from it),
# wherever it was imported from: the checkout's editable install, or a PYTHONPATH.
HOPLAB_SOURCES = str(Path(__file__).resolve().parents[2])
CODE_FILE = "code.sha256"  # in a lab's state folder: what its nodes' processes were started from


def code_digest(services: dict) -> str:
    """What a netns lab's processes run from the host's files: hoplab's sources and the folders
    of the services its nodes run (the project's or the topology's own). A running lab made
    from other files is made again by `up` (a container lab gets new images the same way)."""
    digest = hashlib.sha256()
    hash_tree(digest, Path(HOPLAB_SOURCES) / "hoplab")
    for name in sorted(services):
        digest.update(f"[{name}]".encode())
        hash_tree(digest, services[name].directory)
    return digest.hexdigest()


# Where other tools keep what a copied mount would pin: their containers' root filesystems and
# namespace files (nsfs mounts are matched by type wherever they are).
PINNING_ROOTS = ("/var/lib/docker/", "/run/docker/", "/var/run/docker/", "/run/containerd/", "/var/lib/containerd/")


def pinning_mounts(mountinfo: str) -> list[str]:
    """The mount points, deepest first, of a mountinfo table's mounts that hold something of
    another owner alive: namespace files (nsfs), and Docker's and containerd's mounts."""
    found = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not tail:
            continue
        target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[4])
        if tail.split()[0] == "nsfs" or target.startswith(PINNING_ROOTS):
            found.append(target)
    return sorted(set(found), key=lambda t: (-t.count("/"), t))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
HEALTH_TIMEOUT = 10.0
POLL_S = 0.1  # between health rounds while nodes start
RUN_DIR = "/run/hoplab"  # inside each node: its own tmpfs
# Copy-on-write per node. /tmp too (not a fresh tmpfs): the checkout, with the venv the nodes
# run, may live there.
OVERLAID = ("/etc", "/var", "/home", "/root", "/usr/local", "/tmp")
FRESH = ("/run",)  # an empty tmpfs per node, mounted last
# The labs' state, the nodes' upper layers and volumes: outside every overlaid folder (an upper
# layer inside its lower one is refused), and gone with a reboot, as the namespaces are.
STATE_ROOT = Path("/run/hoplab-netns")
LAB_JSON = "/etc/hoplab/lab.json"  # where a node reads its lab, as in a Docker image
# What a service keeps across labs (service.yaml `cache:`, made by its `prepare`), as an image
# keeps what its build made: on the host until a reboot, outside every overlaid folder.
CACHE_ROOT = Path("/run/hoplab-netns-cache")


def cache_dir(service: Service) -> Path:
    """A service folder's own cache (two folders may hold services of the same name)."""
    return CACHE_ROOT / f"{service.name}-{hashlib.sha256(str(service.directory).encode()).hexdigest()[:8]}"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def debian_packages(catalog: dict[str, Service]) -> list[str]:
    """What the host needs installed to run every service in a namespace."""
    base = [line.strip() for line in (SERVICES_DIR / "base" / "packages.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return sorted({"mininet", *base, *(p for s in catalog.values() for p in s.packages)})


def missing_packages(packages: list[str]) -> list[str]:
    result = bounded.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *packages],
                         capture_output=True, text=True, timeout=30)
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith("install ok installed")}
    return [p for p in packages if p not in installed]


class NetnsBackend(Backend):
    name = "netns"

    def __init__(self, catalog: dict[str, Service] | None = None, firewall: HostFirewall | None = None,
                 state_root: Path = STATE_ROOT):
        self.catalog = catalog if catalog is not None else load_catalog()
        self.firewall = firewall or HostFirewall(BRIDGE_PREFIX, chain="FORWARD")
        self.state_root = state_root

    # ------------------------------------------------------------ state

    def state_dir(self, lab: str) -> Path:
        return self.state_root / lab

    def _state(self, lab: str) -> dict:
        path = self.state_dir(lab) / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, lab: str, state: dict) -> None:
        path = self.state_dir(lab) / "state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(state, indent=2) + "\n")
        scratch.replace(path)

    def running(self, lab: str) -> bool:
        """Whether a netns lab of that name exists on this host (every node's anchor alive)."""
        nodes = self._state(lab).get("nodes", {})
        return bool(nodes) and all(nodeproc.alive(n.get("anchor"), lab) for n in nodes.values())

    # ------------------------------------------------------------ lifecycle

    def up(self, topology: Topology, progress: Progress) -> list[NodeStatus]:
        lab = topology.name
        refuse_images(topology)
        self.require_host(topology)
        layout = plan(topology)
        # Only the management bridge has a host address (and so a route): the data bridges of
        # two netns labs may share subnets, being apart.
        route_clashes(topology, set(layout.bridges.values()))
        state = self.state_dir(lab)
        current = ((state / "lab.json").read_text(), _read(state / CODE_FILE)) if self.running(lab) else None
        code = code_digest(self.services(topology))
        if current != (topology.runtime_json(), code):
            if current is not None:
                what = "topology" if current[0] != topology.runtime_json() else "code its nodes run"
                progress.say(f"the {what} of lab {lab!r} changed: making it again")
            if self._state(lab) or nodeproc.lab_processes(lab) or self._links(lab):
                progress.say(f"removing what is left of lab {lab!r}")
                left = self.clean(lab, progress)
                if left.failed:
                    raise BackendError(f"lab {lab!r}: what is left of it could not all be removed:\n"
                                       + "\n".join(f"  {f}" for f in left.failed))
            self._create(topology, layout, code, progress)
        self._start_services(topology, progress)
        progress.say("all nodes healthy")
        return self.status(topology)

    def _create(self, topology: Topology, layout: NetnsPlan, code: str, progress: Progress) -> None:
        from hoplab.backends.mininet_build import Build  # Mininet only when a lab is built

        lab = topology.name
        # A link of the plan's name that is there already is not the lab's (clean removed every
        # one it marked): refused, never deleted (Mininet would delete it by name).
        names = set(layout.bridges.values()) | {p.veth for p in layout.ports}
        taken = sorted(names & {link["ifname"] for link in _host_links()})
        if taken:
            raise BackendError(f"lab {lab!r}: link(s) {', '.join(taken)} exist on the host without the mark "
                               f"{link_mark(lab)!r}: hoplab did not make them and will not delete them; "
                               "remove or rename them (ip link del NAME), or give the lab another name")
        state_dir = self.state_dir(lab)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "lab.json").write_text(topology.runtime_json())
        (state_dir / CODE_FILE).write_text(code)
        # Journal first: a killed `up` leaves nothing `clean` cannot name.
        self._save(lab, {"lab": lab, **layout.to_json(), "nodes": {}})
        bridges = sorted(layout.bridges.values())
        self.firewall.guard(lab, bridges, [str(subnet) for _, subnet in subnets(topology)])
        self.firewall.allow_bridges(lab, bridges)
        progress.say(f"creating {len(layout.nodes)} namespaces, {len(layout.bridges)} bridges "
                     f"and {len(layout.ports)} veth pairs (Mininet)")
        build = Build(layout)
        try:
            nodes = {}
            for node, shell in build.shell_pids.items():
                self._refuse_host(shell, node)
                anchor = subprocess.Popen(["mnexec", "-a", str(shell), "sleep", "infinity"],
                                          env=self._env(topology, node), start_new_session=True,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
                nodes[node] = {"anchor": anchor.pid}
            self._save(lab, {"lab": lab, **layout.to_json(), "nodes": nodes})
            for node, entry in nodes.items():
                if not nodeproc.wait_in_own_namespaces(entry["anchor"]):
                    raise BackendError(f"node {node}: its anchor process did not join the node's namespaces")
            with ThreadPoolExecutor(8) as pool:  # each node's mounts on their own: none waits for another
                list(pool.map(lambda node: self._prepare_node(topology, node, nodes[node]["anchor"]), layout.nodes))
        finally:
            build.release()
        self.firewall.harden(bridges)
        if layout.host_address:
            bridge, address = layout.host_address
            _checked(["ip", "addr", "add", address, "dev", bridge])

    def _prepare_node(self, topology: Topology, node: str, anchor: int) -> None:
        """The node's private filesystem view, and its service's sysctls (per namespace)."""
        service = self.services(topology)[topology.nodes[node].service]
        # The node's mount namespace began as a private copy of the host's, with the mounts that
        # hold other things alive: a Docker container's network namespace pinned there outlives
        # the container, and its old veth keeps answering for the address on the bridge (a
        # restarted container's peers get RSTs from its previous life).
        pinning = pinning_mounts(_read(Path(f"/proc/{anchor}/mountinfo")) or "")
        if pinning:
            result = self._in_node(anchor, topology, node, ["umount", "-l", *pinning], timeout=30)
            if result.returncode != 0:
                raise BackendError(f"node {node}: letting go of the host's namespace mounts failed:\n"
                                   f"{result.stderr.strip()}")
        root = self.state_dir(topology.name) / "nodes" / node
        # IPv4 only, as in a Docker container on an IPv4 network (a server bound to 0.0.0.0
        # would otherwise take a dual-stack socket, and nodes would chatter in IPv6).
        script = ["set -e", "sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"]
        for directory in OVERLAID:
            upper, work = root / "upper" / directory.strip("/"), root / "work" / directory.strip("/")
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            script.append(f"mount -t overlay overlay -o lowerdir={directory},upperdir={upper},workdir={work} {directory}")
        lab_json = root / "upper" / LAB_JSON.lstrip("/")
        lab_json.parent.mkdir(parents=True, exist_ok=True)
        lab_json.write_text(topology.runtime_json())
        if node == CONTROL_NODE:  # the Control API's token, in this node's private /etc only
            token = root / "upper" / CONTROL_TOKEN_IN_NODE.lstrip("/")
            token.unlink(missing_ok=True)
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(ensure_control_token(self.control_token_file(topology.name)) + "\n")
        for name, path in service.volumes.items():
            script.append(self._bind(root / "volumes" / name, path))
        for name, path in service.shared.items():
            script.append(self._bind(self.state_dir(topology.name) / "shared" / name, path))
        for name, path in service.cache.items():
            script.append(self._bind(cache_dir(service) / name, path))
        for key, value in service.sysctls.items():
            script.append(f"sysctl -q -w {key}={value}")
        # Last: the folders above are under the host's /run, which this hides.
        script += [f"mount -t tmpfs -o mode=0755 tmpfs {directory}" for directory in FRESH]
        result = self._in_node(anchor, topology, node, ["sh", "-c", "\n".join(script)], timeout=30)
        if result.returncode != 0:
            raise BackendError(f"node {node}: preparing its namespaces failed:\n{result.stderr.strip()}")

    @staticmethod
    def _bind(source: Path, target: str) -> str:
        """A volume: a folder of the lab's that starts with the owner and mode of what it covers
        (as a Docker volume does)."""
        fresh = not source.exists()
        source.mkdir(parents=True, exist_ok=True)
        if fresh and os.path.isdir(target):
            info = os.stat(target)
            os.chown(source, info.st_uid, info.st_gid)
            os.chmod(source, info.st_mode & 0o7777)
        return f"mkdir -p {target} && mount --bind {source} {target}"

    def _start_services(self, topology: Topology, progress: Progress, only: str | None = None) -> None:
        """Each service starts as soon as the nodes it waits for are healthy -- not wave by
        wave, so a slow one holds back only what needs it -- and each starting node's health is
        checked on its own, every POLL_S, a slow check holding back no other node."""
        lab = topology.name
        state = self._state(lab)
        deadline = time.monotonic() + UP_TIMEOUT
        if only:
            waits = {only: []}  # `start NODE`: what it needs is running already
        else:
            waits = self._dependencies(topology)
            in_waves(waits)  # refuses services that wait for each other in a circle
        pending, healthy, started = list(waits), set(), set()
        checks: dict = {}  # node -> its health check in flight
        last: dict[str, float] = {}  # node -> when its last check ended
        with ThreadPoolExecutor(8) as pool:
            while len(healthy) < len(waits):
                ready = [n for n in pending if all(d in healthy for d in waits[n])]
                for node in ready:
                    pending.remove(node)
                    if self._start_service(topology, node, state["nodes"][node]):
                        started.add(node)
                        progress.say(f"{node}: start")
                if ready:
                    self._save(lab, state)
                # each node's check on its own: a slow one (a lease, a page) holds back no other
                now = time.monotonic()
                for node in waits:
                    if (node not in pending and node not in healthy and node not in checks
                            and now - last.get(node, 0.0) >= POLL_S):
                        checks[node] = pool.submit(self._healthy, topology, node)
                if not checks:  # every check is resting between polls
                    time.sleep(POLL_S / 2)
                    continue
                done, _ = wait(checks.values(), timeout=POLL_S, return_when=FIRST_COMPLETED)
                for node in [n for n, f in checks.items() if f in done]:
                    ok = checks.pop(node).result()
                    last[node] = time.monotonic()
                    if ok:
                        healthy.add(node)
                        if node in started:
                            progress.say(f"{node}: healthy")
                    elif not nodeproc.beside(state["nodes"][node]["service"], state["nodes"][node]["anchor"]):
                        raise BackendError(f"node {node}: its service exited" + self._explain(lab, node))
                if len(healthy) < len(waits) and time.monotonic() > deadline:
                    late = sorted(set(waits) - healthy)
                    raise BackendError(f"nodes not healthy after {UP_TIMEOUT:.0f} s: {', '.join(late)}"
                                       + "".join(self._explain(lab, n) for n in late if n not in pending))

    def _start_service(self, topology: Topology, node: str, entry: dict) -> bool:
        """Start `node`'s service in its namespaces (False: it runs already)."""
        if nodeproc.beside(entry.get("service"), entry["anchor"]):
            return False
        # A service killed outright (process-kill) leaves its daemons and the agent running;
        # a container's death takes them along, and so does this restart: else the new start
        # meets the old daemons on their ports and pid files and gives up.
        leftovers = [pid for pid in nodeproc.in_namespace_of(entry["anchor"]) if pid != entry["anchor"]]
        if leftovers:
            nodeproc.terminate(leftovers, grace=3.0)
        log = self.state_dir(topology.name) / "logs" / f"{node}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._refuse_host(entry["anchor"], node)
        with open(log, "ab") as out:
            proc = subprocess.Popen(["mnexec", "-a", str(entry["anchor"]), sys.executable, "-m",
                                     "hoplab.node", "start"], env=self._env(topology, node),
                                    start_new_session=True, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd="/")
        entry["service"] = proc.pid
        nodeproc.wait_beside(proc.pid, entry["anchor"])  # else it looks exited for a moment
        return True

    def _dependencies(self, topology: Topology) -> dict[str, list[str]]:
        """Each node -> the nodes that must be healthy before it starts."""
        services = self.services(topology)
        return {n: topology.waits_for(n, services) for n in topology.nodes}

    def _waves(self, topology: Topology) -> list[list[str]]:
        return in_waves(self._dependencies(topology))

    def _explain(self, lab: str, node: str) -> str:
        log = self.state_dir(lab) / "logs" / f"{node}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        return f"\n--- {node} (log {log}):\n" + "\n".join(tail)

    def logs(self, topology: Topology, node: str, lines: int = 20) -> list[str]:
        if node not in topology.nodes:
            raise BackendError(f"lab {topology.name!r} has no node {node!r}")
        log = self.state_dir(topology.name) / "logs" / f"{node}.log"
        if not log.exists():
            return []
        with open(log, "rb") as handle:  # the tail only: a busy service's log grows
            handle.seek(max(log.stat().st_size - 64 * 1024, 0))
            return handle.read().decode(errors="replace").splitlines()[-lines:]

    def stop_node(self, topology: Topology, node: str, timeout: float) -> None:
        """The service with its stop signal, then every other process of the node but its
        anchor (the agent; what the daemon left behind), as stopping a container does."""
        anchor = self._anchor(topology, node)
        service = self._signal_service(topology, node, self._state(topology.name)["nodes"][node])
        nodeproc.terminate([service] if service else [], grace=timeout, first=None)
        rest = [pid for pid in nodeproc.in_namespace_of(anchor) if pid != anchor]
        nodeproc.terminate(rest, grace=timeout)

    def _signal_service(self, topology: Topology, node: str, entry: dict) -> int | None:
        """Send a running service its stop signal (SIGTERM unless it declares another);
        returns its pid, or None when it was not running."""
        pid = entry.get("service")
        if not nodeproc.beside(pid, entry.get("anchor")):
            return None
        signum = self.services(topology)[topology.nodes[node].service].stop_signal if node in topology.nodes else None
        os.kill(pid, getattr(signal, signum or "SIGTERM"))
        return pid

    def start_node(self, topology: Topology, node: str, progress: Progress) -> None:
        self._anchor(topology, node)
        self._start_services(topology, progress, only=node)

    def down(self, topology: Topology, progress: Progress) -> Cleaned:
        lab = topology.name
        progress.say(f"stopping lab {lab!r}")
        nodes = self._state(lab).get("nodes", {})
        services = [pid for node, entry in nodes.items() if (pid := self._signal_service(topology, node, entry))]
        nodeproc.terminate(services, grace=3.0, first=None)  # signalled above: wait, then kill
        return self.clean(lab, progress)

    def clean_images(self, progress: Progress) -> Cleaned:
        """The services' caches (service.yaml `cache:`), this backend's images: a running lab's
        next start of such a service prepares its cache again."""
        cleaned = Cleaned()
        for cache in sorted(CACHE_ROOT.glob("*")) if CACHE_ROOT.is_dir() else []:
            cleaned.attempt("cache", str(cache), lambda cache=cache: shutil.rmtree(cache))
        if CACHE_ROOT.is_dir() and not any(CACHE_ROOT.iterdir()):
            cleaned.attempt("folder", str(CACHE_ROOT), CACHE_ROOT.rmdir)
        return cleaned

    def clean(self, lab: str | None, progress: Progress) -> Cleaned:
        cleaned = Cleaned()
        processes = nodeproc.lab_processes(lab)
        if processes:
            nodeproc.terminate(sorted(processes))
            left = [pid for pid in sorted(processes) if nodeproc.running(pid)]
            cleaned.removed.append(f"processes {len(processes) - len(left)} of lab(s) "
                                   f"{', '.join(sorted(set(processes.values())))}")
            cleaned.failed += [Failure("process", str(pid), f"of lab {processes[pid]}: still running after SIGKILL")
                               for pid in left]
        cleaned.extend(remove_links(lab))
        cleaned.failed += self._unmarked_journaled(lab)
        cleaned.extend(self.firewall.remove(lab))
        for state in ([self.state_dir(lab)] if lab else sorted(self.state_root.glob("*"))):
            if state.exists():
                cleaned.attempt("folder", str(state), lambda state=state: shutil.rmtree(state))
        return cleaned

    def _unmarked_journaled(self, lab: str | None) -> list[Failure]:
        """Links a lab's journal names that are there without its mark (made before links were
        marked, or by someone else since): not deleted, and not passed over in silence."""
        present = {link["ifname"]: link.get("ifalias") for link in _host_links()}
        found = []
        for state in ([self.state_dir(lab)] if lab else sorted(self.state_root.glob("*"))):
            journal = self._state(state.name)
            for name in [*journal.get("bridges", []), *journal.get("veths", [])]:
                if name in present and present[name] != link_mark(state.name):
                    found.append(Failure("link", name, f"named in lab {state.name!r}'s journal but without its mark "
                                         f"{link_mark(state.name)!r}: not deleted (`ip link del {name}` if it is "
                                         "the lab's, made before links were marked)"))
        return found

    @staticmethod
    def _links(lab: str | None) -> list[str]:
        """The host's links that carry the lab's mark (any lab's when None), bridges first."""
        return marked_links(_host_links(), lab)

    # ------------------------------------------------------------ inspection

    def status(self, topology: Topology, addresses: bool = True) -> list[NodeStatus]:
        lab = topology.name
        nodes = self._state(lab).get("nodes", {})

        def addresses_of(node: str) -> dict[str, str]:
            return self._addresses(topology, node) if addresses else {}

        def one(node) -> NodeStatus:
            entry = nodes.get(node.name, {})
            if not nodeproc.alive(entry.get("anchor"), lab):
                return NodeStatus(node.name, node.service, "missing", "none")
            ident = f"pid {entry['anchor']}"
            if not nodeproc.beside(entry.get("service"), entry["anchor"]):
                return NodeStatus(node.name, node.service, "exited", "none", addresses_of(node.name), ident)
            health = "healthy" if self._healthy(topology, node.name) else "unhealthy"
            return NodeStatus(node.name, node.service, "running", health, addresses_of(node.name), ident)

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, topology.nodes.values()))

    def node_pids(self, topology: Topology) -> dict[str, int]:
        lab = topology.name
        return {node: entry["anchor"] for node, entry in self._state(lab).get("nodes", {}).items()
                if nodeproc.alive(entry.get("anchor"), lab)}

    def _healthy(self, topology: Topology, node: str) -> bool:
        script = self.services(topology)[topology.nodes[node].service].health_script
        try:
            return self.run(topology, node, ["sh", str(script)], timeout=HEALTH_TIMEOUT).returncode == 0
        except (subprocess.TimeoutExpired, BackendError):
            return False

    def _addresses(self, topology: Topology, node: str) -> dict[str, str]:
        result = self.run(topology, node, ["ip", "-j", "-4", "addr", "show"])
        if result.returncode != 0:
            return {}
        return {link["ifname"]: f"{a['local']}/{a['prefixlen']}"
                for link in json.loads(result.stdout or "[]") if link["ifname"] != "lo"
                for a in link.get("addr_info", [])}

    def exec(self, topology: Topology, node: str, argv: list[str], interactive: bool) -> int:
        # The user's own command (a shell, `tail -f`): no time limit, as with `docker exec`; Ctrl-C ends it.
        return subprocess.call(["mnexec", "-a", str(self._anchor(topology, node)), *argv],  # unbounded: the user's command
                               env=self._env(topology, node), cwd="/")

    def run(self, topology: Topology, node: str, argv: list[str], timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        return self._in_node(self._anchor(topology, node), topology, node, argv, timeout, input)

    def _in_node(self, anchor: int, topology: Topology, node: str, argv: list[str], timeout: float = 60,
                 input: str | None = None) -> subprocess.CompletedProcess:
        self._refuse_host(anchor, node)
        return bounded.run(["mnexec", "-a", str(anchor), *argv], env=self._env(topology, node), cwd="/",
                           capture_output=True, text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)

    def _anchor(self, topology: Topology, node: str) -> int:
        anchor = self._state(topology.name).get("nodes", {}).get(node, {}).get("anchor")
        if not nodeproc.alive(anchor, topology.name):
            raise BackendError(f"node {node!r} of lab {topology.name!r} is not running "
                               "(hoplab up --backend netns starts it)")
        self._refuse_host(anchor, node)
        return anchor

    @staticmethod
    def _refuse_host(anchor: int, node: str) -> None:
        """Nothing meant for a node ever runs in the host's namespaces."""
        if not nodeproc.in_own_namespaces(anchor):
            raise BackendError(f"node {node}: its anchor (pid {anchor}) is not in namespaces of its own; "
                               "refusing to run a node's command on the host")

    def _env(self, topology: Topology, node: str) -> dict[str, str]:
        """A node's environment, the same for its service and for `exec`: the variables the
        Docker images set. Debian's python3 comes first, as in an image (the services' Debian
        modules); the venv's tools (Locust) after it. The node runtime runs on the venv's Python."""
        service = self.services(topology)[topology.nodes[node].service]
        return {"PATH": f"{SYSTEM_PATH}:{Path(sys.executable).parent}", "HOME": "/root", "LANG": "C.UTF-8",
                "HOPLAB_NODE": node, "HOPLAB_SERVICE": str(service.directory), "HOPLAB_RUN_DIR": RUN_DIR,
                "HOPLAB_LAB_JSON": LAB_JSON, "PYTHONPATH": HOPLAB_SOURCES,
                # the Python with the node runtime's dependencies (an image's python3 has them)
                "HOPLAB_PYTHON": sys.executable,
                "PYTHONDONTWRITEBYTECODE": "1", nodeproc.MARKER: topology.name}

    # ------------------------------------------------------------ host checks

    def require_host(self, topology: Topology | None = None) -> None:
        if os.geteuid() != 0:
            raise BackendError("the netns backend needs root (namespaces, bridges, mounts)")
        missing = missing_packages(debian_packages(self.catalog))
        if missing:
            raise BackendError(f"the netns backend runs the host's own daemons; missing Debian packages: "
                               f"{' '.join(missing)} (`scripts/setup-host netns` installs them)")
        if topology is not None:
            self.require_user_packages(topology)

    def require_user_packages(self, topology: Topology) -> None:
        """A user's service folder's `packages:` are never installed behind the user's back: a
        missing one is an error naming it and the command that installs it."""
        used = {n.service for n in topology.nodes.values()}
        wanted = {s.name: list(s.packages) for s in self.services(topology).values() if s.user and s.name in used}
        missing = {name: m for name, packages in wanted.items() if (m := missing_packages(packages))}
        if missing:
            packages = sorted({p for m in missing.values() for p in m})
            where = "; ".join(f"{self.services(topology)[n].directory / 'service.yaml'}: {' '.join(m)}"
                              for n, m in sorted(missing.items()))
            folders = " ".join(f"--services {d}" for d in topology.service_dirs)
            raise BackendError(f"the netns backend runs the host's own daemons; Debian packages your service "
                               f"folders need are not installed ({where}). Install them with: "
                               f"apt-get install --no-install-recommends {' '.join(packages)} "
                               f"(or scripts/setup-host netns {folders})")



def refuse_images(topology: Topology) -> None:
    """A namespace node runs the host's own daemons from a service folder: there is no image to
    run, so an image node is refused, naming the node and what to give it instead."""
    entries = {n.image.entry: n.image.ref for n in topology.nodes.values() if n.image}
    if entries:
        raise PreflightError("\n".join(
            f"{topology.source}: nodes.{entry}.image: node {entry!r} runs image {ref!r}, which the netns "
            f"backend cannot run (it has no container engine); give it a service folder instead "
            f"(service: NAME, with NAME/service.yaml, start and health in a folder of service_dirs:), "
            f"or use --backend docker" for entry, ref in entries.items()))


def _host_links() -> list[dict]:
    """`ip -j -d link show` in the host's namespace: each link's name, kind and alias."""
    result = bounded.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if result.returncode != 0:
        raise BackendError(f"ip -j -d link show: {result.stderr.strip()}")
    return json.loads(result.stdout or "[]")


def remove_links(lab: str | None) -> Cleaned:
    """Delete every host link with the lab's mark (any lab's when None). A veth whose node's
    namespace went with its processes is gone before its turn: neither removed nor failed."""
    cleaned = Cleaned()
    for link in marked_links(_host_links(), lab):
        result = bounded.run(["ip", "link", "del", "dev", link], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
        if result.returncode == 0:
            cleaned.removed.append(f"link {link}")
        elif link in {found["ifname"] for found in _host_links()}:
            cleaned.failed.append(Failure("link", link, result.stderr.strip() or f"exit status {result.returncode}"))
    return cleaned


def _checked(argv: list[str]) -> None:
    result = bounded.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if result.returncode != 0:
        raise BackendError(f"{' '.join(argv)}: {result.stderr.strip()}")


def in_waves(waits: dict[str, list[str]]) -> list[list[str]]:
    """The nodes in start order, wave by wave (each after what it waits for)."""
    remaining = list(waits)
    placed: set[str] = set()
    waves = []
    while remaining:
        ready = [n for n in remaining if all(m in placed for m in waits[n])]
        if not ready:
            raise BackendError(f"services wait for each other in a circle: {sorted(remaining)}")
        waves.append(ready)
        placed.update(ready)
        remaining = [n for n in remaining if n not in placed]
    return waves

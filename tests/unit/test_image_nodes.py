"""A node may run a local Docker image (`image:`): the topology's schema and checks, its two
Compose services (hoplab's sidecar, the image's container in its namespaces, never pulled or
published), the Docker backend's refusal of an image that is not here, and the netns backend's
refusal of image nodes. All before anything is created."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hoplab import cli, compose, spec
from hoplab.backends.base import PreflightError
from hoplab.backends.docker import DockerBackend
from hoplab.backends.engine import Engine
from hoplab.backends.netns import NetnsBackend
from hoplab.paths import PROJECT_ROOT
from hoplab.progress import Progress

EXAMPLE = PROJECT_ROOT / "examples" / "own-service" / "notes-image.yaml"


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def write(tmp_path: Path, data: dict) -> Path:
    """The example's topology, changed, in a folder of its own (its paths made absolute)."""
    path = tmp_path / "notes-image.yaml"
    data = copy.deepcopy(data)
    data["service_dirs"] = [str(EXAMPLE.parent / "services")]
    data["load"] = {"locustfile": str(EXAMPLE.parent / "locustfile.py")}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems(tmp_path: Path, data: dict) -> list[tuple[str, str]]:
    with pytest.raises(spec.TopologyError) as caught:
        spec.load(write(tmp_path, data))
    return caught.value.problems


# ---------------------------------------------------------------- the topology


def test_the_example_loads_with_its_image_nodes():
    topology = spec.load(EXAMPLE)
    notes = [topology.nodes["notes1"], topology.nodes["notes2"]]
    assert all(n.service == spec.SIDECAR and n.image.ref == "own-service/notes:1" for n in notes)
    assert notes[0].image.ports == (8080,) and notes[0].image.entry == "notes"
    assert notes[0].image.env == (("NOTES_REDIS", "172.29.72.30:6379"),)
    # the balancer's upstream names no port: the image's first
    assert topology.nodes["balancer"].upstream.port == 8080
    assert topology.to_runtime()["nodes"]["notes2"]["image"] == {"ref": "own-service/notes:1", "ports": [8080]}


@pytest.mark.parametrize("change, field, reason", [
    (lambda n: n.update(service="web"), "nodes.notes", "either service (a service folder) or image"),
    (lambda n: n.pop("image"), "nodes.notes", "needs service (a service folder) or image"),
    (lambda n: n.update(image="Not An Image!"), "nodes.notes.image", "is not an image reference"),
    (lambda n: n.update(command="python3 /app/app.py"), "nodes.notes.command", "is not of type 'array'"),
    (lambda n: n.update(health=[]), "nodes.notes.health", "should be non-empty"),
    (lambda n: n.update(ports=[0]), "nodes.notes.ports.0", "is less than the minimum"),
    (lambda n: n.update(env={"HOPLAB_NODE": "x"}), "nodes.notes.env", "names starting HOPLAB_ are hoplab's"),
    (lambda n: n.update(env={"A": ["list"]}), "nodes.notes.env.A", "is not of type"),
])
def test_a_bad_image_node_names_its_field(tmp_path, change, field, reason):
    data = example_data()
    change(data["nodes"]["notes"])
    found = problems(tmp_path, data)
    assert any(f == field and reason in r for f, r in found), found


def test_image_fields_need_an_image(tmp_path, capsys):
    data = example_data()
    data["nodes"]["kv"].update(command=["redis-server"], ports=[6379])
    path = write(tmp_path, data)
    assert cli.main(["validate", "--topology", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: nodes.kv: command, ports: only for a node that runs an image" in err


def test_an_upstream_without_port_needs_its_nodes_to_declare_one(tmp_path):
    data = example_data()
    del data["nodes"]["notes"]["ports"]
    found = problems(tmp_path, data)
    assert ("nodes.balancer.upstream.port",
            "required unless every node named declares the same first port (an image node's ports); notes1: none, notes2: none") in found


def test_an_image_node_reads_no_upstream(tmp_path):
    data = example_data()
    data["nodes"]["notes"]["upstream"] = {"nodes": ["kv"], "port": 6379}
    found = problems(tmp_path, data)
    assert any(f == "nodes.notes.upstream" and "image 'own-service/notes:1' reads no upstream" in r for f, r in found)


# ---------------------------------------------------------------- Compose


def test_an_image_node_is_a_sidecar_and_the_images_container_in_its_namespaces():
    topology = spec.load(EXAMPLE)
    rendered = yaml.safe_load(compose.render(topology, topology.services, "x.json"))
    services = rendered["services"]
    sidecar, app = services["notes1"], services["notes1-app"]
    assert sidecar["image"] == "hoplab/sidecar:latest"
    assert sidecar["networks"]["origin"] == {"ipv4_address": "172.29.72.21"}
    assert sidecar["labels"] == {"io.hoplab.lab": "notesimg", "io.hoplab.node": "notes1"}
    assert app == {
        "image": "own-service/notes:1",
        "pull_policy": "never",
        "container_name": "hoplab-notesimg-notes1-app",
        "network_mode": "service:notes1",
        "pid": "service:notes1",
        "environment": {"NOTES_REDIS": "172.29.72.30:6379", "HOPLAB_NODE": "notes1"},
        "command": ["python3", "/app/app.py", "--port", "8080"],
        "healthcheck": {"test": ["CMD", "python3", "-c", topology.nodes["notes1"].image.health[2]],
                        **compose.HEALTH},
        "stop_grace_period": "3s",
        "labels": {"io.hoplab.lab": "notesimg", "io.hoplab.node": "notes1", "io.hoplab.role": "app"},
        "depends_on": {"notes1": {"condition": "service_healthy"}},
    }
    # whoever waits for an image node waits for its image's health, not its sidecar's
    assert services["balancer"]["depends_on"] == {"notes1-app": {"condition": "service_healthy"},
                                                  "notes2-app": {"condition": "service_healthy"}}
    # nothing of the lab is published on the host
    assert not any("ports" in s for s in services.values())


def test_an_image_without_a_health_command_is_waited_for_as_started(tmp_path):
    data = example_data()
    del data["nodes"]["notes"]["health"], data["nodes"]["notes"]["command"]
    topology = spec.load(write(tmp_path, data))
    services = yaml.safe_load(compose.render(topology, topology.services, "x.json"))["services"]
    assert "healthcheck" not in services["notes2-app"] and "command" not in services["notes2-app"]
    assert services["balancer"]["depends_on"]["notes2-app"] == {"condition": "service_started"}


# ---------------------------------------------------------------- the backends' refusals


class Images:
    """The one engine call the image check makes: which images are here."""

    def __init__(self, present: set[str]):
        self.present = present

    def image_id(self, name: str) -> str | None:
        return f"sha256:{name}" if name in self.present else None


def test_docker_refuses_an_image_that_is_not_here_naming_it():
    topology = spec.load(EXAMPLE)
    with pytest.raises(PreflightError) as caught:
        DockerBackend(engine=Images(set())).require_images(topology)
    assert str(caught.value) == (f"{EXAMPLE}: nodes.notes.image: image 'own-service/notes:1' is not present locally "
                                 "(hoplab never pulls; docker build or docker load it first)")
    DockerBackend(engine=Images({"own-service/notes:1"})).require_images(topology)


@pytest.mark.skipif(not Engine().reachable(), reason="no Docker engine here")
def test_up_with_a_missing_image_exits_2_and_makes_nothing(tmp_path, capsys):
    data = example_data()
    data["nodes"]["notes"]["image"] = "hoplab-test/no-such-image:never"
    path = write(tmp_path, data)
    engine = Engine()
    assert cli.main(["up", "--backend", "docker", "--topology", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: nodes.notes.image: image 'hoplab-test/no-such-image:never' is not present locally" in err
    assert engine.containers("io.hoplab.lab=notesimg") == [] and engine.networks("io.hoplab.lab=notesimg") == []
    assert engine.image_id("hoplab-test/no-such-image:never") is None  # not pulled


def test_netns_refuses_image_nodes_naming_the_node_and_the_alternative(tmp_path, capsys):
    topology = spec.load(EXAMPLE)
    with pytest.raises(PreflightError) as caught:
        NetnsBackend().up(topology, Progress(quiet=True))
    message = str(caught.value)
    assert message.startswith(f"{EXAMPLE}: nodes.notes.image: node 'notes' runs image 'own-service/notes:1'")
    assert "service folder" in message and "service_dirs" in message and "--backend docker" in message
    assert cli.main(["up", "--backend", "netns", "--topology", str(EXAMPLE)]) == 2
    assert "nodes.notes.image" in capsys.readouterr().err
    assert not NetnsBackend().running("notesimg")


# ---------------------------------------------------------------- how the Docker backend sees one


class Containers:
    """The engine's answers about the lab's containers (state and health as `docker inspect`)."""

    def __init__(self, states: dict[str, tuple[str, str | None]]):
        self.info = {}
        for key, (status, health) in states.items():
            node, _, app = key.partition("-")
            labels = {"io.hoplab.lab": "notesimg", "io.hoplab.node": node, **({"io.hoplab.role": "app"} if app else {})}
            state = {"Status": status, "Pid": 100 + len(self.info), **({"Health": {"Status": health}} if health else {})}
            self.info[f"id-{key}"] = {"Id": f"id-{key}", "State": state, "Config": {"Labels": labels}}

    def containers(self, label: str) -> list[dict]:
        return [{"Id": i} for i in self.info]

    def inspect(self, container: str) -> dict:
        return self.info[container]


@pytest.mark.parametrize("sidecar, app, seen", [
    (("running", "healthy"), ("running", "starting"), ("running", "starting")),  # the image's health
    (("running", "healthy"), ("running", None), ("running", "healthy")),  # no health check: the sidecar's
    (("running", "healthy"), ("exited", "unhealthy"), ("exited", "unhealthy")),
    (("running", "healthy"), None, ("missing", "none")),
])
def test_an_image_nodes_state_is_both_containers(sidecar, app, seen):
    topology = spec.load(EXAMPLE)
    states = {"notes1": sidecar, **({"notes1-app": app} if app else {})}
    backend = DockerBackend(engine=Containers(states))
    status = {s.node: s for s in backend.status(topology, addresses=False)}["notes1"]
    assert (status.state, status.health) == seen
    assert list(backend.node_pids(topology)) == ["notes1"]  # the sidecar's process stands for the node


def test_exec_and_logs_go_to_the_image_hoplabs_tools_to_the_sidecar():
    topology = spec.load(EXAMPLE)
    assert DockerBackend._container(topology, "notes2", app=True) == "hoplab-notesimg-notes2-app"
    assert DockerBackend._container(topology, "notes2") == "hoplab-notesimg-notes2"
    assert DockerBackend._container(topology, "kv", app=True) == "hoplab-notesimg-kv"

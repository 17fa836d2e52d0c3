"""A Docker lab and a netns lab on the same host at the same time: each works, neither breaks
the other (bridge netfilter and Docker's FORWARD DROP policy apply to both). The second lab is
duo.yaml on the other backend (conftest.py); that taking it away leaves the default lab as it
was is test_second_topology.py's last word."""

import json
import subprocess

from helpers import hoplab


def visit(lab, client):
    return json.loads(lab.hoplab("visit", f"https://www.{lab.topology.domain.name}/order", "--from", client,
                                 "--json").stdout)


def test_both_backends_serve_page_loads_side_by_side(lab, duo):
    mine, theirs = visit(lab, lab.clients()[0]), visit(duo, duo.clients()[0])
    assert mine["status"] == theirs["status"] == 200
    assert mine["served_by"] in {n.name for n in lab.topology.nodes_of("web")}
    assert theirs["served_by"] in {n.name for n in duo.topology.nodes_of("web")}


def test_without_backend_each_lab_is_found_where_it_runs(lab, duo):
    for each in (lab, duo):
        data = json.loads(hoplab("status", "--json", "--topology", each.path).stdout)
        assert data["backend"] == each.backend
        assert [n["node"] for n in data["nodes"]] == list(each.topology.nodes)
        assert all(n["health"] == "healthy" for n in data["nodes"])


def test_the_netns_nodes_hold_no_mount_of_docker_or_of_a_namespace(lab, duo):
    """A netns node's mounts began as a copy of the host's: a Docker container's namespace file
    kept there would outlive the container, and after a restart its old veth would go on
    answering (with RSTs) for the container's address."""
    netns_lab = lab if lab.backend == "netns" else duo
    docker_up = bool(subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True,
                                    timeout=30).stdout.strip())
    for node in netns_lab.topology.nodes:
        table = netns_lab.exec(node, "findmnt", "-rn", "-o", "TARGET,FSTYPE").stdout.splitlines()
        kept = [line for line in table if line.endswith(" nsfs") or line.startswith(("/var/lib/docker/", "/run/docker/"))]
        assert kept == [], (node, kept)
    assert docker_up  # the Docker lab beside it was up, so there was something to leave out

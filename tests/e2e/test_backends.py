"""A Docker lab and a netns lab on the same host at the same time: each works, neither breaks
the other (bridge netfilter and Docker's FORWARD DROP policy apply to both), and taking one
away leaves the other as it was."""

import json
import subprocess

import pytest

from helpers import (DUO_TOPOLOGY, OTHER, concurrent_labs, hoplab, host_state, lab_leftovers, load_lab,
                     missing_prerequisite, suite_topology)


@pytest.fixture(scope="module")
def other(lab):
    """The second topology on the other backend, beside the default lab."""
    backend = OTHER[lab.backend]
    reason = missing_prerequisite(backend)
    if reason:
        pytest.skip(f"{backend} backend: {reason}")
    duo = load_lab(suite_topology(DUO_TOPOLOGY, lab.backend), backend)
    duo.hoplab("up", "--quiet")
    yield duo
    duo.hoplab("clean")


def visit(lab, client):
    return json.loads(lab.hoplab("visit", f"https://www.{lab.topology.domain.name}/order", "--from", client,
                                 "--json").stdout)


def test_both_backends_serve_page_loads_side_by_side(lab, other):
    mine, theirs = visit(lab, lab.clients()[0]), visit(other, other.clients()[0])
    assert mine["status"] == theirs["status"] == 200
    assert mine["served_by"] in {n.name for n in lab.topology.nodes_of("web")}
    assert theirs["served_by"] in {n.name for n in other.topology.nodes_of("web")}


def test_without_backend_each_lab_is_found_where_it_runs(lab, other):
    for each in (lab, other):
        data = json.loads(hoplab("status", "--json", "--topology", each.path).stdout)
        assert data["backend"] == each.backend
        assert [n["node"] for n in data["nodes"]] == list(each.topology.nodes)
        assert all(n["health"] == "healthy" for n in data["nodes"])


def test_the_netns_nodes_hold_no_mount_of_docker_or_of_a_namespace(lab, other):
    """A netns node's mounts began as a copy of the host's: a Docker container's namespace file
    kept there would outlive the container, and after a restart its old veth would go on
    answering (with RSTs) for the container's address. (It runs before the removal test below,
    which takes `other` down.)"""
    netns_lab = lab if lab.backend == "netns" else other
    docker_up = bool(subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True,
                                    timeout=30).stdout.strip())
    for node in netns_lab.topology.nodes:
        table = netns_lab.exec(node, "findmnt", "-rn", "-o", "TARGET,FSTYPE").stdout.splitlines()
        kept = [line for line in table if line.endswith(" nsfs") or line.startswith(("/var/lib/docker/", "/run/docker/"))]
        assert kept == [], (node, kept)
    assert docker_up  # the Docker lab beside it was up, so there was something to leave out


def lookalikes(lab) -> list[str]:
    """A veth pair named as the lab's own links are (`hv-<lab>-N` on netns, `hl-<lab>-…` as
    Docker's bridges), made by someone else: no hoplab mark."""
    prefix = "hv" if lab.backend == "netns" else "hl"
    names = [f"{prefix}-{lab.name}-98", f"{prefix}-{lab.name}-99"]
    subprocess.run(["ip", "link", "add", "name", names[0], "type", "veth", "peer", "name", names[1]],
                   check=True, timeout=30)
    return names


def test_removing_one_leaves_the_other_untouched(lab, other):
    others = {other.name} | concurrent_labs(lab.backend)
    before = host_state(exclude=others)
    fakes = lookalikes(other)
    try:
        removed = other.hoplab("down")
        survivors = [n for n in fakes if subprocess.run(["ip", "link", "show", "dev", n], capture_output=True,
                                                        timeout=30).returncode == 0]
    finally:
        subprocess.run(["ip", "link", "del", "dev", fakes[0]], capture_output=True, timeout=30)
    assert survivors == fakes, f"{other.name}'s removal deleted links it did not make:\n{removed.stderr}"
    assert "removed " in removed.stderr and "could not remove" not in removed.stderr
    assert not any(lab_leftovers(other.name).values())
    assert host_state(exclude=others) == before
    assert visit(lab, lab.clients()[0])["status"] == 200

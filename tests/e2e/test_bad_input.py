"""Bad topologies are refused before anything is created: exit 2, and the host's containers,
networks, volumes, firewall rules and links are exactly as they were."""

from pathlib import Path

from helpers import concurrent_labs, hoplab, host_state

INVALID = sorted((Path(__file__).parents[1] / "data" / "invalid").glob("*.yaml"))


def test_invalid_topologies_create_nothing(backend):
    before = host_state(exclude=concurrent_labs(backend))
    for path in INVALID:
        result = hoplab("up", "--topology", str(path), "--backend", backend, check=False)
        assert result.returncode == 2, f"{path.name}: exit {result.returncode}\n{result.stderr}"
        assert str(path) in result.stderr
    assert host_state(exclude=concurrent_labs(backend)) == before


def test_subnet_clashing_with_a_running_lab_is_refused(lab, tmp_path):
    # Valid on its own, but its subnets are the running default lab's: the host check refuses
    # it (the management subnet on both backends: the host has an address there).
    clash = tmp_path / "clash.yaml"
    clash.write_text(Path(lab.path).read_text().replace(f"name: {lab.name}", "name: clash"))
    before = host_state(exclude=concurrent_labs(lab.backend))
    result = hoplab("up", "--topology", str(clash), "--backend", lab.backend, check=False)
    assert result.returncode == 2
    assert f"{clash}: management.subnet: {lab.topology.management.subnet} overlaps" in result.stderr
    assert host_state(exclude=concurrent_labs(lab.backend)) == before

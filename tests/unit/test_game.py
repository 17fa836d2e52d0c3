"""The lab's online game (hoplab.node.game) on loopback, server and player as the lab runs them
(processes of their own), and `hoplab play`'s arguments: bad ones exit 2 naming the argument."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoplab import cli, spec
from hoplab.node.game import answer
from hoplab.play import parse_target

ROOT = Path(__file__).resolve().parents[2]
LAB = spec.load(ROOT / "topology" / "lab.yaml")
ENV = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server():
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, "-m", "hoplab.node.game", "serve", "--port", str(port)], env=ENV)
    time.sleep(0.3)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def player(port: int, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "hoplab.node.game", "play", "127.0.0.1", "--port", str(port),
                             *args], capture_output=True, text=True, timeout=30, env=ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_move_is_answered_with_the_state_and_the_address_the_server_saw(server):
    said = player(server, "--moves", "5", "--interval", "0.01", "--wait", "0.5")
    assert (said["sent"], said["answered"], said["lost"], said["lost_seqs"]) == (5, 5, 0, [])
    assert said["seen_as"] == said["local"], "on loopback there is no NAT: the server sees the player's own address"
    assert 0 < said["rtt_ms"]["min"] <= said["rtt_ms"]["median"] <= said["rtt_ms"]["max"]


def test_nothing_listening_is_a_refusal_and_every_move_is_lost():
    said = player(free_udp_port(), "--moves", "3", "--interval", "0.01", "--wait", "0.3")
    assert (said["answered"], said["lost"], said["rtt_ms"]) == (0, 3, None)
    assert said["refused"] >= 1, "the ICMP port unreachable was not seen"


def test_the_game_state_moves_each_player_and_refuses_what_is_not_a_move():
    positions = {}
    assert answer(b'{"seq": 1, "move": "up"}', ("198.51.100.1", 40000), positions, 1) == {
        "seq": 1, "tick": 1, "seen_as": "198.51.100.1:40000", "position": [0, 1], "players": 1}
    assert answer(b'{"seq": 2, "move": "left"}', ("198.51.100.1", 40000), positions, 2)["position"] == [-1, 1]
    assert answer(b'{"seq": 3, "move": "jump"}', ("198.51.100.1", 40000), positions, 3)["error"].startswith("not a move")
    assert answer(b"\xff", ("198.51.100.2", 1), positions, 4)["seq"] is None


@pytest.mark.parametrize("args, said", [
    (["udp://game.example.com"], "target: 'game.example.com' is not a name of the lab's domain"),
    (["https://www.example.test/"], "target: 'https://www.example.test/' is not udp://HOST[:PORT]"),
    (["udp://game.example.test:70000"], "target: port 70000 is outside 1..65535"),
    (["--moves", "0"], "--moves: 0 is outside 1..1000"),
    (["--interval", "-1"], "--interval: -1 is outside 0..5 s"),
    (["--wait", "0"], "--wait: 0 is outside (0, 10] s"),
    (["--from", "nosuch"], "--from: unknown node"),
])
def test_bad_play_arguments_exit_2(capsys, monkeypatch, args, said):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/hoplab-unit-tests.sock")
    assert cli.main(["play", "--backend", "docker", "--topology", str(ROOT / "topology" / "lab.yaml"), *args]) == 2
    assert said in capsys.readouterr().err


def test_the_default_target_is_the_games_port_on_the_lab_domain():
    assert parse_target("udp://game.example.test", LAB) == ("game.example.test", 7777)
    assert parse_target("udp://game.example.test:9000/", LAB) == ("game.example.test", 9000)


def test_the_supervisor_retries_a_taken_port_then_serves_and_ends_with_its_server(tmp_path):
    """The service's daemon: a server whose port is taken says EADDRINUSE and ends; the
    supervisor starts it again a second later, until the port is free; SIGTERM ends both."""
    port, pid_file = free_udp_port(), tmp_path / "server.pid"
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("0.0.0.0", port))
    supervisor = subprocess.Popen([sys.executable, "-m", "hoplab.node.game", "supervise", "--port", str(port),
                                   "--pid-file", str(pid_file)], env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        said = [supervisor.stderr.readline() for _ in range(2)]
        assert said[0].strip() == f"game: cannot bind UDP 0.0.0.0:{port}: Address already in use (EADDRINUSE)"
        assert "ended with status 1; starting it again in 1 s" in said[1]
        squatter.close()
        deadline = time.monotonic() + 10
        while (answered := player(port, "--moves", "1", "--wait", "0.3")["answered"]) == 0:
            assert time.monotonic() < deadline, "the server never took the freed port"
        server = int(pid_file.read_text())
        assert answered == 1 and Path(f"/proc/{server}").exists()
        supervisor.terminate()
        assert supervisor.wait(10) == 0
        assert not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text().split()[2]
        assert not pid_file.exists()
    finally:
        squatter.close()
        supervisor.kill()
        supervisor.wait(10)
        supervisor.stderr.close()

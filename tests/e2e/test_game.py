"""The online game over UDP: moves from the home's client through the NAT to the game server and
back; its trace shows the connectionless exchange and the NAT's UDP translation; under a
packet-loss fault, moves are lost and nobody sends them again, and the trace names the drops."""

from __future__ import annotations

import json

import pytest

from helpers import hoplab

pytestmark = pytest.mark.usefixtures("uplink_silent")  # the game stays in the lab: nothing on the host's uplink


def play(lab, *args: str, check: bool = True) -> tuple[dict, dict]:
    result = hoplab("play", "--json", "--trace", "--topology", lab.path, *args, check=check)
    said = json.loads(result.stdout)
    return said["play"], said["trace"]


def datagrams(trace: dict, node: str, direction: str, port: str = ":7777") -> list[dict]:
    return [h for h in trace["hops"] if h["node"] == node and h["direction"] == direction and h["proto"] == "udp"
            and (h["dst"].endswith(port) or h["src"].endswith(port))]


def test_moves_cross_the_nat_and_every_one_is_answered(lab):
    game, trace = play(lab, "--moves", "5", "--interval", "0.02")
    client = lab.clients()[0]
    wan, game_ip = lab.address("router", "internet"), lab.address("game", "internet")
    assert (game["sent"], game["answered"], game["lost"]) == (5, 5, 0), game
    assert game["server"] == f"{game_ip}:7777"
    assert game["local"].startswith(f"{lab.lease_address(client, 'home')}:")
    # the server saw the router's address, the NAT's rewrite, on the player's own port
    assert game["seen_as"] == f"{wan}:{game['local'].split(':')[1]}", game
    # the trace: each move out of the client, through the router's NAT, into the game server
    assert len(datagrams(trace, client, "out")) == 5 and len(datagrams(trace, "game", "in")) == 5
    nat = [h for h in datagrams(trace, "router", "out") if "translated" in h and h["dst"] == f"{game_ip}:7777"]
    assert nat and nat[0]["translated"]["before"]["src"] == game["local"]
    assert nat[0]["translated"]["after"]["src"] == game["seen_as"]
    assert "datagrams" in [s["name"] for s in trace["stages"]]
    # the topology's impairment of game:internet (20 ms ± 2, through the NFQUEUE delayer): each
    # answer leaves the game 20 ms after its move came in
    # answer leaves the game no sooner than 20 ms - 2 after its move came in (later, when the
    # delayer waits for the CPU on a busy host: `make bench-impair` has the accuracy)
    impairment = lab.topology.nodes["game"].interfaces[0].impairment
    soonest = impairment.delay_ms - impairment.jitter_ms - 0.5
    came, left = datagrams(trace, "game", "in"), datagrams(trace, "game", "out")
    held = sorted((o["ts_ns"] - i["ts_ns"]) / 1e6 for i, o in zip(came, left))
    assert len(held) == 5 and held[0] >= soonest and held[2] <= impairment.delay_ms + 15, held
    assert game["rtt_ms"]["min"] >= soonest, game["rtt_ms"]


def test_a_lossy_link_loses_moves_that_nobody_sends_again(lab):
    hoplab("chaos", "inject", "packet-loss", "--target", "game:internet", "--param", "percent=30", "--duration", "60",
           "--detach", "--topology", lab.path)
    try:
        game, trace = play(lab, "--moves", "20", "--interval", "0.02", check=False)
    finally:
        hoplab("chaos", "halt", "--topology", lab.path)
    client = lab.clients()[0]
    assert game["sent"] == 20 and 0 < game["answered"] < 20 and game["lost"] == 20 - game["answered"], game
    # every move left the client once: UDP has no retransmission
    assert len(datagrams(trace, client, "out")) == 20
    drops = [h for h in trace["hops"] if h["direction"] == "drop" and h["node"] == "game"]
    assert drops and all("NETFILTER_DROP" in h["summary"] for h in drops), trace["stages"]

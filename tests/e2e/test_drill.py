"""Every drill as a student meets it: `start` tells only the symptom, `check` fails, the
documented fix (run with `hoplab exec`, as a user would) repairs it, and `check` passes; the
fault's undo then leaves nothing behind. The socket-error drills' error is named by `visit`,
with the packet behind it; the server's (EADDRINUSE) by `play` with the kernel's refusal of its
bind(), and `diagnose` blames the game, showing who holds its port."""

from __future__ import annotations

import json
import time

import pytest

from helpers import hoplab
from hoplab.chaos.faults import CATALOGUE
from hoplab.chaos.journal import Chaos
from hoplab.diagnose import game_check, run_checks
from hoplab.drill import DRILLS, fill, roles

pytestmark = pytest.mark.usefixtures("uplink_silent")  # not one packet of the lab's on the host's uplink


def drill(lab, *args, check=False):
    return hoplab("drill", *args, "--topology", lab.path, check=check)


@pytest.fixture(autouse=True)
def no_drill_left(lab):
    yield
    drill(lab, "give-up")
    Chaos(lab.driver, lab.topology).halt()


# The socket-error drills: what connect() returned, as `visit` names it, and a word
# of the packet the visit's trace holds behind it (the RST, the router's ICMP message, the
# kernel's drop of the SYN).
# The visit's bound: the router gives up on an address after 3 s of unanswered ARP requests.
SOCKET_ERRORS = {"nobody-home": ("connection refused (ECONNREFUSED)", "RST", 3),
                 "nowhere-to-go": ("host unreachable (EHOSTUNREACH)", "ICMP", 6),
                 "silent-edge": ("timed out (ETIMEDOUT)", "NETFILTER_DROP", 3)}


def assert_the_socket_error_is_named(lab, name):
    failure, packet, seconds = SOCKET_ERRORS[name]
    result = hoplab("visit", f"{lab.www}/", "--trace", "--json", "--max-time", str(seconds), "--topology", lab.path,
                    check=False)
    visit = json.loads(result.stdout)["visit"]
    assert result.returncode == 1 and visit["failure"] == failure, visit
    assert packet in visit["cause"], visit


def assert_the_failed_bind_is_named(lab):
    """port-taken: the player's moves are lost, and both the traced game and diagnose name the
    kernel's refusal of the real server's bind() (EADDRINUSE), at the game's node."""
    result = hoplab("play", "--json", "--trace", "--moves", "3", "--wait", "1.5", "--topology", lab.path, check=False)
    said = json.loads(result.stdout)
    game, trace = said["play"], said["trace"]
    assert result.returncode == 1 and game["answered"] == 0 and game["lost"] == 3, game
    assert "EADDRINUSE" in game["cause"] and game["cause"].split()[2] == "game", game["cause"]
    refused = [h for h in trace["hops"] if h["direction"] == "bind"]
    assert refused and all(h["node"] == "game" and h["src"] == "0.0.0.0:7777" for h in refused), refused
    # diagnose's game hop (the last of its walk, which test_diagnose follows) fails and shows who
    # holds the port; the kernel's refusals, which its re-check cites, are the trace's above
    (outcome,) = run_checks(lab.driver, lab.topology, [game_check(lab.topology, lab.clients()[0])])
    assert not outcome.ok and "no move was answered" in outcome.reason, outcome
    assert "held by" in outcome.evidence() and "python3" in outcome.evidence(), outcome.evidence()  # the squatter


@pytest.mark.parametrize("name", list(DRILLS))
def test_drill_fails_until_the_documented_fix_then_passes(lab, name):
    spec = DRILLS[name]
    values = roles(lab.topology, "client")
    started = drill(lab, "start", name, "--duration", "120", check=True)
    assert spec.fault not in started.stdout and CATALOGUE[spec.fault].description not in started.stdout
    assert fill(spec.symptom, values) in started.stdout
    first = drill(lab, "check")
    assert first.returncode == 1 and "still broken" in first.stdout, first.stdout + first.stderr
    if name in SOCKET_ERRORS:
        assert_the_socket_error_is_named(lab, name)
    if name == "port-taken":
        assert_the_failed_bind_is_named(lab)
    for node, script in spec.fix_steps:
        lab.sh(fill(node, values), fill(script, values))
    deadline = time.monotonic() + 20
    while (result := drill(lab, "check")).returncode != 0:
        assert time.monotonic() < deadline, f"{name}: still broken after the fix:\n{result.stdout}{result.stderr}"
        time.sleep(0.1)
    assert "solved" in result.stdout
    last = Chaos(lab.driver, lab.topology).entries()[-1]
    assert last.fault == spec.fault and last.state == "reverted", last
    assert "drill solved" in last.notes and not [n for n in last.notes if "failed" in n], last.notes


def test_hints_then_give_up_shows_fault_and_fix_and_reverts(lab):
    drill(lab, "start", "https-refused", "--duration", "60", check=True)
    assert drill(lab, "hint").stdout.count("hint ") == 1
    assert drill(lab, "hint").stdout.count("hint ") == 2
    given = drill(lab, "give-up", check=True).stdout
    assert "port-block" in given and "iptables -D INPUT 1" in given
    assert drill(lab, "check").returncode == 2  # nothing running any more
    assert lab.exec("client", "curl", "-sS", "-o", "/dev/null", "--max-time", "3",
                    f"{lab.www}/edge-health", check=False).returncode == 0


def test_bad_drill_requests_exit_2(lab):
    for args, word in ((["start", "nosuch"], "NAME"), (["hint"], "no drill"), (["check"], "no drill")):
        result = drill(lab, *args)
        assert result.returncode == 2 and word in result.stderr, result.stderr

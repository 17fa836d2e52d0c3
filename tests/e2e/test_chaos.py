"""Every fault: inject -> the symptom a user would see -> halt -> the lab works again and the
node's network state is exactly what it was. Plus deadlines, and a killed CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from helpers import HOPLAB, hoplab

WWW = "https://www.example.test"


def node_state(lab, node):
    script = "iptables -w -S; iptables -w -t nat -S; tc qdisc show; ip route; ip -br link"
    return lab.sh(node, script).stdout


def fetch(lab, path="/", seconds=3):
    """(exit status, X-Served-By) of one request from the client."""
    result = lab.exec("client", "curl", "-sS", "-o", "/dev/null", "--max-time", str(seconds), "-w",
                      "%header{x-served-by}", f"{WWW}{path}", check=False)
    return result.returncode, result.stdout.strip()


def inject(lab, fault, target, *params, duration=60, check=True):
    args = ["chaos", "inject", fault, "--target", target, "--duration", str(duration), "--detach",
            "--topology", lab.path]
    for param in params:
        args += ["--param", param]
    return hoplab(*args, check=check)


def dns_fails(lab):
    return lab.exec("client", "dig", "+time=1", "+tries=1", "www.example.test", check=False).returncode != 0


CASES = {
    "process-stop": ("dns", (), dns_fails),
    "link-down": ("cache:internet", (), lambda lab: fetch(lab)[0] != 0),
    "packet-loss": ("client:home", ("percent=100",), lambda lab: lab.exec(
        "client", "ping", "-c", "2", "-W", "1", "192.168.50.1", check=False).returncode != 0),
    "rate-limit": ("cache:internet", ("rate=1kbit",), lambda lab: fetch(lab, "/", 2)[0] != 0),
    "port-block": ("cache", ("port=443",), lambda lab: fetch(lab)[0] != 0),
    "ip-forward-off": ("router", (), dns_fails),
    "masquerade-removed": ("router", (), dns_fails),
    "lb-backend-down": ("lb", ("server=web1",),
                        lambda lab: {fetch(lab, "/order")[1] for _ in range(8)} == {"web2"}),
}


@pytest.fixture(autouse=True)
def no_fault_left(lab):
    yield
    hoplab("chaos", "halt", "--topology", lab.path)


@pytest.mark.parametrize("fault", list(CASES))
def test_fault_shows_its_symptom_and_halt_puts_everything_back(lab, fault):
    target, params, symptom = CASES[fault]
    node = target.split(":")[0]
    assert fetch(lab)[0] == 0 and not dns_fails(lab)
    before = node_state(lab, node)
    inject(lab, fault, target, *params)
    assert symptom(lab), f"{fault}: no symptom"
    assert fault in hoplab("chaos", "status", "--topology", lab.path).stdout
    hoplab("chaos", "halt", "--topology", lab.path)
    assert node_state(lab, node) == before
    deadline = time.monotonic() + 30
    while fetch(lab)[0] != 0 or dns_fails(lab):
        assert time.monotonic() < deadline, f"{fault}: the lab did not recover"
        time.sleep(1)
    assert all(s["health"] == "healthy" for s in lab.status().values())


def test_delay_needs_netem_and_says_so(lab):
    has_netem = lab.exec("cache", "sh", "-c", "tc qdisc add dev lo root netem delay 1ms && tc qdisc del dev lo root",
                         check=False).returncode == 0
    before = node_state(lab, "cache")
    result = inject(lab, "delay", "cache:internet", check=False)
    if has_netem:
        assert result.returncode == 0
    else:
        assert result.returncode == 2 and "not supported on this kernel" in result.stderr
        assert node_state(lab, "cache") == before
        delays = [line for line in hoplab("chaos", "status", "--topology", lab.path).stdout.splitlines()
                  if " delay " in line]
        assert delays and all("s left" not in line and "failed" in line for line in delays)


def test_bad_fault_requests_exit_2(lab):
    for args, word in ((["nosuch", "--target", "router"], "FAULT"), (["ip-forward-off", "--target", "dns"], "router"),
                       (["link-down", "--target", "router:nowhere"], "IFACE"),
                       (["port-block", "--target", "cache", "--param", "port=99999"], "port"),
                       (["link-down", "--target", "cache:internet", "--duration", "100000"], "--duration")):
        result = hoplab("chaos", "inject", *args, "--detach", "--topology", lab.path, check=False)
        assert result.returncode == 2 and word in result.stderr, result.stderr


def test_a_fault_ends_at_its_deadline(lab):
    inject(lab, "port-block", "cache", "port=443", duration=3)
    assert fetch(lab)[0] != 0
    time.sleep(6)  # the reaper reverts it
    assert fetch(lab)[0] == 0
    assert "reverted" in hoplab("chaos", "status", "--topology", lab.path).stdout


def test_killed_cli_then_status_reverts(lab):
    before = node_state(lab, "cache")
    proc = subprocess.Popen([*HOPLAB, "chaos", "inject", "port-block", "--target", "cache", "--param", "port=443",
                             "--duration", "3", "--topology", lab.path], stdout=subprocess.PIPE, text=True)
    assert "injected" in proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the reaper too: only the journal and the next command are left to revert it
    reaper = f"chaos reap --topology {lab.path}"
    for pid in subprocess.run(["pgrep", "-f", reaper], capture_output=True, text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    assert fetch(lab)[0] != 0
    time.sleep(4)
    status = hoplab("status", "--topology", lab.path)
    assert "reverted expired fault" in status.stderr
    assert node_state(lab, "cache") == before and fetch(lab)[0] == 0

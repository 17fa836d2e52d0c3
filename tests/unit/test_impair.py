"""Link impairments (hoplab.node.impair) on a real kernel: two network namespaces joined by a
veth pair, one end impaired as a node's runtime or a `delay` fault impairs it. This kernel has
no sch_netem, so delay goes through the NFQUEUE delayer; loss through iptables' statistic."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from veth import joined

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def link(tmp_path):
    """Namespaces a (10.199.4.1, its end `veth0` impaired) and b (10.199.4.2); yields `impair`
    (hoplab.node.impair run in a, as a node runs it), `ping` (a to b), a's iptables `rules` and
    `veth0`'s `qdiscs` as text, and the run folder."""
    why = ("needs root" if os.geteuid() else
           next((f"needs {tool}" for tool in ("ip", "iptables", "ping") if not shutil.which(tool)), None))
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        why = why or "needs NetfilterQueue (scripts/setup-venv installs it)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"impairments cannot be tried here: {why}")
        pytest.skip(why)
    env = {**os.environ, "HOPLAB_RUN_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    with joined("im", "10.199.4") as (a, _):
        # conntrack on, as in every lab node (NAT, stateful firewalls): a namespace without a rule
        # that uses it has no conntrack hooks at all
        subprocess.run(["ip", "netns", "exec", a, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate",
                        "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT"], check=True, capture_output=True, timeout=10)

        def impair(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["ip", "netns", "exec", a, sys.executable, "-m", "hoplab.node.impair", *args],
                                  capture_output=True, text=True, timeout=30, env=env)

        def ping(count: int = 10, interval: str = "0.05", wait: str = "1") -> tuple[int, float | None]:
            """(answers, average round trip in ms) from a to b."""
            said = subprocess.run(["ip", "netns", "exec", a, "ping", "-q", "-c", str(count), "-i", interval, "-W", wait,
                                   "10.199.4.2"], capture_output=True, text=True, timeout=30).stdout
            received = int(re.search(r"(\d+) received", said)[1])
            average = re.search(r"= [\d.]+/([\d.]+)/", said)
            return received, float(average[1]) if average else None

        def rules() -> str:
            return subprocess.run(["ip", "netns", "exec", a, "sh", "-c", "iptables -t raw -S; iptables -t mangle -S"],
                                  capture_output=True, text=True, timeout=10).stdout

        def qdiscs() -> str:
            return subprocess.run(["ip", "netns", "exec", a, "tc", "qdisc", "show", "dev", "veth0"],
                                  capture_output=True, text=True, timeout=10).stdout

        try:
            yield impair, ping, rules, qdiscs, tmp_path
        finally:  # the delayers first: they are processes, not part of the namespaces
            impair("clear", "veth0")
            impair("clear", "veth0", "--owner", "chaos")


def test_a_delay_adds_its_milliseconds_to_the_round_trip_and_clearing_takes_it_away(link):
    impair, ping, rules, _, run_dir = link
    _, before = ping()
    applied = impair("apply", "veth0", "--delay-ms", "50")
    assert applied.returncode == 0, applied.stderr
    assert "delays 50 ms" in applied.stdout and "NFQUEUE" in applied.stdout  # no sch_netem on this kernel
    received, delayed = ping()
    print(f"before {before} ms, delayed {delayed} ms")
    assert received == 10 and 45 <= delayed - before <= 55
    assert "hoplab-impairment" in rules()
    # a new flow's packets held all at once (a ping every 10 ms behind 50 ms): queued before
    # conntrack, none clashes with the entry the first one confirms; every one comes back
    assert ping(20, "0.01")[0] == 20
    (pid_file,) = run_dir.glob("delayer-topology-veth0.pid")
    delayer = int(pid_file.read_text())
    assert impair("clear", "veth0").returncode == 0
    received, after = ping()
    assert received == 10 and after < before + 5
    assert "NFQUEUE" not in rules() and not pid_file.exists()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{delayer}").exists() and "Z" not in Path(f"/proc/{delayer}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the delayer outlived its clear"
        time.sleep(0.05)


def test_loss_drops_at_random_and_each_owner_clears_only_its_own(link):
    impair, ping, rules, qdiscs, _ = link
    assert impair("apply", "veth0", "--loss-percent", "100", "--rate", "10mbit").returncode == 0
    assert impair("apply", "veth0", "--delay-ms", "20", "--owner", "chaos", "--seconds", "30").returncode == 0
    assert ping(3, wait="0.3")[0] == 0
    assert impair("clear", "veth0", "--owner", "chaos").returncode == 0
    assert "statistic" in rules() and "hoplab-chaos" not in rules()  # the topology's loss stays
    assert "tbf" in qdiscs()  # and its rate
    assert ping(3, wait="0.3")[0] == 0
    assert impair("clear", "veth0").returncode == 0
    assert ping(5)[0] == 5 and "tbf" not in qdiscs()


def test_a_bounded_delayer_ends_by_itself_and_its_packets_pass_again(link):
    impair, ping, rules, _, run_dir = link
    assert impair("apply", "veth0", "--delay-ms", "30", "--seconds", "1", "--owner", "chaos").returncode == 0
    delayer = int(next(run_dir.glob("delayer-chaos-veth0.pid")).read_text())
    time.sleep(1.5)
    assert not Path(f"/proc/{delayer}").exists() or "Z" in Path(f"/proc/{delayer}/stat").read_text().split()[2]
    received, rtt = ping(5)
    assert received == 5 and rtt < 5  # the rule is still there: --queue-bypass lets packets through undelayed


def test_bad_values_exit_2_and_change_nothing(link):
    impair, ping, rules, _, _ = link
    for args in (["--delay-ms", "-1"], ["--delay-ms", "5", "--jitter-ms", "6"], ["--loss-percent", "101"]):
        said = impair("apply", "veth0", *args)
        assert said.returncode == 2 and "bad impairment" in said.stderr
    assert "hoplab" not in rules()

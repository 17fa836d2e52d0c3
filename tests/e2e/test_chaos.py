"""Every fault: inject -> the symptom a user would see -> `hoplab diagnose` names the hop ->
halt -> the lab works again and the node's state is exactly what it was. Plus deadlines, and a
killed CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import time

import pytest

from helpers import HOPLAB, hoplab, hoplab_process, quick_loads
from hoplab.chaos.journal import Chaos
from hoplab.diagnose import diagnose as run_diagnose

RUN = "/run/hoplab"
pytestmark = pytest.mark.usefixtures("uplink_silent")  # not one packet of the lab's on the host's uplink


def node_state(lab, node):
    """What a fault may change in a node, and what its revert must put back."""
    script = ("iptables -w -S; iptables -w -t nat -S; tc qdisc show; ip route; ip -br link | sed 's/@if[0-9]*//' | sort; "
              # sorted by name: a restarted container may get its interfaces in another order
              "for i in $(ls /sys/class/net | sort); do echo $i mtu $(cat /sys/class/net/$i/mtu); done; "
              f"find {RUN} -maxdepth 2 \\( -name '*chaos*' -o -name edge.d \\); "
              f"cat {RUN}/bind/db.* {RUN}/bind/named.conf {RUN}/dhcp-options {RUN}/dhcp-hosts /etc/postfix/main.cf "
              "2>/dev/null | md5sum; "
              # stopped processes of the service (its own tree: a namespace sees the host's processes)
              f"ps -o stat= -p $(cat {RUN}/service.pid) --ppid $(cat {RUN}/service.pid) | grep -c '^T' || true; "
              # chaos's relays in this node (a netns node sees the host's processes: its own netns only);
              # '[s]' keeps the pattern from matching this very shell and its subshells
              "for p in $(pgrep -f '[s]ocket, sys, threading'); do "
              "[ \"$(readlink /proc/$p/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ] && echo $p; done | wc -l")
    service = lab.topology.nodes[node].service
    if service == "db":
        script += "; psql -X -U postgres -d postgres -Atc \"SELECT rolconnlimit FROM pg_roles WHERE rolname='shop_app'\""
    if service == "lb":
        script += "; echo 'show stat' | socat stdio /run/haproxy/admin.sock | cut -d, -f2,18 | grep -v BACKEND"
    # Docker's embedded-resolver NAT rules pick new ports whenever a container starts (a kill's revert)
    return "\n".join(line for line in lab.sh(node, script).stdout.splitlines() if "127.0.0.11" not in line)


def fetch(lab, path="/", seconds=3):
    """(curl's exit status, HTTP status, X-Served-By, X-Cache) of one request from the client."""
    result = lab.exec("client", "curl", "-sS", "-o", "/dev/null", "--max-time", str(seconds), "-w",
                      "%{http_code} %header{x-served-by} %header{x-cache}", f"{lab.www}{path}", check=False)
    code, served_by, cache = (result.stdout.split() + ["", "", ""])[:3]
    return result.returncode, code, served_by, cache


def page_fails(lab, path="/", seconds=3):
    return fetch(lab, path, seconds)[1] != "200"


def dig(lab, server=None):
    return lab.exec("client", "dig", "+time=2", "+tries=1", f"@{server or lab.topology.dns_address}",
                    f"www.{lab.topology.domain.name}", check=False).stdout


def dns_fails(lab):
    return lab.exec("client", "dig", "+time=1", "+tries=1", f"www.{lab.topology.domain.name}",
                    check=False).returncode != 0


def smtp_rcpt(lab):
    domain = lab.topology.domain.name
    code = (f"import smtplib; s = smtplib.SMTP('{lab.address('mail', 'origin')}', 25, timeout=3); "
            f"s.ehlo('t.{domain}'); s.mail('shop@{domain}'); print(s.rcpt('buyer@{domain}')[0]); s.quit()")
    return lab.exec("web1", "python3", "-c", code, check=False).stdout.strip()


def chaos(lab):
    return Chaos(lab.driver, lab.topology)


def inject(lab, fault, target, *params, duration=60):
    """A fault, journalled as `hoplab chaos inject` journals it. No reaper: each test halts its
    fault (and `no_fault_left` after it); the deadline and its reaper have tests of their own."""
    return chaos(lab).inject(fault, target, duration, dict(p.split("=", 1) for p in params))


def diagnose(lab):
    report = run_diagnose(lab.driver, lab.topology, lab.clients()[0], kernel=False)  # the kernel's view: below
    return (0 if report.broken is None else 1), report.to_json()


def last_entry(lab):
    return chaos(lab).entries()[-1]


def eventually(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def gateway(lab):
    return lab.address("router", "home")


# fault: (target, params, the symptom a user sees, the hop diagnose must name)
CASES = {
    "process-stop": ("dns", (), dns_fails, "dns"),
    "process-pause": ("db", (), lambda lab: fetch(lab, "/order")[1] != "200", "db"),
    "process-kill": ("web1", (), lambda lab: lab.status()["web1"]["state"] != "running", "web1"),
    "link-down": ("cache:internet", (), lambda lab: fetch(lab)[0] != 0, "edge"),
    "packet-loss": ("client:home", ("percent=100",), lambda lab: lab.exec(
        "client", "ping", "-c", "2", "-W", "1", gateway(lab), check=False).returncode != 0, "gateway"),
    "rate-limit": ("cache:internet", ("rate=1kbit",), lambda lab: page_fails(lab, "/", 2), "edge"),
    "port-block": ("cache", ("port=443",), lambda lab: fetch(lab)[0] == 7, "edge"),
    "partition-one-way": ("lb", ("peer=web1",), lambda lab: lab.exec(
        "lb", "nc", "-z", "-w", "1", lab.address("web1", "origin"), "8080", check=False).returncode != 0
        and not page_fails(lab, "/order"), "web1"),
    "partition-two-way": ("cache", ("peer=lb",), lambda lab: page_fails(lab, "/order"), "lb"),
    "ip-forward-off": ("router", (), dns_fails, "nat"),
    "masquerade-removed": ("router", (), dns_fails, "nat"),
    "wrong-default-route": ("client:home", (), lambda lab: lab.default_gateway("client") != gateway(lab)
                            and dns_fails(lab), "gateway"),
    "mtu-blackhole": ("router:home", (), lambda lab: not page_fails(lab, "/edge-health") and page_fails(lab, "/"),
                      "path-mtu"),
    "dns-nxdomain": ("dns", (), lambda lab: "status: NXDOMAIN" in dig(lab), "dns"),
    "dns-servfail": ("dns", (), lambda lab: "status: SERVFAIL" in dig(lab), "dns"),
    "dns-wrong-a": ("dns", (), lambda lab: str(lab.topology.domain.records["www"]) not in dig(lab)
                    and "NOERROR" in dig(lab), "dns"),
    "dns-slow": ("dns", (), lambda lab: int(re.search(r"Query time: (\d+)", dig(lab))[1]) >= 600, "dns"),
    "dhcp-pool-exhausted": ("dhcp", (), lambda lab: lab.exec("client", "ls", f"{RUN}/lease-home",
                                                             check=False).returncode != 0, "lease"),
    "dhcp-wrong-gateway": ("dhcp", (), lambda lab: lab.default_gateway("client") == lab.address("dhcp", "home"),
                           "lease"),
    "dhcp-wrong-dns": ("dhcp", (), lambda lab: lab.nameservers("client") == [gateway(lab)], "lease"),
    "lb-backend-down": ("lb", ("server=web1",),
                        lambda lab: {fetch(lab, "/order")[2] for _ in range(8)} == {"web2"}, "lb"),
    "stale-cache": ("cache", (), lambda lab: [fetch(lab, "/order")[3] for _ in range(2)][-1] == "HIT", "cache"),
    "edge-rate-limit": ("cache", (), lambda lab: ["429", "1"] in quick_loads(lab, "client", 10), "edge"),
    "db-connection-limit": ("db", (), lambda lab: fetch(lab, "/order")[1] == "503", "db"),
    "smtp-refuse": ("mail", (), lambda lab: smtp_rcpt(lab) == "554", "mail"),
}


def lab_works(lab):
    return fetch(lab, "/order")[1] == "200" and not dns_fails(lab) and smtp_rcpt(lab) == "250"


@pytest.fixture(autouse=True)
def no_fault_left(lab):
    yield
    chaos(lab).halt()


def test_every_fault_has_a_case(lab):
    from hoplab.chaos.faults import CATALOGUE

    # port-squat: its drill (port-taken, test_drill) injects it, sees the symptom, diagnose and the
    # kernel name it, and the fix and undo put the game back
    assert set(CASES) | {"delay", "port-squat"} == set(CATALOGUE)


@pytest.mark.parametrize("fault", list(CASES))
def test_fault_shows_its_symptom_diagnose_names_the_hop_and_halt_puts_everything_back(lab, fault):
    target, params, symptom, hop = CASES[fault]
    node = target.split(":")[0]
    assert eventually(lambda: fetch(lab, "/order")[1] == "200"), "the lab is not healthy before the fault"
    before = node_state(lab, node)
    inject(lab, fault, target, *params)
    assert eventually(lambda: symptom(lab), 5), f"{fault}: no symptom"
    status, report = diagnose(lab)
    assert status == 1 and report["broken_hop"] == hop, f"{fault}: diagnose named {report['broken_hop']}: {report}"
    assert report["evidence"] and report["reason"]
    chaos(lab).halt()
    assert eventually(lambda: lab_works(lab), 30), f"{fault}: the lab did not recover"
    # health checks (the balancer's rise) may take a second to agree
    assert eventually(lambda: node_state(lab, node) == before, 10), (before, node_state(lab, node))
    assert eventually(lab.healthy, 10), lab.status()
    last = last_entry(lab)
    assert last.fault == fault and last.state == "reverted", last
    assert not [note for note in last.notes if "undo step failed" in note], last.notes


def ping_ms(lab, address: str) -> float:
    """The median of the client's round trips to `address` over 20 pings, in ms."""
    said = lab.exec("client", "ping", "-n", "-c", "20", "-i", "0.05", "-W", "1", address).stdout
    return statistics.median(float(ms) for ms in re.findall(r"time=([\d.]+) ms", said))


def test_a_delay_adds_its_milliseconds_to_the_clients_ping_and_halt_takes_them_away(lab):
    # netem where the kernel has it, else the NFQUEUE delayer: 50 ms either way, never less
    # (more when the delayer waits for the CPU on a busy host: `make bench-impair` has the accuracy)
    before = ping_ms(lab, gateway(lab))
    inject(lab, "delay", "client:home", "ms=50", "jitter_ms=0")
    delayed = ping_ms(lab, gateway(lab))
    chaos(lab).halt()
    after = ping_ms(lab, gateway(lab))
    print(f"ping to the router: {before:.3f} ms, delayed {delayed:.3f} ms, after {after:.3f} ms")
    assert 49.5 <= delayed - before <= 60 and after < before + 5
    last = last_entry(lab)
    assert last.fault == "delay" and last.state == "reverted", last


def test_bad_fault_requests_exit_2(lab):
    for args, word in ((["nosuch", "--target", "router"], "FAULT"), (["ip-forward-off", "--target", "dns"], "router"),
                       (["link-down", "--target", "router:nowhere"], "IFACE"),
                       (["port-block", "--target", "cache", "--param", "port=99999"], "port"),
                       (["link-down", "--target", "cache:internet", "--duration", "100000"], "--duration")):
        result = hoplab("chaos", "inject", *args, "--detach", "--topology", lab.path, check=False)
        assert result.returncode == 2 and word in result.stderr, result.stderr


PWNED = "/tmp/hoplab-e2e-pwned"  # what a hostile payload would create, in the node or on the host


@pytest.mark.parametrize("fault, target, param", [
    ("rate-limit", "cache:internet", f"rate=1kbit; touch {PWNED}"),
    ("wrong-default-route", "client:home", f"via=192.168.50.77 dev home; touch {PWNED}"),
    ("wrong-default-route", "client:home", f"via=$(touch {PWNED})"),
    ("dns-wrong-a", "dns", f"address=`touch {PWNED}`"),
    ("lb-backend-down", "lb", f"server=web1\ntouch {PWNED}"),
    ("db-connection-limit", "db", f"role=shop_app CONNECTION LIMIT 0; -- $(touch {PWNED})"),
    ("delay", "cache:internet", "ms=-o"),
    ("packet-loss", "client:home", "percent=1e3"),
])
def test_hostile_parameters_on_a_real_lab_are_refused_and_nothing_runs(lab, fault, target, param):
    node = target.partition(":")[0]
    entries = len(chaos(lab).entries())
    result = lab.hoplab("chaos", "inject", fault, "--target", target, "--param", param, "--detach", check=False)
    key = param.split("=", 1)[0]
    assert result.returncode == 2 and f"--param {key}:" in result.stderr, result.stderr
    assert len(chaos(lab).entries()) == entries, "a journal entry was written"
    assert lab.exec(node, "test", "-e", PWNED, check=False).returncode == 1, f"{PWNED} was made in {node}"
    assert not os.path.exists(PWNED), f"{PWNED} was made on the host"


def test_a_fault_ends_at_its_deadline(lab):
    hoplab("chaos", "inject", "port-block", "--target", "cache", "--param", "port=443", "--duration", "3",
           "--detach", "--topology", lab.path)
    assert fetch(lab)[0] != 0
    entry = last_entry(lab)
    # the reaper reverts it at its deadline, by itself
    assert eventually(lambda: last_entry(lab).state == "reverted", 15), last_entry(lab)
    assert time.time() >= entry.deadline
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
    deadline = last_entry(lab).deadline
    time.sleep(max(0.0, deadline - time.time()) + 0.1)  # the fault's own deadline, nothing more
    assert last_entry(lab).state == "active", "something other than the next command reverted it"
    status = hoplab_process("status", "--topology", lab.path)  # the next command a user runs
    assert "reverted expired fault" in status.stderr
    assert node_state(lab, "cache") == before and fetch(lab)[0] == 0


def test_a_partition_shows_the_kernels_drops_in_the_trace_and_diagnose_cites_them(lab):
    # cache <-> lb cut by a firewall rule: the kernel says which rule dropped what, and where.
    inject(lab, "partition-two-way", "cache", "peer=lb")
    result = hoplab("visit", f"{lab.www}/order", "--trace", "--json", "--max-time", "6", "--topology", lab.path,
                    check=False)
    visit, trace = json.loads(result.stdout)["visit"], json.loads(result.stdout)["trace"]
    # The client got the edge's 504 (nginx gave up connecting), and the visit names the packet
    # that carried it; or, when the edge sent the request on a connection it already held to the
    # balancer, the client timed out, and the visit names the kernel's drop at the edge.
    if visit["failure"] == "HTTP error 504":
        assert "cache:internet out" in visit["cause"] and "decrypted: HTTP 504" in visit["cause"], visit
    else:
        assert visit["failure"] == "timed out (ETIMEDOUT)", visit
        assert visit["cause"].split()[2:4] == ["cache", "drop"] and "NETFILTER_DROP" in visit["cause"], visit
    assert trace["kernel_view"] == "on", trace["kernel_view"]
    drops = [h for h in trace["hops"] if h["direction"] == "drop"]
    lb = lab.address("lb", "origin")
    firewall = [h for h in drops if h["keys"]["drop_reason"] == "NETFILTER_DROP" and h["dst"].startswith(lb)]
    assert firewall and firewall[0]["node"] == "cache" and "firewall" in firewall[0]["summary"], drops
    assert "drop" in [s["name"] for s in trace["stages"]]
    diagnosed = json.loads(hoplab("diagnose", "--json", "--topology", lab.path, check=False).stdout)
    assert diagnosed["broken_hop"] == "lb" and diagnosed["kernel_view"] == "on"
    assert any("NETFILTER_DROP" in line and "at cache" in line for line in diagnosed["kernel_drops"]), diagnosed

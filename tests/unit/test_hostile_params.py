"""Hostile values in every parameter of every fault and drill, through every door that takes
them (`hoplab chaos inject --param`, `hoplab drill start`, an experiment file's `params:`):
each is refused with exit 2, the message names the parameter, and nothing runs -- the backend
here fails the test at its first call, no journal is written, and an expired fault already in
the journal is not reaped (arguments are checked before any fault is reaped). The commands run
in process (`cli.main`); the lab is the default topology, never started."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hoplab import cli, spec
from hoplab.backends.base import Backend
from hoplab.chaos.faults import CATALOGUE
from hoplab.chaos.journal import Chaos
from hoplab.drill import DRILLS, Drills
from hoplab.paths import TOPOLOGY_DIR

LAB_FILE = TOPOLOGY_DIR / "lab.yaml"
LAB = spec.load(LAB_FILE)
PWNED = "/tmp/hoplab-hostile-pwned"  # what a payload would create, were it ever run

# Values no parameter of any kind may take: shell metacharacters and substitutions, newlines
# and control characters, option injection, quotes, globs, paths, non-ASCII digits, number
# spellings that are not plain digits, empty and oversized values.
HOSTILE = [
    f"1kbit; touch {PWNED}", f"$(touch {PWNED})", f"`touch {PWNED}`", f"1 && touch {PWNED}", f"x|touch {PWNED}",
    f"80\ntouch {PWNED}", "80\n", "80\r", "\t80", "80\x00", " 80", "80 ", "-o", "--x", "--help", "-1",
    "' OR '1'='1", "x'; DROP ROLE shop_app; --", '"', "'", "*", "?", "../../etc/passwd", "/etc/shadow",
    f">{PWNED}", f"<{PWNED}", "&", "#", "80#", "{a,b}", "~root", "${IFS}", "$HOME", "\\", "%s%s%n",
    "٤٤٣", "８０", "0x50", "1e3", "+80", "nan", "inf", "", "x" * 200, "web1 web2", "192.168.50.77/24",
]

# Values of the right shape but outside what the kind (or the lab) allows.
OUT_OF_RANGE = {
    "percent": ["0", "100.1", "1000", "0.0"],
    "rate": ["0kbit", "99999999gbit", "1kbit2", "64 kbit", "64KBIT", "7bit", "kbit"],
    "address": ["256.1.1.1", "1.2.3", "192.0.2.1", "192.168.50.0", "192.168.50.255", "01.2.3.4", "::1",
                str(LAB.bridge_address("internet"))],
    "node": ["nosuch", "Web1", "web1.example.test"],
    "record": ["nosuch", "WWW", "www.example.test", "a..b", "-www"],
    "role": ["1abc", "shop-app", "Shop_app", 'a"b', "a" * 64],
}

# A target per fault for the default lab (as the CLI would give it).
TARGETS = {
    "packet-loss": "client:home", "rate-limit": "cache:internet", "delay": "cache:internet", "port-block": "cache",
    "partition-one-way": "lb", "partition-two-way": "cache", "wrong-default-route": "client:home",
    "mtu-blackhole": "router:home", "dns-nxdomain": "dns", "dns-wrong-a": "dns", "dns-slow": "dns",
    "dhcp-wrong-gateway": "dhcp", "dhcp-wrong-dns": "dhcp", "lb-backend-down": "lb", "stale-cache": "cache",
    "db-connection-limit": "db", "edge-rate-limit": "cache",
}
# Values refused only in context: the target itself as its own peer, a DHCP client (no fixed
# address), a node that is no web replica, a gateway off the route's link.
IN_CONTEXT = {("partition-one-way", "peer"): ["lb", "client"], ("partition-two-way", "peer"): ["cache"],
              ("lb-backend-down", "server"): ["db", "lb"], ("wrong-default-route", "via"): ["198.51.100.77"]}


def out_of_range(param) -> list[str]:
    if param.kind in ("ms", "port", "mtu", "seconds", "requests"):  # whole numbers: just outside each bound, and far
        return [*([str(int(param.low) - 1)] if param.low > 0 else []), str(int(param.high) + 1), "99999999999", "1.5"]
    return OUT_OF_RANGE[param.kind]


def fault_cases():
    for name, fault in CATALOGUE.items():
        for key, param in fault.params.items():
            values = HOSTILE + out_of_range(param) + IN_CONTEXT.get((name, key), [])
            if param.kind == "role":
                values = [v for v in values if v not in ("nan", "inf")]  # well-formed role names
            if param.optional:
                values = [v for v in values if v != ""]  # "" asks for the default there
            for value in values:
                yield pytest.param(name, key, value, id=f"{name}-{key}-{value[:20]!r}")


class RefusingBackend(Backend):
    """A backend that fails the test when anything at all is asked of it."""

    name = "refusing"

    def _fail(self, *args, **kwargs):
        pytest.fail(f"a command was run: {args!r}")

    run = up = down = status = exec = stop_node = start_node = clean = _fail


@pytest.fixture
def lab_state(tmp_path, monkeypatch):
    """The CLI's state folder in tmp, with an expired fault in the journal: reaping it would run
    its undo on the refusing backend."""
    monkeypatch.setattr(cli, "make_backend", lambda name: RefusingBackend())
    parser = cli.build_parser()  # built once (it is only read), like the lab's file below
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    load = spec.load  # the lab's file once, not a thousand times
    monkeypatch.setattr(spec, "load", lambda path: LAB if Path(path) == LAB_FILE else load(path))
    monkeypatch.setattr(RefusingBackend, "state_root", tmp_path, raising=False)
    monkeypatch.setattr(Chaos.__init__, "__defaults__", (tmp_path,))
    monkeypatch.setattr(Drills.__init__, "__defaults__", (tmp_path,))
    monkeypatch.setattr(Chaos, "start_reaper", lambda self: pytest.fail("a reaper was started"))
    journal = tmp_path / LAB.name / "chaos.json"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps([{
        "id": "expired1", "fault": "port-block", "node": "cache", "iface": None, "params": {"port": 80},
        "symptom": "", "started": 0.0, "deadline": 1.0, "state": "active", "notes": [],
        "undo": [{"node": "cache", "argv": ["true"], "kind": "run"}]}]))
    before = journal.read_text()
    yield tmp_path
    assert journal.read_text() == before, "the journal changed: something was injected or reaped"
    assert not (tmp_path / LAB.name / "drill.json").exists(), "a drill state was written"
    assert not Path(PWNED).exists(), f"{PWNED} exists: a payload ran"


@pytest.fixture
def hoplab(capsys, lab_state):
    def run(*args: str) -> subprocess.CompletedProcess:
        try:
            code = cli.main([*args[:2], "--topology", str(LAB_FILE), "--backend", "docker", *args[2:]])
        except SystemExit as exc:  # argparse's own errors (exit 2, naming the argument)
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def test_the_table_is_big_and_covers_every_parameter_of_every_fault():
    cases = list(fault_cases())
    assert len(cases) >= 50 * len(TARGETS)
    assert {c.values[:2] for c in cases} == {(n, k) for n, f in CATALOGUE.items() for k in f.params}
    assert set(TARGETS) == {n for n, f in CATALOGUE.items() if f.params}


@pytest.mark.parametrize("fault, key, value", list(fault_cases()))
def test_a_hostile_fault_parameter_is_refused_and_nothing_runs(hoplab, fault, key, value):
    result = hoplab("chaos", "inject", fault, "--target", TARGETS[fault], "--param", f"{key}={value}")
    assert result.returncode == 2, result
    assert f"--param {key}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("fault, key, value", [
    c.values for c in fault_cases() if c.values[2] in (f"1kbit; touch {PWNED}", "-o", "0", "nosuch", "'")])
def test_a_hostile_parameter_in_an_experiment_file_is_refused_naming_the_field(hoplab, tmp_path, fault, key, value):
    path = tmp_path / "hostile.yaml"
    path.write_text(json.dumps({"title": "t", "steady-state": [{"probe": "page"}],
                                "method": [{"fault": fault, "target": TARGETS[fault], "params": {key: value}}]}))
    result = hoplab("chaos", "run", str(path))
    assert result.returncode == 2, result
    assert f"{path}: method.0.params.{key}: " in result.stderr, result.stderr


@pytest.mark.parametrize("value", [True, [1], {"a": 1}, None, 1e30, -80])
def test_an_experiment_value_of_the_wrong_type_is_refused(hoplab, tmp_path, value):
    path = tmp_path / "typed.yaml"
    path.write_text(json.dumps({"title": "t", "steady-state": [{"probe": "page"}],
                                "method": [{"fault": "port-block", "target": "cache", "params": {"port": value}}]}))
    result = hoplab("chaos", "run", str(path))
    assert result.returncode == 2 and "method.0.params.port: " in result.stderr, result.stderr


@pytest.mark.parametrize("args, named", [
    *[((f"--target={v}",), "--target") for v in ["-o", "cache;id", "cache:internet\n", "cache:", "cache:lo", "../cache",
                                                 "cache:internet:x", "", "CACHE"]],
    *[((f"--duration={v}",), "--duration") for v in ["0", "-1", "nan", "inf", "1e9", "1801", "ten", "$(id)"]],
    *[(("--param", v), "--param") for v in ["port", "=443", "PORT=443", "port;id=1", "port=1", "x=1"]],
])
def test_hostile_inject_arguments_are_refused(hoplab, args, named):
    argv = ["chaos", "inject", "port-block", *args]
    if not any(a.startswith("--target") for a in args):
        argv += ["--target", "cache"]
    if ("--param", "port=1") == args:  # a valid value given twice
        argv += ["--param", "port=2"]
    result = hoplab(*argv)
    assert result.returncode == 2 and named in result.stderr, result


@pytest.mark.parametrize("args, named", [
    *[(("--", v), "NAME") for v in ["nosuch", "-o", "site-not-found; id", "site-not-found\n", "", "../drill"]],
    *[(("site-not-found", f"--from={v}"), "--from") for v in ["web1", "nosuch", "-o", "client;id", "client\n"]],
    *[(("site-not-found", f"--duration={v}"), "--duration") for v in ["0", "-5", "nan", "inf", "1e9", "x"]],
])
def test_hostile_drill_arguments_are_refused(hoplab, args, named):
    result = hoplab("drill", "start", *args)
    assert result.returncode == 2 and named in result.stderr, result


@pytest.mark.parametrize("name", sorted(DRILLS))
def test_every_drill_parameter_is_one_its_fault_declares(name):
    drill = DRILLS[name]
    assert set(drill.params) <= set(CATALOGUE[drill.fault].params), name

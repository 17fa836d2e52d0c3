"""Arguments are validated before any fault is reaped: every verb that touches a lab reverts
faults past their deadline first (cli.revert_expired_faults), and a bad argument must be refused
(exit 2, the argument named) before that happens -- a typo must not change the lab. Each case
runs `cli.main` in process with the reaper and the backend replaced by ones that record calls;
a well-formed command is shown to reach the reaper, so the test can fail."""

from __future__ import annotations

import argparse

import pytest

from hoplab import cli, spec
from hoplab.paths import TOPOLOGY_DIR

LAB_FILE = TOPOLOGY_DIR / "lab.yaml"
LAB = spec.load(LAB_FILE)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"

# verb -> (arguments after the verb, what the refusal names), at least one per verb that takes
# arguments beyond flags; `test_every_lab_verb_with_arguments_is_covered` keeps this complete.
CASES = {
    "exec": [(["nosuch", "--", "true"], "NODE: unknown node 'nosuch'"), (["client"], "CMD: no command given")],
    "stop": [(["nosuch"], "NODE: unknown node"), (["web1", "--time", "9999"], "--time: 9999")],
    "start": [(["nosuch"], "NODE: unknown node")],
    "restart": [(["web1", "--time", "-1"], "--time: -1")],
    "visit": [(["ftp://www.example.test/"], "URL: 'ftp://"), (["http://www.example.test/", "--from", "nosuch"], "--from: unknown node"),
              (["http://www.example.test/", "--max-time", "500"], "--max-time: 500")],
    "play": [(["udp://game.example.com"], "target: 'game.example.com'"), (["--moves", "0"], "--moves: 0"),
             (["--from", "nosuch"], "--from: unknown node")],
    "trace": [(["show", "nothex"], "ID: 'nothex' is not a trace id"),
              (["show", TRACE_ID, "--format", "html"], "--format html needs -o FILE"),
              (["show", TRACE_ID, "--keylog", "/nonexistent/keys.log"], "--keylog /nonexistent/keys.log: cannot read")],
    "load": [(["--users", "0"], "--users: 0"), (["--host", "http://elsewhere.invalid/"], "--host: 'elsewhere.invalid'")],
    "chaos": [(["inject", "no-such-fault", "--target", "web1"], "no-such-fault"),
              (["run", "/nonexistent/experiment.yaml"], "/nonexistent/experiment.yaml")],
    "diagnose": [(["--from", "web1"], "--from: 'web1' is not a client node")],
    "drill": [(["start", "no-such-drill"], "no-such-drill")],
    "ui": [(["--port", "80"], "--port: 80 is outside")],
}


class RecordingBackend:
    def __getattr__(self, name):
        pytest.fail(f"the backend was used ({name}) before the arguments were checked")


@pytest.fixture
def reaped(monkeypatch):
    """The verbs that reached the reaper."""
    calls = []
    monkeypatch.setattr(cli, "revert_expired_faults", lambda args: calls.append(args.verb))
    monkeypatch.setattr(cli, "make_backend", lambda name: RecordingBackend())
    return calls


def hoplab(capsys, verb: str, *rest: str) -> tuple[int, str]:
    argv = [verb, *rest[:1], "--topology", str(LAB_FILE), "--backend", "docker", *rest[1:]] if verb in ("trace", "chaos", "drill") \
        else [verb, "--topology", str(LAB_FILE), "--backend", "docker", *rest]
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("verb,rest,named", [(v, r, n) for v, cases in CASES.items() for r, n in cases],
                         ids=lambda x: " ".join(x) if isinstance(x, list) else str(x)[:30])
def test_a_bad_argument_is_refused_before_any_fault_is_reaped(capsys, reaped, verb, rest, named):
    code, err = hoplab(capsys, verb, *rest)
    assert code == cli.EXIT_BAD_INPUT, err
    assert named in err
    assert reaped == [], f"hoplab {verb} reaped expired faults before refusing its arguments"


def test_a_good_command_does_reach_the_reaper(capsys, reaped, monkeypatch):
    # The positive control: with valid arguments the reaper runs (then the fake backend stops it).
    monkeypatch.setattr(cli.Diagnose, "run", lambda self, args: 0)
    code, err = hoplab(capsys, "diagnose", "--from", "client")
    assert (code, reaped) == (0, ["diagnose"]), err


def test_the_reaper_comes_after_the_check_in_main(monkeypatch, capsys):
    order = []
    monkeypatch.setattr(cli, "revert_expired_faults", lambda args: order.append("reap"))
    monkeypatch.setattr(cli.Ui, "check", lambda self, args: order.append("check"))
    monkeypatch.setattr(cli.Ui, "run", lambda self, args: order.append("run") or 0)
    assert cli.main(["ui", "--topology", str(LAB_FILE), "--backend", "docker"]) == 0
    assert order == ["check", "reap", "run"]


FLAG_ACTIONS = (argparse._StoreTrueAction, argparse._HelpAction, argparse._StoreFalseAction)
COMMON = {"topology", "backend", "help"}


def _takes_arguments(parser: argparse.ArgumentParser) -> bool:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if any(_takes_arguments(sub) for sub in action.choices.values()):
                return True
        elif not isinstance(action, FLAG_ACTIONS) and action.dest not in COMMON:
            return True
    return False


def test_every_lab_verb_with_arguments_is_covered():
    parser = cli.build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    with_arguments = {v for v in cli.LAB_VERBS if _takes_arguments(verbs[v])}
    assert with_arguments - set(CASES) == set(), "lab verbs whose argument checks this test does not try"
    for verb in CASES:
        assert verb in cli.LAB_VERBS
        assert type(verbs[verb].get_default("handler")).check is not cli.Command.check, \
            f"hoplab {verb} takes arguments but checks none of them before the reaper"

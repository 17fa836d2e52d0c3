"""Every file a user writes is checked one way (`hoplab.userfile`: strict YAML, a JSON Schema
beside its kind of file, then what only the lab can tell) and refused through the CLI with exit 2
and one `FILE: FIELD: REASON` line per problem, before anything runs: chaos experiments
(`hoplab chaos run`), SLO thresholds (`hoplab load --slo`), a topology's own service.yaml
(`hoplab validate`). Each invalid file below asserts its exact line."""

from __future__ import annotations

import json

import pytest

from hoplab import cli, userfile
from hoplab.chaos.experiment import SCHEMA_FILE as EXPERIMENT_SCHEMA
from hoplab.load import DEFAULT_SLO, SLO_SCHEMA, read_slo
from hoplab.paths import PROJECT_ROOT, TOPOLOGY_DIR
from hoplab.services import SCHEMA_FILE as SERVICE_SCHEMA
from test_experiment_file import GOOD
from test_service_dirs import service, topology_with

LAB = str(TOPOLOGY_DIR / "lab.yaml")
PROBES = "page, order-page, page-fast, fresh-order-page, quick-reloads, every-replica, order-mail, renewed-lease, game"
NODES = "router, dhcp, dns, client, cache, lb, web1, web2, db, mail, game, control"
NAME = r"^[a-z0-9][a-z0-9-]*(:[a-z0-9][a-z0-9-]*)?$"


def refused(capsys, argv: list[str]) -> list[str]:
    """The CLI's stderr lines for a command that must exit 2."""
    assert cli.main(argv) == 2
    return capsys.readouterr().err.splitlines()


# ------------------------------------------------------------ experiments: GOOD with one edit

EXPERIMENT_EDITS = [
    ("title: t", "titel: t",
     "(top level): unknown field(s) titel (fields: description, method, rollbacks, steady-state, title)"),
    ("title: t", "title: '  '", r"title: '  ' does not match \S"),
    ("probe: page", "probe: nosuch", f"steady-state.0.probe: unknown probe 'nosuch' (probes: {PROBES})"),
    ("samples: 2", "samples: 0", "steady-state.0.samples: 0 is less than the minimum of 1"),
    ("samples: 2", "samples: 2.5", "steady-state.0.samples: 2.5 is not of type 'integer'"),
    ("success: 0.5", "success: 2", "steady-state.0.tolerance.success: 2 is greater than the maximum of 1"),
    ("max_seconds: 3", "max_secs: 3",
     "steady-state.0.tolerance: unknown field(s) max_secs (fields: max_seconds, success)"),
    ("fault: port-block", "fault: nosuch", "method.0.fault: unknown fault 'nosuch' (`hoplab chaos list`)"),
    ("target: cache", "target: nowhere", f"method.0.target: unknown node 'nowhere' (nodes: {NODES})"),
    ("target: cache", "target: 'cache; touch /tmp/pwned'",
     f"method.0.target: 'cache; touch /tmp/pwned' does not match {NAME}"),
    ("duration: 10", "duration: 100000", "method.0.duration: 100000.0 is outside (0, 1800] seconds"),
    ("duration: 10", "duration: -1", "method.0.duration: -1 is less than or equal to the minimum of 0"),
    ("params: {port: 443}", "params: {colour: red}",
     "method.0.params.colour: unknown parameter of port-block (parameters: port)"),
    ("params: {port: 443}", "params: {port: 70000}", "method.0.params.port: '70000': 70000 is outside 1..65535"),
    ("params: {port: 443}", "params: {port: '443; reboot'}",
     "method.0.params.port: '443; reboot': expected a whole number (digits only)"),
    ("params: {port: 443}", "params: 443", "method.0.params: 443 is not of type 'object'"),
    ("pause: 1", "pause: -1", "method.1.pause: -1 is less than the minimum of 0"),
    ("pause: 1", "pause: 1\n    fault: port-block", "method.1: unknown field(s) fault (fields: pause)"),
    ("revert: faults", "revert: everything", "rollbacks.0.revert: 'faults' was expected"),
    ("- revert: faults\n", "- undo: all\n", "rollbacks.0: unknown field(s) undo (fields: exec)"),
    ("command: [iptables, -S]", "command: iptables -S", "rollbacks.1.exec.command: 'iptables -S' is not of type 'array'"),
    ("command: [iptables, -S]", "command: []", "rollbacks.1.exec.command: [] should be non-empty"),
    ("node: cache", "node: nowhere", "rollbacks.1.exec.node: unknown node 'nowhere' in lab 'lab'"),
    ("title: t", "title: t\ntitle: u", "(yaml, line 2 column 1): duplicate key 'title'"),
    ("title: t", "title: [", "(yaml, line 3 column 3): expected the node content, but found '-'"),
]

EXPERIMENT_FILES = [
    ("", "(top level): None is not of type 'object'"),
    ("- a\n", "(top level): ['a'] is not of type 'object'"),
    ("title: t\nsteady-state: []\nmethod: [{pause: 1}]\n", "steady-state: [] should be non-empty"),
    ("title: t\nsteady-state:\n  - probe: page\n", "(top level): 'method' is a required property"),
    ("title: t\nsteady-state: [{probe: page}]\nmethod: [{pause: 1}]\nrollbacks: {}\n",
     "rollbacks: {} is not of type 'array'"),
]


@pytest.mark.parametrize("old, new, line", EXPERIMENT_EDITS, ids=[e[1].split("\n")[-1] for e in EXPERIMENT_EDITS])
def test_a_bad_experiment_is_refused_by_file_field_and_reason(tmp_path, capsys, old, new, line):
    assert old in GOOD
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    err = refused(capsys, ["chaos", "run", str(path), "--topology", LAB, "--backend", "netns"])
    assert err[0] == "hoplab chaos: invalid experiment:"
    assert f"{path}: {line}" in err[1:], err


@pytest.mark.parametrize("text, line", EXPERIMENT_FILES)
def test_a_malformed_experiment_is_refused_by_file_field_and_reason(tmp_path, capsys, text, line):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    err = refused(capsys, ["chaos", "run", str(path), "--topology", LAB, "--backend", "netns"])
    assert f"{path}: {line}" in err[1:], err


def test_every_problem_of_an_experiment_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("probe: page", "probe: nosuch").replace("fault: port-block", "fault: nosuch")
                    .replace("node: cache", "node: nowhere"))
    err = refused(capsys, ["chaos", "run", str(path), "--topology", LAB, "--backend", "netns"])
    assert [line.split(": ")[1] for line in err[1:]] == ["steady-state.0.probe", "method.0.fault",
                                                         "rollbacks.1.exec.node"]


# ------------------------------------------------------------ SLO thresholds

SLO_FILES = [
    ("max_p95: 3000\n",
     "(top level): unknown field(s) max_p95 (fields: max_failure_ratio, max_p95_ms, max_throttled_ratio)"),
    ("max_failure_ratio: 0.01\nmax_p95_ms: 3000\nmin_rps: 5\n",
     "(top level): unknown field(s) min_rps (fields: max_failure_ratio, max_p95_ms, max_throttled_ratio)"),
    ("max_failure_ratio: 2\n", "max_failure_ratio: 2 is greater than the maximum of 1"),
    ("max_failure_ratio: 1%\n", "max_failure_ratio: '1%' is not of type 'number'"),
    ("max_p95_ms: 0\n", "max_p95_ms: 0 is less than or equal to the minimum of 0"),
    ("max_p95_ms: -5\n", "max_p95_ms: -5 is less than or equal to the minimum of 0"),
    ("max_p95_ms: true\n", "max_p95_ms: True is not of type 'number'"),
    ("", "(top level): None is not of type 'object'"),
    ("{}\n", "(top level): {} should be non-empty"),
    ("- max_p95_ms: 1\n", "(top level): [{'max_p95_ms': 1}] is not of type 'object'"),
    ("max_p95_ms: 1\nmax_p95_ms: 2\n", "(yaml, line 2 column 1): duplicate key 'max_p95_ms'"),
    ("max_p95_ms: [\n", "(yaml, line 2 column 1): expected the node content, but found '<stream end>'"),
]


@pytest.mark.parametrize("text, line", SLO_FILES)
def test_a_bad_slo_file_is_refused_before_any_load(tmp_path, capsys, text, line):
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    err = refused(capsys, ["load", "--slo", str(path), "--topology", LAB, "--backend", "netns"])
    assert err[0] == "hoplab load: invalid SLO file:"
    assert f"{path}: {line}" in err[1:], err


def test_the_shipped_slo_file_holds_both_gates():
    assert read_slo(DEFAULT_SLO) == {"max_failure_ratio": 0.01, "max_p95_ms": 3000}


# ------------------------------------------------------------ a topology's own service.yaml

SERVICE_FILES = [
    ("description: x\npackage: [a]\n", "(top level): unknown field(s) package (fields: after, cache, capabilities, "
                                       "description, packages, shared, stop_signal, sysctls, tier, volumes, wheels)"),
    ("tier: Replica\n", "tier: 'Replica' does not match ^[a-z][a-z0-9 -]{0,30}$"),
    ("packages: curl\n", "packages: 'curl' is not of type 'array'"),
    ("volumes: {data: var/lib}\n", "volumes.data: 'var/lib' does not match ^/"),
    ("capabilities: [net_admin]\n", "capabilities.0: 'net_admin' does not match ^[A-Z_]+$"),
    ("stop_signal: TERM\n", "stop_signal: 'TERM' does not match ^SIG[A-Z0-9]+$"),
    ("wheels: [flask]\n", "wheels.0: 'flask' does not match ^[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+$"),
    ("sysctls: [a]\n", "sysctls: ['a'] is not of type 'object'"),
    ("shared: {Bad_Name: /x}\n", "shared: 'Bad_Name' does not match ^[a-z][a-z0-9-]{0,30}$"),
    ("description: x\ndescription: y\n", "(yaml, line 2 column 1): duplicate key 'description'"),
    ("packages: [a\n", "(yaml, line 2 column 1): expected ',' or ']', but got '<stream end>'"),
]


@pytest.mark.parametrize("text, line", SERVICE_FILES)
def test_a_bad_service_yaml_is_refused_by_validate(tmp_path, capsys, text, line):
    folder = service(tmp_path / "svc", "api", text)
    topology = topology_with(tmp_path, ["svc"], mail="api")
    err = refused(capsys, ["validate", "--topology", str(topology)])
    assert err[0] == "hoplab: invalid service folder:"
    assert f"{folder / 'service.yaml'}: {line}" in err[1:], err


# ------------------------------------------------------------ the schemas themselves


def test_there_are_at_least_forty_invalid_files():
    assert len(EXPERIMENT_EDITS) + len(EXPERIMENT_FILES) + len(SLO_FILES) + len(SERVICE_FILES) >= 40


@pytest.mark.parametrize("schema", [EXPERIMENT_SCHEMA, SLO_SCHEMA, SERVICE_SCHEMA, TOPOLOGY_DIR / "schema.json"])
def test_each_schema_sits_beside_its_files_and_is_valid(schema):
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(schema.read_text()))
    assert schema.parent in {PROJECT_ROOT / "experiments", PROJECT_ROOT / "loadtests", PROJECT_ROOT / "services",
                             TOPOLOGY_DIR}


def test_one_reader_refuses_a_duplicate_key_in_every_kind_of_file(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("a: 1\nb: {c: 2, c: 3}\n")
    with pytest.raises(userfile.FileError) as caught:
        userfile.read_yaml(path)
    assert str(caught.value) == f"{path}: (yaml, line 2 column 11): duplicate key 'c'"

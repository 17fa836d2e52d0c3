"""What the catalogues' count assertions stand in for, checked as behaviour: every fault plans
a real act and undo on every target it accepts, and the families and faults are the ones the
docs describe; every drill starts (through the chaos journal, with a fake backend) on every
topology that has its roles, with every placeholder filled and its fix in nodes that exist;
every shipped experiment loads, is documented, and its faults are accepted as they would be
injected; every invalid topology file is refused for the field it names, and every rule of
the topology checker is exercised by one of them or by a case here."""

from __future__ import annotations

import ast
import copy
import json
import re
import string
import subprocess
from pathlib import Path

import pytest
import yaml

from hoplab import drill as drill_module
from hoplab import spec
from hoplab.backends.base import Backend
from hoplab.chaos.experiment import PROBE_NAMES, FaultStep
from hoplab.chaos.experiment import load as load_experiment
from hoplab.chaos.faults import CATALOGUE, FAMILIES, FaultError, Step, Target
from hoplab.chaos.journal import Chaos
from hoplab.drill import DIFFICULTIES, DRILLS, DrillError, Drills, available, fill, needed_roles, probes, roles
from hoplab.paths import PROJECT_ROOT, TOPOLOGY_DIR
from hoplab.services import load_catalog

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")
DUO = spec.load(TOPOLOGY_DIR / "duo.yaml")
TOPOLOGIES = {"lab": (LAB, "client"), "duo": (DUO, "pc1")}
DOCS = (PROJECT_ROOT / "docs" / "chaos.md").read_text()
EXAMPLES = sorted((PROJECT_ROOT / "experiments").glob("*.yaml"))
INVALID = sorted((PROJECT_ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
EXPECT_LINE = re.compile(r"^# expect: (?P<field>.+?) :: (?P<reason>.+)$")


class FakeBackend(Backend):
    """Every command succeeds and is recorded; nothing else is allowed."""

    name = "fake"

    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []

    def run(self, topology, node, argv, timeout=60, input=None):
        self.calls.append((node, list(argv)))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    def up(self, topology, progress):
        raise NotImplementedError

    def down(self, topology, progress):
        raise NotImplementedError

    def status(self, topology):
        raise NotImplementedError

    def exec(self, topology, node, argv, interactive):
        raise NotImplementedError

    def stop_node(self, topology, node, timeout):
        raise NotImplementedError

    def start_node(self, topology, node, progress):
        raise NotImplementedError

    def clean(self, lab, progress):
        raise NotImplementedError


@pytest.fixture(autouse=True)
def no_reaper(monkeypatch):
    """A drill start would spawn the detached reaper process; here nothing leaves the test."""
    monkeypatch.setattr(Chaos, "start_reaper", lambda self: None)


# ------------------------------------------------------------ faults


def targets(fault, topology) -> list[tuple[str, str | None]]:
    """Every (node, iface) the journal would accept for this fault: the service matches, and a
    fault that needs an interface gets each of the node's networks."""
    found = []
    for node in topology.nodes.values():
        if fault.service and node.service != fault.service:
            continue
        if fault.needs_iface:
            found += [(node.name, i.network) for i in node.interfaces]
        else:
            found.append((node.name, None))
    return found


def dhcp_clients(topology, node: str) -> set[str]:
    scopes = {n for n, net in topology.networks.items() if net.dhcp and net.dhcp.server == node}
    return {n.name for n in topology.nodes.values() if any(i.address is None and i.network in scopes
                                                           for i in n.interfaces)}


def check_steps(steps: list[Step], topology, node: str, where: str) -> None:
    allowed = {node} | dhcp_clients(topology, node)  # a DHCP fault makes the scope's clients renew
    for step in steps:
        assert step.node in allowed, f"{where}: a step runs in {step.node}, not in {node}"
        assert step.kind in ("run", "restart"), where
        if step.kind == "run":
            assert isinstance(step.argv, tuple) and step.argv, f"{where}: no command"
            assert all(isinstance(a, str) and a for a in step.argv), f"{where}: {step.argv!r} is not an argv"
            if step.argv[0] == "sh":  # a script is one argument; values follow it as $1, $2...
                assert step.argv[1] == "-c" and step.argv[2].strip() and step.argv[3] == "sh", where
        else:
            assert step.argv == (), f"{where}: a restart carries no command"
        again = Step.from_json(json.loads(json.dumps(step.to_json())))
        assert again == step, f"{where}: the journal would not bring this step back as it was"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_fault_plans_an_act_and_an_undo_on_every_target_it_accepts(name):
    fault = CATALOGUE[name]
    planned = 0
    for node, iface in targets(fault, LAB):
        where = f"{name} on {node}{':' + iface if iface else ''}"
        try:
            plan = fault.plan(Target(node, iface, LAB), {})
        except FaultError as exc:
            # only a default parameter that names the target itself may be refused (peer=lb on lb)
            assert exc.argument.removeprefix("--param ") in fault.params, f"{where}: {exc}"
            continue
        planned += 1
        assert plan.act and plan.undo and plan.symptom.strip(), where
        assert plan.act[0].node == node, f"{where}: the act starts elsewhere"
        assert all(s.kind == "run" for s in plan.act), f"{where}: an act never restarts"
        check_steps(plan.act, LAB, node, where + " (act)")
        check_steps(plan.undo, LAB, node, where + " (undo)")
    assert planned, f"{name} plans on no node of the default lab"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_on_the_second_topology_a_fault_plans_or_names_the_parameter_to_give(name):
    fault = CATALOGUE[name]
    for node, iface in targets(fault, DUO):
        try:
            plan = fault.plan(Target(node, iface, DUO), {})
        except FaultError as exc:
            assert exc.argument.removeprefix("--param ") in fault.params, exc
            continue
        check_steps(plan.act + plan.undo, DUO, node, f"{name} on {node}")
    if fault.service:
        assert bool(targets(fault, DUO)) == bool(DUO.nodes_of(fault.service))


def test_every_fault_can_be_injected_somewhere_through_the_journal(tmp_path):
    backend = FakeBackend()
    chaos = Chaos(backend, LAB, state_root=tmp_path)
    for name, fault in CATALOGUE.items():
        for node, iface in targets(fault, LAB):
            target = f"{node}:{iface}" if iface else node
            try:
                entry = chaos.inject(name, target, 60, {})
            except FaultError as exc:
                if exc.argument.removeprefix("--param ") in fault.params:
                    continue
                raise
            chaos.revert(entry.id)
            break
        else:
            pytest.fail(f"{name} cannot be injected anywhere in the default lab")
    states = [e.state for e in chaos.entries()]
    assert len(states) == len(CATALOGUE) and set(states) == {"reverted"}


def documented_faults() -> dict[str, str]:
    return dict((fault, family) for family, fault in re.findall(r"^\| (\w+) \| `([a-z-]+)` \|", DOCS, re.M))


def test_the_docs_describe_exactly_the_catalogue_with_its_families():
    documented = documented_faults()
    assert documented, "docs/chaos.md has no fault table"
    assert documented == {name: f.family for name, f in CATALOGUE.items()}


def test_every_family_has_a_fault_and_every_fault_a_known_family():
    assert set(documented_faults().values()) == set(FAMILIES)
    by_family = {family: [f.name for f in CATALOGUE.values() if f.family == family] for family in FAMILIES}
    assert all(by_family.values()), {k: v for k, v in by_family.items() if not v}
    assert {f.family for f in CATALOGUE.values()} <= set(FAMILIES)


def test_faults_that_claim_the_same_thing_are_in_the_same_family():
    claims: dict[str, set[str]] = {}
    for fault in CATALOGUE.values():
        claims.setdefault(fault.claims, set()).add(fault.family)
    assert all(len(families) == 1 for families in claims.values()), claims
    assert len({f.name for f in CATALOGUE.values()}) == len(CATALOGUE)


# ------------------------------------------------------------ drills


def documented_drills() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| ([a-z-]+) \| (easy|medium|hard) \| ([a-z-]+)", DOCS, re.M)
    return {name: (difficulty, fault) for name, difficulty, fault in rows}


def test_the_docs_list_exactly_the_drills_with_their_difficulty_and_fault():
    documented = documented_drills()
    assert documented, "docs/chaos.md has no drill table"
    assert documented == {d.name: (d.difficulty, d.fault) for d in DRILLS.values()}
    assert {d.difficulty for d in DRILLS.values()} == set(DIFFICULTIES)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def texts(d) -> list[str]:
    return [d.target, d.symptom, *d.hints, d.fix, *(t for step in d.fix_steps for t in step),
            *(v for v in d.params.values() if isinstance(v, str))]


@pytest.mark.parametrize("lab", list(TOPOLOGIES))
@pytest.mark.parametrize("name", sorted(DRILLS))
def test_a_drill_fills_every_placeholder_and_names_real_nodes(name, lab):
    topology, client = TOPOLOGIES[lab]
    d = DRILLS[name]
    values = roles(topology, client)
    assert d.fault in CATALOGUE
    if not available(d, values):  # only duo's missing mail server or game may make a drill unavailable
        assert lab == "duo" and {r for r in needed_roles(d) if not values.get(r)} in ({"mail"}, {"game"})
        return
    for text in texts(d):
        missing = {p for p in placeholders(text) if not values.get(p)}
        assert not missing, f"{text!r} needs {missing}, which {lab} does not fill"
        filled = fill(text, values)
        assert "{" not in filled.replace("${", "") or "$(" in filled, filled
    node, _, iface = fill(d.target, values).partition(":")
    assert node in topology.nodes
    fault = CATALOGUE[d.fault]
    assert not fault.service or topology.nodes[node].service == fault.service
    assert not iface or iface in [i.network for i in topology.nodes[node].interfaces]
    for step_node, script in d.fix_steps:
        assert fill(step_node, values) in topology.nodes, f"the fix runs in {fill(step_node, values)!r}"
        assert fill(script, values).strip()
    assert set(d.probes) <= set(probes(topology, client))


def test_the_second_topology_runs_every_drill_except_those_needing_mail_or_the_game():
    values = roles(DUO, "pc1")
    assert sorted(role for role, value in values.items() if not value) == ["game", "mail"]
    unavailable = {d.name for d in DRILLS.values() if not available(d, values)}
    assert unavailable == {d.name for d in DRILLS.values() if {"mail", "game"} & needed_roles(d)} \
        == {"missing-confirmations", "port-taken"}
    assert all(available(d, roles(LAB, "client")) for d in DRILLS.values())


@pytest.mark.parametrize("lab", list(TOPOLOGIES))
@pytest.mark.parametrize("name", sorted(DRILLS))
def test_a_drill_starts_through_the_journal_and_gives_up_cleanly(tmp_path, name, lab):
    topology, client = TOPOLOGIES[lab]
    d = DRILLS[name]
    backend = FakeBackend()
    drills = Drills(backend, topology, state_root=tmp_path)
    if not available(d, roles(topology, client)):
        with pytest.raises(DrillError, match="needs roles this lab lacks \\((mail|game)\\)"):
            drills.start(name, client, drill_module.DEFAULT_DURATION_S)
        assert backend.calls == []
        return
    state, _ = drills.start(name, client, drill_module.DEFAULT_DURATION_S)  # the CLI's default duration
    (entry,) = drills.chaos.active()
    assert entry.id == state.entry and entry.fault == d.fault
    assert entry.node == fill(d.target, roles(topology, client)).partition(":")[0]
    assert backend.calls and backend.calls[0][0] == entry.node
    assert [fill(h, roles(topology, client)) for h in d.hints[:1]] == drills.hint()
    _, _, values = drills.give_up()
    assert drills.chaos.active() == [] and drills.load().state == "given-up"
    assert values == roles(topology, client)


# ------------------------------------------------------------ experiments


def documented_examples() -> set[str]:
    section = DOCS.split("## Experiments", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(?:experiments/)?([\w-]+)\.yaml`", section))


def test_the_shipped_examples_are_the_documented_ones():
    assert documented_examples() == {p.stem for p in EXAMPLES}
    for line in (PROJECT_ROOT / "README.md").read_text().splitlines():
        for name in re.findall(r"experiments/([\w-]+)\.yaml", line):
            assert (PROJECT_ROOT / "experiments" / f"{name}.yaml").is_file(), line


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_loads_and_its_faults_are_accepted_by_the_journal(tmp_path, path):
    experiment = load_experiment(path, LAB)
    assert experiment.title and experiment.steady_state and experiment.method and experiment.rollbacks
    lab_probes = probes(LAB, "client")
    assert all(p.probe in lab_probes for p in experiment.steady_state)
    faults = [s for s in experiment.method if isinstance(s, FaultStep)]
    assert faults, f"{path.name} injects nothing"
    chaos = Chaos(FakeBackend(), LAB, state_root=tmp_path)
    for step in faults:
        entry = chaos.inject(step.fault, step.target, step.duration, step.params)  # as `chaos run` would
        assert entry.fault == step.fault
    assert any(r.revert for r in experiment.rollbacks), f"{path.name} never reverts its faults"
    assert len(chaos.halt()) == len(faults)


def test_every_probe_an_experiment_may_name_exists_on_the_default_lab():
    assert set(PROBE_NAMES) == set(probes(LAB, "client"))


# ------------------------------------------------------------ invalid topologies


def expectation(path: Path) -> tuple[str, str]:
    match = EXPECT_LINE.match(path.read_text().splitlines()[0])
    assert match, f"{path}: first line is not '# expect: FIELD :: REASON'"
    return match["field"].strip(), match["reason"].strip()


def refusal(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(spec.TopologyError) as caught:
        spec.load(path)
    return caught.value.problems


def expected_problems(path: Path) -> list[tuple[str, str]]:
    field, reason = expectation(path)
    return [(f, r) for f, r in refusal(path) if f.startswith(field) and reason in r]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_an_invalid_file_is_refused_for_the_field_it_names(path):
    assert expected_problems(path), f"{path.name}: refused, but not for {expectation(path)}: {refusal(path)}"


def test_each_invalid_file_tests_something_no_other_does():
    expectations = [expectation(p) for p in INVALID]
    assert INVALID and len(set(expectations)) == len(expectations)


def _pattern(node: ast.expr) -> str:
    if isinstance(node, ast.JoinedStr):
        return "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in node.values)
    if isinstance(node, ast.Constant):
        return re.escape(node.value)
    return ".+"  # a variable: any field


def checker_rules() -> list[tuple[int, str, str]]:
    """(line, field pattern, reason pattern) of every `self.fail(FIELD, REASON)` in spec._Checker."""
    tree = ast.parse(Path(spec.__file__).read_text())
    checker = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Checker")
    return sorted((call.lineno, _pattern(call.args[0]), _pattern(call.args[1])) for call in ast.walk(checker)
                  if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                  and call.func.attr == "fail" and len(call.args) == 2)


def lab_data() -> dict:
    return yaml.safe_load((TOPOLOGY_DIR / "lab.yaml").read_text())


def mutated(change) -> list[tuple[str, str]]:
    data = copy.deepcopy(lab_data())
    change(data)
    with pytest.raises(spec.TopologyError) as caught:
        spec.from_data(data, "inline.yaml", load_catalog())
    return caught.value.problems


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value
    return change


def _replicas_past_the_last_address(data):
    data["nodes"]["web"]["networks"]["origin"] = "255.255.255.254"
    data["nodes"]["web"]["replicas"] = 3


def _dns_without_an_address(data):
    data["nodes"]["dns"]["networks"] = {"home": "dhcp"}


# Rules that no file under tests/data/invalid names on its `# expect:` line, exercised here.
def _edge_by_dhcp_with_a_site(data):
    data["nodes"]["cache"]["networks"] = {"home": "dhcp"}
    data["nodes"]["cache"]["sites"] = {"api": {"nodes": ["router"], "port": 80}}


def _image_node_with_a_sidecar_of_ones_own(data):
    data["service_dirs"] = [str(Path(__file__).resolve().parents[1] / "data" / "own-sidecar")]
    data["nodes"]["mail"] = {"image": "mine:1", "networks": {"origin": "172.31.50.25"}}


INLINE = {
    "management network name": (_set("networks.mgmt", {"subnet": "10.9.0.0/24"}),
                                "networks.mgmt", "the name is the management network's"),
    "control node name": (_set("nodes.control", {"service": "client", "networks": {"home": "dhcp"}}),
                          "nodes.control", "the name is the control service's"),
    "management subnet too small": (_set("management.subnet", "172.31.254.0/29"),
                                    "management.subnet", "has no room for 12 nodes"),
    "control outside its subnet": (_set("management.control", "172.31.253.2"),
                                   "management.control", "172.31.253.2 is not a host address of 172.31.254.0/24"),
    "no port left for the Control API": (_set("management.port", 65535),
                                         "management.port", "65535 leaves no port after it for the Control API"),
    "replicas past 255.255.255.255": (_replicas_past_the_last_address,
                                      "nodes.web.networks.origin", "replica web3's address runs past"),
    "nat network not the node's": (_set("nodes.router.nat", {"inside": ["origin"], "outside": "internet"}),
                                   "nodes.router.nat", "network 'origin' is not one of this node's networks"),
    "dns server without an address": (_dns_without_an_address,
                                      "domain.server", "node 'dns' has no static address"),
    "upstream of a service that reads none": (_set("nodes.db.upstream", {"nodes": ["web"], "port": 80}),
                                              "nodes.db.upstream", "service 'db' reads no upstream"),
    "sites on a node that is no edge": (_set("nodes.lb.sites", {"api": {"nodes": ["web"], "port": 80}}),
                                        "nodes.lb.sites", "only a cache (the edge) serves sites"),
    "site whose name is taken": (_set("nodes.cache.sites", {"dns": {"nodes": ["lb"], "port": 80}}),
                                 "nodes.cache.sites.dns", "'dns' is already a node or a record of the domain"),
    "site on an edge without a static address": (_edge_by_dhcp_with_a_site,
                                                  "nodes.cache.sites", "node 'cache' has no static address"),
    "upstream node unknown": (_set("nodes.lb.upstream", {"nodes": ["nosuch"], "port": 80}),
                              "nodes.lb.upstream.nodes", "unknown node 'nosuch'"),
    "upstream is the proxy": (_set("nodes.lb.upstream", {"nodes": ["lb"], "port": 80}),
                              "nodes.lb.upstream.nodes", "'lb' is the proxy itself"),
    "upstream off the proxy's networks": (_set("nodes.lb.upstream", {"nodes": ["dns"], "port": 80}),
                                          "nodes.lb.upstream.nodes", "node 'dns' has no static address on a network"),
    "upstream without a port, of nodes that declare none": (_set("nodes.lb.upstream", {"nodes": ["web"]}),
                                                            "nodes.lb.upstream.port", "required unless every node"),
    "image node with a sidecar of the user's": (_image_node_with_a_sidecar_of_ones_own, "nodes.mail.image",
                                                "needs hoplab's own 'sidecar' service, which a service folder of yours hides"),
}


@pytest.mark.parametrize("case", list(INLINE))
def test_an_inline_defect_is_refused_for_its_field(case):
    change, field, reason = INLINE[case]
    problems = mutated(change)
    assert any(f == field and reason in r for f, r in problems), problems


def test_every_rule_of_the_topology_checker_is_exercised():
    produced = [p for path in INVALID for p in expected_problems(path)]
    for change, field, reason in INLINE.values():
        produced += [(f, r) for f, r in mutated(change) if f == field and reason in r]
    uncovered = [(line, reason) for line, field_rx, reason_rx in checker_rules()
                 if not any(re.fullmatch(field_rx, f) and re.fullmatch(reason_rx, r, re.S) for f, r in produced)]
    assert checker_rules(), "found no rule in spec._Checker"
    assert not uncovered, f"rules of spec._Checker that no invalid file or inline case exercises: {uncovered}"


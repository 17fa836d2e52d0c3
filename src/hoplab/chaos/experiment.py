"""Chaos experiments as files: a steady-state hypothesis (probes with tolerances), a method
(faults and pauses), and rollbacks that always run. `hoplab chaos run FILE` measures the
steady state, runs the method, measures again, rolls back, and writes a JSON journal with the
verdict: held (the hypothesis survived the method), deviated, not-steady (it did not hold even
before) or aborted.

    title: Losing one web replica does not take the shop down
    steady-state:
      - probe: order-page          # a probe of `hoplab.drill.probes`
        samples: 5
        tolerance: {success: 1.0, max_seconds: 2}
    method:
      - fault: process-kill
        target: web1
        duration: 60
        params: {}
      - pause: 2
    rollbacks:
      - revert: faults             # every fault this experiment injected
      - exec: {node: lb, command: ["sh", "-c", "..."]}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hoplab.backends.base import Backend
from hoplab.chaos.faults import CATALOGUE, FaultError, prepare
from hoplab.chaos.journal import Chaos
from hoplab.chaos.model import MAX_DURATION_S
from hoplab.diagnose import run_check
from hoplab.paths import RUN_STATE_DIR
from hoplab.spec import Topology

PROBE_NAMES = ("page", "order-page", "page-fast", "fresh-order-page", "every-replica", "order-mail", "renewed-lease")
MAX_SAMPLES = 50
MAX_PAUSE_S = 300


class ExperimentError(Exception):
    """A bad experiment file: names the file and the field (exit 2)."""

    def __init__(self, source: Path, field_path: str, reason: str):
        super().__init__(f"{source}: {field_path}: {reason}")


@dataclass(frozen=True)
class SteadyProbe:
    probe: str
    samples: int = 3
    success: float = 1.0  # share of samples that must pass
    max_seconds: float | None = None  # and each passing sample must be at least this fast


@dataclass(frozen=True)
class FaultStep:
    fault: str
    target: str
    duration: float
    params: dict


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Rollback:
    revert: bool = False  # every fault the experiment injected
    node: str | None = None  # or: run a command in a node
    command: tuple[str, ...] = ()


@dataclass
class Experiment:
    source: Path
    title: str
    steady_state: list[SteadyProbe]
    method: list[FaultStep | Pause]
    rollbacks: list[Rollback] = field(default_factory=list)


# ------------------------------------------------------------ loading and validation


class _Reader:
    def __init__(self, source: Path):
        self.source = source

    def fail(self, field_path: str, reason: str):
        raise ExperimentError(self.source, field_path, reason)

    def mapping(self, value, field_path: str, required: set[str], optional: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(field_path, "expected a mapping")
        for key in value:
            if key not in required | optional:
                self.fail(f"{field_path}.{key}" if field_path else key,
                          f"unknown field (expected one of {', '.join(sorted(required | optional))})")
        for key in sorted(required - set(value)):
            self.fail(f"{field_path}.{key}" if field_path else key, "missing")
        return value

    def number(self, value, field_path: str, low: float, high: float, integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.fail(field_path, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
        if not low <= value <= high:
            self.fail(field_path, f"{value} is outside {low}..{high}")
        return value

    def text(self, value, field_path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(field_path, "expected a non-empty string")
        return value


def _field(where: str, argument: str) -> str:
    """A refused injection's argument (`--param rate`, `--target`) as the file's field."""
    if argument.startswith("--param "):
        return f"{where}.params.{argument.removeprefix('--param ')}"
    return {"--target": f"{where}.target", "--duration": f"{where}.duration", "FAULT": f"{where}.fault"}.get(
        argument, f"{where}.params")


def load(path: Path | str, topology: Topology) -> Experiment:
    source = Path(path)
    r = _Reader(source)
    if not source.is_file():
        raise ExperimentError(source, "FILE", "no such file")
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ExperimentError(source, "FILE", f"not YAML: {exc}") from None
    data = r.mapping(data, "", {"title", "steady-state", "method"}, {"description", "rollbacks"})
    title = r.text(data["title"], "title")
    steady = []
    if not isinstance(data["steady-state"], list) or not data["steady-state"]:
        r.fail("steady-state", "expected a non-empty list of probes")
    for i, item in enumerate(data["steady-state"]):
        where = f"steady-state[{i}]"
        item = r.mapping(item, where, {"probe"}, {"samples", "tolerance"})
        if item["probe"] not in PROBE_NAMES:
            r.fail(f"{where}.probe", f"unknown probe {item['probe']!r} (probes: {', '.join(PROBE_NAMES)})")
        tolerance = r.mapping(item.get("tolerance", {}), f"{where}.tolerance", set(), {"success", "max_seconds"})
        steady.append(SteadyProbe(
            item["probe"], int(r.number(item.get("samples", 3), f"{where}.samples", 1, MAX_SAMPLES, integer=True)),
            float(r.number(tolerance.get("success", 1.0), f"{where}.tolerance.success", 0.01, 1.0)),
            float(r.number(tolerance["max_seconds"], f"{where}.tolerance.max_seconds", 0.01, 60))
            if "max_seconds" in tolerance else None))
    method: list[FaultStep | Pause] = []
    if not isinstance(data["method"], list) or not data["method"]:
        r.fail("method", "expected a non-empty list of faults and pauses")
    for i, item in enumerate(data["method"]):
        where = f"method[{i}]"
        if isinstance(item, dict) and "pause" in item:
            item = r.mapping(item, where, {"pause"})
            method.append(Pause(float(r.number(item["pause"], f"{where}.pause", 0, MAX_PAUSE_S))))
            continue
        item = r.mapping(item, where, {"fault", "target"}, {"duration", "params"})
        if item["fault"] not in CATALOGUE:
            r.fail(f"{where}.fault", f"unknown fault {item['fault']!r} (`hoplab chaos list`)")
        node = r.text(item["target"], f"{where}.target").partition(":")[0]
        if node not in topology.nodes:
            r.fail(f"{where}.target", f"unknown node {node!r} in lab {topology.name!r}")
        params = r.mapping(item.get("params", {}), f"{where}.params", set(), set(CATALOGUE[item["fault"]].params))
        duration = float(r.number(item.get("duration", 60), f"{where}.duration", 1, MAX_DURATION_S))
        try:  # the same checks as `hoplab chaos inject`: every parameter typed, the target fitting
            request = prepare(topology, item["fault"], item["target"], duration, params)
        except FaultError as exc:
            r.fail(_field(where, exc.argument), str(exc).split(": ", 1)[-1])
        method.append(FaultStep(item["fault"], item["target"], duration, request.values))
    rollbacks = []
    items = data.get("rollbacks", [{"revert": "faults"}])
    if not isinstance(items, list):
        r.fail("rollbacks", "expected a list")
    for i, item in enumerate(items):
        where = f"rollbacks[{i}]"
        if isinstance(item, dict) and "revert" in item:
            item = r.mapping(item, where, {"revert"})
            if item["revert"] != "faults":
                r.fail(f"{where}.revert", "expected 'faults' (every fault this experiment injected)")
            rollbacks.append(Rollback(revert=True))
            continue
        item = r.mapping(item, where, {"exec"})
        spec = r.mapping(item["exec"], f"{where}.exec", {"node", "command"})
        if spec["node"] not in topology.nodes:
            r.fail(f"{where}.exec.node", f"unknown node {spec['node']!r} in lab {topology.name!r}")
        command = spec["command"]
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            r.fail(f"{where}.exec.command", "expected a non-empty list of strings (argv)")
        rollbacks.append(Rollback(node=spec["node"], command=tuple(command)))
    return Experiment(source, title, steady, method, rollbacks)


# ------------------------------------------------------------ running


def measure(backend: Backend, topology: Topology, client: str, steady: list[SteadyProbe]) -> list[dict]:
    from hoplab.drill import probes

    available = probes(topology, client)
    results = []
    for item in steady:
        check = available.get(item.probe)
        if check is None:
            results.append({"probe": item.probe, "within_tolerance": False, "samples": [],
                            "note": f"lab {topology.name!r} cannot run this probe"})
            continue
        samples = []
        for _ in range(item.samples):
            outcome = run_check(backend, topology, check)
            fast = item.max_seconds is None or outcome.seconds <= item.max_seconds
            samples.append({"ok": outcome.ok and fast, "seconds": round(outcome.seconds, 3),
                            "reason": outcome.reason or ("" if fast else f"slower than {item.max_seconds} s")})
        share = sum(s["ok"] for s in samples) / len(samples)
        results.append({"probe": item.probe, "what": check.what, "success": share, "tolerance": {
            "success": item.success, "max_seconds": item.max_seconds},
            "within_tolerance": share >= item.success, "samples": samples})
    return results


def run(backend: Backend, topology: Topology, experiment: Experiment, client: str, journal_path: Path) -> dict:
    chaos = Chaos(backend, topology)
    journal: dict = {"experiment": experiment.title, "file": str(experiment.source), "lab": topology.name,
                     "client": client, "started": time.time(), "steady_state_before": [], "method": [],
                     "steady_state_after": [], "rollbacks": [], "verdict": "aborted"}
    injected: list[str] = []
    try:
        journal["steady_state_before"] = measure(backend, topology, client, experiment.steady_state)
        if not all(p["within_tolerance"] for p in journal["steady_state_before"]):
            journal["verdict"] = "not-steady"
            return journal
        for step in experiment.method:
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                journal["method"].append({"pause": step.seconds})
                continue
            try:
                entry = chaos.inject(step.fault, step.target, step.duration, step.params)
            except FaultError as exc:
                journal["method"].append({"fault": step.fault, "target": step.target, "error": str(exc)})
                return journal
            chaos.start_reaper()
            injected.append(entry.id)
            journal["method"].append({"fault": step.fault, "target": step.target, "id": entry.id,
                                      "duration": step.duration, "params": entry.params, "symptom": entry.symptom})
        journal["steady_state_after"] = measure(backend, topology, client, experiment.steady_state)
        journal["verdict"] = "held" if all(p["within_tolerance"] for p in journal["steady_state_after"]) else "deviated"
        return journal
    finally:
        for rollback in experiment.rollbacks:  # always: after a deviation, an error or Ctrl-C alike
            if rollback.revert:
                reverted = [e.id for e in (chaos.revert(i, note="experiment rollback") for i in injected) if e]
                journal["rollbacks"].append({"revert": "faults", "reverted": reverted})
            else:
                result = backend.run(topology, rollback.node, list(rollback.command), timeout=60)
                journal["rollbacks"].append({"exec": {"node": rollback.node, "command": list(rollback.command)},
                                             "exit": result.returncode,
                                             "output": (result.stdout + result.stderr).strip()[-2000:]})
        journal["ended"] = time.time()
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        journal_path.write_text(json.dumps(journal, indent=2) + "\n")


def default_journal(topology: Topology, experiment: Experiment) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return RUN_STATE_DIR / topology.name / "experiments" / f"{stamp}-{experiment.source.stem}.json"

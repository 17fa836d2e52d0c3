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

from hoplab import userfile
from hoplab.backends.base import Backend
from hoplab.chaos.faults import CATALOGUE, FaultError, prepare
from hoplab.chaos.journal import Chaos
from hoplab.diagnose import run_check
from hoplab.paths import PROJECT_ROOT, RUN_STATE_DIR
from hoplab.spec import Topology
from hoplab.userfile import FileError

PROBE_NAMES = ("page", "order-page", "page-fast", "fresh-order-page", "quick-reloads", "every-replica", "order-mail",
               "renewed-lease", "game")
SCHEMA_FILE = PROJECT_ROOT / "experiments" / "experiment.schema.json"


class ExperimentError(FileError):
    """A bad experiment file: `FILE: FIELD: REASON` per problem (exit 2)."""

    kind = "experiment"


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


def _field(where: str, argument: str) -> str:
    """A refused injection's argument (`--param rate`, `--target`) as the file's field."""
    if argument.startswith("--param "):
        return f"{where}.params.{argument.removeprefix('--param ')}"
    return {"--target": f"{where}.target", "--duration": f"{where}.duration", "FAULT": f"{where}.fault"}.get(
        argument, f"{where}.params")


def load(path: Path | str, topology: Topology) -> Experiment:
    """The file checked against `experiments/experiment.schema.json`, then against the lab:
    probe, fault and node names, and each fault's parameters typed as `hoplab chaos inject`
    types them. Every problem is reported at once."""
    source = Path(path)
    data = userfile.load(source, SCHEMA_FILE, ExperimentError)
    problems: list[tuple[str, str]] = []
    steady = []
    for i, item in enumerate(data["steady-state"]):
        if item["probe"] not in PROBE_NAMES:
            problems.append((f"steady-state.{i}.probe",
                             f"unknown probe {item['probe']!r} (probes: {', '.join(PROBE_NAMES)})"))
        tolerance = item.get("tolerance", {})
        steady.append(SteadyProbe(item["probe"], item.get("samples", 3), float(tolerance.get("success", 1.0)),
                                  float(tolerance["max_seconds"]) if "max_seconds" in tolerance else None))
    method: list[FaultStep | Pause] = []
    for i, item in enumerate(data["method"]):
        where = f"method.{i}"
        if "pause" in item:
            method.append(Pause(float(item["pause"])))
            continue
        if item["fault"] not in CATALOGUE:
            problems.append((f"{where}.fault", f"unknown fault {item['fault']!r} (`hoplab chaos list`)"))
            continue
        allowed = CATALOGUE[item["fault"]].params
        unknown = sorted(set(item.get("params", {})) - set(allowed))
        if unknown:
            problems += [(f"{where}.params.{key}", f"unknown parameter of {item['fault']} (parameters: "
                                                   f"{', '.join(allowed) or 'none'})") for key in unknown]
            continue
        duration = float(item.get("duration", 60))
        try:  # the same checks as `hoplab chaos inject`: every parameter typed, the target fitting
            request = prepare(topology, item["fault"], item["target"], duration, item.get("params", {}))
        except FaultError as exc:
            problems.append((_field(where, exc.argument), str(exc).split(": ", 1)[-1]))
            continue
        method.append(FaultStep(item["fault"], item["target"], duration, request.values))
    rollbacks = []
    for i, item in enumerate(data.get("rollbacks", [{"revert": "faults"}])):
        if "revert" in item:
            rollbacks.append(Rollback(revert=True))
            continue
        node = item["exec"]["node"]
        if node not in topology.nodes:
            problems.append((f"rollbacks.{i}.exec.node", f"unknown node {node!r} in lab {topology.name!r}"))
        rollbacks.append(Rollback(node=node, command=tuple(item["exec"]["command"])))
    if problems:
        raise ExperimentError(source, problems)
    return Experiment(source, data["title"], steady, method, rollbacks)


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

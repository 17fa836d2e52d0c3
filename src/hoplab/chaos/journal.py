"""Injecting and reverting faults, with a journal (chaos.json in the backend's state folder for the
lab: build/docker/<lab>/, /run/hoplab-netns/<lab>/) that records
each fault's undo before the fault acts. Whatever happens to the CLI afterwards, the undo is
there: `halt`, the fault's deadline (a detached reaper process), Ctrl-C, and the next hoplab
command (which reverts every expired fault first) all run it."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hoplab.backends.base import Backend
from hoplab.chaos.faults import CATALOGUE, FaultError, Step, prepare
from hoplab.paths import CHAOS_JOURNAL
from hoplab.progress import Progress
from hoplab.spec import Topology



@dataclass
class Entry:
    id: str
    fault: str
    node: str
    iface: str | None
    params: dict
    symptom: str
    started: float
    deadline: float
    undo: list[dict]
    state: str = "active"  # active, reverted, failed
    notes: list[str] = field(default_factory=list)
    owner: str = ""  # "drill": a drill's hidden fault, journaled so from its first instant


class Chaos:
    def __init__(self, backend: Backend, topology: Topology, state_root: Path | None = None):
        self.backend = backend
        self.topology = topology
        self.path = (backend.state_root if state_root is None else state_root) / topology.name / CHAOS_JOURNAL

    # ------------------------------------------------------------ the journal

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = [Entry(**e) for e in json.loads(self.path.read_text())] if self.path.exists() else []
            yield entries
            tmp = self.path.with_suffix(".tmp")
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a restart undo may have made the lab anew
            with open(tmp, "w") as handle:
                json.dump([asdict(e) for e in entries], handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.path)

    def entries(self) -> list[Entry]:
        return [Entry(**e) for e in json.loads(self.path.read_text())] if self.path.exists() else []

    def active(self) -> list[Entry]:
        return [e for e in self.entries() if e.state == "active"]

    # ------------------------------------------------------------ acting

    def _run(self, step: dict | Step) -> tuple[bool, str]:
        step = step if isinstance(step, Step) else Step.from_json(step)
        if step.kind == "restart":
            try:
                self.backend.up(self.topology, Progress(quiet=True))
            except Exception as exc:  # noqa: BLE001 -- any failure is the undo's note, not a crash
                return False, f"restarting {step.node}: {exc}"
            return True, ""
        result = self.backend.run(self.topology, step.node, list(step.argv), timeout=30)
        return result.returncode == 0, (result.stderr or result.stdout).strip()

    def inject(self, fault_name: str, target: str, duration: float, params: dict, owner: str = "") -> Entry:
        """Check every argument and plan (`faults.prepare`: nothing has run if it refuses), record
        the undo, then act."""
        request = prepare(self.topology, fault_name, target, duration, params)
        node, iface, values, plan, fault = request.node, request.iface, request.values, request.plan, request.fault
        now = time.time()
        entry = Entry(secrets.token_hex(4), fault_name, node, iface, values, plan.symptom, now,
                      now + duration, [s.to_json() for s in plan.undo], owner=owner)
        with self._locked() as entries:  # the undo is on disk before anything acts
            clash = next((e for e in entries if e.state == "active" and e.node == node
                          and CATALOGUE[e.fault].claims == fault.claims), None)
            if clash:
                raise FaultError(f"FAULT: {clash.fault} ({clash.id}) already changes the same thing on {node}; "
                                 f"halt it first")
            entries.append(entry)
        for step in plan.act:
            ok, output = self._run(step)
            if not ok:
                self.revert(entry.id, state="failed", note=f"inject failed: {output}")
                raise FaultError(f"{fault_name} on {target}: {output or 'failed'}")
        return entry

    def revert(self, entry_id: str, state: str = "reverted", note: str | None = None) -> Entry | None:
        with self._locked() as entries:
            entry = next((e for e in entries if e.id == entry_id and e.state == "active"), None)
            if entry is None:
                return None
            for step in entry.undo:
                ok, output = self._run(step)
                if not ok:
                    entry.notes.append(f"undo step failed: {output}")
            entry.state = state
            if note:
                entry.notes.append(note)
            return entry

    def halt(self) -> list[Entry]:
        return [e for e in (self.revert(a.id) for a in self.active()) if e]

    def revert_expired(self) -> list[Entry]:
        now = time.time()
        return [e for e in (self.revert(a.id) for a in self.active() if a.deadline <= now) if e]

    def start_reaper(self) -> None:
        """A detached process that reverts each fault at its deadline, whatever happens to the
        CLI that injected it."""
        reaper = [sys.executable, "-m", "hoplab", "chaos", "reap", "--topology", str(self.topology.source),
                  "--backend", self.backend.name]
        subprocess.Popen(reaper, start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)

    def reap(self) -> None:
        """Stay until no fault is active, reverting each at its deadline."""
        while True:
            self.revert_expired()
            active = self.active()
            if not active:
                return
            time.sleep(max(0.2, min(1.0, min(a.deadline for a in active) - time.time())))

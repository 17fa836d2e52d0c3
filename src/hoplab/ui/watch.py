"""The lab's live state for the page: a thread polls the backend's status (state and health of
every node) and the chaos journal (active faults, their deadlines), and bumps a version number
when anything changed. Server-sent events wait on the version; nothing polls the lab per
browser tab. Addresses (a command per node on some backends) are asked less often."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hoplab.backends.base import Backend
from hoplab.spec import Topology

POLL_S = 0.8  # the page must show a stopped node or a new fault within 2 s
ADDRESSES_EVERY_S = 15.0


class LabWatch:
    def __init__(self, backend: Backend, topology: Topology, faults: Callable[[], list[dict]],
                 poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic):
        self.backend, self.topology, self.faults = backend, topology, faults
        self.poll_s, self.clock = poll_s, clock
        self.version = 0
        self.snapshot: dict = {"version": 0, "nodes": {}, "faults": [], "error": ""}
        self._addresses: dict[str, dict[str, str]] = {}
        self._addresses_at = float("-inf")
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ polling

    def poll_once(self) -> bool:
        """One look at the lab; True when the page's view changed."""
        error = ""
        want_addresses = self.clock() - self._addresses_at >= ADDRESSES_EVERY_S
        try:
            statuses = self.backend.status(self.topology, addresses=want_addresses)
        except Exception as exc:  # the backend's own words, on the page: the lab is down, the engine is gone
            statuses, error = [], f"status: {exc}"
        if want_addresses and statuses:
            self._addresses = {s.node: s.addresses for s in statuses}
            self._addresses_at = self.clock()
        nodes = {s.node: {"state": s.state, "health": s.health, "service": s.service,
                          "addresses": self._addresses.get(s.node, {})} for s in statuses}
        try:
            faults = [dict(f) for f in self.faults()]  # a copy: the snapshot must not change under us
        except Exception as exc:
            faults, error = [], error or f"chaos journal: {exc}"
        view = {"nodes": nodes, "faults": faults, "error": error}
        with self._changed:
            if view == {k: self.snapshot[k] for k in view}:
                return False
            self.version += 1
            self.snapshot = {"version": self.version, **view}
            self._changed.notify_all()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            self.poll_once()
            self._stop.wait(max(self.poll_s - (self.clock() - started), 0.05))

    def start(self) -> "LabWatch":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hoplab-ui-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------ reading

    def wait(self, after: int, timeout: float) -> dict:
        """The snapshot once its version is past `after`, or the current one after `timeout` s."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > after, timeout=timeout)
            return self.snapshot

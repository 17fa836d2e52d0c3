"""Progress lines for long operations: `[  12.3s] message` on stderr."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.started = time.monotonic()
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        if self.quiet:
            return
        with self._lock:
            print(f"[{self.elapsed:6.1f}s] {message}", file=self.stream, flush=True)

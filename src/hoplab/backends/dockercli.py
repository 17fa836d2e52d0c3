"""Thin access to the Docker engine through its CLI and Compose, asking for JSON where there
is a choice."""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from hoplab.backends.base import BackendError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A Compose run outlives a killed `hoplab up` otherwise, and goes on creating containers
    # after `hoplab clean` has looked for them.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class DockerCLI:
    def __init__(self, docker: str | None = None, compose: list[str] | None = None):
        self.docker = docker or shutil.which("docker") or "docker"
        self._compose = compose

    @property
    def compose_command(self) -> list[str]:
        if self._compose is None:
            beside = Path(sys.executable).parent / "docker-compose"
            found = str(beside) if beside.exists() else shutil.which("docker-compose")
            self._compose = [found] if found else [self.docker, "compose"]
        return self._compose

    def run(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([self.docker, *args], text=True, capture_output=True, input=input)
        if check and result.returncode != 0:
            raise BackendError(f"docker {' '.join(args[:3])} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def reachable(self) -> bool:
        try:
            return self.run("version", "--format", "{{.Server.Version}}", check=False).returncode == 0
        except FileNotFoundError:
            return False

    def ids(self, kind: str, label: str) -> list[str]:
        """IDs (names for volumes) of containers, networks or volumes carrying `label`."""
        if kind == "container":
            out = self.run("ps", "-aq", "--filter", f"label={label}").stdout
        else:
            out = self.run(kind, "ls", "-q", "--filter", f"label={label}").stdout
        return out.split()

    def inspect(self, *names: str, kind: str | None = None) -> list[dict]:
        if not names:
            return []
        args = ["inspect", *names] if kind is None else [kind, "inspect", *names]
        result = self.run(*args, check=False)
        return json.loads(result.stdout or "[]")

    def image_label(self, image: str, label: str) -> str | None:
        found = self.inspect(image, kind="image")
        if not found:
            return None
        return (found[0].get("Config") or {}).get("Labels", {}).get(label)

    def image_id(self, image: str) -> str | None:
        found = self.inspect(image, kind="image")
        return found[0]["Id"] if found else None

    def events(self, label: str) -> subprocess.Popen:
        """Container events of objects carrying `label`, one JSON object a line, from now on."""
        return subprocess.Popen([self.docker, "events", "--filter", "type=container", "--filter", f"label={label}",
                                 "--format", "{{json .}}"], text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def compose(self, project: str, compose_file: Path | None, *args: str) -> subprocess.Popen:
        argv = [*self.compose_command, "-p", project]
        if compose_file is not None:
            argv += ["-f", str(compose_file)]
        return subprocess.Popen([*argv, *args], text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

"""Every external command hoplab runs has a time limit: this is the one place that runs them.

`run` is subprocess.run whose `timeout` is required; `wait` and `communicate` bound a Popen the
same way. When a limit is hit the child is killed (subprocess does that for `run`; here for the
others) and `Timeout` is raised; its message names the command (its first two words) and the
limit in seconds, so the CLI prints one sentence and exits 1 (tests/unit/test_bounded.py checks
that no call in src/hoplab goes around this).

Standard library only: the node runtime and the agent use it inside the lab's nodes."""

from __future__ import annotations

import subprocess


def command_name(argv) -> str:
    """The first two words of a command line: enough to say which command it was."""
    if isinstance(argv, (str, bytes)):
        argv = [argv]
    words = [str(word) for word in (argv or [])][:2]
    return " ".join(words) or "a command"


def describe(exc: subprocess.TimeoutExpired, what: str | None = None) -> str:
    """The sentence for a command that ran out of time."""
    name = f"`{command_name(exc.cmd)}`"
    return f"{what} ({name}) did not finish within {exc.timeout:g} s" if what else \
        f"{name} did not finish within {exc.timeout:g} s"


def explain(exc: subprocess.TimeoutExpired) -> str:
    """The sentence for any TimeoutExpired: ours say what the step was, others get the same form."""
    return str(exc) if isinstance(exc, Timeout) else describe(exc)


class Timeout(subprocess.TimeoutExpired):
    """A command ran past its limit (and was killed). A TimeoutExpired, so code that catches
    that keeps working; its message says what and how long."""

    def __init__(self, cmd, timeout: float, what: str | None = None, output=None, stderr=None):
        super().__init__(cmd, timeout, output, stderr)
        self.what = what

    def __str__(self) -> str:
        return describe(self, self.what)


def run(argv: list[str], *, timeout: float, what: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with a required time limit (seconds); `what` names the step in the error."""
    if timeout is None or timeout <= 0:
        raise ValueError(f"{command_name(argv)}: a time limit in seconds is required, got {timeout!r}")
    try:
        return subprocess.run(argv, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise Timeout(exc.cmd, timeout, what, exc.output, exc.stderr) from None


def communicate(proc: subprocess.Popen, *, timeout: float, input=None, what: str | None = None):
    """proc.communicate with a limit; past it the process is killed and reaped, and Timeout raised."""
    try:
        return proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise Timeout(proc.args, timeout, what) from None


def wait(proc: subprocess.Popen, *, timeout: float, what: str | None = None) -> int:
    """proc.wait with a limit; past it the process is killed and reaped, and Timeout raised."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise Timeout(proc.args, timeout, what) from None


KILL_REAP_S = 5  # after SIGKILL, how long to wait for the kernel to let the child go


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    try:
        proc.communicate(timeout=KILL_REAP_S)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass  # unkillable (D state) or its pipes already closed: the Timeout says enough

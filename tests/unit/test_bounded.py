"""Bounded everything: no external command in src/hoplab runs without a time limit.

An AST walk over the package finds every subprocess.run/check_output/check_call/call (these must
go through hoplab.bounded.run, whose `timeout` is required), os.system/os.popen, and every
`.communicate()`/`.wait()` without a timeout. A call that must stay unbounded (a user's own
interactive session) says why with a `# unbounded: REASON` comment on its line. The checker is
first shown to fail on small synthetic sources. Then the helper itself: its error names the
command and the bound, and the CLI turns it into one sentence and exit 1."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hoplab import bounded

PACKAGE = Path(bounded.__file__).parent
SKIPPED = {PACKAGE / "bounded.py"}  # the one place that calls subprocess itself
SKIPPED_DIRS = {PACKAGE / "v1"}  # generated gRPC stubs
RUNNERS = {"run", "check_output", "check_call", "call", "getoutput", "getstatusoutput"}
PRAGMA = "# unbounded:"


def _has_timeout(call: ast.Call, positional_at: int) -> bool:
    """A timeout is given: as a keyword (not the constant None), or as the positional argument
    at index `positional_at`."""
    for keyword in call.keywords:
        if keyword.arg == "timeout":
            return not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)
        if keyword.arg is None:  # **kwargs: cannot tell; count it as unbounded
            return False
    return len(call.args) > positional_at


def unbounded_calls(source: str, filename: str = "<source>", direct_ok: bool = False) -> list[str]:
    """`file:line: what` for every call that runs or waits for a process with no bound. With
    `direct_ok` (the services' start scripts) subprocess.run and the like may be called directly,
    given a timeout."""
    tree = ast.parse(source, filename)
    lines = source.splitlines()
    from_subprocess: set[str] = set()  # names bound by `from subprocess import run`
    from_bounded: set[str] = set()
    subprocess_aliases, bounded_aliases = {"subprocess"}, {"bounded"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "subprocess":
            from_subprocess |= {a.asname or a.name for a in node.names if a.name in RUNNERS}
        elif isinstance(node, ast.ImportFrom) and node.module == "hoplab.bounded":
            from_bounded |= {a.asname or a.name for a in node.names if a.name in ("run", "wait", "communicate")}
        elif isinstance(node, ast.ImportFrom) and node.module == "hoplab":
            bounded_aliases |= {a.asname or a.name for a in node.names if a.name == "bounded"}
        elif isinstance(node, ast.Import):
            subprocess_aliases |= {a.asname for a in node.names if a.name == "subprocess" and a.asname}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        line = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
        if PRAGMA in line:
            continue
        func, problem = node.func, None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, name = func.value.id, func.attr
            if owner in subprocess_aliases and name in RUNNERS and not (direct_ok and _has_timeout(node, 99)):
                problem = f"subprocess.{name} (use hoplab.bounded.run with a timeout)"
            elif owner == "os" and name in ("system", "popen"):
                problem = f"os.{name} (use hoplab.bounded.run with a timeout)"
            elif owner in bounded_aliases and name in ("run", "wait", "communicate") and not _has_timeout(node, 99):
                problem = f"bounded.{name} without timeout="
        elif isinstance(func, ast.Name) and func.id in from_subprocess:
            problem = f"{func.id} from subprocess (use hoplab.bounded.run with a timeout)"
        elif isinstance(func, ast.Name) and func.id in from_bounded and not _has_timeout(node, 99):
            problem = f"bounded {func.id} without timeout="
        if problem is None and isinstance(func, ast.Attribute):
            owner_is_module = isinstance(func.value, ast.Name) and func.value.id in bounded_aliases
            if func.attr == "communicate" and not owner_is_module and not _has_timeout(node, 1):
                problem = ".communicate() without a timeout"
            elif func.attr == "wait" and not owner_is_module and not _has_timeout(node, 0):
                problem = ".wait() without a timeout"
        if problem:
            found.append(f"{filename}:{node.lineno}: {problem}")
    return found


# ------------------------------------------------------------ the checker can fail

BAD = {
    "run": "import subprocess\nsubprocess.run(['ip', 'link'])\n",
    "run even with a timeout": "import subprocess\nsubprocess.run(['ip'], timeout=5)\n",
    "check_output": "import subprocess\nsubprocess.check_output(['ls'])\n",
    "check_call": "import subprocess\nsubprocess.check_call(['ls'])\n",
    "call": "import subprocess\nsubprocess.call(['ls'])\n",
    "aliased module": "import subprocess as sp\nsp.run(['ls'])\n",
    "imported name": "from subprocess import check_output as co\nco(['ls'])\n",
    "os.system": "import os\nos.system('ls')\n",
    "communicate": "p = make()\nout, err = p.communicate()\n",
    "communicate with input only": "p = make()\np.communicate('x')\n",
    "communicate timeout None": "p = make()\np.communicate(timeout=None)\n",
    "wait": "p = make()\np.wait()\n",
    "wait on an attribute": "self._proc.wait()\n",
    "bounded.run without a timeout": "from hoplab import bounded\nbounded.run(['ls'])\n",
    "bounded.run with **kwargs only": "from hoplab import bounded\nbounded.run(['ls'], **kw)\n",
    "bounded wait imported": "from hoplab.bounded import wait\nwait(p)\n",
    "pragma with no reason elsewhere": "import subprocess\n# unbounded: on the wrong line\nsubprocess.call(['ls'])\n",
}

GOOD = {
    "bounded.run": "from hoplab import bounded\nbounded.run(['ip', 'link'], timeout=10)\n",
    "bounded.wait": "from hoplab import bounded\nbounded.wait(p, timeout=5)\n",
    "communicate keyword": "p.communicate(timeout=3)\n",
    "communicate positional": "p.communicate(None, 3)\n",
    "wait positional": "p.wait(0.5)\n",
    "event wait": "stop.wait(timeout=1)\n",
    "popen itself": "import subprocess\nsubprocess.Popen(['sleep', '1'])\n",
    "a pragma with a reason": "import subprocess\nsubprocess.call(['sh'])  # unbounded: the user's shell\n",
    "another module's run": "import asyncio\nasyncio.run(main())\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_checker_finds_an_unbounded_call(name):
    assert unbounded_calls(BAD[name]), f"{name}: not found in\n{BAD[name]}"


@pytest.mark.parametrize("name", sorted(GOOD))
def test_the_checker_accepts_a_bounded_call(name):
    assert unbounded_calls(GOOD[name]) == []


def sources() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if p not in SKIPPED and not any(d in p.parents for d in SKIPPED_DIRS)]


def test_the_walk_sees_the_package():
    names = {p.relative_to(PACKAGE).as_posix() for p in sources()}
    assert {"cli.py", "graph.py", "backends/netns.py", "control/agent.py", "node/__init__.py"} <= names


def test_every_external_call_in_src_is_bounded():
    found = [problem for path in sources()
             for problem in unbounded_calls(path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert found == [], "unbounded external calls:\n" + "\n".join(found)


def start_scripts() -> list[Path]:
    services = PACKAGE.parents[1] / "services"
    return [p for p in sorted(services.glob("*/start")) if p.read_text().startswith("#!/usr/bin/env python3")]


def test_every_external_call_in_the_services_start_scripts_is_bounded():
    scripts = start_scripts()
    assert len(scripts) >= 5
    found = [problem for path in scripts
             for problem in unbounded_calls(path.read_text(), f"services/{path.parent.name}/start", direct_ok=True)]
    assert found == [], "unbounded external calls:\n" + "\n".join(found)


def test_a_start_script_may_call_subprocess_directly_only_with_a_timeout():
    assert unbounded_calls("import subprocess\nsubprocess.run(['x'], timeout=5)\n", direct_ok=True) == []
    assert unbounded_calls("import subprocess\nsubprocess.run(['x'])\n", direct_ok=True)


def test_every_unbounded_pragma_gives_a_reason():
    for path in sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRAGMA in line:
                assert line.split(PRAGMA, 1)[1].strip(), f"{path}:{number}: `{PRAGMA}` with no reason"


# ------------------------------------------------------------ the helper

def test_a_timeout_names_the_command_and_the_bound():
    with pytest.raises(subprocess.TimeoutExpired) as caught:  # still one, for old handlers
        bounded.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert isinstance(caught.value, bounded.Timeout)
    assert str(caught.value) == f"`{sys.executable} -c` did not finish within 0.3 s"


def test_a_timeout_says_what_the_step_was():
    with pytest.raises(bounded.Timeout, match=r"^building x \(`sleep 5`\) did not finish within 0.2 s$"):
        bounded.run(["sleep", "5"], timeout=0.2, what="building x")


def test_a_time_limit_is_required():
    with pytest.raises(TypeError):
        bounded.run(["true"])  # noqa -- the point: timeout is keyword-only and required
    with pytest.raises(ValueError, match="true: a time limit"):
        bounded.run(["true"], timeout=None)


def test_wait_and_communicate_kill_what_runs_too_long():
    proc = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
    with pytest.raises(bounded.Timeout, match=r"`sleep 30` did not finish within 0.2 s"):
        bounded.communicate(proc, timeout=0.2)
    assert proc.returncode is not None  # killed and reaped, not left behind
    proc = subprocess.Popen(["sleep", "30"])
    with pytest.raises(bounded.Timeout, match=r"did not finish within 0.2 s"):
        bounded.wait(proc, timeout=0.2)
    assert proc.returncode is not None
    proc = subprocess.Popen(["true"])
    assert bounded.wait(proc, timeout=10) == 0


def test_a_timeout_is_one_sentence_and_exit_1_from_the_cli(monkeypatch, capsys):
    from hoplab import cli

    def slow(*args, **kwargs):
        return bounded.run(["sleep", "5"], timeout=0.1)

    monkeypatch.setattr(cli.Validate, "run", lambda self, args: slow())
    assert cli.main(["validate"]) == 1
    err = capsys.readouterr().err
    assert err == "hoplab validate: `sleep 5` did not finish within 0.1 s\n"


def test_a_plain_timeout_expired_is_reported_the_same_way(monkeypatch, capsys):
    from hoplab import cli

    def slow(self, args):  # what a backend's exec with a timeout raises (engine.run, netns run)
        raise subprocess.TimeoutExpired(["ip", "neigh", "flush", "dev", "home"], 10)

    monkeypatch.setattr(cli.Validate, "run", slow)
    assert cli.main(["validate"]) == 1
    assert capsys.readouterr().err == "hoplab validate: `ip neigh` did not finish within 10 s\n"


def test_describe_handles_odd_commands():
    assert bounded.command_name("sh -c 'x'") == "sh -c 'x'"
    assert bounded.command_name([]) == "a command"
    assert bounded.command_name(["docker", "compose", "up"]) == "docker compose"
    assert textwrap.dedent(bounded.describe(subprocess.TimeoutExpired(["a"], 2.5))) == "`a` did not finish within 2.5 s"

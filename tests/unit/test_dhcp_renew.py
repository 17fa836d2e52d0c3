"""`visit --renew` signals only that node's own udhcpc (hoplab.node.dhcp): on the netns backend
every lab's nodes share the host's /proc, so the selection works on a fake /proc here where
several nodes' (and labs') clients run side by side, each in its own network namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hoplab.node import dhcp

OWN, OTHER, HOST = "net:[4026532001]", "net:[4026532999]", "net:[4026531840]"


def fake_proc(root: Path, processes: dict[int, tuple[str, str]], own: str = OWN) -> Path:
    """/proc with `self` in namespace `own` and each pid's comm and ns/net link."""
    proc = root / "proc"
    (proc / "self" / "ns").mkdir(parents=True)
    os.symlink(own, proc / "self" / "ns" / "net")
    for pid, (comm, netns) in processes.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        os.symlink(netns, proc / str(pid) / "ns" / "net")
    (proc / "meminfo").write_text("not a process\n")
    return proc


def run_dir(root: Path, service_pid: int | None) -> Path:
    folder = root / "run"
    folder.mkdir()
    if service_pid is not None:
        (folder / "service.pid").write_text(f"{service_pid}\n")
    return folder


# Another lab's client (pid 200) and another node's (300) run in other namespaces; the host's
# own udhcpc (400) in the host's. Only 100 is this node's.
NEIGHBOURS = {200: ("udhcpc", OTHER), 300: ("udhcpc", "net:[4026532500]"), 400: ("udhcpc", HOST),
              101: ("python3", OWN)}


def test_the_recorded_service_is_chosen_when_it_is_a_client_here(tmp_path):
    proc = fake_proc(tmp_path, {100: ("udhcpc", OWN), **NEIGHBOURS})
    assert dhcp.client_pid(run_dir(tmp_path, 100), proc) == 100


def test_without_a_record_the_one_client_in_the_namespace_is_chosen(tmp_path):
    proc = fake_proc(tmp_path, {100: ("udhcpc", OWN), **NEIGHBOURS})
    assert dhcp.client_pid(run_dir(tmp_path, None), proc) == 100


def test_a_stale_record_naming_another_nodes_client_is_not_followed(tmp_path):
    # service.pid names 200 (a recycled pid: now another lab's udhcpc): never signal that one.
    proc = fake_proc(tmp_path, {100: ("udhcpc", OWN), **NEIGHBOURS})
    assert dhcp.client_pid(run_dir(tmp_path, 200), proc) == 100


def test_a_record_naming_something_else_here_is_not_followed(tmp_path):
    proc = fake_proc(tmp_path, {100: ("udhcpc", OWN), **NEIGHBOURS})
    assert dhcp.client_pid(run_dir(tmp_path, 101), proc) == 100  # 101 is python3, not the client


def test_no_client_here_is_an_error_even_when_others_run(tmp_path):
    proc = fake_proc(tmp_path, NEIGHBOURS)
    with pytest.raises(dhcp.RenewError, match="no udhcpc runs in this node's network namespace"):
        dhcp.client_pid(run_dir(tmp_path, 200), proc)


def test_two_clients_here_and_no_record_among_them_is_not_guessed(tmp_path):
    proc = fake_proc(tmp_path, {100: ("udhcpc", OWN), 102: ("udhcpc", OWN), **NEIGHBOURS})
    with pytest.raises(dhcp.RenewError, match=r"2 udhcpc processes .*\(100, 102\).*not guessing"):
        dhcp.client_pid(run_dir(tmp_path, 999), proc)
    second = tmp_path / "second"
    second.mkdir()
    assert dhcp.client_pid(run_dir(second, 102), proc) == 102  # the record settles it


def test_an_unreadable_own_namespace_is_an_error(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    with pytest.raises(dhcp.RenewError, match="network namespace is unknown"):
        dhcp.client_pid(run_dir(tmp_path, 1), proc)


def test_renew_signals_the_chosen_client_and_waits_for_its_new_lease(tmp_path):
    # A real child stands for udhcpc: on SIGUSR1 it writes a new lease file, as the event hook does.
    folder = run_dir(tmp_path, None)
    (folder / "lease-home").write_text('{"event": "bound", "at_ns": 1}\n')
    script = ("import signal, sys, time, pathlib\n"
              "lease = pathlib.Path(sys.argv[1]) / 'lease-home'\n"
              "signal.signal(signal.SIGUSR1, lambda *_: lease.write_text('{\"event\": \"renew\", \"at_ns\": 2}\\n'))\n"
              "print('ready', flush=True)\n"
              "time.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        proc = fake_proc(tmp_path, {child.pid: ("udhcpc", OWN), **NEIGHBOURS})
        assert dhcp.renew(folder, proc, wait_s=5) == child.pid
        assert '"renew"' in (folder / "lease-home").read_text()
    finally:
        child.kill()
        child.wait(timeout=5)


def test_a_client_that_does_not_renew_is_reported(tmp_path):
    folder = run_dir(tmp_path, None)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGUSR1, "
                              "signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        proc = fake_proc(tmp_path, {child.pid: ("udhcpc", OWN)})
        with pytest.raises(dhcp.RenewError, match=rf"pid {child.pid}\) was told to renew, but its lease did not "
                                                  r"change within 0.3 s"):
            dhcp.renew(folder, proc, wait_s=0.3)
    finally:
        child.kill()
        child.wait(timeout=5)


def test_visit_renew_asks_the_node_runtime(monkeypatch):
    from hoplab import visit

    ran = []

    class Backend:
        def run(self, topology, node, argv, timeout=60, input=None):
            ran.append((node, argv, timeout))
            return subprocess.CompletedProcess(argv, 1, "", "renew: no udhcpc runs in this node's network namespace\n")

    with pytest.raises(visit.BackendError, match=r"client: the DHCP lease was not renewed: no udhcpc runs"):
        visit.renew_lease(Backend(), None, "client")
    assert ran == [("client", ["python3", "-m", "hoplab.node", "renew"], 15)]

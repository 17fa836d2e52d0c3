"""The netns backend's guard against running a node's command on the host: a process counts as
a node's only when both its network and mount namespaces are not the host's."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hoplab.backends import nodeproc


def test_this_process_is_on_the_host():
    assert not nodeproc.in_own_namespaces(os.getpid())
    assert not nodeproc.in_own_namespaces(1)


def test_a_process_that_is_gone_is_not_a_node():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not nodeproc.in_own_namespaces(proc.pid)
    assert not nodeproc.wait_in_own_namespaces(proc.pid, timeout=0.2)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_only_new_network_and_mount_namespaces_make_a_node():
    both = subprocess.Popen(["unshare", "--net", "--mount", "sleep", "5"])
    net_only = subprocess.Popen(["unshare", "--net", "sleep", "5"])
    try:
        assert nodeproc.wait_in_own_namespaces(both.pid, timeout=5)
        assert not nodeproc.wait_in_own_namespaces(net_only.pid, timeout=0.5)  # the host's mounts
    finally:
        both.kill()
        net_only.kill()

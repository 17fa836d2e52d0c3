"""Each node's memory from /proc: the Pss of every process in its network namespace."""

import os
import subprocess

from hoplab.memory import mib, node_memory, pss_bytes


def test_this_process_is_counted_in_its_namespace():
    memory = node_memory({"here": os.getpid()})
    mine = pss_bytes(str(os.getpid()), __import__("pathlib").Path("/proc"))
    assert mine > 2**20  # a Python interpreter holds megabytes
    assert memory["here"] >= mine  # every process of the host's namespace, this one among them


def test_a_gone_process_leaves_its_node_out():
    child = subprocess.Popen(["true"])
    child.wait()
    assert node_memory({"gone": child.pid}) == {}


def test_mib_rounds_to_whole_mebibytes():
    assert mib(3 * 2**20 + 1000) == "3 MiB"

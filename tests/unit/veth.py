"""Two named network namespaces joined by a veth pair (a's end veth0 at PREFIX.1, b's veth1 at
PREFIX.2, /24), for the unit tests that need a real kernel path: the kernel tracer and link
impairments. The pair and everything set up inside goes with the namespaces afterwards. A test
file that uses it makes named namespaces, so it runs alone (Makefile UNIT_ALONE)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def joined(name: str, prefix: str):
    """Yields (a, b), the namespaces' names (hoplab-NAME-a-TAG, hoplab-NAME-b-TAG)."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"hoplab-{name}-a-{tag}", f"hoplab-{name}-b-{tag}"
    made = []
    try:
        for namespace in (a, b):
            ip("netns", "add", namespace)
            made.append(namespace)
        ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth1", "netns", b)
        for namespace, side, address in ((a, "veth0", f"{prefix}.1/24"), (b, "veth1", f"{prefix}.2/24")):
            ip("-n", namespace, "addr", "add", address, "dev", side)
            ip("-n", namespace, "link", "set", side, "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        yield a, b
    finally:
        for namespace in made:
            ip("netns", "del", namespace)

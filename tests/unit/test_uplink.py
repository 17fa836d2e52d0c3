"""The uplink watch (hoplab.uplink) can fail: on a veth pair of this test's own (two network
namespaces, nothing leaves the machine), a packet with a lab address is caught and counted, and
one without is not. The end-to-end suites then trust its zero on the real uplink."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from hoplab.uplink import UplinkWatch, uplinks

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dumpcap"),
                                reason="needs root (namespaces, capture) and dumpcap")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def wire():
    """Namespaces a and b joined by a veth pair: a has 10.199.1.1/24, b 10.199.1.2/24."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"hoplab-test-a-{tag}", f"hoplab-test-b-{tag}"
    ip("netns", "add", a)
    ip("netns", "add", b)
    try:
        ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth1", "netns", b)
        for ns, address in ((a, "10.199.1.1/24"), (b, "10.199.1.2/24")):
            side = "veth0" if ns == a else "veth1"
            ip("-n", ns, "addr", "add", address, "dev", side)
            ip("-n", ns, "link", "set", side, "up")
        yield a, b
    finally:
        ip("netns", "del", a)
        ip("netns", "del", b)


def watch_in(namespace: str, subnets: list[str], path, send) -> UplinkWatch:
    """UplinkWatch on veth0 inside `namespace` (dumpcap started there), while `send` runs."""
    prefix = ["ip", "netns", "exec", namespace]
    real_popen = subprocess.Popen

    def popen(argv, *args, **kwargs):  # dumpcap only: into the namespace
        return real_popen(prefix + argv if argv[0] == "dumpcap" else argv, *args, **kwargs)

    subprocess.Popen = popen
    try:
        with UplinkWatch(subnets, path, interfaces=["veth0"]) as watch:
            send()
    finally:
        subprocess.Popen = real_popen
    return watch


def ping(namespace: str, address: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, "ping", "-c", "2", "-i", "0.2", "-W", "1", address],
                   capture_output=True)


def test_a_packet_with_a_lab_address_is_caught(wire, tmp_path):
    a, b = wire
    watch = watch_in(a, ["10.199.1.0/24"], tmp_path / "hit.pcapng", lambda: ping(a, "10.199.1.2"))
    assert len(watch.leaks) >= 2, watch.leaks  # echo requests and replies
    assert any("10.199.1.2" in line for line in watch.leaks)


def test_other_traffic_is_not_a_leak(wire, tmp_path):
    a, b = wire
    watch = watch_in(a, ["10.198.0.0/16"], tmp_path / "miss.pcapng", lambda: ping(a, "10.199.1.2"))
    assert watch.leaks == []


def test_the_uplinks_are_the_default_routes_interfaces():
    routes = subprocess.run(["ip", "-o", "route", "show", "default"], capture_output=True, text=True).stdout
    assert set(uplinks()) == {line.split(" dev ")[1].split()[0] for line in routes.splitlines() if " dev " in line}

"""The host guard (backends/hostfw.py): the nftables ruleset a lab gets, checked by nft itself
in check mode (nothing is applied), and what `remove` finds: only this backend's tables for the
lab, tagged hoplab's."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hoplab import compose, spec
from hoplab.backends.base import subnets
from hoplab.backends.hostfw import BRIDGE_SYSCTLS, HostFirewall
from hoplab.paths import TOPOLOGY_DIR

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")


def ruleset(prefix="hl") -> str:
    bridges = list(LAB.bridge_names(prefix).values())
    return HostFirewall(prefix).ruleset(LAB.name, bridges, [str(s) for _, s in subnets(LAB)])


def test_every_lab_bridge_is_closed_to_routing_both_ways():
    text = ruleset()
    for bridge in compose.bridge_names(LAB).values():
        assert f'iifname "{bridge}" oifname != "{bridge}" counter drop' in text
        assert f'oifname "{bridge}" iifname != "{bridge}" counter drop' in text
        assert f'iifname "{bridge}" ct state established,related accept' in text


def test_every_lab_subnet_is_in_the_guarded_set():
    text = ruleset()
    for _, subnet in subnets(LAB):
        assert str(subnet) in text
    assert 'comment "hoplab:lab"' in text and "table inet hoplab-hl-lab" in text


def test_other_labs_bridges_pass_before_the_subnet_drops():
    # A netns lab may reuse this lab's data subnets on its own bridges: its frames are accepted
    # before the subnet rules, in the forward and output chains alike.
    for chain in ("chain forward", "chain output"):
        body = ruleset().split(chain, 1)[1].split("\n  }", 1)[0]
        accept = body.index('"hn-*" } accept')
        assert accept < body.index("ip saddr @lab_subnets") and accept < body.index("ip daddr @lab_subnets")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft's check mode needs root and nft")
@pytest.mark.parametrize("prefix", ["hl", "hn"])
def test_nft_accepts_the_ruleset(prefix):
    result = subprocess.run(["nft", "--check", "-f", "-"], input=ruleset(prefix), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_docker_and_netns_guards_are_apart():
    assert HostFirewall("hl").table("lab") != HostFirewall("hn").table("lab")
    assert HostFirewall("hl").table("lab") == "hoplab-hl-lab"


def test_sysctls_go_on_existing_bridges_only(tmp_path):
    proc_sys = tmp_path / "net"
    for key in BRIDGE_SYSCTLS:
        (proc_sys / key.format("hl-lab-home")).parent.mkdir(parents=True, exist_ok=True)
    HostFirewall("hl", proc_sys=proc_sys).harden(["hl-lab-home", "hl-lab-gone"])
    for key, value in BRIDGE_SYSCTLS.items():
        assert (proc_sys / key.format("hl-lab-home")).read_text() == value
        assert not (proc_sys / key.format("hl-lab-gone")).parent.exists()

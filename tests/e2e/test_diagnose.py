"""`hoplab diagnose` on a healthy lab: every hop of the page load checked, in order, exit 0.
(Each fault's broken hop is asserted in test_chaos, sharing the injected state.)"""

from __future__ import annotations

import json

from helpers import hoplab


def test_healthy_lab_passes_every_hop_in_order(lab):
    result = hoplab("diagnose", "--json", "--topology", lab.path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] and report["broken_hop"] is None
    hops = [c["hop"] for c in report["checks"]]
    assert [h for i, h in enumerate(hops) if h not in hops[:i]] == [
        "lease", "gateway", "nat", "dns", "path-mtu", "edge", "cache", "lb", "db", "web1", "web2", "mail", "page",
        "game"]
    assert all(c["ok"] and c["command"] and c["node"] for c in report["checks"])
    text = hoplab("diagnose", "--topology", lab.path).stdout
    assert "every hop works" in text


def test_diagnose_from_a_node_that_is_not_a_client_exits_2(lab):
    result = hoplab("diagnose", "--from", "router", "--topology", lab.path, check=False)
    assert result.returncode == 2 and "--from" in result.stderr

"""The edge's rate limit on the default lab, which sets none of its own: chaos's edge-rate-limit
puts one on for a bounded time. Quick page loads past it are answered 429 with Retry-After,
and 200 again once the client waits that long; the health page is never limited; a load run
counts the 429s as throttled, not as failures. (duo.yaml's own limit: test_second_topology.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import quick_loads
from hoplab.chaos.journal import Chaos
from hoplab.diagnose import diagnose

pytestmark = pytest.mark.usefixtures("uplink_silent")  # not one packet of the lab's on the host's uplink


def limit(lab, requests_per_second: int, burst: int) -> None:
    """The edge limited per client address for a minute at most (`no_limit_left` lifts it)."""
    Chaos(lab.driver, lab.topology).inject("edge-rate-limit", lab.topology.nodes_of("cache")[0].name, 60,
                                           {"requests_per_second": requests_per_second, "burst": burst})


@pytest.fixture(autouse=True)
def no_limit_left(lab):
    yield
    Chaos(lab.driver, lab.topology).halt()


@pytest.fixture
def limited(lab):
    limit(lab, 1, 2)  # far below any pace of page loads, on a busy machine too
    return lab


def test_quick_loads_past_the_limit_are_answered_429_with_retry_after_then_200_after_waiting(limited):
    lab = limited
    answers = quick_loads(lab, "client", 20)
    codes = [code for code, _ in answers]
    assert codes[0] == "200" and set(codes) <= {"200", "429"}, answers
    throttled = [after for code, after in answers if code == "429"]
    assert throttled and set(throttled) == {"1"}, answers  # some refused, each saying when to come back
    assert all(after == "" for code, after in answers if code == "200")
    # the health page is not a page load: never limited, even now
    assert quick_loads(lab, "client", 5, "/edge-health") == [["200", ""]] * 5
    time.sleep(int(throttled[0]))
    assert quick_loads(lab, "client", 1) == [["200", ""]]
    report = diagnose(lab.driver, lab.topology, "client", kernel=False)
    assert report.broken.check.hop == "edge" and "quick page loads with 429" in report.broken.reason, report.render()
    assert "limit_req zone=chaos_clients burst=2 nodelay" in report.broken.explanation


def test_the_limit_goes_with_its_fault(limited):
    lab = limited
    Chaos(lab.driver, lab.topology).halt()
    assert quick_loads(lab, "client", 20) == [["200", ""]] * 20


def test_a_load_run_counts_429s_as_throttled_not_as_failures(lab):
    limit(lab, 2, 2)  # below what six users ask for
    result = lab.hoplab("load", "-u", "6", "-r", "6", "--run-time", "5s")
    reports = Path(next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("reports: ")))
    summary = json.loads((reports / "summary.json").read_text())
    total = summary["total"]
    assert total["throttled"] > 0 and total["failures"] == 0, total
    assert total["throttled_ratio"] == total["throttled"] / total["requests"]
    assert summary["slo"]["met"], summary["slo"]  # throttling is not a failure
    assert "answered 429 by the edge's rate limit; not failures" in result.stdout
    assert "THROTTLED" in (reports / "report.html").read_text()  # Locust's own report: a row of their own

"""Chaos experiments against the running lab: the shipped examples run end to end and their
journals say what happened (steady state before and after, what ran, rollbacks that ran, and a
verdict that follows from the probes), and an experiment whose hypothesis a fault breaks by
construction deviates. No assertion here hinges on how fast this machine is: a probe's speed is
the experiment's question, and the test checks the experiment's bookkeeping of it."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from helpers import hoplab
from hoplab.paths import PROJECT_ROOT

EXAMPLES = sorted((PROJECT_ROOT / "experiments").glob("*.yaml"))
RESILIENCE = ("replica-loss", "mail-outage")  # the examples whose fault the shop is built to survive


def run(lab, path, tmp_path):
    journal_path = tmp_path / "journal.json"
    result = hoplab("chaos", "run", str(path), "--journal", str(journal_path), "--topology", lab.path, check=False)
    journal = json.loads(journal_path.read_text())
    return result, journal


def expected_verdict(journal) -> str:
    if not all(p["within_tolerance"] for p in journal["steady_state_before"]):
        return "not-steady"
    return "held" if all(p["within_tolerance"] for p in journal["steady_state_after"]) else "deviated"


def functional_failures(probes) -> list[str]:
    """Samples that failed for a reason other than speed (a page that did not load, a mail that
    did not arrive)."""
    return [s["reason"] for p in probes for s in p["samples"] if s["reason"] and not s["reason"].startswith("slower")]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_its_journal_tells_the_verdict(lab, tmp_path, path):
    result, journal = run(lab, path, tmp_path)
    verdict = expected_verdict(journal)
    assert journal["verdict"] == verdict and f"verdict: {verdict}" in result.stdout, result.stdout + result.stderr
    assert result.returncode == (0 if verdict == "held" else 1)
    if verdict != "not-steady":
        faults = [s for s in journal["method"] if "fault" in s]
        assert faults and all("id" in s for s in faults), journal["method"]
        assert journal["steady_state_after"]
    assert journal["rollbacks"] and all(r.get("reverted", True) is not None for r in journal["rollbacks"])
    if path.stem in RESILIENCE:
        # What these hypotheses are about, apart from speed: every page loads, every mail arrives.
        assert journal["steady_state_after"], journal
        assert functional_failures(journal["steady_state_after"]) == [], journal["steady_state_after"]
        assert journal["rollbacks"][0]["reverted"]
    status = hoplab("chaos", "status", "--topology", lab.path).stdout
    assert not re.search(r"\d s left", status), status  # nothing left active


def test_a_hypothesis_the_fault_breaks_deviates(lab, tmp_path):
    # "The site survives its name being gone from DNS": it cannot, the client has nothing else to
    # find it by, so the experiment must deviate (and roll back), whatever the machine's speed.
    experiment = {"title": "The site survives its name being gone from DNS",
                  "steady-state": [{"probe": "page", "samples": 2, "tolerance": {"success": 1.0}}],
                  "method": [{"fault": "dns-nxdomain", "target": "dns", "duration": 60}],
                  "rollbacks": [{"revert": "faults"}]}
    path = tmp_path / "nxdomain.yaml"
    path.write_text(yaml.safe_dump(experiment))
    result, journal = run(lab, path, tmp_path)
    assert journal["verdict"] == "deviated" and result.returncode == 1, json.dumps(journal, indent=1)
    assert all(p["within_tolerance"] for p in journal["steady_state_before"])
    assert all(not s["ok"] for s in journal["steady_state_after"][0]["samples"]), journal["steady_state_after"]
    assert journal["rollbacks"][0]["reverted"]
    assert lab.dig(lab.clients()[0], f"www.{lab.topology.domain.name}") == [str(lab.topology.domain.records["www"])]

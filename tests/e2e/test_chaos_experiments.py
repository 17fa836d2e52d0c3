"""The shipped chaos experiments against the running lab: the verdict each one documents, a
JSON journal with the steady state before and after, what ran, and rollbacks that ran."""

from __future__ import annotations

import json
import re

import pytest

from helpers import hoplab
from hoplab.paths import PROJECT_ROOT

EXPECTED = {"replica-loss": ("held", 0), "mail-outage": ("held", 0), "slow-dns": ("deviated", 1)}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_experiment_verdict_and_journal(lab, tmp_path, name):
    verdict, status = EXPECTED[name]
    journal_path = tmp_path / "journal.json"
    result = hoplab("chaos", "run", str(PROJECT_ROOT / "experiments" / f"{name}.yaml"), "--journal",
                    str(journal_path), "--topology", lab.path, check=False)
    assert result.returncode == status, result.stdout + result.stderr
    journal = json.loads(journal_path.read_text())
    assert journal["verdict"] == verdict and f"verdict: {verdict}" in result.stdout
    assert all(p["within_tolerance"] for p in journal["steady_state_before"])
    assert [s["fault"] for s in journal["method"] if "fault" in s] and all("id" in s for s in journal["method"]
                                                                          if "fault" in s)
    assert journal["steady_state_after"] and journal["rollbacks"][0]["reverted"]
    status = hoplab("chaos", "status", "--topology", lab.path).stdout
    assert not re.search(r"\d s left", status), status  # nothing left active


def test_example_file_list_matches(lab):
    assert {p.stem for p in (PROJECT_ROOT / "experiments").glob("*.yaml")} == set(EXPECTED)

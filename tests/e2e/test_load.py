"""Short, bounded Locust runs from inside the lab."""

import csv
import json
from pathlib import Path

import pytest

from helpers import hoplab
from hoplab.trace.tls import KeyLog

pytestmark = pytest.mark.usefixtures("uplink_silent")  # load stays in the lab: nothing on the host's uplink


def order_count(lab):
    out = lab.exec("db", "runuser", "-u", "postgres", "--", "psql", "-d", "shop", "-Atc",
                   "SELECT count(*) FROM orders").stdout
    return int(out.strip())


def load(lab, *args, check=True):
    return hoplab("load", "--topology", lab.path, *args, check=check)


def report_dir(result) -> Path:
    return Path(next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("reports: ")))


def test_a_short_run_reports_traces_its_samples_and_every_order_lands(lab):
    before = order_count(lab)
    result = load(lab, "-u", "6", "--spawn-rate", "6", "--run-time", "10s",  # Locust's names and units
                  "--trace-sample", "3")
    reports = report_dir(result)
    history = list(csv.DictReader((reports / "run_stats_history.csv").open()))
    seconds = int(history[-1]["Timestamp"]) - int(history[0]["Timestamp"])
    # 10s: the history runs from the first flush after the users spawned to the end, plus at
    # most the 5 s users get to stop
    assert 6 <= seconds <= 16, seconds
    for name in ("run_stats.csv", "run_failures.csv", "run_stats_history.csv", "report.html", "summary.json"):
        assert (reports / name).stat().st_size > 0, name
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["total"]["requests"] > 0 and summary["total"]["failures"] == 0
    assert summary["slo"]["met"]
    # the users' TLS session keys (SSLKEYLOGFILE): one session at least, in the NSS format
    assert KeyLog.parse((reports / "tls-keys.log").read_text(), "tls-keys.log").secrets
    orders = next((e for e in summary["endpoints"] if e["name"] == "POST /order"), None)
    placed = orders["requests"] - orders["failures"] - orders["throttled"] if orders else 0
    added = order_count(lab) - before
    # Every order Locust saw placed is in the database; a POST still in flight when the run
    # stopped may land too without being counted (at most one per user).
    assert placed > 0 and placed <= added <= placed + 6
    assert_the_slowest_samples_are_traced(reports, summary)


def assert_the_slowest_samples_are_traced(reports: Path, summary: dict) -> None:
    """--trace-sample 3: a third of the requests carried a sampled traceparent; the slowest are
    traced through every tier, each alone on connections the others share, their time split."""
    samples = summary["samples"]
    assert samples["sampled"] >= summary["total"]["requests"] // 3 - 1 and samples["incomplete"] == 0
    slowest = samples["slowest"]
    assert slowest and [s["ms"] for s in slowest] == sorted((s["ms"] for s in slowest), reverse=True)
    assert (reports / "samples.html").stat().st_size > 0
    uncached = [s for s in slowest if "/order" in s["name"]]
    assert uncached, [s["name"] for s in slowest]
    for sample in uncached:
        tiers = {t["tier"]: t["ms"] for t in sample["breakdown"]["tiers"]}
        assert tiers["replica"] > 0 and tiers["database"] > 0 and tiers["edge"] > 0, tiers
        assert abs(sum(tiers.values()) - sample["ms"]) < 0.01
        trace = json.loads((reports / sample["trace"]).with_suffix(".json").read_text())
        asked = [h for h in trace["hops"] if h["node"] == "lb" and h["direction"] == "in"
                 and h["summary"].startswith("HTTP ") and h["summary"].split()[1] in ("GET", "POST")]
        # one request at the balancer: its own, though the edge's upstream connections carry many
        assert len(asked) == 1 and sample["trace_id"] in asked[0]["keys"]["traceparent"], asked
        assert {"web1", "web2"} & {h["node"] for h in trace["hops"]} and "db" in {h["node"] for h in trace["hops"]}


def test_an_impossible_slo_fails_the_run(lab, tmp_path):
    slo = tmp_path / "slo.yaml"
    slo.write_text("max_p95_ms: 0.001\n")
    result = load(lab, "--users", "2", "--rate", "2", "--time", "4", "--shape", "open", "--arrival-rate", "4",
                  "--slo", str(slo), check=False)
    assert result.returncode == 1
    assert "SLO breached: p95" in result.stderr
    assert "model: open: 4 tasks/s arriving from a pool of 2 users" in result.stdout
    assert json.loads((report_dir(result) / "summary.json").read_text())["model"]["model"] == "open"


def test_a_shape_with_distributed_workers(lab):
    result = load(lab, "--users", "5", "--rate", "5", "--time", "6", "--shape", "spike", "--workers", "2")
    summary = json.loads((report_dir(result) / "summary.json").read_text())
    assert summary["total"]["requests"] > 0 and summary["options"]["workers"] == 2


def test_bad_arguments_are_refused_before_any_load(lab):
    for args, word in ((["--shape", "tsunami"], "--shape"), (["--users", "0"], "--users"),
                       (["--from", "db"], "--from"), (["--time", "99999"], "--run-time")):
        result = load(lab, *args, check=False)
        assert result.returncode == 2 and word in result.stderr

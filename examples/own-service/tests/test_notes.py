"""The notes API on the lab's path, as its team would test it: pytest with hoplab's plugin.

    pytest examples/own-service/tests --hoplab-topology examples/own-service/notes.yaml [--hoplab-backend netns]

Every request goes from the lab's client (DHCP lease, NAT) through the lab DNS, the CDN edge
(HTTPS) and the balancer to a notes replica and its Redis."""


API = "https://api.notes.test"


def test_the_name_resolves_to_the_edge(exec, hoplab_lab):
    edge = hoplab_lab.topology.nodes["edge"].address_on("internet")
    answer = exec("client", "dig", "+short", "api.notes.test")
    assert answer.stdout.split() == [str(edge)]


def test_a_note_round_trips_and_the_trace_follows_it_into_redis(visit):
    created = visit(f"{API}/notes", method="POST", json_body={"text": "hello from the lab"})
    assert created.status == 201, created.body
    note = created.json()
    assert note["text"] == "hello from the lab" and note["by"] in ("notes1", "notes2")
    read = visit(f"{API}/notes/{note['id']}", trace=False)
    assert (read.status, read.json()["text"]) == (200, "hello from the lab")
    trace = created.trace
    nodes = {h.record.node for h in trace.hops}
    assert {"client", "router", "edge", "balancer", note["by"], "kv"} <= nodes, nodes
    stages = {s.name: s for s in trace.stages}
    assert {"lookup", "connect", "tls", "request", "server work", "response"} <= set(stages)
    # The API sends no traceparent to Redis: the trace ties that connection by timing and says so.
    assert any("tied by timing, no traceparent" in s.note and "6379" in s.note for s in trace.stages), \
        [s.note for s in trace.stages]


def test_the_balancer_spreads_requests_over_both_replicas(visit):
    served = {visit(f"{API}/notes", trace=False).served_by for _ in range(4)}
    assert served == {"notes1", "notes2"}


def test_redis_refusing_is_a_fast_json_503_and_the_notes_survive_it(visit, fault):
    before = visit(f"{API}/notes", method="POST", json_body={"text": "kept"}, trace=False).json()
    with fault("port-block", "kv", duration=60, port=6379):
        failed = visit(f"{API}/notes", method="POST", json_body={"text": "lost"})
        assert failed.status == 503, failed.body
        assert failed.json()["error"].startswith("kv unavailable")
        # an answer, not a hang: the API gives up on Redis itself, well inside the client's
        # patience (curl's own measure of the wait; the traced visit around it takes longer)
        waited = failed.timings_ms["total"] / 1000
        assert waited < 5, f"the client waited {waited:.1f} s"
        assert "kv" in {h.record.node for h in failed.trace.hops}  # the refused connection, in the trace
    after = visit(f"{API}/notes/{before['id']}", trace=False)
    assert (after.status, after.json()["text"]) == (200, "kept")


def test_the_teams_locustfile_meets_the_slo(load):
    result = load(users=4, rate=4, seconds=8)
    total = result.summary["total"]
    assert total["requests"] > 10 and total["failures"] == 0, result.summary
    assert result.summary["options"]["locustfile"].endswith("examples/own-service/locustfile.py")
    assert (result.report_dir / "report.html").exists() and not result.breaches

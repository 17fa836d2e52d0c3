import ast

from hoplab.load import LOADTESTS, SHAPE_NAMES, check_slo, summarize

STATS = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
GET,GET / (cacheable),300,0,3,4.1,1,40,1295,10.0,0.0,3,4,5,5,7,9,20,30,40,40,40
POST,POST /order,40,2,120,130,80,900,900,1.3,0.07,120,130,140,150,200,400,800,900,900,900,900
,Aggregated,340,2,4,19.6,1,900,1248,11.3,0.07,4,5,6,7,20,140,400,800,900,900,900
"""


def test_summary_per_endpoint_and_total():
    summary = summarize(STATS)
    assert all(e["throttled"] == 0 for e in summary["endpoints"]) and summary["total"]["throttled_ratio"] == 0
    assert [e["name"] for e in summary["endpoints"]] == ["GET / (cacheable)", "POST /order"]
    order = summary["endpoints"][1]
    assert (order["requests"], order["failures"], order["p95_ms"], order["p99_ms"]) == (40, 2, 400.0, 900.0)
    assert order["failure_ratio"] == 0.05
    assert summary["total"]["requests"] == 340 and summary["total"]["rps"] == 11.3


def test_slo_breaches_name_the_threshold(tmp_path):
    slo = tmp_path / "slo.yaml"
    slo.write_text("max_failure_ratio: 0.001\nmax_p95_ms: 100\n")
    breaches = check_slo(summarize(STATS), slo)
    assert len(breaches) == 2 and "failure ratio" in breaches[0] and "p95 140 ms > 100 ms" in breaches[1]
    slo.write_text("max_failure_ratio: 0.01\nmax_p95_ms: 1000\n")
    assert check_slo(summarize(STATS), slo) == []
    assert check_slo(summarize(STATS.splitlines()[0] + "\n"), slo) == ["no request was made"]


# A throttled run: the locustfile's 429s in rows of type THROTTLED (one endpoint throttled
# every time), which Locust's aggregate counts with the rest.
THROTTLED_STATS = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
GET,GET / (cacheable),60,0,3,4.1,1,40,1295,6.0,0.0,3,4,5,5,7,9,20,30,40,40,40
GET,GET /order (no-store),20,1,20,25,10,90,900,2.0,0.1,20,25,30,30,40,60,80,90,90,90,90
THROTTLED,GET / (cacheable),40,0,1,1.2,0,5,162,4.0,0.0,1,1,1,2,2,3,4,5,5,5,5
THROTTLED,POST /order,10,0,1,1.0,0,3,162,1.0,0.0,1,1,1,1,2,2,3,3,3,3,3
,Aggregated,130,1,2,3.8,0,90,900,13.0,0.1,2,3,4,5,7,20,40,60,90,90,90
"""


def test_throttled_requests_are_counted_apart_from_failures():
    summary = summarize(THROTTLED_STATS)
    by_name = {e["name"]: e for e in summary["endpoints"]}
    assert list(by_name) == ["GET / (cacheable)", "GET /order (no-store)", "POST /order"]
    page = by_name["GET / (cacheable)"]
    assert (page["requests"], page["failures"], page["throttled"], page["throttled_ratio"]) == (100, 0, 40, 0.4)
    assert page["rps"] == 10.0 and page["p95_ms"] == 9.0  # latencies: of the answers, not of the 429s
    order = by_name["POST /order"]  # throttled every time: an endpoint all the same
    assert (order["method"], order["requests"], order["throttled"], order["p95_ms"]) == ("", 10, 10, 0.0)
    assert by_name["GET /order (no-store)"]["throttled"] == 0
    total = summary["total"]
    assert (total["requests"], total["failures"], total["throttled"]) == (130, 1, 50)
    assert total["throttled_ratio"] == 50 / 130 and total["failure_ratio"] == 1 / 130


def test_throttling_breaks_no_slo_unless_it_has_a_gate_of_its_own(tmp_path):
    slo = tmp_path / "slo.yaml"
    slo.write_text("max_failure_ratio: 0.01\nmax_p95_ms: 1000\n")
    assert check_slo(summarize(THROTTLED_STATS), slo) == []
    slo.write_text("max_throttled_ratio: 0.1\n")
    assert check_slo(summarize(THROTTLED_STATS), slo) == ["throttled ratio 0.3846 > 0.1 (slo.yaml)"]


def test_shape_names_match_the_shapes_module():
    tree = ast.parse((LOADTESTS / "shapes.py").read_text())
    (shapes,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "SHAPES"]
    assert tuple(key.value for key in shapes.keys) == SHAPE_NAMES

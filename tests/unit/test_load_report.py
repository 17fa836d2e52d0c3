import ast

from hoplab.load import LOADTESTS, SHAPE_NAMES, check_slo, summarize

STATS = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
GET,GET / (cacheable),300,0,3,4.1,1,40,1295,10.0,0.0,3,4,5,5,7,9,20,30,40,40,40
POST,POST /order,40,2,120,130,80,900,900,1.3,0.07,120,130,140,150,200,400,800,900,900,900,900
,Aggregated,340,2,4,19.6,1,900,1248,11.3,0.07,4,5,6,7,20,140,400,800,900,900,900
"""


def test_summary_per_endpoint_and_total():
    summary = summarize(STATS)
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


def test_shape_names_match_the_shapes_module():
    tree = ast.parse((LOADTESTS / "shapes.py").read_text())
    (shapes,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", "") == "SHAPES"]
    assert tuple(key.value for key in shapes.keys) == SHAPE_NAMES

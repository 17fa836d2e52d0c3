"""The pytest plugin (hoplab.pytest_plugin) without a lab: inert until its fixtures are used,
a clear usage error when they are used without a topology, and a failing test's report carries
the stage waterfall of the last trace it took. (Its fixtures against a real lab:
examples/own-service/tests, on both backends, in `make test`.)"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_inert_without_its_fixtures(pytester):
    pytester.makepyfile("""
        def test_plain():
            assert 1 + 1 == 3
    """)
    result = pytester.runpytest("-p", "hoplab.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "hoplab trace" not in result.stdout.str()
    failures = result.stdout.str().split("FAILURES")[1].split("short test summary")[0]
    assert "hoplab" not in failures  # the report is pytest's own


def test_its_fixtures_without_a_topology_are_a_usage_error(pytester):
    pytester.makepyfile("""
        def test_needs_lab(visit):
            visit("https://www.example.test/")
    """)
    result = pytester.runpytest("-p", "hoplab.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the hoplab fixtures need a lab: pass --hoplab-topology FILE*"])


def test_a_bad_topology_is_named(pytester, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\n")
    pytester.makepyfile("""
        def test_needs_lab(exec):
            exec("client", "true")
    """)
    result = pytester.runpytest("-p", "hoplab.pytest_plugin", "-p", "no:cacheprovider", "--hoplab-topology", str(bad))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{bad}: name: 'Bad' does not match*"])


def test_options_are_listed(pytester):
    result = pytester.runpytest("-p", "hoplab.pytest_plugin", "--help")
    result.stdout.fnmatch_lines(["*--hoplab-topology=FILE*", "*--hoplab-backend*", "*--hoplab-keep*"])


def test_a_failing_test_shows_the_last_traces_waterfall(pytester):
    pytester.makepyfile("""
        from hoplab.pytest_plugin import TRACES
        from hoplab.v1 import control_pb2 as pb

        def trace(status):
            hop = lambda ts: pb.Hop(record=pb.Record(node="client", ts_ns=ts))
            return pb.Trace(trace_id="ab" * 16, url="https://api.notes.test/notes", status=status,
                            hops=[hop(0), hop(2_000_000)],
                            stages=[pb.Stage(name="connect", start_ns=0, end_ns=1_000_000, hops=1),
                                    pb.Stage(name="server work", start_ns=1_000_000, end_ns=2_000_000, hops=1,
                                             note="tied by timing, no traceparent: notes1")])

        def test_fails(request):
            request.node.stash[TRACES] = [trace(200), trace(503)]
            assert False, "the client saw a 503"

        def test_passes(request):
            request.node.stash[TRACES] = [trace(200)]
    """)
    result = pytester.runpytest("-p", "hoplab.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*- hoplab trace -*",
                                 "trace abab*  https://api.notes.test/notes  status 503  2 hops",
                                 "stages (start, duration):",
                                 "*connect*|####*",
                                 "*server work*tied by timing, no traceparent: notes1"])
    assert result.stdout.str().count("hoplab trace -") == 1

import pytest

from hoplab.v1 import control_pb2 as pb
from hoplab.visit import Visit, cause, failure, phases

CURL = {"time_namelookup": 0.002, "time_connect": 0.003, "time_appconnect": 0.025,
        "time_starttransfer": 0.040, "time_total": 0.041, "scheme": "HTTPS"}


def test_https_phases_are_durations_not_cumulative():
    assert phases(CURL) == {"dns": 2.0, "connect": 1.0, "tls": 22.0, "first byte": 15.0, "total": 41.0}


def test_plain_http_has_no_tls_phase():
    metrics = {**CURL, "scheme": "HTTP", "time_appconnect": 0.0}
    assert phases(metrics) == {"dns": 2.0, "connect": 1.0, "first byte": 37.0, "total": 41.0}


@pytest.mark.parametrize("code, message, status, said", [
    (7, "Failed to connect to www.example.test port 8443 after 5 ms: Couldn't connect to server: Connection refused",
     0, "connection refused (ECONNREFUSED)"),
    (7, "Failed to connect to 198.51.100.99 port 443 after 3 ms: No route to host", 0,
     "host unreachable (EHOSTUNREACH)"),
    (7, "Failed to connect to 10.0.0.1 port 443: Network is unreachable", 0, "network unreachable (ENETUNREACH)"),
    (28, "Connection timed out after 3001 milliseconds", 0, "timed out (ETIMEDOUT)"),
    (6, "Could not resolve host: nowhere.example.test", 0, "name not resolved"),
    (35, "OpenSSL/3.0.17: error:0A000410:SSL routines::sslv3 alert handshake failure", 0, "TLS handshake failed"),
    (60, "SSL certificate problem: unable to get local issuer certificate", 0, "TLS certificate not trusted"),
    (56, "Recv failure: Connection reset by peer", 0, "connection reset (ECONNRESET)"),
    (0, "", 503, "HTTP error 503"),
    (0, "", 200, ""),
])
def test_a_failed_visit_names_what_the_client_got(code, message, status, said):
    assert failure(code, message, status) == said


def hop(node, iface, direction, ts, flags="", src="", dst="", seq=0, summary="", proto="tcp", **keys):
    return pb.Hop(record=pb.Record(node=node, iface=iface, direction=direction, ts_ns=ts, tcp_flags=flags, src=src,
                                   dst=dst, tcp_seq=seq, summary=summary, proto=proto, keys=keys))


def failed(kind):
    return Visit(url="https://www.example.test:8443/", node="client", trace_id="0" * 32, ok=False, status=0,
                 failure=kind)


def test_a_refused_connection_is_caused_by_the_rst_where_it_was_sent():
    rst = dict(flags="RST,ACK", seq=0, summary="TCP RST,ACK")
    trace = pb.Trace(hops=[
        hop("client", "home", "out", 1_000_000, "SYN", "192.168.50.190:4000", "198.51.100.80:8443", 7, "TCP SYN"),
        hop("cache", "internet", "out", 2_000_000, src="198.51.100.80:8443", dst="198.51.100.1:4000", **rst),
        hop("client", "home", "in", 3_000_000, src="198.51.100.80:8443", dst="192.168.50.190:4000", **rst)])
    trace.hops[1].refused = "no listener on 8443"
    said = cause(trace, failed("connection refused (ECONNREFUSED)"), "client")
    assert said == "+1.000 ms cache:internet out TCP RST,ACK  [refused: no listener on 8443]"


def test_a_timeout_is_caused_by_the_kernels_drop_or_the_unanswered_syn():
    syn = dict(flags="SYN", src="192.168.50.190:4000", dst="198.51.100.80:443", seq=7, summary="TCP SYN")
    trace = pb.Trace(hops=[hop("client", "home", "out", 1_000_000, **syn), hop("client", "home", "out", 2_000_000, **syn)])
    assert cause(trace, failed("timed out (ETIMEDOUT)"), "client") == \
        "+1.000 ms client:home out TCP SYN (sent 2 times, never answered)"
    trace.hops.append(hop("router", "", "drop", 1_500_000, summary="DROPPED: dropped by a firewall rule (netfilter)"))
    trace.hops.sort(key=lambda h: h.record.ts_ns)
    assert cause(trace, failed("timed out (ETIMEDOUT)"), "client") == \
        "+0.500 ms router drop DROPPED: dropped by a firewall rule (netfilter)"


def test_a_success_has_no_cause():
    trace = pb.Trace(hops=[hop("client", "home", "out", 1, "SYN")])
    ok = Visit(url="https://www.example.test/", node="client", trace_id="0" * 32, ok=True, status=200)
    assert cause(trace, ok, "client") == ""

"""`hoplab visit`: one page load from a lab client, the way a browser would do it: the client's
own resolver (the lab DNS), its own route (through the NAT router), TLS checked against the
lab CA. The client is curl, run in the node; its `%{json}` write-out gives the phase timings,
`%{header_json}` the response headers (which replica served, cache HIT or MISS)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from hoplab.backends.base import Backend, BackendError
from hoplab.spec import Topology
from hoplab.kernel_view import KernelView
from hoplab.trace.tls import KeyLog, KeyLogError

_SEPARATOR = "--hoplab-headers--"
TIMEOUT_S = 15


@dataclass
class Visit:
    url: str
    node: str
    trace_id: str
    ok: bool
    status: int
    error: str = ""
    bytes: int = 0
    served_by: str | None = None  # X-Served-By: the web replica
    cache: str | None = None  # X-Cache: HIT, MISS, ...
    edge: str | None = None  # X-Edge: the cache node
    local: str = ""  # ip:port the client used
    remote: str = ""  # ip:port it connected to
    timings_ms: dict[str, float] = field(default_factory=dict)  # per phase, not cumulative
    failure: str = ""  # what went wrong, in the socket's words: "connection refused (ECONNREFUSED)", "HTTP error 503"
    cause: str = ""  # with a trace: the packet that caused it ("+5.266 ms cache:internet out RST,ACK ...")
    finished_at: float = 0.0  # wall-clock time (epoch seconds) curl finished, as the host saw it return

    def to_json(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        head = f"GET {self.url} from {self.node} ({self.local or '-'}) -> {self.remote or '-'}"
        because = f"\ncaused by: {self.cause}" if self.cause else ""
        if not self.ok and not self.status:
            return f"{head}\nfailed: {self.failure}: {self.error}{because}\ntrace id {self.trace_id}"
        lines = [head, f"status {self.status}, {self.bytes} bytes, served by {self.served_by or '-'}, "
                       f"cache {self.cache or '-'} at {self.edge or '-'}"]
        lines += [f"  {phase:<11}{ms:9.2f} ms" for phase, ms in self.timings_ms.items()]
        if self.failure:
            lines.append(f"failed: {self.failure}{because}")
        lines.append(f"trace id {self.trace_id}")
        return "\n".join(lines)


def _header(headers: dict, name: str) -> str | None:
    values = headers.get(name.lower())
    return values[-1] if values else None


# curl's exit codes (libcurl's CURLcode) that name a socket or TLS error, and the errno-like
# word a programmer meets for it; exit 7 is told apart by curl's message (strerror's words).
CURL_FAILURES = {6: ("name not resolved", ""), 28: ("timed out", "ETIMEDOUT"),
                 35: ("TLS handshake failed", ""), 60: ("TLS certificate not trusted", ""),
                 52: ("empty reply from the server", ""), 56: ("connection reset", "ECONNRESET")}
CONNECT_FAILURES = (("refused", "connection refused", "ECONNREFUSED"),
                    ("No route to host", "host unreachable", "EHOSTUNREACH"),
                    ("Network is unreachable", "network unreachable", "ENETUNREACH"),
                    ("timed out", "timed out", "ETIMEDOUT"))


BENIGN_DROPS = ("TCP_OLD_DATA", "NOT_SPECIFIED", "QUEUE_PURGE")


def failure(exit_code: int, message: str, status: int) -> str:
    """What the client got, in the words its socket or TLS library uses: "" for a success."""
    if exit_code == 7:
        found = next(((kind, errno) for words, kind, errno in CONNECT_FAILURES if words in message),
                     ("could not connect", ""))
    elif exit_code in CURL_FAILURES:
        found = CURL_FAILURES[exit_code]
    elif exit_code:
        found = (f"curl exit {exit_code}", "")
    elif status >= 400:
        return f"HTTP error {status}"
    else:
        return ""
    kind, errno = found
    return f"{kind} ({errno})" if errno else kind


def connect_failure(verbose: str) -> str:
    """Why curl's connect failed, as `curl -v` says it ("* connect to ADDR port N failed:
    Connection refused": the socket's own strerror), or ""."""
    return next((line.split(" failed: ", 1)[1].strip() for line in verbose.splitlines()
                 if line.startswith("* connect to ") and " failed: " in line), "")


def named_failure(exit_code: int, verbose: str, status: int) -> str:
    """What a `curl -v` run got, in its socket's words (failure()), from its exit code and its
    verbose output: how diagnose's probes name what the client met."""
    connect = connect_failure(verbose)
    return failure(exit_code, connect or verbose, status)


def phases(metrics: dict) -> dict[str, float]:
    """curl's cumulative times as the duration of each phase, in ms."""
    dns, connect = metrics["time_namelookup"], metrics["time_connect"]
    tls = metrics["time_appconnect"] if metrics.get("time_appconnect") else connect
    first_byte, total = metrics["time_starttransfer"], metrics["time_total"]
    out = {"dns": dns, "connect": connect - dns}
    if metrics.get("scheme", "").lower() == "https":
        out["tls"] = tls - connect
    out["first byte"] = max(first_byte - tls, 0.0)
    out["total"] = total
    return {k: round(v * 1000, 2) for k, v in out.items()}


def new_trace_id() -> str:
    return secrets.token_hex(16)


def visit(backend: Backend, topology: Topology, url: str, node: str, trace_id: str | None = None,
          key_log: str | None = None, curl_args: tuple[str, ...] = (), body_path: str | None = None,
          max_time: float = TIMEOUT_S) -> Visit:
    """One page load; with `key_log` (a path in the node), curl logs its TLS session keys there
    (SSLKEYLOGFILE, as browsers do). `curl_args` go before the URL (a method, headers, a body:
    the pytest plugin's visits of an API); with `body_path` the answer's body is kept there."""
    trace_id = trace_id or new_trace_id()
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    # -v: curl says why a connect failed only there ("* connect to ADDR port N failed: Connection
    # refused", the socket's own strerror); its exit code and message do not tell refused from unreachable
    argv = [*(["env", f"SSLKEYLOGFILE={key_log}"] if key_log else []), "curl", "-sS", "-v", "-o", body_path or "/dev/null",
            "--max-time", f"{max_time:g}", "-H", f"traceparent: {traceparent}",
            "-w", f"%{{json}}\n{_SEPARATOR}\n%{{header_json}}", *curl_args, url]
    result = backend.run(topology, node, argv, timeout=max_time + 10)
    finished_at = time.time()
    metrics_text, _, headers_text = result.stdout.partition(f"\n{_SEPARATOR}\n")
    try:
        metrics = json.loads(metrics_text)
        headers = json.loads(headers_text) if headers_text.strip() else {}
    except json.JSONDecodeError:
        said = "\n".join(line for line in result.stderr.splitlines() if not line.startswith(("*", ">", "<", "{", "}")))
        raise BackendError(f"curl in {node} gave no timings: {said.strip() or result.stdout[:200]}") from None
    status = int(metrics.get("http_code") or 0)
    connect = connect_failure(result.stderr)
    error = ""
    if result.returncode:
        error = metrics.get("errormsg") or (result.stderr.strip().splitlines() or [""])[-1]
        error += f" ({connect})" if connect and connect not in error else ""
    return Visit(
        url=url, node=node, trace_id=trace_id,
        ok=result.returncode == 0 and 0 < status < 400, status=status,
        error=error, failure=failure(result.returncode, error, status),
        bytes=int(metrics.get("size_download") or 0),
        served_by=_header(headers, "x-served-by"), cache=_header(headers, "x-cache"), edge=_header(headers, "x-edge"),
        local=f"{metrics.get('local_ip', '')}:{metrics.get('local_port', '')}" if metrics.get("local_ip") else "",
        remote=f"{metrics.get('remote_ip', '')}:{metrics.get('remote_port', '')}" if metrics.get("remote_ip") else "",
        timings_ms=phases(metrics) if status else {}, finished_at=finished_at,
    )


# ------------------------------------------------------------ a traced visit

TRACE_FILTER = "ip or arp"  # every data-plane packet; the management network is never captured
TRACE_MAX_SECONDS = 60
TRACE_MAX_PACKETS = 20_000  # per node
SETTLE_S = 0.5  # after the visit, for the last packets (FIN, final ACKs) to land


def forget_neighbours(backend: Backend, topology: Topology, node: str) -> None:
    """Empty the node's ARP cache on its data interfaces, so the trace starts with ARP for the
    gateway (the seeds' first step after the lease)."""
    for iface in topology.nodes[node].interfaces:
        result = backend.run(topology, node, ["ip", "neigh", "flush", "dev", iface.network], timeout=10)
        if result.returncode != 0:
            raise BackendError(f"{node}: could not flush its neighbours on {iface.network}: {result.stderr.strip()}")


RENEW = ("python3", "-m", "hoplab.node", "renew")


def renew_lease(backend: Backend, topology: Topology, node: str) -> None:
    """Ask the node's DHCP client to renew its lease now (udhcpc renews on SIGUSR1), and wait
    until the new lease is applied. The node runtime signals the node's own udhcpc only (by the
    pid it recorded, checked to be a udhcpc in the node's network namespace: on the netns
    backend `pidof` would see every lab's); hoplab.node.dhcp."""
    result = backend.run(topology, node, list(RENEW), timeout=15)
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).removeprefix("renew: ")
        raise BackendError(f"{node}: the DHCP lease was not renewed: {said or f'exit {result.returncode}'}")


def key_log_path(trace_id: str) -> str:
    return f"/run/hoplab/tls-keys-{trace_id}.log"


def collect_key_log(backend: Backend, topology: Topology, node: str, path: str) -> str:
    """The key log curl wrote in the node (checked: a malformed one is an error), then gone
    from the node. Empty when the visit made no TLS session (http://, or no connection)."""
    result = backend.run(topology, node, ["cat", path], timeout=10)
    backend.run(topology, node, ["rm", "-f", path], timeout=10)
    if result.returncode != 0:
        return ""
    try:
        return KeyLog.parse(result.stdout, source=f"{node}:{path}").text
    except KeyLogError as exc:
        raise BackendError(str(exc)) from None


class Traced:
    """Every node capturing and the host's kernel watching for drops while one exchange runs (a
    visit, a game): `with Traced(...) as traced:` the exchange, setting `traced.status`; then
    `traced.trace()`. `keys`, when given, is asked at the end for the TLS session keys the
    client logged (NSS key log text), which the trace decrypts with."""

    def __init__(self, backend: Backend, topology: Topology, url: str, trace_id: str,
                 keys: Callable[[], str] | None = None):
        from hoplab.control.client import ControlClient

        self.control = ControlClient.of(backend, topology)
        self.url, self.trace_id, self.keys = url, trace_id, keys
        self.view = KernelView(backend, topology, TRACE_MAX_SECONDS)
        self.status = 0

    def __enter__(self) -> "Traced":
        self.view.__enter__()
        try:
            self.capture = self.control.start(filter=TRACE_FILTER, max_seconds=TRACE_MAX_SECONDS,
                                              max_packets=TRACE_MAX_PACKETS, trace_id=self.trace_id, url=self.url)
        except BaseException:
            self.view.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.view.__exit__(*exc)
        keys = ""
        try:
            keys = self.keys() if self.keys else ""
        finally:  # the capture stops whatever the key log was
            self.control.stop(self.capture.id, status=self.status, drops=self.view.drops,
                              kernel_view=self.view.status, accepts=self.view.accepts, binds=self.view.binds,
                              tls_keylog=keys)

    def trace(self):
        trace = self.control.trace(self.trace_id)
        self.control.close()
        return trace


def traced_visit(backend: Backend, topology: Topology, url: str, node: str, renew: bool = False,
                 curl_args: tuple[str, ...] = (), body_path: str | None = None, max_time: float = TIMEOUT_S):
    """A visit with every node capturing and the host's kernel watching for drops; returns the
    visit and its assembled trace."""
    trace_id = new_trace_id()
    with Traced(backend, topology, url, trace_id,
                keys=lambda: collect_key_log(backend, topology, node, key_log_path(trace_id))) as traced:
        if renew:
            forget_neighbours(backend, topology, node)
            renew_lease(backend, topology, node)
        result = visit(backend, topology, url, node, trace_id, key_log=key_log_path(trace_id),
                       curl_args=curl_args, body_path=body_path, max_time=max_time)
        traced.status = result.status
        time.sleep(SETTLE_S)
    trace = traced.trace()
    result.cause = cause(trace, result, node)
    return result, trace


def tell(trace, hop) -> str:
    """One hop of a trace as a cause is told: its time from the trace's start, where, which way
    and what it said."""
    from hoplab.trace.render import notes, said, where

    r = hop.record
    return f"+{(r.ts_ns - trace.hops[0].record.ts_ns) / 1e6:.3f} ms {where(r)} {r.direction} {said(hop)}{notes(hop)}"


def cause(trace, result: Visit, node: str) -> str:
    """The packet behind a failed visit, as the trace saw it where it started: the RST that
    refused the connection, the ICMP error, the TLS alert, the HTTP error response; for a
    connection that timed out, the kernel's drop of the SYN, or the SYN nobody answered."""
    from hoplab.trace.assemble import packet_key

    if not result.failure or not trace.hops:
        return ""
    hops = list(trace.hops)
    mine = [h for h in hops if h.record.node == node]

    def told(hop) -> str:
        return tell(trace, hop)

    def origin(hop):
        """The first sighting of the packet the client received (its sender's, across the NAT)."""
        key = packet_key(hop.record)
        return next((h for h in hops if key and packet_key(h.record) == key), hop)

    def first_in(test):
        return next((h for h in mine if h.record.direction == "in" and test(h)), None)

    kind = result.failure
    if kind.startswith(("connection refused", "connection reset")):
        found = first_in(lambda h: "RST" in h.record.tcp_flags)
    elif "unreachable" in kind:
        found = first_in(lambda h: h.record.proto == "icmp")
    elif kind.startswith("TLS"):
        found = first_in(lambda h: "alert" in said(h))
    elif kind.startswith("HTTP error"):
        status = kind.split()[-1]
        found = first_in(lambda h: status in (h.record.keys.get("http_status"), h.decrypted.keys.get("http_status")))
    elif kind.startswith("timed out"):
        drops = [h for h in hops if h.record.direction == "drop"]
        # the kernel's refusals first; a retransmission already received says nothing of the loss
        dropped = next((h for h in drops if h.record.keys.get("drop_reason") not in BENIGN_DROPS),
                       drops[0] if drops else None)
        if dropped is not None:
            return told(dropped)
        syns = [h for h in mine if h.record.direction == "out" and h.record.tcp_flags == "SYN"]
        answered = any(h.record.tcp_flags == "SYN,ACK" for h in mine)
        if syns and not answered:
            return f"{told(syns[-1])} (sent {len(syns)} times, never answered)"
        return ""
    else:
        return ""
    return told(origin(found)) if found is not None else ""

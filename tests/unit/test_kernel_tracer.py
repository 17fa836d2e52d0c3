"""The kernel drop tracer (hoplab.trace.kernel): the reason table read from the tracepoint's
format file, plain words for every reason, parsing of the program's output, namespace → node,
and one run against the real kernel on a veth pair of the test's own (two network namespaces,
10.199.2.0/24, nothing leaves the machine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from veth import ip, joined

from hoplab.paths import PROJECT_ROOT
from hoplab.trace.kernel import (FORMAT_FILE, HOST, PLAIN_WORDS, Accept, Drop, DropFilter, KernelTracer,
                                 KernelTracerError, namespace_map, node_of, parse_accept, parse_bind, parse_line,
                                 program, program_arguments, reason_names, with_nodes, words)

STORED_FORMAT = Path(__file__).parents[1] / "data" / "kfree_skb.format"  # kernel 6.18's, as read on this host
REQUIRED_WORDS = """NOT_SPECIFIED NO_SOCKET PKT_TOO_SMALL TCP_CSUM SOCKET_FILTER UDP_CSUM NETFILTER_DROP OTHERHOST
IP_CSUM IP_INHDR IP_RPFILTER UNICAST_IN_L2_MULTICAST IP_INADDRERRORS IP_INNOROUTES IP_OUTNOROUTES PKT_TOO_BIG
NEIGH_FAILED NEIGH_QUEUEFULL NEIGH_DEAD TC_EGRESS QDISC_DROP CPU_BACKLOG TCP_OLD_DATA TCP_INVALID_SEQUENCE
TCP_RESET TCP_LISTEN_OVERFLOW""".split()
# Captured on this host (kernel 6.18, bpftrace 0.17): a running lab's database closing
# connections with unread data and web answering a segment for a closed socket; then, on this
# file's veth pair, a SYN to a firewalled port, a SYN and a datagram to closed ports, a ping
# into a DROP rule, and a ping to an address no one has (ARP fails).
SAMPLES = {
    "D 7539174087674 4026532888 104 6 338829228 187834284 3031119893 sk_stream_kill_queues \n":
        ("", "172.31.50.20:5432", "172.31.50.11:43956", "tcp", "QUEUE_PURGE", "sk_stream_kill_queues"),
    "D 7540397268319 4026532888 2 6 171057068 187834284 2417986702 tcp_v4_rcv origin\n":
        ("origin", "172.31.50.10:36492", "172.31.50.11:8080", "tcp", "NOT_SPECIFIED", "tcp_v4_rcv"),
    "D 7621330647684 4026533173 12 6 16959242 33736458 151005846 nft_do_chain veth1\n":
        ("veth1", "10.199.2.1:38442", "10.199.2.2:9", "tcp", "NETFILTER_DROP", "nft_do_chain"),
    "D 7621866243372 4026533173 3 6 16959242 33736458 167817902 tcp_v4_rcv veth1\n":
        ("veth1", "10.199.2.1:44722", "10.199.2.2:10", "tcp", "NO_SOCKET", "tcp_v4_rcv"),
    "D 7621877827518 4026533173 12 1 16959242 33736458 1827864584 nft_do_chain veth1\n":
        ("veth1", "10.199.2.1", "10.199.2.2", "icmp", "NETFILTER_DROP", "nft_do_chain"),
    "D 7622905313836 4026533173 3 17 16959242 33736458 889212842 __udp4_lib_rcv veth1\n":
        ("veth1", "10.199.2.1:43599", "10.199.2.2:53", "udp", "NO_SOCKET", "__udp4_lib_rcv"),
    "D 7625968194538 4026533104 58 1 16959242 1292027658 1363738632 neigh_invalidate veth0\n":
        ("veth0", "10.199.2.1", "10.199.2.77", "icmp", "NEIGH_FAILED", "neigh_invalidate"),
}
# Captured on this host from a running Docker lab: db's postmaster (pid 7 in its container)
# taking web2's connection on its own address, a gunicorn worker on web2 taking lb's, and the
# edge's nginx taking its health check on loopback.
ACCEPT_SAMPLES = {
    "A 1187037856221 4026532189 32371 32371 7 7 338829228 5432 204611500 21166 4 338829228 244 0 postgres\n":
        (4026532189, 32371, 32371, 7, 7, "postgres", "172.31.50.20:5432", "172.31.50.12:44626", "172.31.50.20:5432",
         244, 0),
    "A 1187407187137 4026532518 1272 1272 34 34 204611500 8080 171057068 10954 4 0 2048 0 gunicorn\n":
        (4026532518, 1272, 1272, 34, 34, "gunicorn", "172.31.50.12:8080", "172.31.50.10:51754", "0.0.0.0:8080",
         2048, 0),
    "A 1187277987261 4026532436 32499 32499 22 22 16777343 80 16777343 12935 4 0 511 0 nginx\n":
        (4026532436, 32499, 32499, 22, 22, "nginx", "127.0.0.1:80", "127.0.0.1:34610", "0.0.0.0:80", 511, 0),
}


def test_reason_names_from_the_stored_format_file():
    names = reason_names(STORED_FORMAT)
    assert names[2] == "NOT_SPECIFIED" and names[3] == "NO_SOCKET" and names[12] == "NETFILTER_DROP"
    assert names[54] == "IP_OUTNOROUTES" and names[104] == "QUEUE_PURGE"
    assert len(names) == len(set(names.values())) > 100


@pytest.mark.skipif(not FORMAT_FILE.exists(), reason=f"{FORMAT_FILE} is not there (tracefs not mounted, or not root)")
def test_reason_names_from_this_machines_format_file():
    names = reason_names()
    assert {"NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP"} <= set(names.values())
    assert all(re.fullmatch(r"[A-Z0-9_]+", name) for name in names.values())


def test_a_format_file_without_the_table_is_an_error(tmp_path):
    broken = tmp_path / "format"
    broken.write_text('print fmt: "reason: %d", REC->reason\n')
    with pytest.raises(KernelTracerError, match="__print_symbolic"):
        reason_names(broken)


def test_plain_words_cover_the_reasons_a_lab_meets():
    assert not set(REQUIRED_WORDS) - set(PLAIN_WORDS)
    assert words("NETFILTER_DROP") == "dropped by a firewall rule (netfilter)"
    assert words("NO_SOCKET") == "no socket is listening there"
    assert words("IP_OUTNOROUTES") == "no route to the destination"


def test_every_reason_the_program_can_emit_has_words():
    names = reason_names(STORED_FORMAT)
    assert set(PLAIN_WORDS) <= set(names.values()), "a table entry names no reason of this kernel"
    for name in names.values():
        said = words(name)
        assert said and (name in PLAIN_WORDS or said == f"the kernel dropped it ({name})")
    # A number this kernel's table lacks (a subsystem's own reason) still reads as something.
    line = "D 5 4026531840 196609 17 16777343 16777343 0 some_function eth0"
    assert parse_line(line, names).words == "the kernel dropped it (REASON_196609)"


@pytest.mark.parametrize("line", list(SAMPLES))
def test_sample_lines_parse(line):
    names = reason_names(STORED_FORMAT)
    ifname, src, dst, proto, reason, location = SAMPLES[line]
    _, monotonic, netns = line.split()[:3]
    assert parse_line(line, names) == Drop(int(monotonic), int(monotonic), int(netns), ifname, src, dst, proto,
                                           reason, location, words(reason))
    shifted = parse_line(line, names, realtime_offset_ns=1_000)
    assert (shifted.ts_ns, shifted.monotonic_ns) == (int(monotonic) + 1_000, int(monotonic))


def test_other_lines_are_not_drops():
    names = reason_names(STORED_FORMAT)
    for line in ("Attaching 2 probes...\n", "\n", "Lost 3 events\n", "D x y\n", "D 1 2 3 4 5 6 seven loc if\n"):
        assert parse_line(line, names) is None


def test_icmp_and_udp_addresses():
    names = reason_names(STORED_FORMAT)
    address = int.from_bytes(bytes([10, 199, 2, 2]), sys.byteorder)
    ports = int.from_bytes((53).to_bytes(2, "big") + (33000).to_bytes(2, "big"), sys.byteorder)
    icmp = parse_line(f"D 1 2 12 1 {address} {address} 8 nft_do_chain veth1", names)
    udp = parse_line(f"D 1 2 3 17 {address} {address} {ports} __udp4_lib_rcv veth1", names)
    assert (icmp.proto, icmp.src, icmp.dst) == ("icmp", "10.199.2.2", "10.199.2.2")
    assert (udp.proto, udp.src, udp.dst, udp.reason) == ("udp", "10.199.2.2:53", "10.199.2.2:33000", "NO_SOCKET")


@pytest.mark.parametrize("line", ACCEPT_SAMPLES)
def test_accept_lines_parse(line):
    netns, pid, tid, node_pid, node_tid, comm, local, remote, listener, backlog, queue = ACCEPT_SAMPLES[line]
    monotonic = int(line.split()[1])
    assert parse_accept(line) == Accept(monotonic, monotonic, netns, pid, tid, node_pid, node_tid, comm, local,
                                        remote, listener, backlog, queue)
    assert parse_accept(line, realtime_offset_ns=1_000).ts_ns == monotonic + 1_000
    assert parse_line(line, reason_names(STORED_FORMAT)) is None  # not a drop


def test_an_accept_without_its_listener_and_a_comm_with_spaces():
    # The thread was already in accept() when the tracer attached: the listener is not known.
    accept = parse_accept("A 5 6 100 101 3 4 33736458 80 16959242 20480 0 0 0 0 Web Content\n")
    assert (accept.local, accept.remote, accept.comm) == ("10.199.2.2:80", "10.199.2.1:80", "Web Content")
    assert (accept.pid, accept.tid, accept.node_pid, accept.node_tid) == (100, 101, 3, 4)
    assert (accept.listener, accept.backlog, accept.accept_queue) == ("", -1, -1)
    for other in ("", "Attaching 7 probes...", "A 1 2 3", "A x 2 3 4 5 6 7 8 9 10 11 12 13 14 comm",
                  next(iter(SAMPLES))):
        assert parse_accept(other) is None
    assert with_nodes([accept], {6: "web1"})[0].node == "web1"
    # An IPv4 client of a dual-stack listener ([::]:80), as control/sockets.py names it.
    dual = parse_accept("A 5 6 100 101 3 4 33736458 80 16959242 20480 6 0 511 2 nginx\n")
    assert (dual.local, dual.listener, dual.backlog, dual.accept_queue) == ("10.199.2.2:80", "[::]:80", 511, 2)


# Refused binds as the program prints them: B nsecs netns pid nspid ret family port(network order,
# read in host order) v4 v6-high v6-low proto comm. Seen here: a second bind of UDP 127.0.0.1:47777
# and of TCP [::]:47778.
BIND_SAMPLES = {
    "B 83473201198670 4026531833 1397 12 -98 2 41402 16777343 0 0 17 python3\n":
        (4026531833, 1397, 12, "127.0.0.1:47777", "udp", "EADDRINUSE", "address already in use", "python3"),
    "B 83513468272952 4026531833 1586 1586 -98 10 41658 0 0 0 6 python\n":
        (4026531833, 1586, 1586, "[::]:47778", "tcp", "EADDRINUSE", "address already in use", "python"),
    "B 83513468272999 4026532189 77 7 -13 2 20480 0 0 0 0 my daemon\n":
        (4026532189, 77, 7, "0.0.0.0:80", "", "EACCES", "permission denied", "my daemon"),
}


@pytest.mark.parametrize("line", BIND_SAMPLES)
def test_refused_bind_lines_parse(line):
    failed = parse_bind(line, realtime_offset_ns=1000)
    assert (failed.netns, failed.pid, failed.node_pid, failed.address, failed.proto, failed.error, failed.words,
            failed.comm) == BIND_SAMPLES[line]
    assert failed.ts_ns == failed.monotonic_ns + 1000
    assert parse_line(line, {}) is None and parse_accept(line) is None  # one kind of line, one parser
    assert parse_bind(next(iter(ACCEPT_SAMPLES))) is None and parse_bind("B 1 2 x") is None


def test_the_program_takes_its_values_as_arguments():
    names = reason_names(STORED_FORMAT)
    drop_filter = DropFilter(("10.199.2.0/24", "172.31.0.0/16"), max_seconds=2.5, max_drops=7, accepts=False,
                             binds=False)
    text = program(2, 1)
    assert "10.199" not in text and "$8" in text and "$9" not in text and "accept" not in text
    def as_read(*octets: int) -> str:  # an address as the program reads it: bytes in host order
        return str(int.from_bytes(bytes(octets), sys.byteorder))

    assert program_arguments(drop_filter, names) == [
        "2500", "7", "3",  # milliseconds, drops, NO_SOCKET
        as_read(10, 199, 2, 0), as_read(255, 255, 255, 0), as_read(172, 31, 0, 0), as_read(255, 255, 0, 0),
        "104"]  # QUEUE_PURGE, quiet by default
    assert program_arguments(DropFilter(drop_filter.subnets, max_accepts=9, binds=False), names)[-2:] == ["104", "9"]
    assert program_arguments(DropFilter(drop_filter.subnets, max_accepts=9, max_binds=11), names)[-3:] == [
        "104", "9", "11"]
    with_binds = program(2, 1, accepts=True, binds=True)
    assert "@binds >= $10" in with_binds and "$11" not in with_binds and "clear(@bind_sa)" in with_binds
    assert "sys_exit_bind" not in program(2, 1, accepts=True)
    with_accepts = program(2, 1, accepts=True)
    assert "@accepts >= $9" in with_accepts and "$10" not in with_accepts
    assert with_accepts.count("tracepoint:syscalls:sys_exit_accept4, tracepoint:syscalls:sys_exit_accept\n") == 1
    assert "rx_sk" not in program(1, 0, rx_sk=False)
    assert "$3" in program(1, 0) and "$3" not in program(1, 0, echo_replies=True)


@pytest.mark.parametrize("bad", [DropFilter(()), DropFilter(("10.199.2.0/33",)), DropFilter(("10.1.0.0/16",), 0),
                                 DropFilter(("10.1.0.0/16",), 601), DropFilter(("10.1.0.0/16",), 1, 0),
                                 DropFilter(("10.1.0.0/16",), 1, 200_001),
                                 DropFilter(("10.1.0.0/16",), max_accepts=0),
                                 DropFilter(("10.1.0.0/16",), max_accepts=200_001),
                                 DropFilter(("10.1.0.0/16",), max_binds=0)])
def test_a_filter_is_bounded(bad):
    with pytest.raises(KernelTracerError):
        bad.check()


def test_namespace_map():
    own = os.stat("/proc/self/ns/net").st_ino
    gone = subprocess.Popen([sys.executable, "-c", ""])  # a pid that is gone once it has run and been reaped
    gone.wait()
    namespaces = namespace_map({"web1": os.getpid(), "gone": gone.pid}, host=False)
    assert namespaces == {own: "web1"}
    assert node_of(own, namespaces) == "web1" and node_of(1, namespaces) == ""
    assert namespace_map({}) == {own: HOST}  # the namespace the tracer runs in
    assert namespace_map({"web1": os.getpid()}) == {own: "web1"}  # a node wins over the host
    drop = parse_line(next(iter(SAMPLES)), reason_names(STORED_FORMAT))
    assert with_nodes([drop], {drop.netns: "db"})[0].node == "db"


def test_stop_without_start_reports_nothing():
    assert KernelTracer().stop() == []


def test_setup_host_installs_bpftrace_for_both_backends():
    line = next(l for l in (PROJECT_ROOT / "scripts" / "setup-host").read_text().splitlines()
                if l.startswith("packages=("))
    assert "bpftrace" in line.removeprefix("packages=(").rstrip(")").split()  # what every backend installs


# ------------------------------------------------------------------ the real kernel

def in_namespace(namespace: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=20)


CONNECT = """import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"""


def connect(namespace: str, address: str, port: int) -> str:
    """A TCP connect from inside `namespace`: connected, timeout or refused."""
    return in_namespace(namespace, sys.executable, "-c", CONNECT, address, str(port)).stdout.strip()


@pytest.fixture
def wire():
    """Namespaces a (10.199.2.1) and b (10.199.2.2) joined by a veth pair; b drops TCP to port 9."""
    why = KernelTracer().can_run() or next((f"needs {tool}" for tool in ("ip", "iptables") if not shutil.which(tool)),
                                           None)
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the kernel drop tracer cannot run here: {why}")
        pytest.skip(why)
    with joined("kt", "10.199.2") as (a, b):
        rule = in_namespace(b, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
        assert rule.returncode == 0, rule.stderr
        yield a, b


def test_the_kernel_reports_a_firewall_drop_and_a_closed_port(wire):
    a, b = wire
    receiver = os.stat(f"/run/netns/{b}").st_ino  # `ip netns` pins the namespace there
    sender = os.stat(f"/run/netns/{a}").st_ino
    tracer = KernelTracer(namespaces={receiver: "b", sender: "a"})
    before = time.time_ns()
    with tracer.tracing(DropFilter(("10.199.2.0/24",), max_seconds=30, max_drops=50)) as run:
        pid = tracer.pid
        firewalled = connect(a, "10.199.2.2", 9)
        closed = connect(a, "10.199.2.2", 10)
        pinged = in_namespace(a, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.199.2.2").returncode
    after = time.time_ns()
    with pytest.raises(ProcessLookupError):  # bpftrace is gone, its group with it
        os.killpg(pid, 0)
    print(f"attached in {tracer.attach_s:.3f} s; {firewalled=}, {closed=}, {pinged=}")
    for drop in run.drops:
        print(drop)

    assert firewalled == "timeout"  # the SYN never got an answer
    syns = [d for d in run.drops if d.dst == "10.199.2.2:9"]
    assert syns, run.drops
    assert all(d.reason == "NETFILTER_DROP" and d.netns == receiver and d.node == "b" for d in syns)
    assert all(d.src.startswith("10.199.2.1:") and d.proto == "tcp" and d.ifname == "veth1" for d in syns)
    assert syns[0].words == "dropped by a firewall rule (netfilter)" and syns[0].location == "nft_do_chain"

    # Observed on kernel 6.18: the SYN to a port nobody listens on is answered with a RST (the
    # connect is refused) and the SYN itself is then freed as a drop with reason NO_SOCKET.
    assert closed == "refused"
    refused = [d for d in run.drops if d.dst == "10.199.2.2:10"]
    assert [(d.reason, d.netns, d.ifname, d.location) for d in refused] == [
        ("NO_SOCKET", receiver, "veth1", "tcp_v4_rcv")], run.drops
    # An answered ping: ping on a raw socket takes its copy of the echo reply and the kernel frees
    # the original as NO_SOCKET in ping_rcv; the filter leaves those out, so nothing else shows.
    assert pinged == 0
    assert len(run.drops) == len(syns) + len(refused), run.drops
    assert tracer.lost == 0
    # Drops carry CLOCK_REALTIME, as hop timestamps do (SO_TIMESTAMPNS in control/capture.py).
    assert all(before <= d.ts_ns <= after for d in run.drops), (before, after, run.drops)


def test_the_kernel_names_a_refused_bind_and_its_process():
    """Two sockets ask for the same UDP port, in a namespace of their own: the kernel refuses the
    second (EADDRINUSE), and the tracer names the process, the address and the protocol."""
    why = KernelTracer().can_run()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the kernel tracer cannot run here: {why}")
        pytest.skip(why)
    namespace = f"hoplab-kt-bind-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", namespace)
    try:
        tracer = KernelTracer(namespaces={os.stat(f"/run/netns/{namespace}").st_ino: "b"})
        with tracer.tracing(DropFilter(("10.199.2.0/24",), max_seconds=30)) as run:
            twice = in_namespace(namespace, sys.executable, "-c", "import os, socket\n"
                                 "first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                                 "first.bind(('127.0.0.1', 7777))\n"
                                 "print(os.getpid(), flush=True)\n"
                                 "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(('127.0.0.1', 7777))\n")
            time.sleep(0.2)
    finally:
        ip("netns", "del", namespace)
    assert "Address already in use" in twice.stderr
    (failed,) = [b for b in run.binds if b.node == "b"]
    assert (failed.pid, failed.address, failed.proto, failed.error, failed.words) == (
        int(twice.stdout), "127.0.0.1:7777", "udp", "EADDRINUSE", "address already in use")


SERVER = """import os, socket, sys
if sys.argv[1] == "dual-stack":
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 8080))
else:
    s = socket.socket()
    s.bind(("10.199.2.2", 8080))
s.listen(5)
print(os.getpid(), flush=True)
sys.stdin.readline()  # both clients are in the accept queue
conn, peer = s.accept()
print(peer[1], flush=True)
sys.stdin.readline()
"""
CLIENTS = """import socket, sys
clients = [socket.create_connection(("10.199.2.2", 8080), timeout=5) for _ in range(2)]
print(" ".join(str(c.getsockname()[1]) for c in clients), flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("listener", ["10.199.2.2:8080", "[::]:8080"])
def test_the_kernel_names_the_process_that_accepted(wire, listener):
    """A server in b listens (backlog 5; on IPv4, or dual-stack on IPv6), two IPv4 clients in a
    connect, the server accepts one: the kernel reports that one accept, in b's namespace, by
    the server's process and thread, with its listener, backlog and the one connection still
    waiting."""
    a, b = wire
    tracer = KernelTracer(namespaces={os.stat(f"/run/netns/{b}").st_ino: "b", os.stat(f"/run/netns/{a}").st_ino: "a"})
    spawn = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with tracer.tracing(DropFilter(("10.199.2.0/24",), max_seconds=30)) as run:
        server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SERVER,
                                   "dual-stack" if "::" in listener else "ipv4"], **spawn)
        clients = None
        try:
            pid = int(server.stdout.readline())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            clients = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", CLIENTS], **spawn)
            ports = clients.stdout.readline().split()
            server.stdin.write("\n")
            server.stdin.flush()
            taken = server.stdout.readline().strip()
        finally:
            for proc in (server, clients):
                if proc is not None:
                    proc.communicate("\n", timeout=10)
    print(run.accepts, tracer.accepts_unavailable)
    assert tracer.accepts_unavailable is None
    assert taken in ports and len(ports) == 2
    (accept,) = [x for x in run.accepts if x.node in ("a", "b")]  # the lab's own accepts are not in 10.199.2.0/24
    assert (accept.node, accept.pid, accept.tid, accept.node_pid, accept.node_tid, accept.comm) == (
        "b", pid, pid, pid, pid, comm)
    assert (accept.local, accept.remote) == ("10.199.2.2:8080", f"10.199.2.1:{taken}")
    assert (accept.listener, accept.backlog, accept.accept_queue) == (listener, 5, 1)


def test_the_kernel_view_sends_each_lab_nodes_accepts_with_the_nodes_own_pids(monkeypatch):
    from types import SimpleNamespace

    from hoplab import kernel_view

    accepts = [parse_accept(line) for line in ACCEPT_SAMPLES]  # db's postmaster, a web2 worker, the edge's nginx
    node_of_netns = {accepts[0].netns: "db", accepts[1].netns: "web2", accepts[2].netns: HOST}

    class Tracer:  # what KernelTracer does, without bpftrace
        def can_run(self):
            return None

        def start(self, drop_filter):
            assert drop_filter.accepts and drop_filter.subnets == ("172.31.50.0/24",)

        def stop(self):
            self.accepts = accepts
            self.binds = [parse_bind(line) for line in BIND_SAMPLES]  # netns: the host, the host, db
            return []

    monkeypatch.setattr(kernel_view.kernel, "KernelTracer", Tracer)
    monkeypatch.setattr(kernel_view.kernel, "namespace_map", lambda pids: node_of_netns)
    backend = SimpleNamespace(node_pids=lambda topology: {})
    topology = SimpleNamespace(networks={"origin": SimpleNamespace(subnet="172.31.50.0/24")})
    with kernel_view.KernelView(backend, topology, 10) as view:
        pass
    # the host's own accepts (the edge's loopback here, mapped to HOST for the test) are not a node's
    assert [(a.node, a.pid, a.host_pid, a.tid, a.process, a.local, a.listener, a.backlog) for a in view.accepts] == [
        ("db", 7, 32371, 7, "postgres", "172.31.50.20:5432", "172.31.50.20:5432", 244),
        ("web2", 34, 1272, 34, "gunicorn", "172.31.50.12:8080", "0.0.0.0:8080", 2048)]
    # likewise the refused binds: a lab node's only, with the node's own pid
    assert [(b.node, b.pid, b.host_pid, b.process, b.address, b.error) for b in view.binds] == [
        ("db", 7, 77, "my daemon", "0.0.0.0:80", "EACCES")]
    assert view.summary() == ["1 x at db: my daemon (pid 7) could not bind 0.0.0.0:80: permission denied (EACCES)"]

"""Inside the server (hoplab.control.sockets): parsing /proc/net/tcp and the counter files, reading
a snapshot, and, in a network namespace of this test's own (nothing leaves the machine), the
listeners, queues, owners and counters of known sockets, through netlink and through procfs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from hoplab.control import sockets

SRC = str(Path(__file__).resolve().parents[2] / "src")

# ------------------------------------------------------------------ /proc/net/tcp, as printed on x86

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout"
              " inode\n")
TCP_LINES = [
    # 0.0.0.0:80 listening, 2 connections waiting for accept()
    "   0: 00000000:0050 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 5001 1"
    " 0000000000000000 100 0 0 10 0",
    # 10.199.3.1:80 <- 10.199.3.9:40000, accepted, 5 bytes unread
    "   1: 0103C70A:0050 0903C70A:9C40 01 00000000:00000005 00:00000000 00000000    33        0 5002 1"
    " 0000000000000000 20 4 30 10 -1",
    # a half-open request socket for port 80: no inode
    "   2: 0103C70A:0050 0A03C70A:9C41 03 00000000:00000000 01:00000064 00000000     0        0 0 0"
    " 0000000000000000",
    # TIME_WAIT: left out
    "   3: 0103C70A:0050 0B03C70A:9C42 06 00000000:00000000 03:00000F00 00000000     0        0 0 3"
    " 0000000000000000",
]
TCP6_HEADER = ("  sl  local_address                         remote_address                        st"
               " tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
TCP6_LINES = [
    # [::]:8080 listening
    "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A"
    " 00000000:00000000 00:00000000 00000000     0        0 6001 1 0000000000000000 100 0 0 10 0",
    # ::ffff:127.0.0.1:8080 <- ::ffff:127.0.0.1:50000 on the dual-stack listener
    "   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01"
    " 00000000:00000000 00:00000000 00000000    33        0 6002 1 0000000000000000 20 4 30 10 -1",
    # ::1:8080 <- ::1:50001
    "   2: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C351 01"
    " 00000000:00000000 00:00000000 00000000     0        0 6003 1 0000000000000000 20 4 30 10 -1",
]


def test_proc_net_tcp_rows():
    rows = sockets.parse_proc_net_tcp(TCP_HEADER + "\n".join(TCP_LINES) + "\n", byteorder="little")
    assert [r.state for r in rows] == ["LISTEN", "ESTABLISHED", "SYN_RECV"]
    listener, conn, half_open = rows
    assert (listener.local_address, listener.local_port, listener.rqueue, listener.wqueue, listener.inode) \
        == ("0.0.0.0", 80, 2, None, 5001)  # procfs prints no backlog
    assert (conn.local_address, conn.local_port, conn.remote_address, conn.remote_port) \
        == ("10.199.3.1", 80, "10.199.3.9", 40000)
    assert (conn.rqueue, conn.inode, conn.uid) == (5, 5002, 33)
    assert (half_open.remote_address, half_open.inode) == ("10.199.3.10", 0)


def test_proc_net_tcp6_rows_and_mapped_addresses():
    rows = sockets.parse_proc_net_tcp(TCP6_HEADER + "\n".join(TCP6_LINES), byteorder="little")
    assert [(r.local_address, r.local_port, r.remote_address, r.remote_port) for r in rows] == [
        ("::", 8080, "::", 0), ("127.0.0.1", 8080, "127.0.0.1", 50000), ("::1", 8080, "::1", 50001)]


def test_proc_net_tcp_words_are_in_the_hosts_byte_order():
    big_endian = TCP_LINES[1].replace("0103C70A", "0AC70301").replace("0903C70A", "0AC70309")
    row, = sockets.parse_proc_net_tcp(TCP_HEADER + big_endian, byteorder="big")
    assert (row.local_address, row.remote_address) == ("10.199.3.1", "10.199.3.9")


def test_a_state_filter_keeps_only_those_states():
    rows = sockets.parse_proc_net_tcp(TCP_HEADER + "\n".join(TCP_LINES), states=("LISTEN",), byteorder="little")
    assert [r.inode for r in rows] == [5001]


def test_counter_pairs():
    text = ("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1 7 9\n"
            "IpExt: InNoRoutes\nIpExt: 0\n")
    assert sockets.parse_counter_pairs(text) == {"TcpExt": {"SyncookiesSent": 1, "ListenOverflows": 7,
                                                            "ListenDrops": 9}, "IpExt": {"InNoRoutes": 0}}


# ------------------------------------------------------------------ reading a snapshot

def owner(pid: int, command: str = "nginx", cmdline: str = "") -> dict:
    return {"pid": pid, "command": command, "cmdline": cmdline}


def listener(address: str, port: int, owners: list[dict], v6only: bool = False, backlog: int = 511) -> dict:
    return {"address": address, "port": port, "backlog": backlog, "accept_queue": 0, "syn_queue": 0,
            "inode": 100 + port, "uid": 0, "v6only": v6only, "owners": owners}


def conn(local: tuple, remote: tuple, inode: int, owners: list[dict]) -> dict:
    return {"state": "ESTABLISHED", "local_address": local[0], "local_port": local[1], "remote_address": remote[0],
            "remote_port": remote[1], "inode": inode, "uid": 33, "owners": owners}


SNAPSHOT = {
    "source": "netlink",
    "listeners": [
        listener("0.0.0.0", 80, [owner(10, cmdline="nginx: master process"), owner(11), owner(12)]),
        listener("127.0.0.1", 5432, [owner(20, "postgres")]),
        listener("::", 8080, [owner(30, "gunicorn")]),
        listener("::", 9000, [owner(40, "v6")], v6only=True),
        # SO_REUSEPORT: a listener per worker
        listener("0.0.0.0", 443, [owner(51, "haproxy")]),
        listener("0.0.0.0", 443, [owner(52, "haproxy")]),
    ],
    "connections": [
        conn(("10.0.0.1", 80), ("10.0.0.9", 40000), 501, [owner(12, cmdline="nginx: worker process")]),
        conn(("10.0.0.1", 80), ("10.0.0.9", 40001), 0, []),
        conn(("127.0.0.1", 5432), ("127.0.0.1", 41000), 502, [owner(20, "postgres"), owner(21, "postgres")]),
        conn(("10.0.0.1", 8080), ("10.0.0.9", 40002), 503, [owner(31, "gunicorn", "gunicorn: worker")]),
        conn(("10.0.0.1", 443), ("10.0.0.9", 40003), 504, [owner(52, "haproxy")]),
    ],
}


def test_accepted_by_names_the_worker_holding_the_socket():
    found = sockets.accepted_by(("10.0.0.1", 80, "10.0.0.9", 40000), SNAPSHOT)
    assert found["listener"] == "0.0.0.0:80"
    assert (found["pid"], found["cmdline"], found["backlog"], found["status"]) == (
        12, "nginx: worker process", 511, "accepted")


def test_accepted_by_a_connection_nobody_accepted_yet():
    found = sockets.accepted_by(("10.0.0.1", 80, "10.0.0.9", 40001), SNAPSHOT)
    assert (found["pid"], found["status"]) == (None, "in_accept_queue")


def test_accepted_by_a_connection_gone_before_the_snapshot():
    found = sockets.accepted_by(("10.0.0.1", 80, "10.0.0.9", 49999), SNAPSHOT)
    assert (found["listener"], found["pid"], found["status"]) == ("0.0.0.0:80", None, "not_seen")


def test_accepted_by_prefers_the_forked_child_over_the_listener():
    found = sockets.accepted_by(("127.0.0.1", 5432, "127.0.0.1", 41000), SNAPSHOT)
    assert found["pid"] == 21  # the backend, not the postmaster


def test_accepted_by_on_a_dual_stack_listener_with_mapped_addresses():
    found = sockets.accepted_by(("::ffff:10.0.0.1", "8080", "10.0.0.9", 40002), SNAPSHOT)
    assert (found["listener"], found["pid"]) == ("[::]:8080", 31)


def test_accepted_by_picks_the_reuseport_listener_of_the_acceptor():
    found = sockets.accepted_by(("10.0.0.1", 443, "10.0.0.9", 40003), SNAPSHOT)
    assert found["pid"] == 52


def test_refused_reason():
    assert sockets.refused_reason("10.0.0.1", 81, SNAPSHOT) == "no listener on 81"
    assert sockets.refused_reason("10.0.0.1", 80, SNAPSHOT) is None
    assert sockets.refused_reason("10.0.0.1", 5432, SNAPSHOT) == \
        "no listener on 5432 at 10.0.0.1 (only on 127.0.0.1:5432)"
    assert sockets.refused_reason("10.0.0.1", 9000, SNAPSHOT).startswith("no listener on 9000")  # v6only
    assert sockets.refused_reason("fd00::1", 9000, SNAPSHOT) is None
    assert sockets.accepted_by(("10.0.0.1", 81, "10.0.0.9", 1), SNAPSHOT) is None


# ------------------------------------------------------------------ in a namespace of our own

ADDRESS = "10.199.3.1"
NOWHERE = "10.199.3.77"  # holds no address: a SYN from it stays half-open
SERVED, WAITING, FULL, HALF_OPEN, DUAL, UNUSED = 8007, 8008, 8009, 8010, 8012, 8011

# Runs in the namespace: the sockets the test then looks at. Prints its pids once all is set.
SERVER = r"""
import json, os, socket, struct, sys, time
ADDRESS, NOWHERE = sys.argv[1:3]
SERVED, WAITING, FULL, HALF_OPEN, DUAL = (int(a) for a in sys.argv[3:8])

def listen(port, backlog, family=socket.AF_INET, address=ADDRESS):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((address, port))
    sock.listen(backlog)
    return sock

def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

def lone_syn(source, port):
    # A SYN from an address nobody holds: the SYN-ACK goes nowhere, the request stays SYN_RECV.
    tcp = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = socket.inet_aton(source) + socket.inet_aton(ADDRESS) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     socket.inet_aton(source), socket.inet_aton(ADDRESS))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + tcp, (ADDRESS, 0))

served = listen(SERVED, 7)
accepted_r, accepted_w = os.pipe()
acceptor = os.fork()
if acceptor == 0:  # the child accepts; the parent holds the listener too, never the connection
    conn, _ = served.accept()
    os.write(accepted_w, b"x")
    time.sleep(300)
    os._exit(0)
client = socket.create_connection((ADDRESS, SERVED))
os.read(accepted_r, 1)

waiting = listen(WAITING, 7)
queued = socket.create_connection((ADDRESS, WAITING))  # never accepted

full = listen(FULL, 0)  # holds one; the next SYNs overflow
flood = []
for _ in range(3):
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex((ADDRESS, FULL))
    flood.append(sock)

half_open = listen(HALF_OPEN, 7)
lone_syn(NOWHERE, HALF_OPEN)

dual = listen(DUAL, 7, socket.AF_INET6, "::")
dual_client = socket.create_connection((ADDRESS, DUAL))
dual_conn, _ = dual.accept()

print(json.dumps({"parent": os.getpid(), "acceptor": acceptor, "client_port": client.getsockname()[1],
                  "queued_port": queued.getsockname()[1], "dual_port": dual_client.getsockname()[1]}), flush=True)
sys.stdin.read()
os.kill(acceptor, 9)
"""

needs_namespaces = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                      reason="needs root and ip (namespaces)")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def namespace():
    """A network namespace with the SERVER script running in it. ADDRESS is on one end of a veth
    pair whose other end has no address, and NOWHERE has a static neighbour entry there, so a
    SYN-ACK to NOWHERE leaves and is lost (on loopback it would come back and draw a RST)."""
    name = f"hoplab-test-sk-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", name)
    server = None
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "edge", "type", "veth", "peer", "name", "edge-peer")
        ip("-n", name, "addr", "add", f"{ADDRESS}/24", "dev", "edge")
        ip("-n", name, "link", "set", "edge", "up")
        ip("-n", name, "link", "set", "edge-peer", "up")
        ip("-n", name, "neigh", "add", NOWHERE, "lladdr", "02:00:00:00:00:77", "dev", "edge")
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER, ADDRESS, NOWHERE,
                                   *(str(p) for p in (SERVED, WAITING, FULL, HALF_OPEN, DUAL))],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = server.stdout.readline()
        assert line, "the server script failed"
        yield name, json.loads(line)
    finally:
        if server is not None:
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        ip("netns", "del", name)


def snapshot_in(name: str, source: str) -> dict:
    code = ("import json, sys; from hoplab.control import sockets; "
            "print(json.dumps(sockets.snapshot(sys.argv[1])))")
    result = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", code, source],
                            env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def settled_snapshot(name: str, source: str) -> dict:
    """A snapshot once the SYNs of the overflow have been dropped (loopback may take a moment)."""
    deadline = time.monotonic() + 5
    while True:
        taken = snapshot_in(name, source)
        if taken["counters"].get("ListenOverflows", 0) > 0 or time.monotonic() > deadline:
            return taken
        time.sleep(0.1)


def listener_on(taken: dict, port: int) -> dict:
    found, = [l for l in taken["listeners"] if l["port"] == port]
    return found


@needs_namespaces
@pytest.mark.parametrize("source", ["netlink", "procfs"])
def test_in_a_namespace(namespace, source):
    name, pids = namespace
    taken = settled_snapshot(name, source)
    assert taken["source"] == source
    netlink = source == "netlink"

    served = listener_on(taken, SERVED)
    assert served["address"] == ADDRESS
    assert served["backlog"] == (7 if netlink else None)
    assert served["accept_queue"] == 0
    assert {o["pid"] for o in served["owners"]} == {pids["parent"], pids["acceptor"]}  # forked: both hold it

    found = sockets.accepted_by((ADDRESS, SERVED, ADDRESS, pids["client_port"]), taken)
    assert (found["listener"], found["pid"], found["status"]) == (f"{ADDRESS}:{SERVED}", pids["acceptor"], "accepted")
    assert found["process"] == "python3" or found["process"].startswith("python")
    client_side = [c for c in taken["connections"] if c["local_port"] == pids["client_port"]]
    assert [o["pid"] for c in client_side for o in c["owners"]] == [pids["parent"]]

    waiting = listener_on(taken, WAITING)
    assert (waiting["accept_queue"], waiting["backlog"]) == (1, 7 if netlink else None)
    queued = sockets.accepted_by((ADDRESS, WAITING, ADDRESS, pids["queued_port"]), taken)
    assert (queued["pid"], queued["status"], queued["accept_queue"]) == (None, "in_accept_queue", 1)

    full = listener_on(taken, FULL)
    assert (full["accept_queue"], full["backlog"]) == (1, 0 if netlink else None)
    assert taken["counters"]["ListenOverflows"] >= 1
    assert taken["counters"]["ListenDrops"] >= taken["counters"]["ListenOverflows"]

    assert listener_on(taken, HALF_OPEN)["syn_queue"] == 1
    assert taken["counters"]["syn_recv_by_port"] == {str(HALF_OPEN): 1}

    dual = listener_on(taken, DUAL)
    assert (dual["address"], dual["v6only"]) == ("::", False)
    mapped = sockets.accepted_by((ADDRESS, DUAL, ADDRESS, pids["dual_port"]), taken)
    assert (mapped["listener"], mapped["pid"], mapped["status"]) == (f"[::]:{DUAL}", pids["parent"], "accepted")

    assert sockets.refused_reason(ADDRESS, UNUSED, taken) == f"no listener on {UNUSED}"
    assert sockets.refused_reason(ADDRESS, SERVED, taken) is None
    assert not {pids["parent"], pids["acceptor"]} & set(taken["unreadable_pids"])
    json.dumps(taken)


@needs_namespaces
def test_the_namespace_shows_none_of_the_hosts_sockets(namespace):
    name, _ = namespace
    taken = snapshot_in(name, "netlink")
    assert {l["port"] for l in taken["listeners"]} == {SERVED, WAITING, FULL, HALF_OPEN, DUAL}
    own = os.readlink("/proc/self/ns/net")
    assert taken["netns"] != own

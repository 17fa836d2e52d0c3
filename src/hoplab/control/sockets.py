"""Inside the server: every TCP listening socket of this network namespace (address, port,
listen() backlog, accept queue and SYN queue now), every connected TCP socket, the processes
holding them, and the namespace's listen overflow counters, all read from the kernel rather
than from daemons' logs. It runs in the agent, inside a node: standard library only.

Where the socket table comes from, best first:
  netlink  sock_diag (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, inet_diag_req_v2). For a
           listener the kernel reports idiag_rqueue = accept queue now, idiag_wqueue = the
           listen() backlog (as capped by net.core.somaxconn).
  procfs   /proc/net/tcp and /proc/net/tcp6, when netlink is refused. They carry the accept
           queue (rx_queue) but no backlog, so `backlog` is None there.
Owners come from the `socket:[INODE]` links in /proc/PID/fd of the processes in this network
namespace (a netns node sees the host's /proc: processes of other namespaces are skipped).
A connection still waiting in an accept queue has no inode (0) and so no owner: nobody has
accepted it yet. Reading the fds of another user's process needs CAP_SYS_PTRACE; the pids that
could not be read are listed in the snapshot, and `uid` (the socket's owner) still tells a
worker's socket from its master's.

    snapshot()                          everything once, JSON-serialisable
    accepted_by(conn_tuple, snapshot)   who accepted (server ip, port, client ip, port)
    refused_reason(ip, port, snapshot)  "no listener on PORT", or None
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
INET_DIAG_MSG_SIZE = 72  # family..retrans (4), inet_diag_sockid (48), expires..inode (20)
INET_DIAG_SKV6ONLY = 11
NETLINK_TIMEOUT_S = 2.0
RECV_BYTES = 1 << 16  # larger than any dump message the kernel builds (32 KiB)

TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}
# Sockets with a peer that a process may hold. TIME_WAIT is left out: it has no owner and a
# busy proxy has thousands.
CONNECTED = ("ESTABLISHED", "SYN_SENT", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "CLOSING")
# SYN_RECV also brings the half-open request sockets (the kernel's TCP_NEW_SYN_RECV).
WANTED = ("LISTEN", "SYN_RECV", *CONNECTED)

# Per-namespace counters, cumulative since the namespace was made: diff two snapshots.
COUNTERS = {
    "TcpExt": ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies",
               "SyncookiesSent", "SyncookiesRecv", "SyncookiesFailed"),
    "Tcp": ("PassiveOpens", "AttemptFails", "EstabResets", "OutRsts"),
}
CMDLINE_CHARS = 200


@dataclass(frozen=True)
class TcpSocket:
    """One row of the kernel's TCP socket table, whichever source read it."""
    state: str
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    rqueue: int  # listener: connections waiting for accept(); otherwise unread bytes
    wqueue: int | None  # listener: the listen() backlog (None from procfs); otherwise unacked bytes
    inode: int  # 0 for a connection nobody accepted yet, and for request sockets
    uid: int
    v6only: bool = False


@dataclass(frozen=True)
class Owner:
    pid: int
    command: str  # /proc/PID/comm: nginx, haproxy, postgres, gunicorn
    cmdline: str  # the process title: "nginx: worker process", "postgres: shop shop 10.0.0.5(4123) idle"


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    backlog: int | None
    accept_queue: int
    syn_queue: int  # half-open connections (SYN_RECV) to this address and port
    inode: int
    uid: int
    v6only: bool
    owners: tuple[Owner, ...]


@dataclass(frozen=True)
class Conn:
    state: str
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    inode: int
    uid: int
    owners: tuple[Owner, ...]


# ------------------------------------------------------------------ netlink sock_diag

def _plain_address(family: int, raw: bytes) -> str:
    """An address as text; an IPv4-mapped IPv6 address (a dual-stack listener's IPv4 peer) as IPv4."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, raw[12:16])
    return socket.inet_ntop(socket.AF_INET6, raw[:16])


def parse_diag_message(payload: bytes) -> TcpSocket:
    """One inet_diag_msg (and its attributes) as a TcpSocket."""
    family, state = struct.unpack_from("=BB", payload, 0)
    local_port, remote_port = struct.unpack_from("!HH", payload, 4)
    local, remote = payload[8:24], payload[24:40]
    _expires, rqueue, wqueue, uid, inode = struct.unpack_from("=IIIII", payload, 52)
    v6only = False
    offset = INET_DIAG_MSG_SIZE
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            break
        if kind == INET_DIAG_SKV6ONLY and length >= 5:
            v6only = bool(payload[offset + 4])
        offset += (length + 3) & ~3
    return TcpSocket(TCP_STATES.get(state, str(state)), _plain_address(family, local), local_port,
                     _plain_address(family, remote), remote_port, rqueue, wqueue, inode, uid, v6only)


def _netlink_messages(data: bytes):
    """(type, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            break
        yield kind, data[offset + NLMSG_HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _state_mask(states: tuple[str, ...]) -> int:
    numbers = {name: number for number, name in TCP_STATES.items()}
    return sum(1 << numbers[name] for name in states)


def netlink_table(states: tuple[str, ...] = WANTED) -> list[TcpSocket]:
    """The namespace's TCP sockets in `states`, IPv4 and IPv6, by sock_diag dumps."""
    rows: list[TcpSocket] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(NETLINK_TIMEOUT_S)
        for sequence, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            # inet_diag_req_v2: family, protocol, ext (no extensions: cheapest), pad, states,
            # then an all-zero inet_diag_sockid (48 bytes): dump everything.
            request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _state_mask(states)) + bytes(48)
            header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                       NLM_F_REQUEST | NLM_F_DUMP, sequence, 0)
            sock.send(header + request)
            done = False
            while not done:
                for kind, payload in _netlink_messages(sock.recv(RECV_BYTES)):
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR:
                        error = -struct.unpack_from("=i", payload)[0]
                        raise OSError(error, f"sock_diag: {os.strerror(error)}")
                    if kind == SOCK_DIAG_BY_FAMILY:
                        rows.append(parse_diag_message(payload))
    return rows


# ------------------------------------------------------------------ procfs

def _proc_endpoint(text: str, byteorder: str) -> tuple[str, int]:
    """'0100007F:1F90' → ('127.0.0.1', 8080). The kernel prints each 32-bit word of the address
    as a number in the host's byte order."""
    hex_address, hex_port = text.split(":")
    raw = b"".join(int(hex_address[i:i + 8], 16).to_bytes(4, byteorder) for i in range(0, len(hex_address), 8))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return _plain_address(family, raw), int(hex_port, 16)


def parse_proc_net_tcp(text: str, states: tuple[str, ...] = WANTED,
                       byteorder: str = sys.byteorder) -> list[TcpSocket]:
    """Rows of /proc/net/tcp or /proc/net/tcp6 in `states`."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        state = TCP_STATES.get(int(fields[3], 16), fields[3])
        if state not in states:
            continue
        (local, local_port), (remote, remote_port) = (_proc_endpoint(f, byteorder) for f in fields[1:3])
        tx_queue, rx_queue = (int(x, 16) for x in fields[4].split(":"))
        # A listener's tx_queue is not its backlog (procfs does not print the backlog).
        rows.append(TcpSocket(state, local, local_port, remote, remote_port, rx_queue,
                              None if state == "LISTEN" else tx_queue, int(fields[9]), int(fields[7])))
    return rows


def procfs_table(states: tuple[str, ...] = WANTED) -> list[TcpSocket]:
    rows = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as handle:
                rows += parse_proc_net_tcp(handle.read(), states)
        except FileNotFoundError:  # tcp6 when IPv6 is off
            continue
    return rows


def read_table(source: str = "auto") -> tuple[list[TcpSocket], str]:
    """The socket table and where it came from: "netlink", or "procfs" when netlink is
    refused (source "auto"); or the one source asked for."""
    if source not in ("auto", "netlink", "procfs"):
        raise ValueError(f"source must be auto, netlink or procfs, not {source!r}")
    if source != "procfs":
        try:
            return netlink_table(), "netlink"
        except OSError:
            if source == "netlink":
                raise
    return procfs_table(), "procfs"


# ------------------------------------------------------------------ owners

def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def socket_owners(inodes: set[int]) -> tuple[dict[int, list[Owner]], list[int]]:
    """The processes of this network namespace holding each socket inode in `inodes`, and the
    pids whose namespace or fds could not be read (no CAP_SYS_PTRACE over them)."""
    own = os.stat("/proc/self/ns/net")
    owners: dict[int, list[Owner]] = {}
    unreadable: list[int] = []
    if not inodes:
        return owners, unreadable
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            netns = os.stat(f"/proc/{pid}/ns/net")
            if (netns.st_dev, netns.st_ino) != (own.st_dev, own.st_ino):
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            unreadable.append(pid)
            continue
        except OSError:  # gone, or a zombie
            continue
        held = set()
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    held.add(inode)
        if held:
            owner = Owner(pid, _read_text(f"/proc/{pid}/comm"), _read_text(f"/proc/{pid}/cmdline")[:CMDLINE_CHARS])
            for inode in held:
                owners.setdefault(inode, []).append(owner)
    return owners, sorted(unreadable)


# ------------------------------------------------------------------ counters

def parse_counter_pairs(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/netstat or /proc/net/snmp: a line of names then a line of values per group."""
    groups: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        group, _, names = names.partition(":")
        _, _, values = values.partition(":")
        try:
            groups[group] = dict(zip(names.split(), (int(v) for v in values.split())))
        except ValueError:
            continue
    return groups


def _namespace_counters() -> dict[str, int]:
    groups: dict[str, dict[str, int]] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        try:
            with open(path) as handle:
                groups.update(parse_counter_pairs(handle.read()))
        except FileNotFoundError:
            continue
    return {name: groups[group][name] for group, names in COUNTERS.items()
            for name in names if name in groups.get(group, {})}


def _syn_recv_by_port(table: list[TcpSocket]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in table:
        if row.state == "SYN_RECV":
            counts[str(row.local_port)] = counts.get(str(row.local_port), 0) + 1
    return counts


# ------------------------------------------------------------------ assembling

def _covers(listener_address: str, v6only: bool, address: str) -> bool:
    """Whether a listener bound to `listener_address` takes connections to `address`."""
    if listener_address == address:
        return True
    is_v6 = ":" in address
    if listener_address == "0.0.0.0":
        return not is_v6
    return listener_address == "::" and (is_v6 or not v6only)


def build_listeners(table: list[TcpSocket], owners: dict[int, list[Owner]]) -> list[Listener]:
    half_open = [row for row in table if row.state == "SYN_RECV"]
    listeners = []
    for row in table:
        if row.state != "LISTEN":
            continue
        syn_queue = sum(1 for r in half_open if r.local_port == row.local_port
                        and _covers(row.local_address, row.v6only, r.local_address))
        listeners.append(Listener(row.local_address, row.local_port, row.wqueue, row.rqueue, syn_queue,
                                  row.inode, row.uid, row.v6only, tuple(owners.get(row.inode, ()))))
    return sorted(listeners, key=lambda l: (l.port, l.address))


def build_connections(table: list[TcpSocket], owners: dict[int, list[Owner]]) -> list[Conn]:
    return [Conn(row.state, row.local_address, row.local_port, row.remote_address, row.remote_port,
                 row.inode, row.uid, tuple(owners.get(row.inode, ())))
            for row in table if row.state in CONNECTED]


def _table_with_owners(source: str) -> tuple[list[TcpSocket], str, dict[int, list[Owner]], list[int]]:
    table, used = read_table(source)
    owners, unreadable = socket_owners({row.inode for row in table if row.inode})
    return table, used, owners, unreadable


def listeners(source: str = "auto") -> list[Listener]:
    """Every TCP listening socket of this network namespace."""
    table, _, owners, _ = _table_with_owners(source)
    return build_listeners(table, owners)


def connections(source: str = "auto") -> list[Conn]:
    """Every connected TCP socket of this network namespace (ESTABLISHED and the closing states)."""
    table, _, owners, _ = _table_with_owners(source)
    return build_connections(table, owners)


def overflow_counters(source: str = "auto") -> dict:
    """The namespace's listen counters (ListenOverflows, ListenDrops, ...: cumulative) and the
    half-open connections now, per local port (`syn_recv_by_port`)."""
    table, _ = read_table(source)
    return {**_namespace_counters(), "syn_recv_by_port": _syn_recv_by_port(table)}


def snapshot(source: str = "auto") -> dict:
    """Listeners, connections, counters and where they came from, read once; plain dicts and
    lists, so an agent can send it as JSON at the end of a capture."""
    table, used, owners, unreadable = _table_with_owners(source)
    return {
        "source": used,
        "taken_ns": time.time_ns(),
        "netns": os.readlink("/proc/self/ns/net"),
        "listeners": [asdict(listener) for listener in build_listeners(table, owners)],
        "connections": [asdict(conn) for conn in build_connections(table, owners)],
        "counters": {**_namespace_counters(), "syn_recv_by_port": _syn_recv_by_port(table)},
        "unreadable_pids": unreadable,
    }


# ------------------------------------------------------------------ reading a snapshot

def _normal(address: str) -> str:
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def _listeners_at(snapshot: dict, address: str, port: int) -> list[dict]:
    """Listeners taking connections to address:port, a specific address before a wildcard (the
    kernel's preference)."""
    matching = [l for l in snapshot["listeners"] if l["port"] == port
                and _covers(l["address"], l["v6only"], address)]
    return sorted(matching, key=lambda l: l["address"] != address)


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def accepted_by(conn_tuple: tuple, snapshot: dict) -> dict | None:
    """Who accepted the connection (server ip, server port, client ip, client port), as the
    server's node saw it: the listener, the pid and process holding the accepted socket, the
    backlog and the queues. `status` is "accepted", "in_accept_queue" (nobody called accept()
    yet) or "not_seen" (closed before the snapshot). pid and process are None unless accepted,
    and also when the holder's fds could not be read (see unreadable_pids): `uid`, the
    socket's owner, still tells a worker (www-data, nobody, postgres) from a root master. None
    when nothing listens there (see refused_reason)."""
    server_ip, server_port, client_ip, client_port = conn_tuple
    server_ip, client_ip = _normal(server_ip), _normal(client_ip)
    server_port, client_port = int(server_port), int(client_port)
    candidates = _listeners_at(snapshot, server_ip, server_port)
    if not candidates:
        return None
    conn = next((c for c in snapshot["connections"]
                 if (c["local_address"], c["local_port"], c["remote_address"], c["remote_port"])
                 == (server_ip, server_port, client_ip, client_port)), None)
    holders = conn["owners"] if conn else []
    holder_pids = {o["pid"] for o in holders}
    # SO_REUSEPORT gives each worker a listener of its own: the one its acceptor holds.
    listener = next((l for l in candidates if holder_pids & {o["pid"] for o in l["owners"]}), candidates[0])
    # After accept(), a forking server (postgres) hands the socket to a child that does not
    # hold the listener: that child is the one serving it.
    listener_pids = {o["pid"] for o in listener["owners"]}
    holder = next((o for o in holders if o["pid"] not in listener_pids), holders[0] if holders else None)
    if conn is None:
        status = "not_seen"
    elif conn["inode"] == 0:
        status = "in_accept_queue"
    else:
        status = "accepted"
    return {
        "listener": _endpoint(listener["address"], listener["port"]),
        "pid": holder["pid"] if holder else None,
        "process": holder["command"] if holder else None,
        "cmdline": holder["cmdline"] if holder else None,
        "uid": conn["uid"] if conn else None,
        "backlog": listener["backlog"],
        "accept_queue": listener["accept_queue"],
        "syn_queue": listener["syn_queue"],
        "status": status,
        "listener_owners": [{"pid": o["pid"], "command": o["command"]} for o in listener["owners"]],
    }


def refused_reason(ip: str, port: int, snapshot: dict) -> str | None:
    """Why this node would answer a SYN to ip:port with a RST: "no listener on PORT" (and where
    PORT does listen, when only on other addresses); None when a listener takes it."""
    ip, port = _normal(ip), int(port)
    if _listeners_at(snapshot, ip, port):
        return None
    elsewhere = [_endpoint(l["address"], l["port"]) for l in snapshot["listeners"] if l["port"] == port]
    if elsewhere:
        return f"no listener on {port} at {ip} (only on {', '.join(elsewhere)})"
    return f"no listener on {port}"

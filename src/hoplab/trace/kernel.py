"""The kernel's word on drops and accepts: an eBPF program on the `skb:kfree_skb` tracepoint
reports every IPv4 packet the kernel frees as dropped, when its source or destination lies in
one of the lab's subnets, with the drop reason the kernel gives, the function that dropped it,
the network namespace (so the node) and, when known, the interface. The same program reports
every IPv4 TCP connection a process accepts from or to those subnets: the process and thread
that called accept(), the connection's addresses, and the listening socket it came from (its
address, its listen() backlog and how many connections still waited in its accept queue).

Why the accept() system call's exit and not `kretprobe:inet_csk_accept`: this kernel is built
without CONFIG_KPROBES (no kprobe_events, no kprobe PMU), so no kprobe or kretprobe attaches,
and bpftrace 0.17 finds no kfunc/fexit support here either. `sock:inet_sock_set_state` sees the
handshake complete in softirq context, not in the process that takes the connection. The
`syscalls:sys_exit_accept4` and `sys_exit_accept` tracepoints run in the accepting task: its
pid, tid and comm are the accepter's, and the returned fd leads to the new socket through the
task's file table (fd → file → struct socket → struct sock). `sys_enter_accept*` keeps the
listening fd per thread, so the exit also reads the listener. Not seen: connections taken by
io_uring (no accept system call), and, for the listener only, a thread already blocked in
accept() when the tracer attached (the accept itself is still reported).

The program runs in Debian's `bpftrace` on the host (the tracepoint sees every namespace, so
one tracer covers every node of either backend). It needs root, BTF (/sys/kernel/btf/vmlinux)
and tracefs mounted at /sys/kernel/tracing; `KernelTracer.can_run()` says which is missing and
mounts tracefs when its mount point is empty.

Clocks: bpftrace's `nsecs` is `bpf_ktime_get_ns()`, CLOCK_MONOTONIC (time since boot, not
counting suspend). Hop timestamps (control/capture.py, SO_TIMESTAMPNS) are CLOCK_REALTIME, so
`Drop.ts_ns` is converted to CLOCK_REALTIME with an offset sampled when the tracer starts;
`Drop.monotonic_ns` keeps the value as the kernel printed it. `Accept` likewise.

Pids: bpftrace's `pid` is the tgid in the tracer's (the host's) pid namespace. A Docker node
has a pid namespace of its own, so the program also prints the process's id in its innermost
pid namespace, the one the node's own `ps` shows (`Accept.node_pid`).

Standard library only: this module imports nothing from hoplab (like trace.packet), so a
backend, the CLI or a test can hand it node → pid and get drops named by node."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hoplab import bounded

TRACEFS = Path("/sys/kernel/tracing")
FORMAT_FILE = TRACEFS / "events" / "skb" / "kfree_skb" / "format"
ACCEPT_EVENTS = [TRACEFS / "events" / "syscalls" / f"sys_{edge}_{call}" for edge in ("enter", "exit")
                 for call in ("accept", "accept4")]
BIND_EVENTS = [TRACEFS / "events" / "syscalls" / f"sys_{edge}_bind" for edge in ("enter", "exit")]
BTF_FILE = Path("/sys/kernel/btf/vmlinux")
MAX_SECONDS = 600  # the same bounds as a packet capture (control/capture.py)
MAX_DROPS = 200_000
MAX_ACCEPTS = 200_000
MAX_BINDS = 200_000
V4_MAPPED = int.from_bytes(b"\0\0\xff\xff", sys.byteorder)  # the third u32 of ::ffff:a.b.c.d, as read from memory
ATTACH_TIMEOUT = 30.0  # compiling and loading take 1.3-4.7 s on this 2-core host under load
READY = "READY"  # printed by the program's BEGIN, which bpftrace runs once every probe is attached
STOP_TIMEOUT = 5.0
# bpftrace 0.17 can miss a SIGINT that lands just before it blocks in poll() (its flag is set,
# nothing wakes it; seen here in 1 stop of 7 right after READY): repeat it until it ends.
INTERRUPT_EVERY = 0.25
HOST = "(host)"  # the host's own namespace; parentheses keep it apart from every node name
# Freed with unread data when a socket closes: a program's choice, not the network's. Health
# checks make many of these, so a filter leaves them out unless asked.
QUIET_REASONS = frozenset({"QUEUE_PURGE"})

PLAIN_WORDS = {
    "NOT_SPECIFIED": "dropped without a reason given by the kernel",
    "NO_SOCKET": "no socket is listening there",
    "SOCKET_CLOSE": "the socket was closed",
    "SOCKET_FILTER": "refused by a socket filter (BPF on the socket)",
    "SOCKET_RCVBUFF": "the socket's receive buffer was full",
    "SOCKET_BACKLOG": "the socket's backlog was full",
    "PKT_TOO_SMALL": "the packet was too short (truncated header)",
    "TCP_CSUM": "bad TCP checksum",
    "UDP_CSUM": "bad UDP checksum",
    "ICMP_CSUM": "bad ICMP checksum",
    "IP_CSUM": "bad IP header checksum",
    "SKB_CSUM": "bad checksum",
    "NETFILTER_DROP": "dropped by a firewall rule (netfilter)",
    "OTHERHOST": "addressed to another host's MAC address",
    "IP_INHDR": "invalid IP header",
    "IP_RPFILTER": "refused by reverse-path filtering (source not routed back through this interface)",
    "UNICAST_IN_L2_MULTICAST": "an IP unicast packet in a link-layer multicast or broadcast frame",
    "XFRM_POLICY": "refused by an IPsec policy",
    "IP_NOPROTO": "no handler for that IP protocol",
    "IP_INADDRERRORS": "invalid destination address (not for this host and not to be forwarded)",
    "IP_INNOROUTES": "no route for the incoming packet",
    "IP_OUTNOROUTES": "no route to the destination",
    "IP_LOCAL_SOURCE": "the source address is one of this host's own",
    "IP_INVALID_SOURCE": "invalid source address",
    "IP_LOCALNET": "a loopback address on a non-loopback interface",
    "IP_INVALID_DEST": "invalid destination address",
    "PKT_TOO_BIG": "too big for the outgoing link (larger than the MTU)",
    "NEIGH_CREATEFAIL": "could not create a neighbour (ARP) entry",
    "NEIGH_FAILED": "the next hop did not answer ARP (neighbour unreachable)",
    "NEIGH_QUEUEFULL": "too many packets waiting for an ARP answer",
    "NEIGH_DEAD": "the neighbour (ARP) entry was being removed",
    "TC_EGRESS": "dropped by a traffic-control rule on the way out (tc egress)",
    "TC_INGRESS": "dropped by a traffic-control rule on the way in (tc ingress)",
    "QDISC_DROP": "dropped by the interface's queueing discipline (queue full or policing)",
    "QDISC_OVERLIMIT": "over the queueing discipline's limit",
    "QDISC_CONGESTED": "dropped by the queueing discipline as congestion",
    "CPU_BACKLOG": "the CPU's input backlog was full (too many packets at once)",
    "TCP_OLD_DATA": "TCP data already received (a retransmission)",
    "TCP_OVERWINDOW": "TCP data beyond the receive window",
    "TCP_ZEROWINDOW": "TCP data while the receive window was zero",
    "TCP_FLAGS": "invalid TCP flags",
    "TCP_INVALID_SEQUENCE": "TCP segment outside the expected sequence numbers",
    "TCP_OLD_SEQUENCE": "TCP segment with an old sequence number",
    "TCP_INVALID_ACK_SEQUENCE": "TCP acknowledgement outside the expected numbers",
    "TCP_OLD_ACK": "TCP acknowledgement already seen",
    "TCP_RESET": "TCP segment that resets the connection (RST)",
    "TCP_INVALID_SYN": "TCP SYN on a connection that already exists",
    "TCP_CLOSE": "TCP segment for a closed connection",
    "TCP_LISTEN_OVERFLOW": "the listening socket's accept queue was full",
    "TCP_ABORT_ON_DATA": "TCP data after the socket was closed (connection aborted)",
    "TCP_OFOMERGE": "TCP out-of-order data already queued",
    "TCP_RFC7323_PAWS": "TCP segment with an old timestamp (PAWS)",
    "PROTO_MEM": "the protocol ran out of memory",
    "NOMEM": "out of memory",
    "UNHANDLED_PROTO": "no handler for that protocol",
    "DEV_READY": "the interface was not up",
    "FULL_RING": "the interface's ring buffer was full",
    "HDR_TRUNC": "truncated header",
    "INVALID_PROTO": "invalid protocol",
    "QUEUE_PURGE": "the socket closed with data still queued (never read by the program)",
    "FRAG_REASM_TIMEOUT": "fragments never completed (reassembly timeout)",
    "DUP_FRAG": "duplicate IP fragment",
    "BRIDGE_INGRESS_STP_STATE": "the bridge port was not forwarding (spanning tree)",
    "RECURSION_LIMIT": "too many nested transmits (recursion limit)",
}
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}
PORTED = {6, 17, 132}  # protocols whose first four bytes are source and destination ports
SYMBOLIC = re.compile(r"__print_symbolic\(\s*REC->reason\s*,(.*)\)", re.S)
SYMBOL = re.compile(r'\{\s*(-?(?:0x[0-9a-fA-F]+|\d+))\s*,\s*"([^"]*)"\s*\}')
LOST = re.compile(r"Lost (\d+) events")


class KernelTracerError(Exception):
    pass


def reason_names(format_file: Path = FORMAT_FILE) -> dict[int, str]:
    """The drop reasons this kernel knows (enum skb_drop_reason), number → name, from the
    __print_symbolic table in the tracepoint's `print fmt` line."""
    match = SYMBOLIC.search(format_file.read_text())
    if not match:
        raise KernelTracerError(f"{format_file}: no __print_symbolic table for the drop reason")
    return {int(number, 0): name for number, name in SYMBOL.findall(match.group(1))}


def words(reason: str) -> str:
    """The reason in plain words."""
    return PLAIN_WORDS.get(reason, f"the kernel dropped it ({reason})")


@dataclass(frozen=True)
class Drop:
    ts_ns: int  # CLOCK_REALTIME, comparable with hop timestamps
    monotonic_ns: int  # as the kernel printed it (bpftrace nsecs, CLOCK_MONOTONIC)
    netns: int  # network namespace inode (as in /proc/PID/ns/net)
    ifname: str  # "" when the packet had no device yet (locally generated)
    src: str  # address, with ":port" for TCP, UDP and SCTP
    dst: str
    proto: str  # tcp, udp, icmp, sctp or the protocol number
    reason: str  # the enum name without SKB_DROP_REASON_
    location: str  # the kernel function that freed it
    words: str
    node: str = ""  # the lab node owning netns; HOST for the host; "" when unknown


@dataclass(frozen=True)
class Accept:
    """A TCP connection a process took with accept(), as the kernel saw it in that process."""
    ts_ns: int  # CLOCK_REALTIME when accept() returned, comparable with hop timestamps
    monotonic_ns: int  # as the kernel printed it
    netns: int  # the accepted socket's network namespace inode
    pid: int  # the accepting process (tgid) in the tracer's pid namespace (the host's)
    tid: int  # the accepting thread, same namespace
    node_pid: int  # the same process in its own innermost pid namespace: what `ps` in the node shows
    node_tid: int  # the same thread, likewise
    comm: str  # the accepting thread's command name (nginx, haproxy, gunicorn, postgres)
    local: str  # address:port the client connected to
    remote: str  # the client's address:port
    listener: str  # the listening socket's bound address:port ("0.0.0.0:80"); "" when not known
    backlog: int  # the listener's backlog (listen()'s, capped by somaxconn); -1 when not known
    accept_queue: int  # connections still waiting in its accept queue after this one; -1 when not known
    node: str = ""  # the lab node owning netns; HOST for the host; "" when unknown


@dataclass(frozen=True)
class FailedBind:
    """A bind() the kernel refused (EADDRINUSE: another socket holds the address and port), as
    seen in the process that asked: a daemon that cannot start, a second copy of one."""
    ts_ns: int  # CLOCK_REALTIME when bind() returned, comparable with hop timestamps
    monotonic_ns: int
    netns: int
    pid: int  # the process in the tracer's pid namespace (the host's)
    node_pid: int  # the same process in its own innermost pid namespace
    comm: str
    address: str  # what it asked for: "0.0.0.0:7777", "[::]:80"
    proto: str  # tcp, udp, or the socket's protocol number ("" when not known)
    error: str  # the errno's name: EADDRINUSE, EACCES, EADDRNOTAVAIL
    words: str  # the errno in words (strerror)
    node: str = ""


@dataclass(frozen=True)
class DropFilter:
    """What to report: IPv4 packets from or to one of `subnets`, for at most `max_seconds` and
    `max_drops`, leaving out the reasons in `quiet` and, unless `echo_replies`, ICMP echo
    replies no ICMP socket took: ping on a raw socket (iputils without ping_group_range, as in
    every node) gets its copy, and the kernel still frees the original as NO_SOCKET in
    ping_rcv, once for every answered ping. With `accepts`, also at most `max_accepts` TCP
    connections accepted from or to those subnets. With `binds`, also at most `max_binds`
    bind() calls the kernel refused, in any namespace (the caller names them by node)."""
    subnets: tuple[str, ...]
    max_seconds: float = 60.0
    max_drops: int = 1000
    quiet: frozenset[str] = QUIET_REASONS
    echo_replies: bool = False
    accepts: bool = True
    max_accepts: int = 1000
    binds: bool = True
    max_binds: int = 1000

    def networks(self) -> list[ipaddress.IPv4Network]:
        return [ipaddress.IPv4Network(s, strict=False) for s in self.subnets]

    def check(self) -> None:
        if not self.subnets:
            raise KernelTracerError("a drop filter needs at least one subnet")
        try:
            self.networks()
        except ValueError as error:
            raise KernelTracerError(f"subnets: {error}") from None
        if not 0 < self.max_seconds <= MAX_SECONDS:
            raise KernelTracerError(f"max_seconds must be in (0, {MAX_SECONDS}], not {self.max_seconds}")
        if not 0 < self.max_drops <= MAX_DROPS:
            raise KernelTracerError(f"max_drops must be in 1..{MAX_DROPS}, not {self.max_drops}")
        if not 0 < self.max_accepts <= MAX_ACCEPTS:
            raise KernelTracerError(f"max_accepts must be in 1..{MAX_ACCEPTS}, not {self.max_accepts}")
        if not 0 < self.max_binds <= MAX_BINDS:
            raise KernelTracerError(f"max_binds must be in 1..{MAX_BINDS}, not {self.max_binds}")


# ------------------------------------------------------------------ the eBPF program

def program(subnets: int, quiet: int, rx_sk: bool = True, echo_replies: bool = False, accepts: bool = False,
            binds: bool = False) -> str:
    """The bpftrace program for `subnets` (network, mask) pairs and `quiet` reasons to skip.
    Its text depends only on those counts: the values arrive as positional parameters, in order
    $1 max milliseconds, $2 max drops, $3 the number of NO_SOCKET, then network and mask per
    subnet (u32 as the address bytes read in host byte order), then the quiet reason numbers,
    then, with `accepts`, the max accepts, then, with `binds`, the max failed binds.

    One line per drop: D <nsecs> <netns> <reason> <ip proto> <saddr> <daddr> <first 4 bytes of
    L4 (ports)> <location> <ifname>, numbers in decimal, addresses as read from the header.
    With `accepts`, one line per accepted connection: A <nsecs> <netns> <pid> <tid> <pid and tid
    in their own pid namespace> <local addr> <local port> <remote addr> <remote port, network order>
    <listener: 0 not known, 4 IPv4, 6 IPv6> <listener addr (IPv6: its last 32 bits)> <backlog>
    <accept queue> <comm>. An IPv4 client of a dual-stack IPv6 listener counts as IPv4.
    With `binds`, one line per refused bind(): B <nsecs> <netns> <pid> <pid in its own pid
    namespace> <ret> <family> <port, network order> <IPv4 addr> <IPv6 addr as two u64> <socket
    protocol, 0 unknown> <comm>, the address as the process passed it (read from its memory)."""
    params = iter(range(4, 4 + 2 * subnets + quiet + accepts + binds))
    nets = [(next(params), next(params)) for _ in range(subnets)]
    inside = " || ".join(f"($s & (uint32)${m}) == (uint32)${n} || ($d & (uint32)${m}) == (uint32)${n}"
                         for n, m in nets)
    skip = "".join(f" || args->reason == ${next(params)}" for _ in range(quiet))
    accept_probe = _accept_probe(inside, next(params)) if accepts else ""
    bind_probe = _bind_probe(next(params)) if binds else ""
    echo = "" if echo_replies else (
        "\n  if (args->reason == $3 && *(uint8 *)($ip + 9) == 1 && *(uint8 *)$l4 == 0) { return; }"
        "  // an echo reply")
    # skb->dev is NULL for a packet made on this host, so the namespace then comes from its
    # socket; some TCP drops have neither, only the tracepoint's receiving socket (rx_sk, 6.12+).
    last_resort = ("\n  if ($ns == 0 && args->rx_sk != 0) {"
                   " $ns = ((struct sock *)args->rx_sk)->__sk_common.skc_net.net->ns.inum; }") if rx_sk else ""
    return f"""\
BEGIN {{ printf("{READY}\\n"); }}
tracepoint:skb:kfree_skb
/args->protocol == 0x0800/
{{
  if (@drops >= $2{skip}) {{ return; }}
  $skb = (struct sk_buff *)args->skbaddr;
  if ($skb->network_header == 0xffff) {{ return; }}
  $ip = $skb->head + $skb->network_header;
  $first = *(uint8 *)$ip;
  if (($first >> 4) != 4) {{ return; }}
  $s = *(uint32 *)($ip + 12);
  $d = *(uint32 *)($ip + 16);
  if (!({inside})) {{ return; }}
  $l4 = $ip + ($first & 0x0f) * 4;{echo}
  $ns = (uint32)0;
  if ($skb->dev != 0) {{ $ns = $skb->dev->nd_net.net->ns.inum; }}
  else if ($skb->sk != 0) {{ $ns = $skb->sk->__sk_common.skc_net.net->ns.inum; }}{last_resort}
  @drops++;
  printf("D %llu %u %u %u %u %u %u %s %s\\n", nsecs, $ns, args->reason, *(uint8 *)($ip + 9), $s, $d,
         *(uint32 *)$l4, ksym(args->location), $skb->dev->name);
  if (@drops >= $2) {{ exit(); }}
}}
{accept_probe}{bind_probe}interval:ms:$1 {{ exit(); }}
END {{ clear(@drops);{" clear(@accepts); clear(@listening);" if accepts else ""}{_BIND_CLEAR if binds else ""} }}
"""


def _accept_probe(inside: str, max_param: int) -> str:
    """The probes for accepted connections (see the module's docstring for why these): the
    entry keeps the listening fd per thread (plus one, so 0 means "not seen"); the exit follows
    the returned fd to the new socket and the kept one to the listener."""
    return f"""\
tracepoint:syscalls:sys_enter_accept4, tracepoint:syscalls:sys_enter_accept
{{
  @listening[tid] = args->fd + 1;
}}
tracepoint:syscalls:sys_exit_accept4, tracepoint:syscalls:sys_exit_accept
{{
  $lfd = @listening[tid];
  delete(@listening[tid]);
  if (args->ret < 0 || @accepts >= ${max_param}) {{ return; }}
  $fdt = curtask->files->fdt;
  $file = *($fdt->fd + args->ret);
  if ($file == 0) {{ return; }}
  $sk = ((struct socket *)$file->private_data)->sk;
  if ($sk == 0 || $sk->sk_protocol != 6) {{ return; }}
  $fam = $sk->__sk_common.skc_family;
  $s = $sk->__sk_common.skc_rcv_saddr;
  $d = $sk->__sk_common.skc_daddr;
  if ($fam == 10) {{  // an IPv4 client of a dual-stack listener: ::ffff:a.b.c.d at both ends
    $peer = $sk->__sk_common.skc_v6_daddr.in6_u;
    if ($peer.u6_addr32[0] != 0 || $peer.u6_addr32[1] != 0 || $peer.u6_addr32[2] != {V4_MAPPED}) {{ return; }}
    $s = $sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3];
    $d = $peer.u6_addr32[3];
  }} else if ($fam != 2) {{ return; }}
  if (!({inside})) {{ return; }}
  $known = 0; $laddr = (uint32)0; $backlog = (uint32)0; $queue = (uint32)0;
  if ($lfd > 0) {{
    $lfile = *($fdt->fd + $lfd - 1);
    if ($lfile != 0) {{
      $lsk = ((struct socket *)$lfile->private_data)->sk;
      if ($lsk != 0) {{
        $known = 4; $laddr = $lsk->__sk_common.skc_rcv_saddr;
        if ($lsk->__sk_common.skc_family == 10) {{ $known = 6; $laddr = $lsk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3]; }}
        $backlog = $lsk->sk_max_ack_backlog; $queue = $lsk->sk_ack_backlog;
      }}
    }}
  }}
  // The process and thread ids where they live: in their innermost pid namespace.
  $leader = curtask->group_leader->thread_pid;
  $thread = curtask->thread_pid;
  $nspid = ((struct upid *)$leader->numbers + $leader->level)->nr;
  $nstid = ((struct upid *)$thread->numbers + $thread->level)->nr;
  @accepts++;
  printf("A %llu %u %d %d %d %d %u %u %u %u %d %u %u %u %s\\n", nsecs, $sk->__sk_common.skc_net.net->ns.inum, pid,
         tid, $nspid, $nstid, $s, $sk->__sk_common.skc_num, $d, $sk->__sk_common.skc_dport, $known, $laddr, $backlog,
         $queue, comm);
}}
"""


_BIND_CLEAR = " clear(@binds); clear(@bind_fd); clear(@bind_sa);"


def _bind_probe(max_param: int) -> str:
    """The probes for refused bind() calls: the entry keeps the fd (plus one) and the user's
    sockaddr pointer per thread; a failing exit reads the address from the caller's memory (it
    was a valid argument) and the socket's protocol through the task's file table."""
    return f"""\
tracepoint:syscalls:sys_enter_bind
{{
  @bind_fd[tid] = args->fd + 1;
  @bind_sa[tid] = (uint64)args->umyaddr;
}}
tracepoint:syscalls:sys_exit_bind
{{
  $fd = @bind_fd[tid];
  $sa = @bind_sa[tid];
  delete(@bind_fd[tid]);
  delete(@bind_sa[tid]);
  if (args->ret >= 0 || $fd == 0 || @binds >= ${max_param}) {{ return; }}
  $family = *(uint16 *)uptr($sa);
  if ($family != 2 && $family != 10) {{ return; }}
  $proto = (uint32)0;
  $file = *(curtask->files->fdt->fd + $fd - 1);
  if ($file != 0) {{
    $sk = ((struct socket *)$file->private_data)->sk;
    if ($sk != 0) {{ $proto = $sk->sk_protocol; }}
  }}
  $leader = curtask->group_leader->thread_pid;
  @binds++;
  printf("B %llu %u %d %d %d %u %u %u %llu %llu %u %s\\n", nsecs, curtask->nsproxy->net_ns->ns.inum, pid,
         ((struct upid *)$leader->numbers + $leader->level)->nr, args->ret, $family, *(uint16 *)uptr($sa + 2),
         *(uint32 *)uptr($sa + 4), *(uint64 *)uptr($sa + 8), *(uint64 *)uptr($sa + 16), $proto, comm);
}}
"""


def program_arguments(drop_filter: DropFilter, names: dict[int, str]) -> list[str]:
    """The positional parameters for program(): every value as its own argument."""
    numbers = {name: number for number, name in names.items()}
    values = [max(1, round(drop_filter.max_seconds * 1000)), drop_filter.max_drops, numbers.get("NO_SOCKET", 0)]
    for network in drop_filter.networks():
        values += [int.from_bytes(network.network_address.packed, sys.byteorder),
                   int.from_bytes(network.netmask.packed, sys.byteorder)]
    values += sorted(numbers[name] for name in drop_filter.quiet if name in numbers)
    if drop_filter.accepts:
        values.append(drop_filter.max_accepts)
    if drop_filter.binds:
        values.append(drop_filter.max_binds)
    return [str(v) for v in values]


def quiet_count(drop_filter: DropFilter, names: dict[int, str]) -> int:
    return len({name for name in drop_filter.quiet if name in names.values()})


def parse_line(line: str, names: dict[int, str], realtime_offset_ns: int = 0) -> Drop | None:
    """One line of the program's output as a Drop; None for anything else bpftrace prints."""
    fields = line.rstrip("\n").split(" ", 9)
    if len(fields) < 9 or fields[0] != "D":
        return None
    try:
        mono, netns, reason, proto, saddr, daddr, l4 = (int(f) for f in fields[1:8])
    except ValueError:
        return None
    location = fields[8]
    ifname = fields[9] if len(fields) > 9 else ""
    name = names.get(reason, f"REASON_{reason}")
    src = str(ipaddress.IPv4Address(saddr.to_bytes(4, sys.byteorder)))
    dst = str(ipaddress.IPv4Address(daddr.to_bytes(4, sys.byteorder)))
    if proto in PORTED:
        ports = l4.to_bytes(4, sys.byteorder)
        src += f":{int.from_bytes(ports[:2], 'big')}"
        dst += f":{int.from_bytes(ports[2:], 'big')}"
    return Drop(ts_ns=mono + realtime_offset_ns, monotonic_ns=mono, netns=netns, ifname=ifname, src=src, dst=dst,
                proto=PROTOCOLS.get(proto, str(proto)), reason=name, location=location, words=words(name))


def parse_accept(line: str, realtime_offset_ns: int = 0) -> Accept | None:
    """One accept line of the program's output as an Accept; None for anything else."""
    fields = line.rstrip("\n").split(" ", 15)
    if len(fields) < 15 or fields[0] != "A":
        return None
    try:
        (mono, netns, pid, tid, node_pid, node_tid, laddr, lport, raddr, rport, known, listen_addr, backlog,
         queue) = (int(f) for f in fields[1:15])
    except ValueError:
        return None
    local, remote = _address(laddr), _address(raddr)
    rport = int.from_bytes(rport.to_bytes(2, sys.byteorder), "big")  # skc_dport is in network order
    listener = ""
    if known == 4:
        listener = f"{_address(listen_addr)}:{lport}"
    elif known == 6:  # as control/sockets.py writes an IPv6 listener
        listener = f"[::]:{lport}" if listen_addr == 0 else f"[::ffff:{_address(listen_addr)}]:{lport}"
    return Accept(ts_ns=mono + realtime_offset_ns, monotonic_ns=mono, netns=netns, pid=pid, tid=tid,
                  node_pid=node_pid, node_tid=node_tid, comm=fields[15] if len(fields) > 15 else "", local=f"{local}:{lport}",
                  remote=f"{remote}:{rport}", listener=listener, backlog=backlog if listener else -1,
                  accept_queue=queue if listener else -1)


def parse_bind(line: str, realtime_offset_ns: int = 0) -> FailedBind | None:
    """One failed-bind line of the program's output as a FailedBind; None for anything else."""
    fields = line.rstrip("\n").split(" ", 12)
    if len(fields) < 12 or fields[0] != "B":
        return None
    try:
        mono, netns, pid, node_pid, ret, family, port, v4, v6_high, v6_low, proto = (int(f) for f in fields[1:12])
    except ValueError:
        return None
    port = int.from_bytes(port.to_bytes(2, sys.byteorder), "big")  # sin_port is in network order
    if family == 2:
        address = f"{_address(v4)}:{port}"
    else:  # sin6_addr: 16 bytes from offset 8, read as two u64 in host byte order
        v6 = ipaddress.IPv6Address(v6_high.to_bytes(8, sys.byteorder) + v6_low.to_bytes(8, sys.byteorder))
        address = f"[{v6}]:{port}"
    number = -ret
    return FailedBind(ts_ns=mono + realtime_offset_ns, monotonic_ns=mono, netns=netns, pid=pid, node_pid=node_pid,
                      comm=fields[12] if len(fields) > 12 else "", address=address,
                      proto=PROTOCOLS.get(proto, str(proto) if proto else ""),
                      error=errno.errorcode.get(number, f"errno {number}"), words=os.strerror(number).lower())


def _address(as_read: int) -> str:
    """An IPv4 address the program printed as a u32 read from memory in host byte order."""
    return str(ipaddress.IPv4Address(as_read.to_bytes(4, sys.byteorder)))


def realtime_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, from the closest of a few paired readings."""
    best = None
    for _ in range(5):
        before = time.monotonic_ns()
        real = time.time_ns()
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, real - (before + after) // 2)
    return best[1]


# ------------------------------------------------------------------ namespaces → nodes

def netns_inode(pid: int | str) -> int:
    """The inode of the network namespace process `pid` ("self": this one) is in."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def namespace_map(pids: dict[str, int], host: bool = True) -> dict[int, str]:
    """Network namespace inode → node, from one process per node (a container's State.Pid, a
    netns node's anchor). Nodes whose process is gone are left out. With `host`, this process's
    own namespace, the host's (where the CLI and the tracer run), maps to HOST: drops on a lab
    bridge or a host-side veth land there. (Not pid 1's: a container's init may refuse it.)"""
    namespaces = {}
    # The host first, so a node sharing the host's namespace (none should) keeps its name.
    for node, pid in [*([(HOST, "self")] if host else []), *pids.items()]:
        try:
            namespaces[netns_inode(pid)] = node
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # gone, or (without root) not ours to look at
    return namespaces


def node_of(netns: int, namespaces: dict[int, str]) -> str:
    return namespaces.get(netns, "")


def with_nodes(events: list, namespaces: dict[int, str]) -> list:
    """Drops or Accepts, each named by the node owning its network namespace."""
    return [replace(e, node=node_of(e.netns, namespaces)) for e in events]


# ------------------------------------------------------------------ the tracer

def ensure_tracefs(tracefs: Path = TRACEFS) -> str | None:
    """Mounts tracefs when its mount point is empty; None when the tracepoint is there, else why not."""
    event = tracefs / "events" / "skb" / "kfree_skb" / "format"
    if event.exists():
        return None
    if not tracefs.is_dir():
        return f"{tracefs} does not exist: the kernel has no tracefs (CONFIG_TRACING)"
    if any(tracefs.iterdir()):
        return f"{tracefs} is mounted but has no skb:kfree_skb tracepoint: the kernel lacks it"
    result = bounded.run(["mount", "-t", "tracefs", "nodev", str(tracefs)], capture_output=True, text=True,
                         timeout=10)
    if result.returncode != 0:
        return (f"tracefs is not mounted and could not be: {result.stderr.strip()} "
                f"(mount it yourself: mount -t tracefs nodev {tracefs})")
    return None if event.exists() else f"tracefs mounted at {tracefs}, but it has no skb:kfree_skb tracepoint"


class KernelTracer:
    """`tracer.start(DropFilter(...))` … `drops = tracer.stop()`; or `with tracer.tracing(f):`.
    bpftrace runs in a process group of its own and ends by itself after max_seconds or
    max_drops; stop() interrupts it earlier, and kills the group when it does not end."""

    def __init__(self, namespaces: dict[int, str] | None = None, bpftrace: str = "bpftrace"):
        self.namespaces = namespaces or {}
        self.bpftrace = bpftrace
        self.lost = 0  # events the perf buffer overflowed with (bpftrace's "Lost N events")
        self.accepts: list[Accept] = []  # what the last stop() found, when the filter asked for them
        self.accepts_unavailable: str | None = None  # why accepts were not traced, when asked for
        self.binds: list[FailedBind] = []  # the refused bind() calls the last stop() found, when asked for
        self.messages: list[str] = []  # whatever else bpftrace printed (warnings, errors)
        self.attach_s: float | None = None  # from spawning bpftrace to its probe being attached
        self._proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._attached = threading.Event()
        self._reader: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None
        self._names: dict[int, str] = {}
        self._offset_ns = 0
        self._max_drops = 0
        self._max_accepts = 0
        self._max_binds = 0
        self._checked = False  # can_run() said yes once; start() need not load its test program again

    def can_run(self) -> str | None:
        """None when this host can trace drops; otherwise why not, and what to do."""
        if os.geteuid() != 0:
            return "needs root (eBPF and tracefs): run as root"
        if not shutil.which(self.bpftrace):
            return "bpftrace is not installed: scripts/setup-host installs it (apt-get install bpftrace)"
        if not BTF_FILE.exists():
            return f"the kernel has no BTF ({BTF_FILE}): it needs a kernel built with CONFIG_DEBUG_INFO_BTF"
        if why := ensure_tracefs():
            return why
        # Load a program on the very tracepoint: lockdown or a seccomp profile refuses it here.
        try:
            result = bounded.run([self.bpftrace, "-e", "tracepoint:skb:kfree_skb { @x = 1; } "
                                  "interval:ms:1 { exit(); } END { clear(@x); }"],
                                 capture_output=True, text=True, timeout=30, start_new_session=True)
        except subprocess.TimeoutExpired:
            return "bpftrace did not load a test program within 30 s"
        if result.returncode != 0 or "Attaching" not in result.stdout:
            said = [l for l in (result.stderr + result.stdout).splitlines() if "RLIMIT_MEMLOCK" not in l]
            return ("the kernel refused the eBPF program: " + " / ".join(said[-3:])
                    + " (run on the host or in a privileged container, without kernel lockdown)")
        self._checked = True
        return None

    def start(self, drop_filter: DropFilter) -> None:
        """Starts bpftrace and returns once its probe is attached."""
        if self._proc is not None:
            raise KernelTracerError("the tracer is already running")
        drop_filter.check()
        if not self._checked and (why := self.can_run()):
            raise KernelTracerError(why)
        self._names = reason_names()
        self._max_drops, self._max_accepts = drop_filter.max_drops, drop_filter.max_accepts
        self._max_binds = drop_filter.max_binds
        self.accepts_unavailable = None
        if drop_filter.accepts and (missing := [e.name for e in ACCEPT_EVENTS if not e.exists()]):
            # Default-on: drops are still traced, and the trace falls back to the socket snapshot.
            self.accepts_unavailable = f"the kernel has no syscall tracepoint {', '.join(missing)} (CONFIG_FTRACE_SYSCALLS)"
            drop_filter = replace(drop_filter, accepts=False)
        if drop_filter.binds and not all(e.exists() for e in BIND_EVENTS):
            drop_filter = replace(drop_filter, binds=False)  # likewise default-on: the drops go on
        text = program(len(drop_filter.subnets), quiet_count(drop_filter, self._names),
                       rx_sk="rx_sk" in FORMAT_FILE.read_text(), echo_replies=drop_filter.echo_replies,
                       accepts=drop_filter.accepts, binds=drop_filter.binds)
        argv = [self.bpftrace, "-B", "line", "-e", text, *program_arguments(drop_filter, self._names)]
        self.lost, self.messages, self._lines, self.accepts, self.binds = 0, [], [], [], []
        self._attached.clear()
        self._offset_ns = realtime_offset_ns()
        began = time.monotonic()
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(self._proc,), name="bpftrace-reader", daemon=True)
        self._reader.start()
        # A backstop for a wedged bpftrace: the program exits by itself after max_seconds.
        self._watchdog = threading.Timer(drop_filter.max_seconds + STOP_TIMEOUT, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        deadline = began + ATTACH_TIMEOUT
        while not self._attached.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise KernelTracerError("bpftrace did not attach its probe: "
                                        + (" / ".join(self.messages[-3:]) or "no output"))
        self.attach_s = time.monotonic() - began

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> list[Drop]:
        """Interrupts bpftrace (SIGINT, so its END runs), waits a bounded time, kills its group
        if it is still there, and returns the drops it reported; the accepts it reported are
        in `self.accepts`."""
        proc = self._proc
        if proc is None:
            return []
        deadline = time.monotonic() + STOP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            self._signal(proc, signal.SIGINT)
            try:
                proc.wait(INTERRUPT_EVERY)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            self._kill()
            proc.wait(STOP_TIMEOUT)
        if self._watchdog:
            self._watchdog.cancel()
        if self._reader:
            self._reader.join(STOP_TIMEOUT)
        self._proc = self._reader = self._watchdog = None
        drops, accepts, binds = [], [], []
        for line in list(self._lines):  # a copy: a reader that did not end may still append
            drop = parse_line(line, self._names, self._offset_ns)
            if drop is not None:
                drops.append(replace(drop, node=node_of(drop.netns, self.namespaces)))
            elif (accept := parse_accept(line, self._offset_ns)) is not None:
                accepts.append(replace(accept, node=node_of(accept.netns, self.namespaces)))
            elif (failed := parse_bind(line, self._offset_ns)) is not None:
                binds.append(replace(failed, node=node_of(failed.netns, self.namespaces)))
            elif lost := LOST.search(line):
                self.lost += int(lost.group(1))
            elif line.strip():
                self.messages.append(line.rstrip("\n"))
        self.accepts = accepts[:self._max_accepts]
        self.binds = binds[:self._max_binds]
        return drops[:self._max_drops]

    def tracing(self, drop_filter: DropFilter) -> "_Tracing":
        return _Tracing(self, drop_filter)

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if "RLIMIT_MEMLOCK" in line:
                continue  # bpftrace warns when it may not raise it; kernels since 5.11 do not need it
            if not self._attached.is_set():
                # "Attaching N probes..." comes before the programs are even loaded; READY after.
                if line.rstrip("\n") == READY:
                    self._attached.set()
                elif not line.startswith("Attaching "):
                    self.messages.append(line.rstrip("\n"))  # what start() reports when attaching fails
                continue
            self._lines.append(line)
        proc.stdout.close()

    def _kill(self) -> None:
        if self._proc is not None:
            self._signal(self._proc, signal.SIGKILL)

    @staticmethod
    def _signal(proc: subprocess.Popen, signum: int) -> None:
        # The group is bpftrace's own (start_new_session). Once reaped, its id may be reused, so
        # only an unreaped leader (running, or a zombie still holding the id) is signalled.
        if proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class _Tracing:
    """The context manager of KernelTracer.tracing(): `drops` and `accepts` are filled on exit."""
    tracer: KernelTracer
    drop_filter: DropFilter
    drops: list[Drop] = field(default_factory=list)
    accepts: list[Accept] = field(default_factory=list)
    binds: list[FailedBind] = field(default_factory=list)

    def __enter__(self) -> "_Tracing":
        self.tracer.start(self.drop_filter)
        return self

    def __exit__(self, *exc) -> None:
        self.drops = self.tracer.stop()
        self.accepts = self.tracer.accepts
        self.binds = self.tracer.binds

"""Impairments of one link end, on the way out of an interface: delay and jitter, loss, rate.
The topology declares them per link end (`impairments:`), the node runtime applies them before
its service starts, and the `delay` fault applies a delay for a bounded time; all through here:

- delay and jitter: `tc netem` where the kernel has sch_netem; else a userspace delayer on
  NFQUEUE (NetfilterQueue, python-netfilterqueue's maintained binding of libnetfilter_queue):
  iptables rules queue every packet leaving the interface, and the delayer gives each its
  verdict after the delay, in the order they came (a link keeps its order; netem may not).
  `--queue-bypass` lets packets through undelayed if the delayer is gone, never dropped. The
  node's own packets are queued in raw OUTPUT, before conntrack sees them: a packet queued
  after it (as in POSTROUTING) carries an unconfirmed conntrack entry, and when a new flow's
  first packets are all held at once (a ping every 20 ms behind a 50 ms delay), every one but
  the first clashes with the entry the first confirms and is dropped on its way back
  (NOT_SPECIFIED in nfqnl_reinject). Forwarded packets have their entry from PREROUTING, so
  they are queued in mangle FORWARD; a router's burst of new flows can still meet that clash;
- loss: iptables' `statistic` match, DROP at random;
- rate: a token bucket (`tc tbf`).

Rules carry an iptables comment that says who made them (`hoplab-impairment` for the topology,
`hoplab-chaos` for a fault), so clearing one never removes the other's.

    python3 -m hoplab.node.impair apply IFACE [--delay-ms D] [--jitter-ms J] [--loss-percent P]
                                              [--rate R] [--seconds S] [--owner chaos]
    python3 -m hoplab.node.impair clear IFACE [--owner chaos]
    python3 -m hoplab.node.impair delayer --queue N --delay-ms D [--jitter-ms J] [--seconds S]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from hoplab import bounded

OWNERS = {"topology": "hoplab-impairment", "chaos": "hoplab-chaos"}
MAX_DELAY_MS = 10_000
QUEUE_BASE = {"topology": 1000, "chaos": 2000}  # + the interface's index: one queue per link end and owner
READY_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 10.0
MAX_HELD = 100_000  # packets the delayer holds at once; past it the kernel's queue (and then bypass) takes over


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return bounded.run(list(argv), check=check, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _run_dir() -> Path:
    return Path(os.environ.get("HOPLAB_RUN_DIR", "/run/hoplab"))


def _pid_file(iface: str, owner: str) -> Path:
    return _run_dir() / f"delayer-{owner}-{iface}.pid"


def _qdisc_mark(iface: str, owner: str) -> Path:
    return _run_dir() / f"qdisc-{owner}-{iface}"


def queue_number(iface: str, owner: str) -> int:
    return QUEUE_BASE[owner] + int(Path(f"/sys/class/net/{iface}/ifindex").read_text())


# (table, chain) of each rule, by what it does: loss for every packet out; the delayer's queue
# for the node's own packets before conntrack, and for the ones it forwards.
LOSS_CHAINS = (("mangle", "POSTROUTING"),)
QUEUE_CHAINS = (("raw", "OUTPUT"), ("mangle", "FORWARD"))
CHAINS = (*LOSS_CHAINS, *QUEUE_CHAINS)


def _add(table: str, chain: str, iface: str, owner: str, *target: str) -> None:
    _run("iptables", "-w", "5", "-t", table, "-A", chain, "-o", iface, *target, "-m", "comment", "--comment",
         OWNERS[owner])


def has_netem(iface: str) -> bool:
    """Whether this kernel has sch_netem: a netem qdisc on the interface is tried and removed."""
    tried = _run("tc", "qdisc", "add", "dev", iface, "root", "handle", "9:", "netem", "delay", "0ms", check=False)
    if tried.returncode != 0:
        return False
    _run("tc", "qdisc", "del", "dev", iface, "root", check=False)
    return True


def apply(iface: str, delay_ms: float = 0, jitter_ms: float = 0, loss_percent: float = 0, rate: str = "",
          seconds: float = 0, owner: str = "topology") -> list[str]:
    """Impair `iface`'s way out; what was done, in words. `seconds` bounds the delayer's life
    (0: the node's)."""
    done = []
    if loss_percent:
        for table, chain in LOSS_CHAINS:
            _add(table, chain, iface, owner, "-m", "statistic", "--mode", "random", "--probability",
                 f"{loss_percent / 100:.4f}", "-j", "DROP")
        done.append(f"loses {loss_percent:g}% (iptables statistic)")
    netem = bool(delay_ms or jitter_ms) and has_netem(iface)
    if netem or rate:  # this owner's qdisc: its clear removes it, and no other's
        _qdisc_mark(iface, owner).write_text("root\n")
    if netem:
        _run("tc", "qdisc", "replace", "dev", iface, "root", "handle", "1:", "netem", "delay", f"{delay_ms:g}ms",
             f"{jitter_ms:g}ms")
        done.append(f"delays {delay_ms:g} ms ± {jitter_ms:g} ms (netem)")
    elif delay_ms or jitter_ms:
        queue = queue_number(iface, owner)
        _start_delayer(iface, owner, queue, delay_ms, jitter_ms, seconds)
        for table, chain in QUEUE_CHAINS:
            _add(table, chain, iface, owner, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
        done.append(f"delays {delay_ms:g} ms ± {jitter_ms:g} ms (NFQUEUE {queue}, no sch_netem here)")
    if rate:
        # under netem as its child (netem's one class, 1:1), else at the root
        where = ("parent", "1:1", "handle", "2:") if netem else ("root",)
        _run("tc", "qdisc", "replace" if not netem else "add", "dev", iface, *where, "tbf", "rate", rate,
             "burst", "2kb", "latency", "200ms")
        done.append(f"sends at most {rate} (tbf)")
    return done


def _start_delayer(iface: str, owner: str, queue: int, delay_ms: float, jitter_ms: float, seconds: float) -> None:
    """The delayer, in a session of its own (it outlives this command), once it holds its queue."""
    ready = _run_dir() / f"delayer-{owner}-{iface}.ready"
    ready.unlink(missing_ok=True)
    with open(_run_dir() / f"delayer-{owner}-{iface}.log", "a") as log:  # its own: the caller may be waiting on ours
        proc = subprocess.Popen([sys.executable, "-m", "hoplab.node.impair", "delayer", "--queue", str(queue),
                                 "--delay-ms", f"{delay_ms:g}", "--jitter-ms", f"{jitter_ms:g}", "--seconds",
                                 f"{seconds:g}", "--ready-file", str(ready)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    _pid_file(iface, owner).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"hoplab.node.impair: the delayer for {iface} did not bind NFQUEUE {queue} "
                             f"(exit {proc.poll()})")
        time.sleep(0.02)
    ready.unlink()


def clear(iface: str, owner: str = "topology") -> None:
    """Undo what apply() did for this owner: its rules, its qdisc, its delayer."""
    comment = OWNERS[owner]
    for table, chain in dict.fromkeys(CHAINS):
        listed = _run("iptables", "-w", "5", "-t", table, "-S", chain, check=False).stdout.splitlines()
        for rule in listed:
            words = rule.split()
            if words[:1] == ["-A"] and f"-o {iface} " in rule and comment in rule:
                _run("iptables", "-w", "5", "-t", table, "-D", *words[1:], check=False)
    if _qdisc_mark(iface, owner).exists():
        _run("tc", "qdisc", "del", "dev", iface, "root", check=False)
        _qdisc_mark(iface, owner).unlink()
    pid_file = _pid_file(iface, owner)
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()


# ------------------------------------------------------------ the delayer


def delayer(queue: int, delay_ms: float, jitter_ms: float, seconds: float, ready_file: Path | None = None) -> int:
    """Hold every packet NFQUEUE `queue` hands over for `delay_ms` ± `jitter_ms` (uniform), in
    arrival order, then accept it. Ends after `seconds` (0: never) or on SIGTERM, letting every
    held packet go first."""
    from netfilterqueue import NetfilterQueue

    held: collections.deque = collections.deque()
    last = 0.0
    stopping = False

    def take(packet) -> None:
        nonlocal last
        release = time.monotonic() + (delay_ms + random.uniform(-jitter_ms, jitter_ms)) / 1000
        last = max(release, last)  # never before the packet in front of it
        if len(held) >= MAX_HELD:
            packet.accept()
            return
        held.append((last, packet))

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    queue_handle = NetfilterQueue()
    queue_handle.bind(queue, take, max_len=MAX_HELD)
    end = time.monotonic() + seconds if seconds else float("inf")
    if ready_file:
        ready_file.write_text("ok\n")
    fd = queue_handle.get_fd()
    try:
        while not stopping and time.monotonic() < end:  # bounded by `seconds`, or the node's life
            now = time.monotonic()
            wait = min(held[0][0] - now if held else 1.0, end - now)
            readable, _, _ = select.select([fd], [], [], max(wait, 0))
            if readable:
                queue_handle.run(block=False)
            now = time.monotonic()
            while held and held[0][0] <= now:
                held.popleft()[1].accept()
    finally:
        while held:
            held.popleft()[1].accept()
        queue_handle.unbind()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hoplab.node.impair")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("apply", "clear"):
        one = sub.add_parser(verb)
        one.add_argument("iface")
        one.add_argument("--owner", choices=list(OWNERS), default="topology")
        if verb == "apply":
            one.add_argument("--delay-ms", type=float, default=0)
            one.add_argument("--jitter-ms", type=float, default=0)
            one.add_argument("--loss-percent", type=float, default=0)
            one.add_argument("--rate", default="")
            one.add_argument("--seconds", type=float, default=0)
    held = sub.add_parser("delayer")
    held.add_argument("--queue", type=int, required=True)
    held.add_argument("--delay-ms", type=float, required=True)
    held.add_argument("--jitter-ms", type=float, default=0)
    held.add_argument("--seconds", type=float, default=0)
    held.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "delayer":
        return delayer(args.queue, args.delay_ms, args.jitter_ms, args.seconds, args.ready_file)
    if args.verb == "clear":
        clear(args.iface, args.owner)
        return 0
    if not 0 <= args.jitter_ms <= args.delay_ms <= MAX_DELAY_MS or not 0 <= args.loss_percent <= 100:
        print(f"bad impairment: delay {args.delay_ms:g} ms (0..{MAX_DELAY_MS}), jitter {args.jitter_ms:g} ms "
              f"(0..delay), loss {args.loss_percent:g}% (0..100)", file=sys.stderr)
        return 2
    for line in apply(args.iface, args.delay_ms, args.jitter_ms, args.loss_percent, args.rate, args.seconds,
                      args.owner):
        print(f"{args.iface}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

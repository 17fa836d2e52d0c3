"""The lab's online game over UDP (the seeds' example of a service that is not HTTP): players
send their moves, the server answers each with the game state. Connectionless: no handshake and
no retransmission, so a lost datagram is a lost move or a lost answer that nobody sends again.
Behind the home's NAT a player is known to the server by the router's address and port, which
the answers say (`seen_as`).

A move is one JSON datagram {"seq": N, "move": "up"|"down"|"left"|"right"|"stay"}; its answer
{"seq": N, "tick": T, "seen_as": "IP:PORT", "position": [X, Y], "players": P}, or {"seq": N,
"error": "..."} for a datagram that is not a move.

    python3 -m hoplab.node.game supervise --pid-file F (services/game/start: runs `serve`, and again
                                                   1 s after it ends, like systemd's Restart=always)
    python3 -m hoplab.node.game serve              (one server; exit 1 when its port is taken)
    python3 -m hoplab.node.game play HOST [--port P] [--moves N] [--interval S] [--wait S]
                                                   (`hoplab play`, in a client node: one JSON line)

Standard library only, like the rest of the node runtime."""

from __future__ import annotations

import argparse
import errno
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PORT = 7777  # the game's well-known port: the server's, and where `hoplab play` goes by default
MOVES = {"up": (0, 1), "down": (0, -1), "left": (-1, 0), "right": (1, 0), "stay": (0, 0)}
MAX_DATAGRAM = 512
MAX_MOVES, MAX_INTERVAL_S, MAX_WAIT_S = 1000, 5.0, 10.0
RESTART_S = 1.0  # the supervisor's pause before it starts an ended server again


def check_bounds(moves: int, interval: float, wait: float) -> str | None:
    """The first bound a player's value breaks, as `--OPTION: ...` (`hoplab play` and this
    module's own command line say the same)."""
    for failed, said in ((not 1 <= moves <= MAX_MOVES, f"--moves: {moves} is outside 1..{MAX_MOVES}"),
                         (not 0 <= interval <= MAX_INTERVAL_S, f"--interval: {interval:g} is outside 0..{MAX_INTERVAL_S:g} s"),
                         (not 0 < wait <= MAX_WAIT_S, f"--wait: {wait:g} is outside (0, {MAX_WAIT_S:g}] s")):
        if failed:
            return said
    return None


def answer(datagram: bytes, sender: tuple[str, int], positions: dict, tick: int) -> dict:
    """The server's answer to one datagram from `sender`, the game's state updated."""
    try:
        move = json.loads(datagram)
        seq, step = int(move["seq"]), MOVES[move["move"]]
    except (ValueError, KeyError, TypeError):
        return {"seq": None, "error": "not a move: {\"seq\": N, \"move\": \"up|down|left|right|stay\"}"}
    where = positions.get(sender, (0, 0))
    positions[sender] = (where[0] + step[0], where[1] + step[1])
    return {"seq": seq, "tick": tick, "seen_as": f"{sender[0]}:{sender[1]}", "position": list(positions[sender]),
            "players": len(positions)}


def serve(port: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as exc:  # said as a daemon says it, for the service's log; the supervisor retries
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        print(f"game: cannot bind UDP 0.0.0.0:{port}: {exc.strerror} ({name})", file=sys.stderr, flush=True)
        return 1
    positions: dict = {}
    tick = 0
    while True:  # unbounded: the service's daemon
        datagram, sender = sock.recvfrom(MAX_DATAGRAM)
        tick += 1
        try:
            sock.sendto(json.dumps(answer(datagram, sender, positions, tick)).encode(), sender)
        except OSError:  # e.g. EPERM: the node's own firewall dropped the answer; a lost datagram
            continue


def supervise(port: int, pid_file: Path, restart_s: float = RESTART_S) -> int:
    """Run the server and start it again `restart_s` after it ends, for as long as this runs
    (the service's daemon): the game survives its server's crash, and a restart can fail (its
    port taken: EADDRINUSE) and be retried. The running server's pid is kept in `pid_file`.
    SIGTERM or SIGINT ends the server, then this."""
    server: subprocess.Popen | None = None
    stopping = False

    def stop(signum, frame):  # the loop below waits for the server, then ends
        nonlocal stopping
        stopping = True
        if server is not None:
            server.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:  # unbounded: the service's daemon
        server = subprocess.Popen([sys.executable, "-m", "hoplab.node.game", "serve", "--port", str(port)])
        pid_file.write_text(f"{server.pid}\n")
        if stopping:  # the signal came while it started
            server.terminate()
        status = server.wait()  # unbounded: the server is the daemon; it runs until it ends
        if stopping:
            break
        print(f"game: the server (pid {server.pid}) ended with status {status}; starting it again in {restart_s:g} s",
              file=sys.stderr, flush=True)
        time.sleep(restart_s)
    pid_file.unlink(missing_ok=True)
    return 0


def play(host: str, port: int, moves: int, interval: float, wait: float) -> dict:
    """Send `moves` moves, one every `interval` s, and wait `wait` s past the last for answers;
    what came back, what was lost, the round trips, and the address the server saw."""
    address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(address)  # an ICMP error for one of our datagrams is raised here, not lost
    local = sock.getsockname()
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    seen_as, errors, refused = "", [], 0
    cycle = list(MOVES)
    for seq in range(moves + 1):
        if seq < moves:
            sent[seq] = time.monotonic()
            try:
                sock.send(json.dumps({"seq": seq, "move": cycle[seq % len(cycle)]}).encode())
            except ConnectionRefusedError:  # the ICMP port unreachable of an earlier move
                refused += 1
            except OSError:  # e.g. EPERM: this node's firewall dropped the move; it is lost
                pass
            until = sent[seq] + interval
        else:
            until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0 and len(rtts) < moves:
            sock.settimeout(left)
            try:
                data = sock.recv(MAX_DATAGRAM)
            except socket.timeout:
                break
            except ConnectionRefusedError:  # an ICMP port unreachable came back
                refused += 1
                continue
            arrived = time.monotonic()
            try:
                reply = json.loads(data)
            except ValueError:
                errors.append("an answer that is not JSON")
                continue
            if "error" in reply:
                errors.append(str(reply["error"]))
            elif isinstance(reply.get("seq"), int) and reply["seq"] in sent and reply["seq"] not in rtts:
                rtts[reply["seq"]] = (arrived - sent[reply["seq"]]) * 1000
                seen_as = str(reply.get("seen_as", seen_as))
    lost = sorted(set(sent) - set(rtts))
    times = sorted(rtts.values())
    return {"server": f"{address[0]}:{address[1]}", "local": f"{local[0]}:{local[1]}", "seen_as": seen_as,
            "sent": len(sent), "answered": len(rtts), "lost": len(lost), "lost_seqs": lost,
            "refused": refused, "errors": errors,
            "rtt_ms": {"min": round(times[0], 3), "median": round(statistics.median(times), 3),
                       "max": round(times[-1], 3)} if times else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hoplab.node.game")
    sub = parser.add_subparsers(dest="verb", required=True)
    server = sub.add_parser("serve")
    server.add_argument("--port", type=int, default=PORT)
    supervisor = sub.add_parser("supervise")
    supervisor.add_argument("--port", type=int, default=PORT)
    supervisor.add_argument("--pid-file", type=Path, required=True)
    player = sub.add_parser("play")
    player.add_argument("host")
    player.add_argument("--port", type=int, default=PORT)
    player.add_argument("--moves", type=int, default=20)
    player.add_argument("--interval", type=float, default=0.05)
    player.add_argument("--wait", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.verb == "serve":
        return serve(args.port)
    if args.verb == "supervise":
        return supervise(args.port, args.pid_file)
    said = check_bounds(args.moves, args.interval, args.wait)
    if said:
        print(said, file=sys.stderr)
        return 2
    try:
        result = play(args.host, args.port, args.moves, args.interval, args.wait)
    except OSError as exc:  # the name did not resolve, no route: said as the client met it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

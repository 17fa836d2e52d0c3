"""Durability benchmark: Locust places orders through the lab's shop (client -> NAT -> CDN edge ->
balancer -> web replicas -> PostgreSQL, each confirmation mailed by the outbox sender) while the
database, one web replica and the mail node are each SIGKILLed once, spaced through the run, and
started again by hoplab (the `process-kill` fault, journaled with its undo; a detached reaper
undoes it should this process die). When the run is over and every node is healthy again:
  - every order Locust saw acknowledged (201 with an order id) must be in the database,
  - every stored order of the run must have exactly one confirmation in the mailbox (IMAP).
Prints acknowledged / stored / mailed / duplicates / lost, writes build/bench/durability.json,
and exits 1 when an acknowledged order is lost, a mail is missing or doubled, or a kill did not
happen. The run's orders, outbox rows and mails are found by the address of the run's own
(loadtests/durability.py), whatever else the lab's shop has seen.

    .venv/bin/python bench/bench_durability.py [--topology FILE] [--backend docker|netns]
                                               [--time S] [--users N]
Bounded: Locust by --time, each restart by the backend's own bound, the mail's drain by
DRAIN_S; all load stays inside the lab.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hoplab import spec
from hoplab.backends.base import Backend, BackendError
from hoplab.cli import BACKENDS, make_backend
from hoplab.load import LOADTESTS, REMOTE, LoadOptions, run_load, wait_healthy
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY
from hoplab.progress import Progress
from watched import lab_up, run_watched

LOCUSTFILE = LOADTESTS / "durability.py"
OUTCOMES = f"{REMOTE}/out/orders.jsonl"  # the locustfile's record of each POST (out/ beside it)
KILLS = (("db", 0.15), ("web", 0.40), ("mail", 0.65))  # (service, when: a share of the run)
LEAD_S = 4.0  # from the load's call to Locust's first users (health check, files copied)
DOWNTIME_S = 3.0  # a killed node stays down this long before hoplab starts it again
SEEN_DOWN_S = 10.0  # the kill must show in the node's state within this
FAULT_BOUND_S = 600  # the journaled fault's deadline: the reaper's backstop, never reached in a good run
DRAIN_S = 180.0  # after the run: the outbox's last rows sent (its retries back off up to 60 s)
SETTLE_S = 60.0  # then: the mailbox holds them (Postfix's queue delivered)
POLL_S = 2.0
ADDRESS = re.compile(r"[a-z]+\+durability-[0-9a-f]{8}@[a-z0-9.-]+")  # the locustfile's run address
MESSAGE_ID = re.compile(r"<order-([0-9]+)\.outbox-[0-9]+@")  # services/web/app.py send_mail
SUBJECT = re.compile(r"Your order ([0-9]+) at ")  # services/web/app.py confirmation
IMAP_PASSWORD = "hoplab"  # every lab mailbox's (services/mail/start)

# In the client node: this run's mails in a mailbox, found by their To address; one JSON object
# a mail (its To, Message-ID and Subject).
IMAP_READ = r"""
import email.parser, imaplib, json, sys
host, user, password, address = sys.argv[1:5]
box = imaplib.IMAP4(host, 143)
box.login(user, password)
box.select("INBOX", readonly=True)
_, found = box.uid("SEARCH", None, "TO", '"%s"' % address)
uids = found[0].split()
for start in range(0, len(uids), 200):
    _, data = box.uid("FETCH", b",".join(uids[start:start + 200]),
                      "(BODY.PEEK[HEADER.FIELDS (TO MESSAGE-ID SUBJECT)])")
    for item in data:
        if isinstance(item, tuple):
            headers = email.parser.BytesHeaderParser().parsebytes(item[1])
            print(json.dumps({"to": headers.get("To", ""), "message_id": headers.get("Message-ID", ""),
                              "subject": headers.get("Subject", "")}))
box.logout()
"""


# ------------------------------------------------------------------ accounting (pure)

@dataclass
class Outcomes:
    """What Locust saw, from the locustfile's lines."""
    acknowledged: list[int]  # order ids of 201s, in the order they came
    without_id: int  # 2xx answers with no order id in them: acknowledged, but of what?
    statuses: Counter  # every POST's status (0: no answer)
    addresses: list[str]  # the run's order addresses
    times: list[tuple[float, int]] = field(default_factory=list)  # (when it ended, status), each POST


def read_outcomes(lines: Iterable[str]) -> Outcomes:
    acknowledged, without_id, statuses, addresses, times = [], 0, Counter(), [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            status, order, address = int(record["status"]), record["order"], str(record["email"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{OUTCOMES}: line {number}: not an order outcome ({exc}): {line[:200]!r}") from None
        statuses[status] += 1
        times.append((float(record.get("t", 0)), status))
        if address not in addresses:
            addresses.append(address)
        if 200 <= status < 300:
            if isinstance(order, int) and not isinstance(order, bool) and order > 0:
                acknowledged.append(order)
            else:
                without_id += 1
    return Outcomes(acknowledged, without_id, statuses, addresses, times)


def mail_order_id(message_id: str, subject: str) -> int | None:
    """The order a confirmation is for: from its Message-ID, else its Subject."""
    match = MESSAGE_ID.search(message_id) or SUBJECT.search(subject)
    return int(match.group(1)) if match else None


def while_down(kill_at: float, back_after: float | None, outcomes: Iterable[tuple[float, int]]) -> Counter:
    """The POSTs that ended while a killed node was down (from its kill until healthy again),
    by status: (time, status) pairs in."""
    end = kill_at + (back_after if back_after is not None else float("inf"))
    return Counter(status for t, status in outcomes if kill_at <= t <= end)


@dataclass
class Verdict:
    acknowledged: int  # orders Locust saw acknowledged
    stored: int  # the run's orders in the database
    mailed: int  # stored orders with at least one confirmation
    duplicates: int  # stored orders with more than one
    extra_mails: int  # the confirmations past the first, all orders together
    lost: list[int]  # acknowledged, not stored
    unmailed: list[int]  # stored, no confirmation
    doubled: dict[int, int]  # order -> confirmations, where more than one
    stray_mails: list[int]  # confirmations of the run's address for orders the database does not hold
    acknowledged_twice: list[int]  # one order id acknowledged to two requests
    without_id: int
    stored_unacknowledged: int  # stored though Locust saw no 201 (an answer lost on the way): fine
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def tally(acknowledged: Iterable[int], stored: Iterable[int], mails: Iterable[int | None],
          without_id: int = 0) -> Verdict:
    """Acknowledged order ids (as Locust saw them), stored ones (the database's) and one order
    id per confirmation in the mailbox (None: a mail of the run naming no order) -> the verdict."""
    acks, stored_ids, per_order = Counter(acknowledged), set(stored), Counter(mails)
    unnamed = per_order.pop(None, 0)
    lost = sorted(set(acks) - stored_ids)
    unmailed = sorted(stored_ids - set(per_order))
    doubled = {order: n for order, n in sorted(per_order.items()) if order in stored_ids and n > 1}
    stray = sorted(set(per_order) - stored_ids)
    twice = sorted(order for order, n in acks.items() if n > 1)
    verdict = Verdict(acknowledged=sum(acks.values()) + without_id, stored=len(stored_ids),
                      mailed=len(stored_ids & set(per_order)), duplicates=len(doubled),
                      extra_mails=sum(n - 1 for n in doubled.values()), lost=lost, unmailed=unmailed,
                      doubled=doubled, stray_mails=stray, acknowledged_twice=twice, without_id=without_id,
                      stored_unacknowledged=len(stored_ids - set(acks)))
    if lost:
        verdict.problems.append(f"{len(lost)} acknowledged order(s) not in the database: {_few(lost)}")
    if unmailed:
        verdict.problems.append(f"{len(unmailed)} stored order(s) with no confirmation: {_few(unmailed)}")
    if doubled:
        verdict.problems.append(f"{len(doubled)} order(s) confirmed more than once ({verdict.extra_mails} extra "
                                f"mail(s)): {_few(list(doubled))}")
    if stray:
        verdict.problems.append(f"{len(stray)} confirmation(s) for orders the database does not hold: {_few(stray)}")
    if unnamed:
        verdict.problems.append(f"{unnamed} mail(s) to the run's address name no order")
    if twice:
        verdict.problems.append(f"{len(twice)} order id(s) acknowledged to more than one request: {_few(twice)}")
    if without_id:
        verdict.problems.append(f"{without_id} 2xx answer(s) to POST /order named no order id")
    return verdict


def _few(ids: list[int], shown: int = 10) -> str:
    return ", ".join(map(str, ids[:shown])) + (f" (and {len(ids) - shown} more)" if len(ids) > shown else "")


# ------------------------------------------------------------------ the lab

def sql(backend: Backend, topology: spec.Topology, db: str, query: str, address: str) -> list[list[str]]:
    """Rows of `query` in the shop's database, as postgres; the run's address is :'address'
    (psql quotes it: it is never pasted into the statement)."""
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v",
            f"address={address}", "-d", "shop", "-At"]
    result = backend.run(topology, db, argv, timeout=30, input=query + "\n")
    if result.returncode != 0:
        raise SystemExit(f"psql in {db} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}")
    return [line.split("|") for line in result.stdout.splitlines() if line]


def read_mails(backend: Backend, topology: spec.Topology, client: str, address: str) -> list[dict]:
    """This run's mails in its mailbox, read over IMAP from a client (as a user reads them)."""
    mailbox = address.split("+", 1)[0]
    result = backend.run(topology, client, ["python3", "-c", IMAP_READ, f"mail.{topology.domain.name}", mailbox,
                                            IMAP_PASSWORD, address], timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"IMAP from {client} failed (exit {result.returncode}): {result.stderr.strip()[-1500:]}")
    mails = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return [m for m in mails if address in m["to"].lower()]  # SEARCH TO matches substrings


@dataclass
class Kill:
    node: str
    at_s: float  # planned, from the load's start
    killed_s: float | None = None
    killed_at: float | None = None  # wall clock (time.time(), as the locustfile's outcome lines)
    seen_down: bool = False
    back_after_s: float | None = None  # from the kill to the node healthy again
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.killed_s is not None and self.seen_down and self.back_after_s is not None and not self.notes


def state_of(backend: Backend, topology: spec.Topology, node: str) -> tuple[str, str]:
    status = next(s for s in backend.status(topology, addresses=False) if s.node == node)
    return status.state, status.health


def kill_and_restart(backend: Backend, topology: spec.Topology, kills: list[Kill], start: float,
                     stop: threading.Event, progress: Progress) -> None:
    """Each kill at its time (skipped once `stop` is set): SIGKILL through the fault journal,
    the node seen down, DOWNTIME_S, then the fault's undo (hoplab starts the node, healthy)."""
    from hoplab.chaos.journal import Chaos

    chaos = Chaos(backend, topology)
    for kill in kills:
        if stop.wait(max(0.0, start + kill.at_s - time.monotonic())):
            kill.notes.append("not killed: the load ended first")
            continue
        entry = None
        try:
            entry = chaos.inject("process-kill", kill.node, FAULT_BOUND_S, {})
            killed, kill.killed_at = time.monotonic(), time.time()
            kill.killed_s = killed - start
            chaos.start_reaper()
            progress.say(f"{kill.node}: SIGKILL ({entry.symptom})")
            while time.monotonic() < killed + SEEN_DOWN_S:
                if state_of(backend, topology, kill.node)[0] != "running":
                    kill.seen_down = True
                    break
                time.sleep(0.2)
            if not kill.seen_down:
                kill.notes.append(f"still running {SEEN_DOWN_S:g} s after the kill")
            time.sleep(max(0.0, killed + DOWNTIME_S - time.monotonic()))
            chaos.revert(entry.id)
            final = next(e for e in chaos.entries() if e.id == entry.id)
            kill.notes += final.notes
            if final.state == "reverted" and state_of(backend, topology, kill.node) == ("running", "healthy"):
                kill.back_after_s = time.monotonic() - killed
                progress.say(f"{kill.node}: started again, healthy {kill.back_after_s:.1f} s after the kill")
            else:
                state = "/".join(state_of(backend, topology, kill.node))
                kill.notes.append(f"not back: fault {final.state}, node {state}")
        except Exception as exc:  # noqa: BLE001 -- the kill's failure is the run's verdict, not a lost thread
            kill.notes.append(f"{type(exc).__name__}: {exc}")
        finally:
            if entry is not None:
                chaos.revert(entry.id)  # nothing when reverted already; else the node back now, not at the reaper's


def wait_for(check, seconds: float, what: str, progress: Progress):
    """Poll `check` (a value, truthy when done) every POLL_S for up to `seconds`; its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        progress.say(f"waiting: {what}")
        time.sleep(POLL_S)


# ------------------------------------------------------------------ the run

def main(args: argparse.Namespace) -> bool:
    topology = spec.load(args.topology)
    backend, progress = make_backend(args.backend), Progress()
    kinds = {service: topology.nodes_of(service) for service, _ in KILLS}
    missing = [service for service, nodes in kinds.items() if not nodes]
    if missing or not topology.nodes_of("client"):
        raise SystemExit(f"{args.topology}: no {', '.join(missing or ['client'])} node: nothing to run this on")
    lab_up(args.topology, "--backend", args.backend)
    db, client = kinds["db"][0].name, topology.nodes_of("client")[0].name
    kills = [Kill(kinds[service][0].name, LEAD_S + share * args.time) for service, share in KILLS]

    stop = threading.Event()
    start = time.monotonic()
    # The kills' own backend: its engine client is not shared with the load's thread.
    killer = threading.Thread(target=kill_and_restart, name="kills", daemon=True,
                              args=(make_backend(args.backend), topology, kills, start, stop, progress))
    killer.start()
    options = LoadOptions(users=args.users, rate=args.users, seconds=args.time, locustfile=LOCUSTFILE,
                          host=f"https://www.{topology.domain.name}")
    try:
        load = run_load(backend, topology, options, progress)
    finally:
        stop.set()
        killer.join()  # bounded: a kill's undo waits at most the backend's own `up` bound
    fetched = backend.run(topology, client, ["cat", OUTCOMES], timeout=30)
    if fetched.returncode != 0:
        raise SystemExit(f"{client}: no {OUTCOMES}: {fetched.stderr.strip()}")
    (load.report_dir / "orders.jsonl").write_text(fetched.stdout)
    outcomes = read_outcomes(fetched.stdout.splitlines())
    if len(outcomes.addresses) != 1 or not ADDRESS.fullmatch(outcomes.addresses[0]):
        raise SystemExit(f"{OUTCOMES}: expected one run address, found {outcomes.addresses[:5]}")
    address = outcomes.addresses[0]

    progress.say("load over; waiting for every node to be healthy, then for the outbox to drain")
    try:
        wait_healthy(backend, topology, progress)
    except BackendError as exc:
        raise SystemExit(f"FAILED: after the kills and the load, {exc}") from None
    pending = lambda: int(sql(backend, topology, db, "SELECT count(*) FROM mail_outbox WHERE recipient = :'address' "
                                                     "AND sent_at IS NULL;", address)[0][0])  # noqa: E731
    drained = wait_for(lambda: pending() == 0, DRAIN_S, "outbox rows not sent yet", progress)
    stored = [int(row[0]) for row in sql(backend, topology, db, "SELECT id FROM orders WHERE buyer_email = "
                                                                ":'address' ORDER BY id;", address)]
    # Delivered: the mailbox holds as many confirmations as there are stored orders, and no more arrive.
    seen: list[list[dict]] = []

    def settled() -> bool:
        seen.append(read_mails(backend, topology, client, address))
        return len(seen) > 1 and len(seen[-1]) == len(seen[-2]) >= len(stored)

    wait_for(settled, SETTLE_S, "confirmations still arriving", progress)
    mails = seen[-1]
    verdict = tally(outcomes.acknowledged, stored, [mail_order_id(m["message_id"], m["subject"]) for m in mails],
                    outcomes.without_id)
    if not outcomes.acknowledged:
        verdict.problems.append("no order was acknowledged: the run tested nothing")
    if not drained:
        verdict.problems.append(f"the outbox still held {pending()} unsent row(s) {DRAIN_S:g} s after the run")
    for kill in kills:
        if not kill.ok:
            verdict.problems.append(f"kill of {kill.node}: " + ("; ".join(kill.notes) or "not done"))

    down = [while_down(k.killed_at, k.back_after_s, outcomes.times) if k.killed_at else Counter() for k in kills]
    total = load.summary["total"] or {}
    report = {
        "args": {"topology": str(args.topology), "backend": args.backend, "time_s": args.time, "users": args.users},
        "address": address, "report_dir": str(load.report_dir),
        "kills": [asdict(k) | {"posts_while_down": {str(s): n for s, n in sorted(d.items())}}
                  for k, d in zip(kills, down)],
        "posts": {"total": sum(outcomes.statuses.values()),
                  "by_status": {str(s): n for s, n in sorted(outcomes.statuses.items())},
                  "rps": total.get("rps"), "p50_ms": total.get("p50_ms"), "p99_ms": total.get("p99_ms")},
        "figures": asdict(verdict) | {"mails": len(mails)}, "ok": verdict.ok,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{args.time} s of orders from {args.users} Locust users on {args.backend} "
          f"({sum(outcomes.statuses.values())} POSTs: "
          + ", ".join(f"{n} x {s or 'no answer'}" for s, n in sorted(outcomes.statuses.items())) + ")")
    first = min((t for t, _ in outcomes.times), default=None)
    for kill, during in zip(kills, down):
        when = (f"{kill.killed_at - first:5.1f} s into the orders" if kill.killed_at and first
                else "never" if kill.killed_at is None else "before any order")
        back = f"healthy again after {kill.back_after_s:.1f} s" if kill.back_after_s is not None else "not back"
        meanwhile = ", ".join(f"{n} x {s or 'no answer'}" for s, n in sorted(during.items())) or "no POST ended"
        print(f"  SIGKILL {kill.node:<6} {when}, {back}; meanwhile {meanwhile}"
              + "".join(f" ({n})" for n in kill.notes))
    print(f"acknowledged {verdict.acknowledged}  stored {verdict.stored}  mailed {verdict.mailed}  "
          f"duplicates {verdict.duplicates}  lost {len(verdict.lost)}  "
          f"(stored but unacknowledged {verdict.stored_unacknowledged}; mails {len(mails)})")
    for problem in verdict.problems:
        print(f"FAIL: {problem}")
    print(("PASS: every acknowledged order stored, every stored order mailed once" if verdict.ok else "FAILED")
          + f" (JSON: {args.json})")
    return verdict.ok


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--backend", choices=BACKENDS, default="docker")
    parser.add_argument("--time", type=int, default=75, help="seconds of load (30..600, default 75)")
    parser.add_argument("--users", type=int, default=6, help="Locust users placing orders (1..50, default 6)")
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "durability.json")
    args = parser.parse_args(argv)
    if not 30 <= args.time <= 600:
        parser.error(f"--time: {args.time} is outside 30..600 seconds (the three kills need room)")
    if not 1 <= args.users <= 50:
        parser.error(f"--users: {args.users} is outside 1..50")
    if not args.topology.is_file():
        parser.error(f"--topology: {args.topology}: no such file")
    return args


if __name__ == "__main__":
    ARGS = arguments()
    passed: list[bool] = []
    run_watched(lambda: passed.append(main(ARGS)), "durability")
    sys.exit(0 if passed == [True] else 1)

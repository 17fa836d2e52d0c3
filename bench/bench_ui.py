"""`hoplab ui` in headless Chromium (Debian's, driven by Playwright), medians of N:
  - first render of the lab page: navigation start to the graph drawn with every node's health
    (the first status event applied);
  - a visit typed into the visit page: from the visit's own end (curl finished in the node: the
    visit's `finished_at`, wall clock) to its trace drawn (waterfall, sequence diagram, painted):
    the capture's settling and stop, the trace's assembly and TLS decryption, the answer and the
    drawing; also the browser's part alone (answer to drawn) and the round trip from Enter.
    With --renew (the default) the trace starts at DHCP and ARP (about 150 hops on the default lab).

    .venv/bin/python bench/bench_ui.py [--topology FILE] [--backend B] [--runs 5] [--no-renew]
Brings the lab up if needed (`hoplab up -q`); visits stay in the lab; the UI listens on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hoplab import spec
from hoplab.paths import BUILD_DIR, DEFAULT_TOPOLOGY
from watched import lab_up, run_watched

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SINCE_VISIT_END = ("() => { const [m] = performance.getEntriesByName('trace-drawn').slice(-1); "
                   "return performance.timeOrigin + m.startTime - m.detail.visit_finished_ms; }")
MEASURE = "([a, b]) => { const [x] = performance.getEntriesByName(a).slice(-1), [y] = performance.getEntriesByName(b).slice(-1); return y.startTime - (x ? x.startTime : 0); }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"hoplab ui exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/status", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("hoplab ui did not answer within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--backend", choices=["docker", "netns"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-renew", dest="renew", action="store_false", help="visits without the DHCP renewal")
    parser.add_argument("--json", type=Path, default=BUILD_DIR / "bench" / "ui.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    topology = spec.load(args.topology)
    chosen = ["--backend", args.backend] if args.backend else []
    lab_up(args.topology, *chosen)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "hoplab", "ui", "--port", str(port), "--topology",
                             str(args.topology), *chosen], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first, since_end, drawn, round_trip, hops = [], [], [], [], []
    try:
        wait_up(base, proc)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for i in range(args.runs):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                page.goto(f"{base}/#lab")
                page.wait_for_function("() => performance.getEntriesByName('lab-live').length > 0", timeout=30_000)
                first.append(page.evaluate("() => performance.getEntriesByName('lab-live')[0].startTime"))
                context.close()
                print(f"lab page {i + 1}/{args.runs}: first render {first[-1]:.0f} ms", flush=True)
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.goto(f"{base}/#visit")
            page.wait_for_selector("body[data-ready]")
            if args.renew:
                page.check("#visit-renew")
            for i in range(args.runs):
                page.fill("#visit-url", f"https://www.{topology.domain.name}/?bench={i}-{time.time_ns()}")
                page.evaluate("() => performance.mark('enter')")
                page.press("#visit-url", "Enter")
                page.wait_for_function(f"() => performance.getEntriesByName('trace-drawn').length > {i}", timeout=120_000)
                since_end.append(page.evaluate(SINCE_VISIT_END))
                drawn.append(page.evaluate(MEASURE, ["visit-response", "trace-drawn"]))
                round_trip.append(page.evaluate(MEASURE, ["enter", "trace-drawn"]))
                hops.append(int(page.inner_text("#visit-summary").split(" hops")[0].rsplit(" ", 1)[-1]))
                print(f"visit {i + 1}/{args.runs}: {hops[-1]} hops, visit end to drawn {since_end[-1]:.0f} ms, "
                      f"answer to drawn {drawn[-1]:.0f} ms, "
                      f"Enter to drawn {round_trip[-1]:.0f} ms", flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    summary = {"topology": str(args.topology), "runs": args.runs, "renew": args.renew,
               "lab_first_render_ms": statistics.median(first),
               "trace_drawn_after_visit_end_ms": statistics.median(since_end),
               "trace_drawn_after_answer_ms": statistics.median(drawn),
               "enter_to_trace_drawn_ms": statistics.median(round_trip), "trace_hops": statistics.median(hops),
               "raw": {"first": first, "since_visit_end": since_end, "drawn": drawn, "round_trip": round_trip,
                       "hops": hops}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nhoplab ui in headless Chromium, medians of {args.runs}")
    print(f"  lab page, first render (graph with health)   {summary['lab_first_render_ms']:8.0f} ms")
    print(f"  visit ended -> trace drawn ({summary['trace_hops']:.0f} hops)       {summary['trace_drawn_after_visit_end_ms']:8.0f} ms")
    print(f"    of which: answer -> drawn (the browser)     {summary['trace_drawn_after_answer_ms']:8.0f} ms")
    print(f"  Enter -> trace drawn (visit, capture, assembly) {summary['enter_to_trace_drawn_ms']:8.0f} ms")
    print(f"  (JSON: {args.json})")


if __name__ == "__main__":
    run_watched(main, "ui")

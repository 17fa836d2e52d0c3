"""`make fuzz`: both fuzzers at once, one process each (fuzz/harness.py), each from its seed
corpus made afresh from the repository's captures and topology files, to a number of inputs;
then, per fuzzer, the inputs run, the time and the distinct uncaught exceptions found. Exits 1
when any was found, a fuzzer stopped early (its time bound, a crash, a hang) or ran fewer
inputs than asked.

    .venv/bin/python fuzz/run.py [--decoder-runs N] [--topology-runs N] [--max-time S]

Under build/fuzz/<fuzzer>/: seeds/, corpus/ (the inputs libFuzzer found new coverage with, kept
from run to run), findings/ (this run's: each input and its traceback), fuzz.log.
The default split of the million inputs follows their cost (a topology file takes about ten times
as long as a frame: pure-Python YAML and the JSON Schema), so that both end at about the same time:
some 8 minutes on two idle cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import seeds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "build" / "fuzz"
# fuzzer -> (its seeds, libFuzzer's flags of its own)
FUZZERS = {
    "decoder": (seeds.frame_seeds, ["-max_len=4096", f"-dict={HERE / 'decoder.dict'}"]),  # 4096: the agents' snap length
    "topology": (seeds.topology_seeds, ["-max_len=8192"]),
}
PER_INPUT_TIMEOUT_S = 30  # an input that takes longer is a finding of its own (libFuzzer stops there)


def start(name: str, runs: int, max_time: int) -> subprocess.Popen:
    make_seeds, flags = FUZZERS[name]
    folder = OUT / name
    for fresh in ("seeds", "findings", "tmp"):
        shutil.rmtree(folder / fresh, ignore_errors=True)
    seed_dir = seeds.write_corpus(folder / "seeds", make_seeds())
    (folder / "corpus").mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir()
    env = {**os.environ, "FUZZ_FINDINGS": str(folder / "findings"), "TMPDIR": str(folder / "tmp"),
           # the checkout's own sources, whatever the venv installed
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(HERE / "harness.py"), name, f"-runs={runs}", f"-max_total_time={max_time}",
               f"-timeout={PER_INPUT_TIMEOUT_S}", f"-artifact_prefix={folder}/", "-print_final_stats=1",
               *flags, str(folder / "corpus"), str(seed_dir)]
    log = open(folder / "fuzz.log", "w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def report(name: str, asked: int, exit_code: int) -> tuple[int, list[str], list[str]]:
    """(inputs run, findings' signatures and files, why it stopped early if it did)."""
    folder = OUT / name
    log = (folder / "fuzz.log").read_text(errors="replace")
    done = re.search(r"^Done (\d+) runs in (\d+) second", log, re.MULTILINE)
    progress = re.findall(r"^#(\d+)\s", log, re.MULTILINE)
    runs = int(done[1]) if done else int(progress[-1]) if progress else 0
    findings = [f"{path.read_text().splitlines()[0]}: {path}" for path in sorted((folder / "findings").glob("*.txt"))]
    problems = []
    if exit_code != 0:
        alarm = [line for line in log.splitlines() if re.match(r"(==\d+== )?(ERROR|ALARM|SUMMARY|==\d+==)", line)]
        problems.append(f"libFuzzer exited {exit_code}: " + " | ".join(alarm[-3:]) + f" (see {folder / 'fuzz.log'})")
    elif runs < asked:
        problems.append(f"stopped after {runs} of {asked} inputs (--max-time reached)")
    return runs, findings, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decoder-runs", type=int, default=900_000)
    parser.add_argument("--topology-runs", type=int, default=100_000)
    parser.add_argument("--max-time", type=int, default=1800, help="seconds each fuzzer may take at most")
    args = parser.parse_args()
    asked = {"decoder": args.decoder_runs, "topology": args.topology_runs}
    started = time.monotonic()
    running = {name: (start(name, runs, args.max_time), time.monotonic()) for name, runs in asked.items() if runs}
    print(f"fuzz: running {' and '.join(f'{n} ({asked[n]} inputs)' for n in running)}; logs in {OUT}/*/fuzz.log",
          flush=True)
    ended: dict[str, float] = {}
    while len(ended) < len(running):  # each one's own time, whichever ends first
        for name, (process, _) in running.items():
            if name not in ended and process.poll() is not None:
                ended[name] = time.monotonic()
        time.sleep(0.2)
    failed = False
    for name, (process, began) in running.items():
        seconds = ended[name] - began
        runs, findings, problems = report(name, asked[name], process.returncode)
        print(f"fuzz: {name:8} {runs:>9} inputs in {seconds:4.0f} s ({runs / max(seconds, 1e-9):5.0f}/s), "
              f"{len(findings)} uncaught exception(s)")
        for line in findings + problems:
            print(f"    {line}")
        failed |= bool(findings or problems)
    total = sum(report(name, asked[name], 0)[0] for name in running)
    print(f"fuzz: {total} inputs in {time.monotonic() - started:.0f} s wall time; {'FAILED' if failed else 'no exception'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

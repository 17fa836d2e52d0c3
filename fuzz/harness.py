"""Run one fuzzer under atheris (libFuzzer, coverage guided): its module is imported with hoplab
instrumented, and its check gets every input. Every distinct uncaught exception is kept rather
than stopping at the first, so that one run tells every bug it met: written once, to
$FUZZ_FINDINGS/<signature>.bin (the input) and .txt (the traceback), where a signature is the
exception's type and the innermost line of hoplab (or of the check) that raised it.
`fuzz/run.py` (make fuzz) runs both fuzzers and counts them.

    .venv/bin/python fuzz/harness.py decoder|topology [libFuzzer flags] CORPUS_DIR [SEED_DIR...]

A fuzzer is a module `fuzz_<name>` with a check (raises on any input that breaks the contract)
and, optionally, a custom mutator; neither needs atheris, so unit tests run the checks too.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name -> (module, its check, its custom mutator or None)
FUZZERS = {"decoder": ("fuzz_decoder", "check_frame", None),
           "topology": ("fuzz_topology", "check_topology", "mutate")}


class BrokenContract(Exception):
    """An input on which the code under test returned, but not what its contract promises."""


def expect(condition: bool, what: str) -> None:
    """`what`: 'PROPERTY: details'; the part before the colon names the finding."""
    if not condition:
        raise BrokenContract(what)


def signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/hoplab/" in f.filename or "/fuzz/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    what = f" ({str(exc).split(':')[0]})" if isinstance(exc, BrokenContract) else ""
    return f"{type(exc).__name__}{what} at {where}"


class Findings:
    def __init__(self, directory: Path):
        self.directory = directory
        self.seen: set[str] = set()

    def record(self, data: bytes, exc: BaseException) -> None:
        sig = signature(exc)
        if sig in self.seen:
            return
        self.seen.add(sig)
        self.directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(sig.encode()).hexdigest()[:12]
        (self.directory / f"{name}.bin").write_bytes(data)
        (self.directory / f"{name}.txt").write_text(
            f"{sig}\ninput: {data[:400]!r}{'...' if len(data) > 400 else ''}\n\n"
            + "".join(traceback.format_exception(exc)))
        print(f"\n== uncaught exception: {sig} (input and traceback in {self.directory}/{name}.*)",
              file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in FUZZERS:
        sys.exit(f"usage: {argv[0]} {'|'.join(FUZZERS)} [libFuzzer flags] CORPUS_DIR [SEED_DIR...]")
    import atheris

    module_name, check_name, mutator_name = FUZZERS[argv[1]]
    with atheris.instrument_imports(include=["hoplab"]):  # coverage of hoplab's code guides the mutations
        module = importlib.import_module(module_name)
    check = getattr(module, check_name)
    findings = Findings(Path(os.environ.get("FUZZ_FINDINGS", ROOT / "build" / "fuzz" / argv[1] / "findings")))

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except Exception as exc:  # each one is a finding; fuzzing goes on to find the others
            findings.record(data, exc)

    extra = {"custom_mutator": getattr(module, mutator_name)} if mutator_name else {}
    atheris.Setup([argv[0], *argv[2:]], one_input, **extra)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

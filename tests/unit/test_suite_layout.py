"""`make test` runs the unit tests beside the end-to-end suite, except those that leave traces on
the host the e2e's host checks compare (named network namespaces): those run first, alone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED_NAMESPACE = re.compile(r'"netns",\s*"add"|^from veth import', re.M)  # veth.py makes them for its users


def alone_in_makefile() -> set[str]:
    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if l.startswith("UNIT_ALONE :="))
    return set(line.split(":=", 1)[1].split())


def test_every_unit_file_making_a_named_namespace_runs_alone():
    making = {str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "unit").glob("test_*.py")
              if NAMED_NAMESPACE.search(p.read_text())}
    assert making, "the pattern finds none: it no longer matches how the tests make namespaces"
    assert making <= alone_in_makefile(), sorted(making - alone_in_makefile())

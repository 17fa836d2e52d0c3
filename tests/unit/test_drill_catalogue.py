"""Drills as data: at least ten, each with a difficulty, a symptom that does not give the fault
away, hints, a documented fix and probes that exist; roles filled from either topology."""

from __future__ import annotations

import pytest

from hoplab import spec
from hoplab.chaos.faults import CATALOGUE
from hoplab.diagnose import walk
from hoplab.drill import DIFFICULTIES, DRILLS, available, fill, probes, roles
from hoplab.paths import TOPOLOGY_DIR

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")
DUO = spec.load(TOPOLOGY_DIR / "duo.yaml")


def test_drills_of_every_difficulty():
    assert {d.difficulty for d in DRILLS.values()} == set(DIFFICULTIES)


@pytest.mark.parametrize("name", sorted(DRILLS))
def test_drill_is_complete_and_fills_on_the_default_lab(name):
    drill = DRILLS[name]
    values = roles(LAB, "client")
    assert drill.fault in CATALOGUE
    assert available(drill, values)
    assert drill.hints and drill.fix and drill.fix_steps
    assert set(drill.probes) <= set(probes(LAB, "client"))
    symptom = fill(drill.symptom, values)
    assert drill.fault not in symptom and CATALOGUE[drill.fault].family not in symptom.split()
    for text in (drill.target, symptom, *drill.hints, drill.fix, *(t for step in drill.fix_steps for t in step)):
        filled = fill(text, values)
        assert "{" not in filled.replace("${", "") or "$(" in filled, filled


def test_drills_adapt_to_the_second_topology():
    values = roles(DUO, "pc1")
    assert values["dns"] == "ns" and values["router"] == "gw" and values["web"] == "app1"
    runnable = [d for d in DRILLS.values() if available(d, values)]
    # duo has no mail server and no game: exactly the drills that need one are left out
    assert {d.name for d in DRILLS.values()} - {d.name for d in runnable} == {"missing-confirmations", "port-taken"}


def test_the_diagnose_walk_follows_the_page_load():
    hops = [c.hop for c in walk(LAB, "client")]
    order = ["lease", "gateway", "nat", "dns", "path-mtu", "edge", "cache", "lb", "db", "web1", "web2", "mail", "page",
             "game"]
    assert [h for i, h in enumerate(hops) if h not in hops[:i]] == order
    duo_hops = [c.hop for c in walk(DUO, "pc2")]
    assert {"app1", "app2", "app3"} <= set(duo_hops) and "mail" not in duo_hops and "game" not in duo_hops

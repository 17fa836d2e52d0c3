"""Fuzz the topology loader: a topology file's bytes, read by `spec.load` (strict YAML, the JSON
Schema, then the model's own checks), must give a `Topology` or a `TopologyError` that names
its problems, nothing else. Half the inputs are libFuzzer's byte mutations; the other half are
structured mutations of the parsed document (a value replaced, a key dropped, renamed or
added, a subtree copied elsewhere), which keep the YAML valid and so reach the model's checks.
Seeds: topology/*.yaml, examples/own-service/*.yaml, tests/data/invalid/*.yaml. Run by
`fuzz/harness.py topology` (make fuzz).
"""

from __future__ import annotations

import atexit
import copy
import functools
import random
import shutil
import tempfile
from pathlib import Path

import yaml

from harness import expect
from hoplab import spec
from hoplab.services import load_catalog
from seeds import EXAMPLE_DIR, topology_seeds

@functools.cache
def topology_file() -> Path:
    """Where each input is written: a folder of our own (removed at exit) holding links to the
    worked example's neighbours, since its service_dirs and locustfile are relative to the
    topology file."""
    workdir = Path(tempfile.mkdtemp(prefix="hoplab-fuzz-topology-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    for neighbour in EXAMPLE_DIR.iterdir():
        if neighbour.suffix != ".yaml":
            (workdir / neighbour.name).symlink_to(neighbour)
    return workdir / "fuzzed.yaml"


@functools.cache
def catalog() -> dict:
    return load_catalog()  # what spec.load reads itself when given none: read once, not per input


def check_topology(text: bytes) -> None:
    """Raise on any file that the loader neither accepts nor refuses with a TopologyError."""
    path = topology_file()
    path.write_bytes(text)
    try:
        topology = spec.load(path, catalog())
    except spec.TopologyError as exc:
        expect(bool(exc.problems), "TopologyError: no problems listed")
        expect(all(isinstance(f, str) and isinstance(r, str) for f, r in exc.problems),
               f"TopologyError: a problem that is not (field, reason) text: {exc.problems!r}")
        expect(exc.source == str(path), f"TopologyError: names {exc.source!r}, not the file")
        return
    topology.runtime_json()  # what the backends are handed


# ---------------------------------------------------------------- structured mutations

def _scalars_and_keys(node, scalars: set, keys: set) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(key)
            _scalars_and_keys(value, scalars, keys)
    elif isinstance(node, list):
        for item in node:
            _scalars_and_keys(item, scalars, keys)
    else:
        scalars.add(node)


def _documents() -> list:
    docs = []
    for seed in topology_seeds():
        try:
            docs.append(yaml.safe_load(seed))
        except yaml.YAMLError:
            pass
    return docs


_SEED_SCALARS: set = set()
_SEED_KEYS: set = set()
for _doc in _documents():
    _scalars_and_keys(_doc, _SEED_SCALARS, _SEED_KEYS)
# Values from the seeds, and the edges of each type the schema and the checks meet.
VALUES = sorted(_SEED_SCALARS, key=repr) + [
    None, True, False, 0, 1, -1, 2, 2.0, 80.0, 65535, 65536, 2 ** 31, 2 ** 64, 1.5, float("inf"), "", " ", "x" * 300,
    "0.0.0.0", "255.255.255.255", "10.0.0.0/8", "10.0.0.0/30", "192.168.50.0/33", "192.168.50.7/24",
    "192.168.50.200-192.168.50.100", "a-b-c", "-", "::1", "dhcp", [], {}, ["home"], {"nodes": []}]
KEYS = sorted(_SEED_KEYS, key=repr) + ["", "x", 0, None, "HOPLAB_X"]


def _places(doc) -> list[tuple[object, object]]:
    """(container, key or index) of every value under the document, bounded."""
    places, stack, seen = [], [doc], set()
    while stack and len(places) < 2000:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            places.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return places


def mutate_document(doc, rng: random.Random):
    places = _places(doc)
    if not places:
        return rng.choice([{}, [], *VALUES])
    container, key = rng.choice(places)
    op = rng.randrange(6)
    if op == 0:  # drop it
        del container[key]
    elif op == 1:  # another value
        container[key] = copy.deepcopy(rng.choice(VALUES))
    elif op == 2:  # a subtree from elsewhere in the document
        other, other_key = rng.choice(places)
        container[key] = copy.deepcopy(other[other_key])
    elif op == 3 and isinstance(container, dict):  # renamed
        container[rng.choice(KEYS)] = container.pop(key)
    elif op == 4 and isinstance(container, dict):  # a field added beside it
        container[rng.choice(KEYS)] = copy.deepcopy(rng.choice(VALUES))
    elif op == 5 and isinstance(container, list):  # one more item
        container.append(copy.deepcopy(rng.choice([*container, *VALUES[:20]])))
    else:
        container[key] = [container[key]] if rng.random() < 0.5 else {"x": container[key]}
    return doc


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's custom mutator: half byte mutations, half structured ones."""
    import atheris

    rng = random.Random(seed)
    if rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    try:
        doc = yaml.safe_load(data)
        for _ in range(rng.randint(1, 3)):
            doc = mutate_document(doc, rng)
        text = yaml.safe_dump(doc, sort_keys=False).encode()
    except Exception:  # not YAML (yet), or not a document we can write back: bytes it is
        return atheris.Mutate(data, max_size)
    return text if len(text) <= max_size else atheris.Mutate(data, max_size)

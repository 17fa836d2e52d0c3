"""Files a user writes -- topologies, service.yaml, chaos experiments, SLO thresholds, drills --
read one way: YAML parsed strictly (a key given twice is refused: PyYAML would silently keep
the last one), then checked against the JSON Schema kept beside that kind of file. Every problem
is a (FIELD, REASON) pair, shown as `FILE: FIELD: REASON`, all of them at once; the CLI exits 2.

FIELD is the path into the document, dotted (`method.0.params.port`), `(top level)` for the
document itself, `(yaml, line L column C)` for a syntax error, `(file)` when it cannot be read."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml


class FileError(Exception):
    """An invalid user file. `problems` is a list of (field, reason); `kind` names the kind of
    file for the CLI's first line ("invalid topology")."""

    kind = "file"

    def __init__(self, source: Path | str, problems: list[tuple[str, str]]):
        self.source = str(source)
        self.problems = problems
        super().__init__("\n".join(f"{self.source}: {f}: {r}" for f, r in problems))


MAX_NESTING = 64  # levels of lists and mappings; a user file needs a handful


class StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice (PyYAML silently keeps the last one, which
    would make a second `router:` quietly replace the first), and nesting deeper than
    MAX_NESTING (PyYAML composes a level per Python call: a few hundred `[` were a RecursionError)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.nesting = 0

    def compose_node(self, parent, index):
        if self.nesting >= MAX_NESTING:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_NESTING} levels",
                                              self.peek_event().start_mark)
        self.nesting += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # a list or mapping as a key: PyYAML's own check refuses it, with its line
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    mark = getattr(exc, "problem_mark", None)
    where = f"(yaml, line {mark.line + 1} column {mark.column + 1})" if mark else "(yaml)"
    return where, getattr(exc, "problem", None) or str(exc)


def read_yaml(path: Path | str, error: type[FileError] = FileError):
    """The document in `path`; an unreadable file or bad YAML raises `error`."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(path, [("(file)", getattr(exc, "strerror", None) or str(exc))]) from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        raise error(path, [yaml_problem(exc)]) from None


# JSON Schema's "integer" takes 2.0; YAML tells 2 from 2.0, and a count or a port written as 2.0
# would reach the model as a float (replicas: 2.0 was a TypeError, a port 50051.0 a broken config).
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, instance: isinstance(instance, int) and not isinstance(instance, bool)))


@lru_cache(maxsize=None)
def _validator(schema_file: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return _Validator(schema)


def schema_problems(schema_file: Path, data, explain=None) -> list[tuple[str, str]]:
    """Every way `data` breaks the schema, as (field, reason), in document order. `explain(err,
    field)` may give a kind of file's own words for an error (None: the generic ones)."""
    problems = []
    for err in sorted(_validator(schema_file).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        own = explain(err, field) if explain else None
        if own is not None:
            reason = own
        elif err.validator == "pattern":
            reason = f"{err.instance!r} does not match {err.validator_value}"
        elif err.validator == "additionalProperties" and err.validator_value is False:
            # keys are not all text when YAML gives numbers, nulls or booleans as keys
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})), key=str)
            known = ", ".join(sorted(err.schema.get("properties", {})))
            reason = f"unknown field(s) {', '.join(map(str, extra))}" + (f" (fields: {known})" if known else "")
        else:
            reason = err.message
        problems.append((field, reason))
    return problems


def load(path: Path | str, schema_file: Path, error: type[FileError] = FileError):
    """`path` read strictly and checked against `schema_file`: the document, or `error` raised
    with every problem."""
    data = read_yaml(path, error)
    problems = schema_problems(schema_file, data)
    if problems:
        raise error(path, problems)
    return data

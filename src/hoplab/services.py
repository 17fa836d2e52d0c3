"""The service catalog: each `services/<name>/service.yaml` declares what a node of that kind
needs (Debian packages, capabilities, sysctls, which services must be healthy first). Its start
and health scripts live beside it. Declared, not scripted: both backends read the same data.

A topology may bring service folders of its own (`service_dirs:`); they are searched before the
project's `services/`, follow the same contract (`services/service.schema.json`, a `start` and
a `health` script) and their mistakes are reported as `FILE: FIELD: REASON`, all at once."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from hoplab import userfile
from hoplab.paths import SERVICES_DIR

SCHEMA_FILE = SERVICES_DIR / "service.schema.json"
NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # as a topology's `service:` (topology/schema.json)


class CatalogError(Exception):
    """Invalid service folders. `problems` is a list of (file, field, reason)."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{f}: {k}: {r}" for f, k, r in problems))


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    directory: Path
    packages: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    after: tuple[str, ...] = ()  # services whose nodes must be healthy before this one starts
    volumes: dict[str, str] = field(default_factory=dict)  # name -> path: state that outlives the node
    shared: dict[str, str] = field(default_factory=dict)  # name -> path: one per lab, in every node naming it
    cache: dict[str, str] = field(default_factory=dict)  # name -> path: kept across labs (what `prepare` makes)
    stop_signal: str | None = None  # what `stop` sends first, when SIGTERM is not the daemon's fast way out
    wheels: tuple[str, ...] = ()  # pinned PyPI requirements, installed from wheels built on the host
    tier: str = ""  # its share of a sampled request's time, as a load report names it ("": its name)
    user: bool = False  # from a topology's service_dirs, not the project's services/

    @property
    def start_script(self) -> Path:
        return self.directory / "start"

    @property
    def health_script(self) -> Path:
        return self.directory / "health"

    @property
    def image(self) -> str:
        """The Docker image of its nodes. A user's folder gets a name of its own (the folder's
        path hashed in), so two projects' `api` services, or a user's `web` beside the
        project's, never overwrite each other's image."""
        if not self.user:
            return f"hoplab/{self.name}:latest"
        tag = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:8]
        return f"hoplab/{self.name}-{tag}:latest"


# What read_service found, by file and by the state of its folder's files: a command loads the
# catalogue several times (the topology's check, the backend), and each schema check of every
# service.yaml cost a CLI call ~0.1 s. A changed file (its time or mode) is read again.
_READ: dict[tuple, tuple] = {}


def _folder_state(folder: Path) -> tuple:
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted((e.name, st.st_mtime_ns, st.st_mode) for e in entries for st in [e.stat()]))
    except OSError:
        return ()


def read_service(path: Path, user: bool = False) -> tuple[Service | None, list[tuple[str, str, str]]]:
    """One `service.yaml`, checked against the schema; with a user's folder, its scripts too."""
    key = (str(path.resolve()), user, _folder_state(path.parent))
    if key not in _READ:
        _READ[key] = _read_service(path, user)
    service, problems = _READ[key]
    return service, list(problems)


def _read_service(path: Path, user: bool) -> tuple[Service | None, list[tuple[str, str, str]]]:
    folder = path.parent
    try:
        data = userfile.read_yaml(path)
    except userfile.FileError as exc:
        return None, [(exc.source, f, r) for f, r in exc.problems]
    data = {} if data is None else data
    problems = []
    if not NAME.match(folder.name):
        problems.append((str(path), "(folder name)", f"{folder.name!r} does not match {NAME.pattern} "
                                                     "(the folder's name is the service's name)"))
    if not isinstance(data, dict):
        return None, problems + [(str(path), "(top level)", "expected a mapping of fields")]
    problems += [(str(path), f, r) for f, r in userfile.schema_problems(SCHEMA_FILE, data)]
    if user:
        for script, what in (("start", "an executable Python script that execs the daemon"),
                             ("health", "an executable POSIX sh script, exit 0 when the service works")):
            target = folder / script
            if not target.is_file():
                problems.append((str(folder), script, f"missing ({what})"))
            elif not os.access(target, os.X_OK):
                problems.append((str(target), "(mode)", f"not executable (chmod +x {target})"))
    if problems:
        return None, problems
    return Service(
        name=folder.name,
        description=data.get("description", ""),
        directory=folder,
        packages=tuple(data.get("packages", ())),
        capabilities=tuple(data.get("capabilities", ())),
        sysctls={k: str(v) for k, v in (data.get("sysctls") or {}).items()},
        after=tuple(data.get("after", ())),
        volumes=dict(data.get("volumes") or {}),
        shared=dict(data.get("shared") or {}),
        cache=dict(data.get("cache") or {}),
        stop_signal=data.get("stop_signal"),
        wheels=tuple(data.get("wheels", ())),
        tier=data.get("tier", ""),
        user=user,
    ), []


def load_catalog(root: Path = SERVICES_DIR, extra: tuple[Path, ...] | list[Path] = ()) -> dict[str, Service]:
    """The project's services, and before them those of the folders in `extra` (a topology's
    `service_dirs`, in order: the first folder holding a name wins). Every problem is collected
    and raised at once as a CatalogError."""
    catalog: dict[str, Service] = {}
    problems: list[tuple[str, str, str]] = []
    for folder, user in [*((Path(d), True) for d in extra), (root, False)]:
        for path in sorted(folder.glob("*/service.yaml")):
            if path.parent.name in catalog:
                continue  # an earlier folder's service of that name takes its place
            service, found = read_service(path, user)
            problems += found
            if service is not None:
                catalog[service.name] = service
    for service in catalog.values():
        for dep in service.after:
            if dep not in catalog:
                problems.append((str(service.directory / "service.yaml"), "after",
                                 f"unknown service {dep!r} (known: {', '.join(sorted(catalog))})"))
    if problems:
        raise CatalogError(problems)
    return catalog

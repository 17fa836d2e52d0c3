"""The service catalog: each `services/<name>/service.yaml` declares what a node of that kind
needs (Debian packages, capabilities, sysctls, which services must be healthy first). Its start
and health scripts live beside it. Declared, not scripted: both backends read the same data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hoplab.paths import SERVICES_DIR

_KNOWN_KEYS = {"description", "packages", "capabilities", "sysctls", "after", "volumes", "shared", "stop_signal", "wheels"}


class CatalogError(Exception):
    pass


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
    stop_signal: str | None = None  # what `stop` sends first, when SIGTERM is not the daemon's fast way out
    wheels: tuple[str, ...] = ()  # pinned PyPI requirements, installed from wheels built on the host

    @property
    def start_script(self) -> Path:
        return self.directory / "start"

    @property
    def health_script(self) -> Path:
        return self.directory / "health"


def load_catalog(root: Path = SERVICES_DIR) -> dict[str, Service]:
    catalog = {}
    for path in sorted(root.glob("*/service.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        unknown = set(data) - _KNOWN_KEYS
        if unknown:
            raise CatalogError(f"{path}: unknown keys {sorted(unknown)}")
        name = path.parent.name
        catalog[name] = Service(
            name=name,
            description=data.get("description", ""),
            directory=path.parent,
            packages=tuple(data.get("packages", ())),
            capabilities=tuple(data.get("capabilities", ())),
            sysctls={k: str(v) for k, v in (data.get("sysctls") or {}).items()},
            after=tuple(data.get("after", ())),
            volumes={k: str(v) for k, v in (data.get("volumes") or {}).items()},
            shared={k: str(v) for k, v in (data.get("shared") or {}).items()},
            stop_signal=data.get("stop_signal"),
            wheels=tuple(data.get("wheels", ())),
        )
    for service in catalog.values():
        for dep in service.after:
            if dep not in catalog:
                raise CatalogError(f"{service.directory / 'service.yaml'}: after: unknown service {dep!r}")
    return catalog

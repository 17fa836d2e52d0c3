"""Where the project's files are. The CLI runs from an editable install in the checkout."""

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("HOPLAB_ROOT") or Path(__file__).resolve().parents[2])
TOPOLOGY_DIR = PROJECT_ROOT / "topology"
DEFAULT_TOPOLOGY = TOPOLOGY_DIR / "lab.yaml"
SCHEMA_FILE = TOPOLOGY_DIR / "schema.json"
SERVICES_DIR = PROJECT_ROOT / "services"
COMPOSE_DIR = PROJECT_ROOT / "compose"
BUILD_DIR = PROJECT_ROOT / "build"
RUN_STATE_DIR = BUILD_DIR / "run"  # per lab: experiment journals (reports, kept by `clean`)
# Per lab, the Docker backend's own state: compose file, runtime JSON, token, and the lab's chaos
# and drill journals (a backend's journals live in its state folder: a fault dies with its lab,
# and one backend's `clean` never reaches another's faults). The netns backend's is /run/hoplab-netns.
DOCKER_STATE_DIR = BUILD_DIR / "docker"
CHAOS_JOURNAL = "chaos.json"
CONTROL_TOKEN_FILE = "control.token"  # the Control API's token, in a lab's state folder on the host (0600)
CONTROL_TOKEN_IN_NODE = "/etc/hoplab/control.token"  # where the control node, and no other, reads it


def _built_here(part: str) -> bool:
    """Files that builds and installs leave in a source tree: not inputs."""
    return part == "__pycache__" or part.endswith(".egg-info")


def hash_tree(digest, root: Path) -> None:
    """Feed every file under `root` (name and bytes, in a stable order) to a hashlib digest."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not any(map(_built_here, p.parts))):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")

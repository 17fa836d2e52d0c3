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
RUN_STATE_DIR = BUILD_DIR / "run"  # per lab: chaos journal, drill state, experiment journals
CHAOS_JOURNAL = "chaos.json"
CONTROL_TOKEN_FILE = "control.token"  # the Control API's token, in a lab's state folder on the host (0600)
CONTROL_TOKEN_IN_NODE = "/etc/hoplab/control.token"  # where the control node, and no other, reads it

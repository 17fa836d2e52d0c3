"""`down` and `clean` remove exactly what hoplab made and say so: links by their `hoplab:<lab>`
alias (never by a lab-like name), rules by comment, Docker objects by label, images by hoplab's own
last build step; every backend answers with what it removed and what it could not (`Cleaned`),
and the CLI exits 1 when anything could not be removed. The image inputs hash is of content only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hoplab import cli
from hoplab.backends.base import Backend, Cleaned, Failure
from hoplab.backends.docker import DockerBackend
from hoplab.backends.engine import EngineError, NotFound
from hoplab.backends.hostfw import HostFirewall
from hoplab.backends.images import OS_IMAGE, ImageBuilder, built_images, remove_images
from hoplab.backends.netns_plan import link_mark, marked_links
from hoplab.chaos.journal import Chaos
from hoplab.paths import TOPOLOGY_DIR, hash_tree
from hoplab.progress import Progress
from hoplab.spec import load

ROOT = Path(__file__).resolve().parents[2]
LAB_FILE = TOPOLOGY_DIR / "lab.yaml"
QUIET = Progress(quiet=True)


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/hoplab-unit-tests.sock")


def link(name: str, alias: str | None = None, kind: str | None = "veth") -> dict:
    """One entry of `ip -j -d link show`."""
    entry = {"ifindex": 1, "ifname": name, "flags": ["UP"], "mtu": 1500}
    if kind:
        entry["linkinfo"] = {"info_kind": kind}
    if alias is not None:
        entry["ifalias"] = alias
    return entry


HOST_LINKS = [
    link("lo", kind=None), link("eth0", kind=None), link("docker0", kind="bridge"),
    link("hv-lab-0", "hoplab:lab"), link("hn-lab-home", "hoplab:lab", "bridge"), link("hv-lab-1", "hoplab:lab"),
    link("hn-lab-mgmt", "hoplab:lab", "bridge"),
    link("hv-duo-0", "hoplab:duo"), link("hn-duo-home", "hoplab:duo", "bridge"),
    # lookalikes: a lab's very naming, no mark (or someone else's alias)
    link("hv-lab-98"), link("hv-lab-99"), link("hn-lab-fake", kind="bridge"), link("hv-lab-7", "uplink to lab"),
    link("hv-lab-8", ""), link("hv-lab-9", "hoplab:"), link("hv-labx-0", "hoplab:labx"),
]


# ------------------------------------------------------------ links: by mark only


def test_a_labs_links_are_those_with_its_mark_bridges_first():
    assert marked_links(HOST_LINKS, "lab") == ["hn-lab-home", "hn-lab-mgmt", "hv-lab-0", "hv-lab-1"]
    assert link_mark("lab") == "hoplab:lab"


def test_lookalike_names_without_the_mark_survive_any_clean():
    lookalikes = {"hv-lab-98", "hv-lab-99", "hn-lab-fake", "hv-lab-7", "hv-lab-8", "hv-lab-9", "docker0", "eth0"}
    for lab in ("lab", None):
        assert not lookalikes & set(marked_links(HOST_LINKS, lab))


def test_clean_all_takes_every_labs_marked_links_and_no_other():
    found = marked_links(HOST_LINKS, None)
    assert set(found) == {"hv-lab-0", "hv-lab-1", "hn-lab-home", "hn-lab-mgmt", "hv-duo-0", "hn-duo-home", "hv-labx-0"}
    assert found[:3] == ["hn-duo-home", "hn-lab-home", "hn-lab-mgmt"]  # bridges first


def test_one_labs_clean_leaves_a_lab_whose_name_begins_the_same():
    assert "hv-labx-0" not in marked_links(HOST_LINKS, "lab")
    assert marked_links(HOST_LINKS, "labx") == ["hv-labx-0"]


NETNS_SCRIPT = """
import json, subprocess
from hoplab.backends.netns import _host_links, remove_links

def ip(*args):
    subprocess.run(["ip", *args], check=True)

ip("link", "add", "name", "hn-t-home", "type", "bridge")
ip("link", "set", "dev", "hn-t-home", "alias", "hoplab:t")
ip("link", "add", "name", "hv-t-0", "type", "veth", "peer", "name", "hv-t-0p")
ip("link", "set", "dev", "hv-t-0", "alias", "hoplab:t", "master", "hn-t-home")
ip("link", "add", "name", "hv-u-0", "type", "veth", "peer", "name", "hv-u-0p")
ip("link", "set", "dev", "hv-u-0", "alias", "hoplab:u")
ip("link", "add", "name", "hv-t-98", "type", "veth", "peer", "name", "hv-t-99")
ip("link", "add", "name", "hn-t-fake", "type", "bridge")
one = remove_links("t")
after_one = sorted(l["ifname"] for l in _host_links())
every = remove_links(None)
after_all = sorted(l["ifname"] for l in _host_links())
print(json.dumps({"one": one.removed, "one_failed": [str(f) for f in one.failed], "after_one": after_one,
                  "all": every.removed, "after_all": after_all}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="a throwaway network namespace needs root, unshare and ip")
def test_real_links_in_a_throwaway_namespace_go_by_mark_and_lookalikes_stay():
    """The real `ip`, in a network namespace of this test's own (gone with its process)."""
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", NETNS_SCRIPT], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["one"] == ["link hn-t-home", "link hv-t-0"] and found["one_failed"] == []
    assert found["after_one"] == ["hn-t-fake", "hv-t-98", "hv-t-99", "hv-u-0", "hv-u-0p", "lo"]
    assert found["all"] == ["link hv-u-0"]
    assert found["after_all"] == ["hn-t-fake", "hv-t-98", "hv-t-99", "lo"]


# ------------------------------------------------------------ firewall rules: by comment


@pytest.fixture
def fake_iptables(tmp_path):
    """An `iptables` that lists two rules (hoplab's, by comment, and another's) and refuses to
    delete anything; an `nft` that lists no table."""
    log = tmp_path / "calls"
    script = tmp_path / "iptables"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in
  *" -S "*) echo "-P FORWARD ACCEPT"
            echo '-A FORWARD -i hn-lab-home -o hn-lab-home -m comment --comment hoplab:lab -j ACCEPT'
            echo '-A FORWARD -i hn-lab-x -o hn-lab-x -m comment --comment "not hoplab" -j ACCEPT' ;;
  *" -D "*) echo "iptables: Bad rule (does a matching rule exist in that chain?)." >&2; exit 1 ;;
esac
""")
    nft = tmp_path / "nft"
    nft.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    nft.chmod(0o755)
    return HostFirewall("hn", chain="FORWARD", iptables=str(script), nft=str(nft)), log


def test_a_rule_that_cannot_be_removed_is_a_failure_not_a_removal(fake_iptables):
    firewall, log = fake_iptables
    cleaned = firewall.remove("lab")
    assert cleaned.removed == []
    assert [(f.kind, f.name) for f in cleaned.failed] == [
        ("iptables rule", "FORWARD -i hn-lab-home -o hn-lab-home -m comment --comment hoplab:lab -j ACCEPT")]
    assert "Bad rule" in cleaned.failed[0].error
    deletes = [line for line in log.read_text().splitlines() if " -D " in f" {line} "]
    assert len(deletes) == 1 and "hoplab:lab" in deletes[0]  # the other rule was never touched


# ------------------------------------------------------------ Docker: by label, failures kept


class FakeEngine:
    def __init__(self, images=(), histories=None, in_use=()):
        self.objects = {"container": ["c" * 64], "network": ["n1" * 32, "n2" * 32], "volume": ["lab-db"]}
        self.refuse = {"n2" * 32: "network n2 has active endpoints"}
        self.gone = {"lab-db"}  # removed meanwhile (a container's anonymous volume)
        self.removed_images = []
        self._images = list(images)
        self.histories = histories or {}
        self.in_use = set(in_use)
        self.labels_asked = []

    def reachable(self):
        return True

    def containers(self, label):
        self.labels_asked.append(label)
        return [{"Id": c, "State": "exited"} for c in self.objects["container"]]

    def networks(self, label=None):
        return [{"Id": n} for n in self.objects["network"]]

    def volumes(self, label):
        return list(self.objects["volume"])

    def _remove(self, kind, name):
        if name in self.refuse:
            raise EngineError(self.refuse[name])
        self.objects[kind].remove(name)
        if name in self.gone:
            raise NotFound(name)

    def remove_container(self, name):
        self._remove("container", name)

    def remove_network(self, name):
        self._remove("network", name)

    def remove_volume(self, name):
        self._remove("volume", name)

    def images(self, label=None, reference=None, dangling=False):
        found = [i for i in self._images if (label is None or label in i.get("Labels", {}))
                 and (reference is None or reference in i.get("RepoTags", []))
                 and (not dangling or not i.get("RepoTags"))]
        return found

    def image_history(self, image):
        return self.histories.get(image, [])

    def remove_image(self, reference):
        if reference in self.in_use:
            raise EngineError(f"remove image {reference}: conflict: image is being used by a container")
        self.removed_images.append(reference)


class FakeFirewall:
    def remove(self, lab):
        return Cleaned(removed=[f"iptables rule DOCKER-USER ... hoplab:{lab}"])


def docker(tmp_path, engine) -> DockerBackend:
    return DockerBackend(engine=engine, firewall=FakeFirewall(), catalog={}, state_root=tmp_path / "docker")


def test_docker_clean_reports_each_removal_and_each_failure(tmp_path, monkeypatch):
    monkeypatch.setattr("hoplab.backends.docker.POLL_INTERVAL", 0)
    engine = FakeEngine()
    backend = docker(tmp_path, engine)
    (tmp_path / "docker" / "lab").mkdir(parents=True)
    (tmp_path / "docker" / "other").mkdir()
    cleaned = backend.clean("lab", QUIET)
    assert cleaned.removed == ["iptables rule DOCKER-USER ... hoplab:lab", f"container {'c' * 12}",
                               f"network {'n1' * 6}", f"folder {tmp_path / 'docker' / 'lab'}"]
    assert cleaned.failed == [Failure("network", "n2" * 6, "network n2 has active endpoints")]
    assert set(engine.labels_asked) == {"io.hoplab.lab=lab"}  # by label, this lab's only
    assert (tmp_path / "docker" / "other").exists()


def test_docker_state_is_its_own_folder_apart_from_netns_and_the_experiments():
    from hoplab.backends.netns import NetnsBackend
    from hoplab.paths import RUN_STATE_DIR

    docker_root, netns_root = DockerBackend.__init__.__defaults__[3], NetnsBackend.__init__.__defaults__[2]
    assert len({docker_root, netns_root, RUN_STATE_DIR}) == 3
    assert not docker_root.is_relative_to(RUN_STATE_DIR) and not RUN_STATE_DIR.is_relative_to(docker_root)


class StateBackend(Backend):
    name = "fake"

    def __init__(self, root: Path):
        self.state_root = root

    up = down = status = exec = run = stop_node = start_node = clean = None


def test_a_labs_chaos_journal_lives_in_its_backends_state_folder(tmp_path):
    topology = load(LAB_FILE)
    docker_side, netns_side = StateBackend(tmp_path / "docker"), StateBackend(tmp_path / "netns")
    assert Chaos(docker_side, topology).path == tmp_path / "docker" / topology.name / "chaos.json"
    assert Chaos(netns_side, topology).path == tmp_path / "netns" / topology.name / "chaos.json"


# ------------------------------------------------------------ the CLI: both lists, exit 1 on a failure


class CleaningBackend:
    def __init__(self, name, cleaned):
        self.name, self.cleaned, self.asked, self.images = name, cleaned, [], 0

    def clean(self, lab, progress):
        self.asked.append(lab)
        return self.cleaned

    def down(self, topology, progress):
        self.asked.append(topology.name)
        return self.cleaned

    def clean_images(self, progress):
        self.images += 1
        return self.cleaned


@pytest.fixture
def backends(monkeypatch):
    made = {}

    def install(docker: Cleaned, netns: Cleaned):
        made.update(docker=CleaningBackend("docker", docker), netns=CleaningBackend("netns", netns))
        monkeypatch.setattr(cli, "make_backend", lambda name: made[name])
        return made

    return install


def run_cli(capsys, *args):
    code = cli.main(list(args))
    return code, *capsys.readouterr()


def test_clean_prints_what_it_removed_and_exits_0(backends, capsys):
    made = backends(Cleaned(["container abc", "network def"]), Cleaned(["link hv-lab-0"]))
    code, out, err = run_cli(capsys, "clean", "--topology", str(LAB_FILE))
    assert code == 0
    assert "removed container abc" in err and "removed link hv-lab-0" in err and "3 item(s) removed" in err
    assert made["docker"].asked == made["netns"].asked == ["lab"]


def test_clean_names_what_it_could_not_remove_and_exits_1(backends, capsys):
    backends(Cleaned(["container abc"], [Failure("network", "def", "has active endpoints")]),
             Cleaned([], [Failure("link", "hv-lab-0", "Operation not permitted")]))
    code, out, err = run_cli(capsys, "clean", "--all")
    assert code == 1
    assert "could not remove network def: has active endpoints" in err
    assert "could not remove link hv-lab-0: Operation not permitted" in err
    assert "removed container abc" in err and "2 could not be removed" in err


def test_a_quiet_progress_never_hides_a_failure(capsys):
    code = cli.report_cleaned("down", Cleaned([], [Failure("folder", "/x", "Permission denied")]),
                              Progress(quiet=True))
    assert code == 1 and "could not remove folder /x: Permission denied" in capsys.readouterr().err


def test_down_exits_1_when_something_stayed(backends, capsys):
    made = backends(Cleaned(["container abc"], [Failure("volume", "lab-db", "volume is in use")]), Cleaned())
    code, out, err = run_cli(capsys, "down", "--topology", str(LAB_FILE), "--backend", "docker")
    assert code == 1 and "could not remove volume lab-db: volume is in use" in err
    assert made["docker"].asked == ["lab"] and made["netns"].asked == []


def test_clean_images_asks_each_chosen_backend_for_what_labs_share(backends, capsys):
    made = backends(Cleaned(["image hoplab/web:1"]), Cleaned(["cache /run/hoplab-netns-cache/db-1"]))
    code, out, err = run_cli(capsys, "clean", "--all", "--images")
    assert code == 0 and "removed image hoplab/web:1" in err and "removed cache /run/hoplab-netns-cache/db-1" in err
    assert made["docker"].images == made["netns"].images == 1
    backends(Cleaned(), Cleaned(["cache /run/hoplab-netns-cache/db-1"]))
    code, out, err = run_cli(capsys, "clean", "--all", "--images", "--backend", "netns")
    assert code == 0 and "removed cache" in err and "image" not in err


def test_netns_clean_images_removes_every_service_cache_and_nothing_beside(tmp_path, monkeypatch):
    from hoplab.backends import netns

    root = tmp_path / "cache"
    (root / "db-12345678" / "cluster").mkdir(parents=True)
    (root / "db-12345678" / "cluster" / "PG_VERSION").write_text("15\n")
    (tmp_path / "beside").mkdir()
    monkeypatch.setattr(netns, "CACHE_ROOT", root)
    cleaned = netns.NetnsBackend.__new__(netns.NetnsBackend).clean_images(None)
    assert cleaned.removed == [f"cache {root / 'db-12345678'}", f"folder {root}"] and cleaned.failed == []
    assert not root.exists() and (tmp_path / "beside").is_dir()


# ------------------------------------------------------------ images: hoplab's own, superseded ones


def own_history(inputs="abc"):
    return [{"CreatedBy": f"/bin/sh -c #(nop)  LABEL io.hoplab.inputs={inputs} io.hoplab.image=1"}, {"CreatedBy": "x"}]


IMAGES = [
    {"Id": "sha256:web-new", "RepoTags": ["hoplab/web:latest"], "Labels": {"io.hoplab.image": "1"}, "Created": 30},
    {"Id": "sha256:web-old", "RepoTags": [], "Labels": {"io.hoplab.image": "1"}, "Created": 20},
    {"Id": "sha256:base", "RepoTags": ["hoplab/base:latest"], "Labels": {"io.hoplab.image": "1"}, "Created": 10},
    {"Id": "sha256:os", "RepoTags": [OS_IMAGE], "Labels": {}, "Created": 5},
    # built by a user FROM hoplab/web: it inherits the labels, not hoplab's last step
    {"Id": "sha256:mine", "RepoTags": ["me/shop:1"], "Labels": {"io.hoplab.image": "1"}, "Created": 40},
    {"Id": "sha256:mine-old", "RepoTags": [], "Labels": {"io.hoplab.image": "1"}, "Created": 35},
    {"Id": "sha256:debian", "RepoTags": ["debian:bookworm"], "Labels": {}, "Created": 1},
]
HISTORIES = {"sha256:web-new": own_history("n"), "sha256:web-old": own_history("o"), "sha256:base": own_history("b"),
             "sha256:mine": [{"CreatedBy": "/bin/sh -c #(nop)  CMD [\"shop\"]"}, *own_history()],
             "sha256:mine-old": [{"CreatedBy": "COPY shop /shop"}, *own_history()]}


def test_superseded_images_are_hoplabs_untagged_ones_only():
    engine = FakeEngine(IMAGES, HISTORIES)
    assert [i["Id"] for i in built_images(engine, dangling=True)] == ["sha256:web-old"]


def test_clean_images_takes_every_image_hoplab_built_newest_first_and_no_other():
    engine = FakeEngine(IMAGES, HISTORIES)
    cleaned = remove_images(engine, built_images(engine))
    assert engine.removed_images == ["hoplab/web:latest", "sha256:web-old", "hoplab/base:latest", OS_IMAGE]
    assert cleaned.removed == ["image hoplab/web:latest", "image web-old", "image hoplab/base:latest",
                               f"image {OS_IMAGE}"]


def test_an_image_a_container_uses_stays_and_is_reported():
    engine = FakeEngine(IMAGES, HISTORIES, in_use={"sha256:web-old"})
    cleaned = remove_images(engine, built_images(engine, dangling=True))
    assert cleaned.removed == [] and cleaned.failed[0].kind == "image" and "used by a container" in cleaned.failed[0].error


# ------------------------------------------------------------ the inputs hash: content only


def service_folder(root: Path) -> Path:
    folder = root / "svc"
    (folder / "conf").mkdir(parents=True)
    (folder / "start").write_text("#!/bin/sh\nexec true\n")
    (folder / "conf" / "a.conf").write_text("listen 80;\n")
    return folder


def inputs(build_dir: Path, folder: Path) -> str:
    builder = ImageBuilder(FakeEngine(), QUIET, build_dir=build_dir)
    wheels = build_dir / "wheels" / "0123456789abcdef"
    return builder._inputs(ROOT / "services" / "Dockerfile", {"BASE_IMAGE": "sha256:base", "PACKAGES": "nginx"},
                           {"wheels": wheels, "service": folder})


def test_the_same_content_in_two_checkouts_hashes_the_same(tmp_path):
    first, second = service_folder(tmp_path / "one" / "deep"), service_folder(tmp_path / "two")
    os.utime(second / "start", (1_000_000, 1_000_000))  # another clone, another time
    assert inputs(tmp_path / "one" / "build", first) == inputs(tmp_path / "two" / "build", second)


def test_a_changed_file_changes_the_hash(tmp_path):
    first, second = service_folder(tmp_path / "one"), service_folder(tmp_path / "two")
    (second / "conf" / "a.conf").write_text("listen 81;\n")
    assert inputs(tmp_path / "build", first) != inputs(tmp_path / "build", second)


def test_a_renamed_or_added_file_changes_the_hash(tmp_path):
    first, second, third = (service_folder(tmp_path / n) for n in ("one", "two", "three"))
    (second / "conf" / "a.conf").rename(second / "conf" / "b.conf")
    (third / "extra").write_text("")
    assert len({inputs(tmp_path / "build", f) for f in (first, second, third)}) == 3


def test_built_leftovers_are_not_inputs(tmp_path):
    first, second = service_folder(tmp_path / "one"), service_folder(tmp_path / "two")
    (second / "__pycache__").mkdir()
    (second / "__pycache__" / "x.pyc").write_bytes(b"\0")
    digests = []
    for folder in (first, second):
        digest = hashlib.sha256()
        hash_tree(digest, folder)
        digests.append(digest.hexdigest())
    assert digests[0] == digests[1]


def test_a_journaled_link_without_the_mark_is_reported_never_deleted(tmp_path, monkeypatch):
    """A lab brought up before links were marked: its journal names links that carry no mark.
    clean names each as a failure (exit 1) and leaves it."""
    from hoplab.backends import netns

    state = tmp_path / "lab"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"bridges": ["hn-lab-home"], "veths": ["hv-lab-0", "hv-lab-5"]}))
    monkeypatch.setattr(netns, "_host_links", lambda: [link("hn-lab-home", "hoplab:lab", "bridge"), link("hv-lab-0")])
    backend = netns.NetnsBackend(catalog={}, firewall=FakeFirewall(), state_root=tmp_path)
    failed = backend._unmarked_journaled("lab")
    assert [(f.kind, f.name) for f in failed] == [("link", "hv-lab-0")]
    assert "without its mark 'hoplab:lab'" in failed[0].error
    assert backend._unmarked_journaled(None) == failed

"""Builds the lab's images with no registry: an OS image (debootstrapped from the host's own apt
mirror and imported; no registry is ever asked), `hoplab/base` on it,
and one image per service. Each image carries a hash of its inputs as a label; an image whose
inputs did not change is not rebuilt at all. The hash is of content only (file names relative to
their folder, and bytes: never a checkout's path or a file's mtime), so a second checkout of the
same commit reuses the images. A rebuilt image's predecessor, left with no tag, is removed once no
container uses it (`remove_superseded`); `hoplab clean --images` removes every image hoplab built
(`built_images`), and no other. Images are looked up through the engine's API; imports and builds
are the docker CLI's, each with a time limit."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from hoplab import bounded
from hoplab.backends.base import BackendError, Cleaned, Failure
from hoplab.backends.engine import Engine, EngineError, NotFound
from hoplab.paths import BUILD_DIR, PROJECT_ROOT, SERVICES_DIR, hash_tree
from hoplab.progress import Progress
from hoplab.services import Service

OS_IMAGE = "hoplab/debian:bookworm"
BASE_IMAGE = "hoplab/base:latest"
INPUTS_LABEL = "io.hoplab.inputs"
IMAGE_LABEL = "io.hoplab.image"  # set with INPUTS_LABEL by the last step of hoplab's Dockerfiles
SUITE = "bookworm"
PARALLEL_BUILDS = 3
NODE_DEPENDENCIES = ("grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf",
                     "NetfilterQueue")  # the links' delayer (hoplab.node.impair); built from its sdist here
# Time limits (seconds): the OS image, one image's build, pip.
DEBOOTSTRAP_TIMEOUT = 900
IMPORT_TIMEOUT = 300
BUILD_TIMEOUT = 1200
PIP_TIMEOUT = 900


def host_apt_mirror() -> str:
    """The Debian mirror the host's own apt uses (never a name written into the project)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        uris = suites = None
        for line in path.read_text().splitlines() + [""]:
            if line.startswith("URIs:"):
                uris = line.split(":", 1)[1].split()
            elif line.startswith("Suites:"):
                suites = line.split(":", 1)[1].split()
            elif not line.strip():
                if uris and suites and SUITE in suites:
                    return uris[0]
                uris = suites = None
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            match = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line + " ")
            if match:
                return match.group(1)
    raise BackendError("no Debian bookworm mirror found in the host's apt sources "
                       "(/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list)")


def own_build(history: list[dict]) -> bool:
    """Whether an image's last step (history, newest first) is the LABEL that ends hoplab's own
    Dockerfiles. An image someone built FROM one of hoplab's inherits its labels, not its last
    step: it is not hoplab's to remove."""
    return bool(history) and f"LABEL {INPUTS_LABEL}=" in (history[0].get("CreatedBy") or "")


def built_images(engine: Engine, dangling: bool = False) -> list[dict]:
    """Every image hoplab built here (the OS image it imported included); with `dangling`, only
    those left with no tag: superseded by a rebuild."""
    found = [image for image in engine.images(label=IMAGE_LABEL, dangling=dangling)
             if own_build(engine.image_history(image["Id"]))]
    if not dangling:
        found += [i for i in engine.images(reference=OS_IMAGE) if i["Id"] not in {f["Id"] for f in found}]
    return found


def remove_images(engine: Engine, images: list[dict]) -> Cleaned:
    """Remove each image by its tags (by id when it has none), newest first: a service's image
    goes before the base it was built on. An image a container uses stays (never forced): that
    is a failure, with the engine's reason."""
    cleaned = Cleaned()
    for image in sorted(images, key=lambda i: i.get("Created", 0), reverse=True):
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        shown = ", ".join(tags) or image["Id"].removeprefix("sha256:")[:12]
        try:
            for reference in tags or [image["Id"]]:
                engine.remove_image(reference)
        except NotFound:
            continue  # gone with another (a tag's last removal)
        except EngineError as exc:
            cleaned.failed.append(Failure("image", shown, str(exc)))
            continue
        cleaned.removed.append(f"image {shown}")
    return cleaned


def _with_requirements(names) -> set[str]:
    """The distributions and everything they require, as installed in this venv."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement:
                todo.append(re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0])
    return found


class ImageBuilder:
    def __init__(self, engine: Engine, progress: Progress, build_dir: Path = BUILD_DIR):
        self.engine = engine
        self.docker = shutil.which("docker") or "docker"  # the CLI, for import and build
        self.progress = progress
        self.build_dir = build_dir

    def ensure(self, services: list[Service]) -> None:
        """Every image these services need, built once even when several `hoplab up`s (two labs,
        two test workers) ask at the same time: they take turns on a lock file."""
        with self._lock():
            self._ensure(services)

    def remove_superseded(self) -> Cleaned:
        """The images hoplab built that a rebuild left with no tag, unless a container still
        uses one (it goes at the next rebuild, or with `hoplab clean --images`)."""
        with self._lock():
            return remove_images(self.engine, built_images(self.engine, dangling=True))

    def remove_all(self) -> Cleaned:
        """`hoplab clean --images`: every image hoplab built, and no other."""
        with self._lock():
            return remove_images(self.engine, built_images(self.engine))

    @contextmanager
    def _lock(self):
        """Builds, and removals, take turns across hoplab processes (two labs, two test workers)."""
        lock = self.build_dir / "images.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            yield

    def _ensure(self, services: list[Service]) -> None:
        self.ensure_os_image()
        wheel = self.ensure_wheel()
        base_context = {"deps": self.ensure_dependency_wheels(), "base": SERVICES_DIR / "base"}
        base_inputs = self._inputs(SERVICES_DIR / "base" / "Dockerfile", {"OS_IMAGE": self._id(OS_IMAGE)},
                                   base_context)
        self._build(BASE_IMAGE, SERVICES_DIR / "base" / "Dockerfile", {"OS_IMAGE": OS_IMAGE}, base_context,
                    base_inputs)
        base_id = self._id(BASE_IMAGE)
        jobs = []
        for service in services:
            args = {"BASE_IMAGE": BASE_IMAGE, "PACKAGES": " ".join(service.packages)}
            context = {"wheels": wheel.parent, "service": service.directory,
                       "pywheels": self.ensure_service_wheels(service.wheels)}
            inputs = self._inputs(SERVICES_DIR / "Dockerfile", {**args, "BASE_IMAGE": base_id}, context)
            jobs.append((service.image, SERVICES_DIR / "Dockerfile", args, context, inputs))
        with ThreadPoolExecutor(PARALLEL_BUILDS) as pool:
            for future in [pool.submit(self._build, *job) for job in jobs]:
                future.result()

    def _id(self, image: str) -> str:
        image_id = self.engine.image_id(image)
        if image_id is None:
            raise BackendError(f"image {image} is missing")
        return image_id

    # ------------------------------------------------------------ OS image

    def ensure_os_image(self) -> None:
        if self.engine.image_id(OS_IMAGE):
            return
        mirror = host_apt_mirror()
        self.progress.say(f"OS image {OS_IMAGE}: debootstrapping {SUITE} from the host's mirror (~30 s)")
        if shutil.which("debootstrap") is None:
            raise BackendError("debootstrap is not installed (`make up` installs it)")
        with tempfile.TemporaryDirectory(prefix="hoplab-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            result = bounded.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                                 timeout=DEBOOTSTRAP_TIMEOUT, what="debootstrap", capture_output=True, text=True)
            if result.returncode != 0:
                raise BackendError("debootstrap failed:\n" + result.stdout[-2000:] + result.stderr[-2000:])
            # The image uses the same apt sources as the host, security updates included.
            apt = rootfs / "etc" / "apt"
            for source in Path("/etc/apt/sources.list.d").glob("*.sources"):
                shutil.copy(source, apt / "sources.list.d" / source.name)
            if any((apt / "sources.list.d").glob("*.sources")):
                (apt / "sources.list").unlink(missing_ok=True)
            shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
            (rootfs / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                imported = bounded.run([self.docker, "import", "-", OS_IMAGE], timeout=IMPORT_TIMEOUT,
                                       what="docker import", stdin=tar.stdout, capture_output=True, text=True)
            finally:
                tar.kill()
                bounded.wait(tar, timeout=IMPORT_TIMEOUT, what="tar of the OS image")
            if imported.returncode != 0:
                raise BackendError(f"docker import failed: {imported.stderr.strip()}")
        self.progress.say(f"OS image {OS_IMAGE}: imported")

    # ------------------------------------------------------------ the project's wheel

    def _wheel_folder(self, name: str, pip_args: list[str], what: str) -> Path:
        """build/wheels/<name>, filled by one `pip` run unless it exists. Built aside and renamed
        into place: two `hoplab up`s may build at once, and a failed build leaves nothing."""
        folder = self.build_dir / "wheels" / name
        if folder.is_dir():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        if pip_args:
            self.progress.say(what)
            try:
                result = bounded.run([sys.executable, "-m", "pip", *pip_args, "-q", "-d" if pip_args[0] == "download"
                                      else "-w", str(tmp)], timeout=PIP_TIMEOUT, what=what, capture_output=True,
                                     text=True)
            except bounded.Timeout:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if result.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise BackendError(f"{what} failed:\n{result.stderr[-2000:]}")
        try:
            tmp.rename(folder)
        except OSError:  # another run got there first with the same inputs
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def ensure_wheel(self) -> Path:
        """The project's own wheel, for the sources as they are."""
        digest = hashlib.sha256()
        hash_tree(digest, PROJECT_ROOT / "src")
        digest.update((PROJECT_ROOT / "pyproject.toml").read_bytes())
        folder = self._wheel_folder(digest.hexdigest()[:16], ["wheel", "--no-deps", "--no-build-isolation",
                                                             str(PROJECT_ROOT)], "building the hoplab wheel")
        return next(folder.glob("hoplab-*.whl"))

    def ensure_dependency_wheels(self) -> Path:
        """Wheels of the node-side dependencies, at the versions this venv runs (the gRPC stubs
        were generated for them)."""
        pins = sorted(f"{name}=={metadata.version(name)}" for name in _with_requirements(NODE_DEPENDENCIES))
        return self._wheel_folder("deps-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:16],
                                  ["wheel", "--no-deps", *pins], f"building dependency wheels: {' '.join(pins)}")

    def ensure_service_wheels(self, requirements: tuple[str, ...]) -> Path:
        """Wheels of a service's pinned requirements and their dependencies, for the images'
        Python (CPython 3.11 on x86_64, as the host's venv); one folder per requirement set."""
        name = "svc-" + hashlib.sha256(" ".join(sorted(requirements)).encode()).hexdigest()[:16]
        args = ["download", "--only-binary=:all:", *requirements] if requirements else []
        return self._wheel_folder(name, args, f"downloading wheels: {' '.join(requirements)}")

    # ------------------------------------------------------------ docker build

    def _inputs(self, dockerfile: Path, args: dict[str, str], context: dict[str, Path]) -> str:
        """What an image is made of. A wheel folder counts by its name, which is already the hash
        of what it was built from (the sources, the pins): a wheel's own bytes carry build times,
        and a new clone would otherwise rebuild every image."""
        wheels = self.build_dir / "wheels"
        digest = hashlib.sha256(dockerfile.read_bytes())
        for key, value in sorted(args.items()):
            digest.update(f"{key}={value}\0".encode())
        for name, source in sorted(context.items()):
            digest.update(f"[{name}]".encode())
            if source.parent == wheels:
                digest.update(f"wheels:{source.name}\0".encode())
            else:
                hash_tree(digest, source)
        return digest.hexdigest()

    def _build(self, image: str, dockerfile: Path, args: dict[str, str], context: dict[str, Path],
               inputs: str) -> None:
        if self.engine.image_label(image, INPUTS_LABEL) == inputs:
            return
        self.progress.say(f"building {image}")
        short = image.split("/")[1].split(":")[0]
        log = self.build_dir / "logs" / f"{short}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.docker, "build", "-f", str(dockerfile), "-t", image]
        for key, value in {**args, "HOPLAB_INPUTS": inputs}.items():
            argv += ["--build-arg", f"{key}={value}"]
        with tempfile.TemporaryDirectory(prefix=f"hoplab-context-{short}-") as stage, open(log, "w") as out:
            for name, source in context.items():
                shutil.copytree(source, Path(stage) / name, ignore=shutil.ignore_patterns("__pycache__"))
            result = bounded.run([*argv, stage], timeout=BUILD_TIMEOUT, what=f"building {image}", stdout=out,
                                 stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
            raise BackendError(f"building {image} failed (full log: {log}):\n{tail}")
        self.progress.say(f"built {image}")

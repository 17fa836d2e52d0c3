"""Which of the host's mounts a netns node lets go of (`pinning_mounts`): what a private copy
would keep alive after its owner removed it."""

from hoplab.backends.netns import pinning_mounts

MOUNTINFO = """\
27 1 0:25 / / rw,relatime - overlay overlay rw,lowerdir=/x
30 27 0:27 / /run rw,nosuid - tmpfs tmpfs rw
201 30 0:4 net:[4026532203] /run/docker/netns/93f713d2e742 rw - nsfs nsfs rw
202 30 0:4 net:[4026532204] /run/netns/hoplab-test-a rw - nsfs nsfs rw
203 27 0:51 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l
204 27 0:52 / /var/lib/docker rw - ext4 /dev/vda1 rw
205 27 0:53 / /srv/my\\040data rw - ext4 /dev/vdb1 rw
206 27 0:54 / /run/containerd/io.containerd.runtime.v2.task/moby/abc/rootfs rw - overlay overlay rw
207 27 0:4 mnt:[4026532999] /srv/odd\\040ns rw - nsfs nsfs rw
"""


def test_namespace_files_and_container_mounts_are_let_go_deepest_first():
    assert pinning_mounts(MOUNTINFO) == [
        "/run/containerd/io.containerd.runtime.v2.task/moby/abc/rootfs",
        "/var/lib/docker/overlay2/abc/merged",
        "/run/docker/netns/93f713d2e742",
        "/run/netns/hoplab-test-a",
        "/srv/odd ns",
    ]


def test_the_rest_stays():
    kept = {"/", "/run", "/var/lib/docker", "/srv/my data"}
    assert not kept & set(pinning_mounts(MOUNTINFO))
    assert pinning_mounts("") == [] and pinning_mounts("garbage line\n") == []


def test_a_services_cache_is_its_folders_own_and_outside_every_overlaid_folder(tmp_path):
    """What a service keeps across labs (service.yaml `cache:`) is bound from the host, from a
    folder of that service folder's own (two folders may hold services of the same name), and
    never from a folder a node overlays (its writes would stay in that node's upper layer)."""
    from hoplab.backends.netns import CACHE_ROOT, OVERLAID, cache_dir
    from hoplab.services import load_catalog

    db = load_catalog()["db"]
    assert db.cache == {"templates": "/var/cache/hoplab/db"}
    other = tmp_path / "db"
    other.mkdir()
    (other / "service.yaml").write_text("description: another db\ncache: {templates: /var/cache/x}\n")
    for script in ("start", "health"):
        (other / script).write_text("#!/bin/sh\n")
        (other / script).chmod(0o755)
    theirs = load_catalog(extra=[tmp_path])["db"]
    assert theirs.cache == {"templates": "/var/cache/x"}
    assert cache_dir(db) != cache_dir(theirs)
    assert all(cache_dir(s).parent == CACHE_ROOT for s in (db, theirs))
    assert not any(CACHE_ROOT.is_relative_to(folder) for folder in OVERLAID)

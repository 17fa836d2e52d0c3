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

"""embedded.nodes without a daemon: mountinfo parsing, the dockerd command line, the busybox tarball;
and the command lines of the other processes, which the ours-check depends on."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from embedded import eru
from embedded.config import Config
from embedded.nodes import Node, busybox_binary, decode_mount_path, ensure_busybox_tar, mounts_under
from embedded.postgres import Postgres
from embedded.procs import ServiceError
from embedded.stores import Etcd, Redis

MOUNTINFO = """\
22 1 0:21 / / rw shared:1 - ext4 /dev/vda rw
90 22 0:50 / /x/sup1 rw - tmpfs tmpfs rw
91 90 0:51 / /x/sup1/n1/data/overlay2/abc/merged rw - overlay overlay rw
92 90 0:52 / /x/sup1/n1/data/containers/d\\040e/mounts/shm rw - tmpfs shm rw
93 22 0:53 / /x/sup10/n1/data rw - tmpfs tmpfs rw
94 22 0:54 / /run/eru-24700-1/netns/x rw - nsfs nsfs rw
"""


def test_mount_paths_are_decoded() -> None:
    assert decode_mount_path("/a\\040b\\011c\\134d") == "/a b\tc\\d"


def test_mounts_under_a_directory_deepest_first_and_not_its_neighbour() -> None:
    assert mounts_under(Path("/x/sup1"), MOUNTINFO) == [
        "/x/sup1/n1/data/containers/d e/mounts/shm",
        "/x/sup1/n1/data/overlay2/abc/merged",
        "/x/sup1",
    ]
    assert mounts_under(Path("/run/eru-24700-1"), MOUNTINFO) == ["/run/eru-24700-1/netns/x"]
    assert mounts_under(Path("/run/eru-24700-10"), MOUNTINFO) == []


def test_dockerd_command_line(tmp_path: Path) -> None:
    node = Node(Config(tmp_path, nodes=2, port_base=24700), 2)
    line = " ".join(node.argv) + " "
    assert node.needle in line
    for part in (
        f"--host unix://{tmp_path}/n2/docker.sock --host tcp://127.0.0.1:24762",
        f"--tlsverify --tlscacert {tmp_path}/tls/ca.pem --tlscert {tmp_path}/tls/server-cert.pem",
        f"--exec-root /run/eru-24700-2 --pidfile {tmp_path}/n2/docker.pid",
        "--bridge eb24700n2 --iptables=false --ip-masq=false --ip-forward=false",
        "--cgroup-parent /eru-24700-n2 --shutdown-timeout 2 --label eru.node=node2 ",
        f"--config-file {tmp_path}/n2/daemon.json",
    ):
        assert part in line
    assert node.env is not None
    assert "DOCKER_HOST" not in node.env
    assert node.detail() == "tcp://127.0.0.1:24762 bridge eb24700n2"
    # Node 1's needle never matches node 2's dockerd (nor a neighbour directory's).
    assert Node(Config(tmp_path, nodes=2, port_base=24700), 1).needle not in line


def test_every_command_line_contains_its_own_needle_and_no_other(tmp_path: Path) -> None:
    c = Config(tmp_path, nodes=2, port_base=24700)
    for daemon in (Etcd(c), Redis(c), Node(c, 1), Node(c, 2)):
        assert daemon.needle in " ".join(daemon.argv) + " ", daemon.name
    needles = {name: eru.app_needle(name) for name in eru.APPS}
    for name in eru.APPS:
        line = " ".join(eru.app_argv(name, 8000)) + " "
        # The celery and gunicorn scripts run as `python SCRIPT ...`: the needle is still contained.
        assert needles[name] in f"{sys.executable} {line}", name
        assert [n for n, needle in needles.items() if needle in line] == [name]
    assert Postgres(c).needle == f" -D {c.pg_dir}/data "


def test_busybox_tarball(tmp_path: Path) -> None:
    try:
        busybox_binary()
    except ServiceError:
        pytest.skip("busybox-static is not installed")
    tar_path = ensure_busybox_tar(tmp_path)
    assert tar_path == tmp_path / "busybox.tar"
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["bin/busybox"].isfile()
        assert members["bin/busybox"].mode == 0o755
        assert members["bin/sh"].issym()
        assert members["bin/sh"].linkname == "busybox"
        assert members["tmp"].isdir()
        assert members["tmp"].mode == 0o1777
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        assert passwd.read().startswith(b"root:x:0:0:root:/root:/bin/sh\n")
    mtime = tar_path.stat().st_mtime_ns
    ensure_busybox_tar(tmp_path)  # made once
    assert tar_path.stat().st_mtime_ns == mtime
    if shutil.which("tar"):
        listing = subprocess.run(["tar", "-tvf", str(tar_path)], capture_output=True, text=True, check=True)
        assert "bin/ls -> busybox" in listing.stdout


def test_postgres_directory_of_another_cluster_directory_is_not_ours(tmp_path: Path) -> None:
    pg = Postgres(Config(tmp_path / "a", port_base=31700))
    assert pg.owned()  # no owner file: made by an older bin/services, ours
    pg.dir.mkdir(parents=True, exist_ok=True)
    try:
        pg.owner_file.write_text(f"{tmp_path / 'a'}\n")
        assert pg.owned()
        assert not Postgres(Config(tmp_path / "b", port_base=31700)).owned()
        Postgres(Config(tmp_path / "b", port_base=31700)).stop()  # left alone: nothing deleted
        assert pg.owner_file.is_file()
    finally:
        shutil.rmtree(pg.dir, ignore_errors=True)

"""The Python API on the running test cluster (bin/test's var/test): one process at a time is stopped
or crashed and started again through the same code as bin/services. Every test leaves all of the
cluster up, even when it fails."""

from __future__ import annotations

import os

import psutil
import pytest

from embedded import clients
from embedded.config import IMAGE
from embedded.procs import read_pid, strays
from embedded.services import Cluster

pytestmark = pytest.mark.services


def test_redis_stopped_and_started_answers_again(cluster: Cluster) -> None:
    port = cluster.config.redis_port
    before = cluster.pid("redis")
    cluster.stop("redis")
    assert not cluster.is_running("redis")
    assert cluster.pid("redis") is None
    assert not clients.redis_ping(port)
    cluster.start("redis")
    assert clients.redis_ping(port)
    after = cluster.pid("redis")
    assert after is not None
    assert after != before
    assert os.getsid(after) == after  # detached: a session of its own


def test_etcd_killed_and_started_keeps_its_data(cluster: Cluster) -> None:
    port = cluster.config.etcd_port
    key = "/eru-embedded-test/k"
    clients.etcd_client(port).put(key, "v")
    try:
        cluster.kill("etcd")
        assert not cluster.is_running("etcd")
        assert not clients.etcd_healthy(port)
        cluster.start("etcd")  # the pidfile is stale: start sees that and starts it again
        assert clients.etcd_healthy(port)
        value, _ = clients.etcd_client(port).get(key)
        assert value == b"v"
    finally:
        if clients.etcd_healthy(port):
            clients.etcd_client(port).delete(key)


def test_node_dockerd_killed_and_started_keeps_its_containers_running(cluster: Cluster) -> None:
    """live-restore: a crash of dockerd kills none of its containers, and the dockerd started after it
    takes them back, same processes, from the shims that kept them."""
    layout = cluster.config.node(1)
    sock = layout.socket
    with clients.docker_client(sock) as docker:
        container = docker.containers.create(IMAGE, ["sleep", "600"], labels={"ERU": "1"})
        container.start()
        pid = docker.containers.get(container.id).attrs["State"]["Pid"]
    try:
        shims = [p for p in strays(f"{layout.exec_root}/") if "shim" in p.name()]
        assert shims, "a running container has a shim under the node's exec-root"
        dockerd = cluster.pid("node1")

        cluster.kill("node1")  # a crash: dockerd alone, its shim and container stay
        assert not cluster.is_running("node1")
        assert read_pid(layout.dir / "dockerd.pid") == dockerd  # stale pidfile left, as after a crash
        assert not clients.docker_ping(sock)
        assert _alive(psutil.Process(pid))

        cluster.start("node1")
        assert clients.docker_ping(sock)
        assert cluster.pid("node1") not in (None, dockerd)
        assert [p for p in shims if _alive(p)] == shims  # the shims were kept, not reaped
        with clients.docker_client(sock) as docker:
            state = docker.containers.get(container.id).attrs["State"]
            assert state["Running"]
            assert state["Pid"] == pid
            assert "eru.node=node1" in docker.info()["Labels"]
        assert clients.docker_has_image(sock, IMAGE)
    finally:
        if not cluster.is_running("node1"):
            cluster.start("node1")
        with clients.docker_client(sock, timeout=30) as docker:
            docker.containers.get(container.id).remove(force=True)


def test_a_node_with_nothing_alive_is_reaped_and_started_clean(cluster: Cluster) -> None:
    """When dockerd and all of its containers are dead (a killed earlier run), start clears what they
    left: the stale pidfile, socket and exec-root."""
    layout = cluster.config.node(2)
    cluster.kill("node2")
    survivors = cluster.services["node2"].survivors()  # type: ignore[attr-defined]
    for proc in survivors:
        proc.kill()
    psutil.wait_procs(survivors, timeout=5)
    marker = layout.exec_root / "left-by-a-dead-run"
    marker.write_text("x")
    try:
        cluster.start("node2")
        assert clients.docker_ping(layout.socket)
        assert not marker.exists()  # the exec-root was reaped before the start
    finally:
        if not cluster.is_running("node2"):
            cluster.start("node2")


@pytest.mark.skipif(
    os.environ.get("ERU_DATABASE", "").startswith("postgres"), reason="the tests' own database is on it"
)
def test_postgres_killed_and_started_again(cluster: Cluster) -> None:
    if "postgres" not in cluster.services:
        pytest.skip("the test cluster has no PostgreSQL")
    before = cluster.pid("postgres")
    cluster.kill("postgres")
    assert not cluster.is_running("postgres")
    cluster.start("postgres")  # reaps what the postmaster left (backends, lockfile, socket)
    assert cluster.pid("postgres") not in (None, before)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

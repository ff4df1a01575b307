"""Shared fixtures: personas, the real services started by bin/test (two dockerd nodes over mutual
TLS, etcd, Redis), registered nodes, a real Celery worker in a thread, and clean-up of what tests
leave in Docker and etcd."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import celery.contrib.testing.tasks  # noqa: F401  (registers celery.ping for the worker's ping check)
import docker as docker_sdk
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

NODES: dict[str, str] = dict(item.split("=", 1) for item in os.environ.get("ERU_NODES", "").split())
SOCKETS: dict[str, str] = dict(item.split("=", 1) for item in os.environ.get("ERU_NODE_SOCKETS", "").split())
TLS_DIR = Path(os.environ.get("ERU_TLS_DIR", "var/test/tls"))
IMAGE = "eru/busybox:latest"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if NODES:
        return
    skip = pytest.mark.skip(reason="needs the services started by bin/test (ERU_NODES unset)")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _fast_passwords() -> None:
    """Tests log in a lot: a cheap hasher instead of PBKDF2's 0.4 s per password."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- personas (tests.factories is imported here, not above: tests/scheduling and tests/embedded
# run without Django, with -p no:django) -------------------------------------------------------------
@pytest.fixture
def admin_user(db: Any) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="admin", password="pw-admin-1", is_staff=True, is_superuser=True)


@pytest.fixture
def deployer(db: Any) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="dora", password="pw-dora-1")


@pytest.fixture
def viewer(db: Any) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="vic", password="pw-vic-1")


@pytest.fixture
def outsider(db: Any) -> Any:
    from tests.factories import UserFactory

    return UserFactory(username="olga", password="pw-olga-1")


# --- real services ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def etcd_prefix() -> Iterator[str]:
    """A prefix of our own for the whole session, deleted at the end."""
    from clusters import etcd

    prefix = f"/eru-test-{uuid.uuid4().hex[:8]}"
    settings.ERU_ETCD_PREFIX = prefix
    yield prefix
    if NODES:
        etcd.client().delete_prefix(prefix)


@pytest.fixture(autouse=True)
def _etcd_isolated(etcd_prefix: str) -> Iterator[None]:
    """Each test starts with an empty key space (heartbeats included)."""
    yield
    if NODES:
        from clusters import etcd

        etcd.client().delete_prefix(etcd_prefix + "/")


@pytest.fixture
def cluster() -> Iterator[Any]:
    """The processes of bin/test's cluster (embedded.services.Cluster), for tests that stop, kill and
    start one of them: every one is up before the test, and up again after it, whatever happens."""
    from embedded.services import Cluster

    c = Cluster.load(TLS_DIR.parent)
    assert c.all_up(), [s.line() for s in c.status()]
    try:
        yield c
    finally:
        for name in c.services:
            if not c.is_running(name):
                c.start(name)


@pytest.fixture(scope="session")
def tls() -> dict[str, str]:
    return {name: (TLS_DIR / f"{name}.pem").read_text() for name in ("ca", "cert", "key")}


@pytest.fixture(scope="session")
def raw_docker() -> Iterator[dict[str, docker_sdk.DockerClient]]:
    """Direct clients on each node's unix socket: how tests look at Docker behind the app's back."""
    clients = {name: docker_sdk.DockerClient(base_url=url, version="1.41") for name, url in SOCKETS.items()}
    for client in clients.values():
        _remove_eru_containers(client)
    yield clients
    for client in clients.values():
        _remove_eru_containers(client)
        client.close()


def _remove_eru_containers(client: docker_sdk.DockerClient) -> None:
    for c in client.containers.list(all=True, filters={"label": "ERU=1"}):
        c.remove(force=True)


@pytest.fixture
def docker_clean(
    raw_docker: dict[str, docker_sdk.DockerClient],
) -> Iterator[dict[str, docker_sdk.DockerClient]]:
    """Raw clients, with every ERU container removed after the test."""
    yield raw_docker
    for client in raw_docker.values():
        _remove_eru_containers(client)


@pytest.fixture
def pod(transactional_db: Any) -> Any:
    """Transactional: services push to etcd and enqueue tasks only after a real commit."""
    from clusters import services

    return services.pod_add(actor=services.SYSTEM, name="eru", desc="test pod")


@pytest.fixture
def register(pod: Any, tls: dict[str, str]) -> Callable[..., Any]:
    """Register a real node of the test cluster (probes docker info over mutual TLS)."""
    from clusters import services

    def _register(name: str = "node1", **kwargs: Any) -> Any:
        return services.node_add(
            actor=services.SYSTEM,
            pod=kwargs.pop("pod", pod),
            name=name,
            endpoint=NODES[name],
            **tls,
            **kwargs,
        )

    return _register


@pytest.fixture
def nodes(register: Callable[..., Any]) -> list[Any]:
    """Both test nodes registered in pod `eru` with auto-detected capacity and a live heartbeat."""
    return [register(name) for name in sorted(NODES)]


@pytest.fixture(scope="session")
def celery_worker_thread(django_db_setup: Any) -> Iterator[Any]:
    """A real Celery worker (threads pool) consuming from the test Redis, in this process. It stops
    before the test database is dropped (PostgreSQL refuses to drop a database still in use)."""
    from eru_site.celery import app

    app.conf.broker_url = os.environ.get("ERU_REDIS_URL", settings.CELERY_BROKER_URL)
    with app.connection_for_write() as conn:
        for queue in ("celery", "lambda"):
            conn.default_channel.queue_purge(queue)
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        shutdown_timeout=30,
        queues=["celery", "lambda"],
    ) as w:
        yield w


@pytest.fixture
def worker(celery_worker_thread: Any, transactional_db: Any) -> Any:
    return celery_worker_thread


@pytest.fixture
def deploy(nodes: list[Any], worker: Any, docker_clean: dict[str, Any]) -> Callable[..., Any]:
    """Deploy and wait until done; every ERU container is removed after the test."""

    from clusters import services
    from clusters.models import Deployment

    def run(*command: str, node: str = "node1", count: int = 1, **fields: Any) -> Any:
        data = {"app": "sw", "entrypoint": "e", "image": IMAGE, "command": list(command), "count": count}
        data.update(
            {"cpu_limit": 0.1, "cpu_bind": False, "memory_limit": "16M", "node_names": [node], **fields}
        )
        d = services.deployment_create(
            actor=services.SYSTEM, spec=services.deployment_validate(pod=nodes[0].pod, data=data)
        )
        d = wait_for(lambda: (row := Deployment.objects.get(pk=d.pk)).is_final and row)
        assert d.state == Deployment.State.DONE
        workloads = list(d.workloads.select_related("node").order_by("pk"))
        return workloads[0] if count == 1 else workloads

    return run


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy; fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")

"""Fixtures for the tests of this directory that need only the database (the fast tier: the portal's
views and admin, deploy validation, planning). Names carry a `ui_` prefix so they never shadow the
shared fixtures of tests/conftest.py, which the `services` tests here use.

Nodes are plain rows here (no Docker needed to plan or to render a page); liveness comes from
`ui_alive`, a stand-in for etcd's heartbeat keys that the test fills in. Tests with the `services`
mark check the same against the real etcd and dockerd."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from clusters import etcd, queue
from clusters.models import Node, Pod, PodMember
from tests.factories import NodeFactory, PodFactory, PodMemberFactory


@pytest.fixture
def ui_alive(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Names of nodes with a heartbeat; add to the set to bring a node up."""
    alive: set[str] = set()
    monkeypatch.setattr(etcd, "alive_nodes", lambda **_: set(alive))
    return alive


@pytest.fixture
def ui_pod(db: Any) -> Pod:
    """Pod `eru` as a plain row. Tests run inside a transaction that never commits, so nothing a
    service queues for after the commit (etcd pushes, Celery tasks) runs; see `ui_enqueued`."""
    return PodFactory()


@pytest.fixture
def ui_enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The tasks services hand to the workers, recorded instead of sent: (task name, *args)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        queue, "enqueue_each", lambda name, batch, **_: calls.extend((name, *a) for a in batch)
    )
    return calls


@pytest.fixture
def ui_members(ui_pod: Pod, deployer: Any, viewer: Any) -> Pod:
    """Pod `eru` with dora as deployer and vic as viewer (olga stays an outsider)."""
    PodMemberFactory(pod=ui_pod, user=deployer, role=PodMember.Role.DEPLOYER)
    PodMemberFactory(pod=ui_pod, user=viewer, role=PodMember.Role.VIEWER)
    return ui_pod


@pytest.fixture
def ui_node(ui_pod: Pod) -> Callable[..., Node]:
    """Make a node row (tests.factories.NodeFactory: 2 cores of 100 pieces, 4 GiB) in pod `eru`."""

    def make(name: str, *, node_pod: Pod | None = None, **fields: Any) -> Node:
        return NodeFactory(name=name, pod=node_pod or ui_pod, **fields)

    return make


@pytest.fixture
def ui_client() -> Callable[[Any], Client]:
    """A browser session logged in as the given user."""

    def login(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return login

"""The HA tests drive the cluster of `bin/eru --ha up` (var/ha-cluster) from outside, over HTTP, Docker
and etcd, like an operator: they need no Django of their own, so the project-wide autouse fixtures
that set Django settings and clean etcd are replaced here by no-ops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _fast_passwords() -> None:
    """No passwords here."""


@pytest.fixture(autouse=True)
def _etcd_isolated() -> Iterator[None]:
    """The HA cluster's own etcd is not the tests' one."""
    yield

"""The embedded package needs no Django and no etcd: the project-wide autouse fixtures that set
Django settings and clean etcd are replaced here by no-ops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _fast_passwords() -> None:
    """No passwords here."""


@pytest.fixture(autouse=True)
def _etcd_isolated() -> Iterator[None]:
    """No etcd keys of the app here."""
    yield

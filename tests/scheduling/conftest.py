"""The scheduling tests are pure: they need neither Django nor the services of bin/test.

The project-wide autouse fixture that isolates etcd is overridden here (same name, closer
conftest), so ``pytest tests/scheduling -p no:django`` runs without settings or services.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _etcd_isolated() -> None:
    """Nothing to isolate: the scheduling engine never talks to etcd."""


@pytest.fixture(autouse=True, scope="session")
def _fast_passwords() -> None:
    """No users here: nothing to hash (and no Django settings to touch under -p no:django)."""

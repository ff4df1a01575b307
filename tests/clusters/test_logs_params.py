"""A log request's parameters, checked before any node is asked: a clear 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tail": "²"}, "tail"),
        ({"tail": "1001"}, "tail"),
        ({"since": "99999999d"}, "since"),
        ({"since": "x"}, "since"),
    ],
)
def test_bad_merged_log_parameters_are_400s(admin_user: Any, params: dict[str, str], field: str) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    answer = api.get("/api/workloads/logs/", {"app": "web", **params})
    assert answer.status_code == 400
    assert field in answer.json()

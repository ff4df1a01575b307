"""Password guessing is counted per client on every door that takes a password: the portal's and the
admin's login forms (per address) and the gRPC door (per account). Without Redis (the fast tier) the
count is this process's, which is what these tests read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from clusters import attempts, principals

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    principals.forget()
    attempts.SHARED.clear()
    yield
    attempts.SHARED.clear()
    attempts.SHARED.down_until = 0.0


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_a_login_form_takes_the_rate_then_answers_429_without_checking(path: str, admin_user: Any) -> None:
    client = Client()
    for i in range(attempts.RATE):
        r = client.post(path, {"username": "admin", "password": f"guess-{i}"})
        assert r.status_code == 200, i  # the form again, with its error
    r = client.post(path, {"username": "admin", "password": "pw-admin-1"})  # the right one: not checked
    assert r.status_code == 429
    assert "Too many login attempts" in r.content.decode()
    assert "_auth_user_id" not in client.session
    assert Client().get(path).status_code == 200  # the form itself is not counted


def test_the_grpc_door_counts_password_guesses_per_account(admin_user: Any) -> None:
    for i in range(attempts.RATE):
        assert principals.authenticate([("admin", f"guess-{i}")]) is None
    principals.forget()
    assert principals.authenticate([("admin", "pw-admin-1")]) is None  # locked for the window
    attempts.SHARED.clear()
    principals.forget()
    assert principals.authenticate([("admin", "pw-admin-1")]) is not None


def test_a_right_password_at_the_grpc_door_costs_no_attempt(admin_user: Any) -> None:
    for _ in range(attempts.RATE + 5):
        principals.forget()  # no cache: every call checks the password again
        assert principals.authenticate([("admin", "pw-admin-1")]) is not None
    assert not attempts.blocked("grpc", "admin")

"""API tokens: an expiry (an expired one is a 401 saying when) and a read-only scope (reads only, on the
API and the gRPC door), made by their user through the API and on the token page, listed and revoked;
the password exchange's throttle counted per client across web processes (services tier)."""

from __future__ import annotations

import http.client
import io
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from agents import grpc_server
from clusters import authentication, principals, services
from clusters.api_tokens import TokenExchangeThrottle
from clusters.models import ApiToken, AuditEvent, Pod
from clusters.services.tokens import EXCHANGE_EXPIRES_IN, MAX_EXPIRES_IN
from erucli.client import Client as CliClient
from erucli.main import main as erucli
from protocol import core_pb2 as pb

HX = {"HX-Request": "true"}
DEAD_REDIS = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/1",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    },
}


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    """No throttle counts or cached gRPC credentials from another test."""
    principals.forget()
    cache.clear()
    TokenExchangeThrottle.cache.clear()
    yield
    cache.clear()
    TokenExchangeThrottle.cache.clear()
    TokenExchangeThrottle.cache.down_until = 0.0


def _api(plaintext: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return api


def _token(user: Any, **kw: Any) -> tuple[ApiToken, str]:
    return services.token_create(actor=services.SYSTEM, user=user, name=kw.pop("name", "t"), **kw)


def _about(at: str | None, seconds: int) -> bool:
    assert at is not None
    expected = timezone.now() + timedelta(seconds=seconds)
    return abs((datetime.fromisoformat(at) - expected).total_seconds()) < 60


# --- expiry ----------------------------------------------------------------------------------------
def test_an_expired_token_is_a_401_saying_when_and_is_not_marked_used(deployer: Any) -> None:
    token, plaintext = _token(deployer, expires_in=3600)
    assert _api(plaintext).get("/api/pods/").status_code == 200
    past = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=past, last_used_at=None)
    answer = _api(plaintext).get("/api/pods/")
    assert answer.status_code == 401
    assert answer.json()["detail"] == f"token expired on {past:%Y-%m-%d %H:%M:%S} UTC"
    assert answer["WWW-Authenticate"] == "Token"
    assert ApiToken.objects.get(pk=token.pk).last_used_at is None
    listed = _api(_token(deployer, name="fresh")[1]).get("/api/auth/tokens/").json()["results"]
    shown = {t["name"]: t for t in listed}
    assert shown["t"]["expired"] is True
    assert shown["t"]["expires_at"] is not None
    assert (shown["fresh"]["expired"], shown["fresh"]["expires_at"]) == (False, None)


def test_an_expired_token_opens_no_grpc_door(deployer: Any) -> None:
    token, plaintext = _token(deployer, expires_in=60)
    assert principals.authenticate([("token", plaintext)]) is not None
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    principals.forget()  # the door's cache lasts principals.CACHE_TTL seconds
    assert principals.authenticate([("token", plaintext)]) is None
    assert principals.authenticate([("dora", plaintext)]) is None


# --- read-only -------------------------------------------------------------------------------------
def test_a_read_only_token_reads_and_every_write_is_a_403_changing_nothing(
    admin_user: Any, ui_pod: Pod, ui_node: Callable[..., Any], ui_alive: set[str]
) -> None:
    ui_node("node1")
    token, plaintext = _token(admin_user, name="ro", read_only=True)
    ro = _api(plaintext)
    assert ro.get("/api/pods/").json()["results"][0]["name"] == "eru"
    assert ro.get("/api/nodes/node1/").status_code == 200
    assert ro.head("/api/pods/").status_code == 200
    assert ro.options("/api/pods/").status_code == 200
    assert ro.get("/api/auth/tokens/").status_code == 200
    assert ro.get("/metrics").status_code == 200  # an administrator's scrape is a read
    events = AuditEvent.objects.count()
    writes = [
        ro.post("/api/pods/", {"name": "other"}, format="json"),
        ro.delete("/api/pods/eru/"),
        ro.patch("/api/nodes/node1/", {"labels": {"a": "1"}}, format="json"),
        ro.put("/api/nodes/node1/", {"labels": {"a": "1"}}, format="json"),
        ro.post(
            "/api/deployments/", {"pod": "eru", "app": "a", "entrypoint": "e", "image": "x"}, format="json"
        ),
        ro.post("/api/auth/tokens/", {"name": "wider"}, format="json"),  # no way out of the scope
        ro.delete(f"/api/auth/tokens/{token.pk}/"),
    ]
    for answer in writes:
        assert answer.status_code == 403, answer.content
        assert answer.json()["detail"].startswith("this token is read-only")
    assert list(Pod.objects.values_list("name", flat=True)) == ["eru"]
    assert ApiToken.objects.count() == 1
    assert AuditEvent.objects.count() == events
    full = _api(_token(admin_user, name="rw")[1])  # the same user with a full token may write
    assert full.post("/api/pods/", {"name": "other"}, format="json").status_code == 201


class _Aborted(Exception):
    pass


class _Context:
    """What the gRPC door reads of a call: its metadata; abort raises, as grpc's does."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata
        self.code: Any = None
        self.details = ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def abort(self, code: Any, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted(details)


def test_a_read_only_token_makes_only_reads_at_the_grpc_door(
    admin_user: Any, ui_pod: Pod, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_server.base, "close_old_connections", lambda: None)  # the test's transaction
    _, plaintext = _token(admin_user, read_only=True)
    assert principals.authenticate([("admin", plaintext)]).read_only  # type: ignore[union-attr]
    assert principals.authenticate([("token", plaintext)]).read_only  # type: ignore[union-attr]
    door = grpc_server.CoreService()
    assert door.Info(pb.Empty(), _Context([("token", plaintext)])).version.startswith("eru-portal")
    context = _Context([("token", plaintext)])
    with pytest.raises(_Aborted):
        door.SetNodeStatus(pb.SetNodeStatusOptions(nodename="node1", ttl=9), context)
    assert context.code.name == "PERMISSION_DENIED"
    assert context.details == "this token is read-only: SetNodeStatus is a write"
    _, full = _token(admin_user)
    assert not principals.authenticate([("admin", full)]).read_only  # type: ignore[union-attr]


# --- made through the API --------------------------------------------------------------------------
def test_a_user_makes_a_token_through_the_api_and_sees_its_secret_once(
    deployer: Any, django_assert_num_queries: Any
) -> None:
    api = _api(_token(deployer, name="laptop")[1])
    made = api.post(
        "/api/auth/tokens/", {"name": "ci", "expires_in": 86400, "read_only": True}, format="json"
    )
    assert made.status_code == 201
    assert made["Cache-Control"] == "no-store"
    body = made.json()
    assert body["token"].startswith("eru_")
    assert (body["name"], body["read_only"], body["expired"]) == ("ci", True, False)
    assert _about(body["expires_at"], 86400)
    token = ApiToken.objects.get(pk=body["id"])
    assert token.digest == authentication.digest(body["token"])
    assert body["prefix"] == body["token"][4:12]
    with django_assert_num_queries(3):  # the token (marked used a moment ago), the count, the page
        listed = api.get("/api/auth/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["ci", "laptop"]
    assert all("token" not in t for t in listed)  # the secret: that once only
    new = _api(body["token"])
    assert new.get("/api/pods/").status_code == 200
    assert new.post("/api/auth/tokens/", {"name": "x"}, format="json").status_code == 403
    event = AuditEvent.objects.get(action="token.create", target_id=str(token.pk))
    assert (event.actor, event.via) == (deployer, "api")
    assert event.after["read_only"] is True
    assert event.after["expires_at"] == token.expires_at.isoformat()  # type: ignore[union-attr]
    forever = api.post("/api/auth/tokens/", {"name": "forever"}, format="json").json()
    assert (forever["expires_at"], forever["read_only"]) == (None, False)  # the default: never


@pytest.mark.parametrize("expires_in", [0, 59, MAX_EXPIRES_IN + 1, -5, "soon"])
def test_an_expiry_out_of_bounds_is_a_400_naming_the_field(deployer: Any, expires_in: Any) -> None:
    api = _api(_token(deployer)[1])
    answer = api.post("/api/auth/tokens/", {"name": "x", "expires_in": expires_in}, format="json")
    assert answer.status_code == 400
    assert list(answer.json()) == ["expires_in"]
    if isinstance(expires_in, int):
        assert str(MAX_EXPIRES_IN) in answer.json()["expires_in"][0]
    assert ApiToken.objects.count() == 1
    assert not AuditEvent.objects.filter(action="token.create", actor=deployer)


def test_the_password_exchange_takes_an_expiry_and_a_scope(deployer: Any) -> None:
    exchange = APIClient()
    login = {"username": "dora", "password": "pw-dora-1"}
    body = exchange.post("/api/auth/token/", login, format="json").json()
    assert body["name"] == "cli"
    assert _about(body["expires_at"], EXCHANGE_EXPIRES_IN)  # erucli login's default: 30 days
    assert body["read_only"] is False
    body = exchange.post(
        "/api/auth/token/", {**login, "expires_in": 3600, "read_only": True}, format="json"
    ).json()
    assert _about(body["expires_at"], 3600)
    assert body["read_only"] is True
    assert (
        exchange.post("/api/auth/token/", {**login, "expires_in": None}, format="json").json()["expires_at"]
        is None
    )
    too_long = exchange.post("/api/auth/token/", {**login, "expires_in": MAX_EXPIRES_IN * 2}, format="json")
    assert too_long.status_code == 400
    assert "expires_in" in too_long.json()
    assert ApiToken.objects.filter(user=deployer).count() == 3


@override_settings(CACHES=DEAD_REDIS)
def test_without_its_shared_cache_the_throttle_counts_in_its_process_and_says_so(
    deployer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    TokenExchangeThrottle.cache.down_until = 0.0
    client = APIClient()
    with caplog.at_level(logging.WARNING, logger="clusters.attempts"):
        for i in range(20):
            wrong = {"username": "dora", "password": f"guess-{i}"}
            assert client.post("/api/auth/token/", wrong, format="json").status_code == 401
    assert "throttle: cache 'throttle' unreachable" in caplog.text
    said = [r for r in caplog.records if r.name == "clusters.attempts"]
    assert len(said) == 1  # once, not per attempt: it is tried again after RETRY seconds
    right = {"username": "dora", "password": "pw-dora-1"}
    assert client.post("/api/auth/token/", right, format="json").status_code == 429
    assert not ApiToken.objects.exists()


# --- the token page --------------------------------------------------------------------------------
def test_the_page_lists_one_s_own_tokens_only(
    deployer: Any, viewer: Any, ui_client: Callable[[Any], Client], django_assert_num_queries: Any
) -> None:
    mine, _ = _token(deployer, name="laptop", expires_in=7 * 86400, read_only=True)
    _token(deployer, name="ci")
    _token(viewer, name="vics-secret-thing")
    expired, _ = _token(deployer, name="old", expires_in=60)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    client = ui_client(deployer)
    client.get(reverse("clusters:token-list"))  # the session, warmed
    with django_assert_num_queries(3):  # session, user, tokens
        page = client.get(reverse("clusters:token-list")).content.decode()
    assert "<td>laptop</td>" in page
    assert "<td>ci</td>" in page
    assert "vics-secret-thing" not in page
    assert f"eru_{mine.prefix}…" in page
    assert '<span class="badge">read-only</span>' in page
    assert '<span class="badge lost">expired' in page
    assert f'href="{reverse("clusters:token-list")}"' in page  # in the navigation


def test_the_page_makes_a_token_and_shows_its_secret_once(
    deployer: Any, ui_client: Callable[[Any], Client]
) -> None:
    client = ui_client(deployer)
    url = reverse("clusters:token-list")
    made = client.post(url, {"name": "ci", "expires": "30d", "read_only": "on"})
    assert made.status_code == 200
    assert made["Cache-Control"] == "no-store"
    (secret,) = re.findall(r'<code id="token-secret">(eru_[^<]+)</code>', made.content.decode())
    token = ApiToken.objects.get(digest=authentication.digest(secret))
    assert (token.user, token.name, token.read_only) == (deployer, "ci", True)
    assert token.expires_at is not None
    assert abs((token.expires_at - timezone.now()).total_seconds() - 30 * 86400) < 60
    assert "Copy" in made.content.decode()
    assert secret not in client.get(url).content.decode()  # once
    event = AuditEvent.objects.get(action="token.create")
    assert (event.actor, event.via) == (deployer, "ui")
    panel = client.post(
        url, {"name": "laptop", "expires": "never"}, headers={**HX, "HX-Target": "token-panel"}
    )
    html = panel.content.decode()
    assert html.lstrip().startswith('<div id="token-panel">')  # only the panel, to htmx
    (secret,) = re.findall(r'<code id="token-secret">(eru_[^<]+)</code>', html)
    assert ApiToken.objects.get(digest=authentication.digest(secret)).expires_at is None
    assert "<td>laptop</td>" in html
    assert "<td>ci</td>" in html


def test_a_bad_form_changes_nothing_and_names_the_field(
    deployer: Any, ui_client: Callable[[Any], Client]
) -> None:
    client = ui_client(deployer)
    url = reverse("clusters:token-list")
    answer = client.post(url, {"name": "x" * 65, "expires": "30d"})
    assert "at most 64 characters" in answer.content.decode()
    answer = client.post(url, {"name": "x", "expires": "forever"})
    assert "Select a valid choice" in answer.content.decode()
    assert not ApiToken.objects.exists()
    assert 'id="token-secret"' not in answer.content.decode()


def test_the_page_revokes_one_s_own_token_only(
    deployer: Any, viewer: Any, ui_client: Callable[[Any], Client]
) -> None:
    mine, plaintext = _token(deployer, name="laptop")
    theirs, _ = _token(viewer, name="vic")
    client = ui_client(deployer)
    page = client.get(reverse("clusters:token-list")).content.decode()
    assert 'hx-confirm="Revoke token laptop' in page
    assert client.post(reverse("clusters:token-revoke", args=[theirs.pk])).status_code == 404
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    answer = client.post(reverse("clusters:token-revoke", args=[mine.pk]), headers=HX)
    assert answer["HX-Location"].startswith('{"path": "' + reverse("clusters:token-list"))
    assert not ApiToken.objects.filter(pk=mine.pk).exists()
    assert _api(plaintext).get("/api/pods/").status_code == 401
    event = AuditEvent.objects.get(action="token.revoke")
    assert (event.actor, event.via, event.before["name"]) == (deployer, "ui", "laptop")
    assert "laptop" in client.get(reverse("clusters:token-list")).content.decode()  # the message
    second, _ = _token(deployer, name="second")
    answer = client.post(reverse("clusters:token-revoke", args=[second.pk]))  # without JavaScript
    assert answer["Location"] == reverse("clusters:token-list")


def test_the_page_is_for_those_logged_in(client: Client, db: Any) -> None:
    answer = client.get(reverse("clusters:token-list"))
    assert answer.status_code == 302
    assert answer["Location"].startswith(reverse("login"))
    assert client.post(reverse("clusters:token-revoke", args=[1])).status_code == 302


# --- erucli login ----------------------------------------------------------------------------------
def test_erucli_login_sends_the_expiry_and_the_scope(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    sent: list[Any] = []

    def post(client: CliClient, method: str, path: str, *, json: Any = None, **kw: Any) -> Any:
        sent.append((path, json))
        return {"token": "eru_x", "expires_at": "2030-01-01T00:00:00Z", "read_only": json["read_only"]}

    monkeypatch.setattr(CliClient, "request", post)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert erucli(["login", "-u", "dora", "--password-stdin", "--expires-in", "12h", "--read-only"]) == 0
    assert sent[-1][0] == "/api/auth/token/"
    assert (sent[-1][1]["expires_in"], sent[-1][1]["read_only"]) == (12 * 3600, True)
    assert "(read-only)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert erucli(["login", "-u", "dora", "--password-stdin"]) == 0
    assert (sent[-1][1]["expires_in"], sent[-1][1]["read_only"]) == (30 * 86400, False)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert erucli(["login", "-u", "dora", "--password-stdin", "--expires-in", "never"]) == 0
    assert sent[-1][1]["expires_in"] is None
    assert erucli(["login", "-u", "dora", "--expires-in", "soon"]) == 2
    assert "expected a duration like 30d" in capsys.readouterr().err


# --- the throttle, across two web processes (services tier: Redis) -------------------------------
@pytest.mark.services
def test_two_web_processes_share_the_exchange_throttle(transactional_db: Any, tmp_path: Path) -> None:
    from tests.web import gunicorn

    # /metrics (allowed from here) names the worker that answers; a long keep-alive keeps each
    # connection on its worker.
    env = {"ERU_METRICS_ALLOW": "127.0.0.1", "GUNICORN_CMD_ARGS": "--keep-alive 60"}
    with gunicorn(tmp_path, workers=2, **env) as address:
        host, _, port = address.partition(":")
        by_process: dict[str, http.client.HTTPConnection] = {}  # kept-alive connections, one per worker
        for _ in range(60):
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            c.request("GET", "/metrics")
            answer = c.getresponse()
            answer.read()
            assert answer.status == 200
            pid = answer.getheader("X-Eru-Process", "")
            if pid in by_process:
                c.close()
            else:
                by_process[pid] = c
            if len(by_process) == 2:
                break
        assert len(by_process) == 2, "both web processes answered"
        connections = list(by_process.values())
        sockets = [c.sock for c in connections]

        def attempt(c: http.client.HTTPConnection) -> int:
            """An attempt the throttle counts (it counts before the view reads the body): an empty
            one, a 400 at once, so no password is hashed."""
            c.request("POST", "/api/auth/token/", "{}", {"Content-Type": "application/json"})
            answer = c.getresponse()
            answer.read()
            return answer.status

        for i in range(20):  # ten on each worker: each alone would allow another ten
            assert attempt(connections[i % 2]) == 400, i
        assert [c.sock for c in connections] == sockets  # the same connections: the same workers
        assert attempt(connections[0]) == 429
        assert attempt(connections[1]) == 429
        for c in connections:
            c.close()

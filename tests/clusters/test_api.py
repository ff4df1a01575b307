"""The REST API with token auth: deploy through it and the real worker, poll progress, check
Docker/etcd/DB; bad input is a 400 naming the field and changes nothing; permissions hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from clusters import etcd, services, sync
from clusters.api_tokens import TokenExchangeThrottle
from clusters.models import ApiToken, AuditEvent, Deployment, Node, Pod, PodMember, Workload
from tests.conftest import IMAGE, NODES, wait_for
from tests.factories import DeploymentFactory, PodMemberFactory, WorkloadFactory

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    """Throttle counters live in the caches (the shared one, Redis): every test starts (and leaves)
    with none."""
    cache.clear()
    TokenExchangeThrottle.cache.clear()
    yield
    cache.clear()
    TokenExchangeThrottle.cache.clear()


def _client(user: Any) -> APIClient:
    _, token = services.token_create(actor=services.SYSTEM, user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_token_is_stored_hashed_and_required(admin_user: Any, pod: Any) -> None:
    _, plaintext = services.token_create(actor=services.SYSTEM, user=admin_user, name="t")
    assert not ApiToken.objects.filter(digest__contains=plaintext).exists()
    assert APIClient().get("/api/pods/").status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token eru_wrong")
    assert bad.get("/api/pods/").status_code == 401
    good = APIClient()
    good.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert good.get("/api/pods/").json()["results"][0]["name"] == "eru"


def test_password_exchange_gives_a_token(admin_user: Any, transactional_db: Any) -> None:
    response = APIClient().post(
        "/api/auth/token/", {"username": "admin", "password": "pw-admin-1"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["token"].startswith("eru_")
    wrong = APIClient().post("/api/auth/token/", {"username": "admin", "password": "nope"}, format="json")
    assert wrong.status_code == 401


def test_deploy_through_the_api_and_poll_progress(
    admin_user: Any, nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    api = _client(admin_user)
    body = {
        "pod": "eru",
        "app": "api",
        "entrypoint": "web",
        "image": IMAGE,
        "command": ["sleep", "600"],
        "count": 3,
        "cpu_limit": 0.2,
        "memory_limit": "16M",
        "cpu_bind": False,
    }
    response = api.post("/api/deployments/", body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert sum(created["plan"].values()) == 3
    assert set(created["plan"]) <= set(NODES)
    done = wait_for(
        lambda: (r := api.get(f"/api/deployments/{created['id']}/").json())["state"] != "running" and r
    )
    assert done["state"] == "done"
    assert done["succeeded"] == 3
    assert done["percent"] == 100
    wait_for(lambda: sync.check().count == 0)  # the mirror is written just after each commit
    workloads = api.get("/api/workloads/", {"app": "api"}).json()["results"]
    assert len(workloads) == 3
    assert {w["state"] for w in workloads} == {"running"}
    for w in workloads:
        container = docker_clean[w["node"]].containers.get(w["container_id"])
        assert container.attrs["HostConfig"]["CpuQuota"] == 20000
        assert etcd.workload_key(w["container_id"]) in etcd.get_prefix(etcd.key("/workloads/"))
    event = AuditEvent.objects.get(action="deployment.create")
    assert event.via == "api"
    assert event.actor == admin_user
    assert event.request_id
    nodes_view = api.get("/api/nodes/").json()["results"]
    assert {n["name"]: n["available"] for n in nodes_view} == {"node1": True, "node2": True}
    assert sum(n["used_memory"] for n in nodes_view) == 3 * (16 << 20)
    remove = api.delete(f"/api/workloads/{workloads[0]['id']}/")
    assert remove.status_code == 202
    wait_for(lambda: Workload.objects.count() == 2)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"entrypoint": "has_underscore"}, "entrypoint"),
        ({"count": 0}, "count"),
        ({"count": "many"}, "count"),
        ({"memory_limit": "1M"}, "memory_limit"),
        ({"memory_limit": True}, "memory_limit"),
        ({"cpu_limit": -2}, "cpu_limit"),
        ({"strategy": "BEST"}, "strategy"),
        ({"count": 999}, "count"),
        ({"node_names": ["ghost"]}, "node_names"),
    ],
)
def test_bad_deploy_is_a_400_with_field_errors_and_changes_nothing(
    admin_user: Any, nodes: list[Any], change: dict[str, Any], field: str
) -> None:
    api = _client(admin_user)
    body = {"pod": "eru", "app": "x", "entrypoint": "y", "image": IMAGE, "cpu_bind": False, **change}
    before = AuditEvent.objects.count()
    response = api.post("/api/deployments/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Deployment.objects.exists()
    assert not Workload.objects.exists()
    assert AuditEvent.objects.count() == before


def test_plan_is_a_dry_run(admin_user: Any, nodes: list[Any]) -> None:
    api = _client(admin_user)
    body = {
        "pod": "eru",
        "app": "x",
        "entrypoint": "y",
        "image": IMAGE,
        "count": 4,
        "cpu_limit": 0.1,
        "cpu_bind": False,
        "strategy": "EACH",
        "nodes_limit": 2,
        "memory_limit": "8M",
    }
    response = api.post("/api/deployments/plan/", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"plan": {"node1": 4, "node2": 4}, "total": 8}
    assert not Deployment.objects.exists()


def test_members_and_outsiders(deployer: Any, viewer: Any, outsider: Any, nodes: list[Any]) -> None:
    pod = nodes[0].pod
    PodMemberFactory(pod=pod, user=deployer, role=PodMember.Role.DEPLOYER)
    PodMemberFactory(pod=pod, user=viewer, role=PodMember.Role.VIEWER)
    body = {
        "pod": "eru",
        "app": "x",
        "entrypoint": "y",
        "image": IMAGE,
        "count": 1,
        "cpu_limit": 0.1,
        "cpu_bind": False,
    }
    assert _client(outsider).get("/api/pods/").json()["results"] == []
    assert _client(outsider).post("/api/deployments/", body, format="json").status_code == 404
    assert _client(viewer).get("/api/nodes/").status_code == 200
    assert _client(viewer).post("/api/deployments/", body, format="json").status_code == 403
    assert _client(viewer).post("/api/nodes/node1/down/").status_code == 403
    assert _client(deployer).post("/api/pods/", {"name": "mine"}, format="json").status_code == 403
    assert not Deployment.objects.exists()


def test_node_down_via_api_and_openapi_schema(admin_user: Any, nodes: list[Any]) -> None:
    api = _client(admin_user)
    assert api.post("/api/nodes/node1/down/").json()["available"] is False
    assert api.patch("/api/nodes/node1/", {"labels": {"zone": "a"}}, format="json").json()["labels"] == {
        "zone": "a"
    }
    assert api.post("/api/nodes/node1/up/").json()["available"] is True
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/deployments/" in schema.json()["paths"]


def test_list_endpoints_have_bounded_queries(
    admin_user: Any, nodes: list[Any], django_assert_max_num_queries: Any
) -> None:
    for i in range(15):
        WorkloadFactory(node=nodes[i % 2], app="q", entrypoint="e", state=Workload.State.PENDING)
    api = _client(admin_user)
    with django_assert_max_num_queries(6):
        assert len(api.get("/api/workloads/").json()["results"]) == 15
    with django_assert_max_num_queries(6):
        assert len(api.get("/api/nodes/").json()["results"]) == 2


# --- query parameters and bodies the API must refuse with a 400 -------------------------------------
@pytest.mark.parametrize("value", ["abc", "1.5", "-1", " 1", "1e3"])
def test_workload_filter_by_deployment_must_be_an_id(admin_user: Any, pod: Any, value: str) -> None:
    response = _client(admin_user).get("/api/workloads/", {"deployment": value})
    assert response.status_code == 400, response.content
    assert "deployment" in response.json()


def test_workload_filter_by_deployment_id(admin_user: Any, nodes: list[Any]) -> None:
    d = DeploymentFactory(pod=nodes[0].pod, app="a", entrypoint="e")
    WorkloadFactory(name="a_e_1", node=nodes[0], deployment=d, app="a", entrypoint="e")
    WorkloadFactory(name="a_e_2", node=nodes[0], app="a", entrypoint="e")
    api = _client(admin_user)
    assert [w["name"] for w in api.get("/api/workloads/", {"deployment": d.pk}).json()["results"]] == [
        "a_e_1"
    ]
    assert api.get("/api/workloads/", {"deployment": "9" * 30}).status_code == 400
    for big in ("9" * 30, str(2**63)):  # beyond any id: a 404, not a database overflow
        assert api.get(f"/api/workloads/{big}/").status_code == 404
        assert api.get(f"/api/deployments/{big}/").status_code == 404
        assert api.post(f"/api/workloads/{big}/stop/").status_code == 404


@pytest.mark.parametrize("path", ["", "plan/", "capacity/"])
@pytest.mark.parametrize("body", [[], ["pod", "eru"], "x", 3, None, True])
def test_deploy_bodies_that_are_not_objects_are_a_400(
    admin_user: Any, pod: Any, path: str, body: Any
) -> None:
    api = _client(admin_user)
    events = AuditEvent.objects.count()
    response = api.post(f"/api/deployments/{path}", body, format="json")
    assert response.status_code == 400, response.content
    assert not Deployment.objects.exists()
    assert AuditEvent.objects.count() == events


def test_form_encoded_capacity_keeps_list_values(admin_user: Any, nodes: list[Any]) -> None:
    api = _client(admin_user)
    body = {"pod": "eru", "cpu_limit": "0.1", "memory_limit": "16M", "node_names": ["node1", "node2"]}
    response = api.post("/api/deployments/capacity/", body)  # multipart, like an HTML form
    assert response.status_code == 200, response.content
    assert set(response.json()["capacity"]) == {"node1", "node2"}
    one = api.post("/api/deployments/capacity/", {**body, "node_names": ["node2"]}, format="multipart")
    assert set(one.json()["capacity"]) == {"node2"}


# --- names with dots ---------------------------------------------------------------------------------
def test_pods_and_nodes_with_dots_in_their_names_are_addressable(
    admin_user: Any, pod: Any, tls: dict[str, str]
) -> None:
    services.pod_add(actor=services.SYSTEM, name="a.b")
    services.node_add(
        actor=services.SYSTEM, pod=pod, name="node1.example.com", endpoint=NODES["node1"], **tls
    )
    api = _client(admin_user)
    assert api.get("/api/pods/a.b/").json()["name"] == "a.b"
    assert api.get("/api/nodes/node1.example.com/").json()["name"] == "node1.example.com"
    down = api.post("/api/nodes/node1.example.com/down/")
    assert down.status_code == 200
    assert down.json()["bypass"] is True
    assert Node.objects.get(name="node1.example.com").bypass
    assert api.get("/api/pods/a.b.json").json()["name"] == "a.b"  # format suffixes still work
    assert api.delete("/api/pods/a.b/").status_code == 204
    assert not Pod.objects.filter(name="a.b").exists()


# --- API tokens: list and revoke -------------------------------------------------------------------
def test_tokens_are_listed_to_their_owner_and_revoked(deployer: Any, viewer: Any, pod: Any) -> None:
    mine, plaintext = services.token_create(actor=services.SYSTEM, user=deployer, name="laptop")
    spare, spare_plaintext = services.token_create(actor=services.SYSTEM, user=deployer, name="ci")
    theirs, _ = services.token_create(actor=services.SYSTEM, user=viewer, name="vic")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    listed = api.get("/api/auth/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"laptop", "ci"}
    assert set(listed[0]) == {
        "id", "name", "prefix", "created_at", "last_used_at", "expires_at", "expired", "read_only"
    }  # fmt: skip
    assert api.delete(f"/api/auth/tokens/{theirs.pk}/").status_code == 404  # not theirs to see
    assert ApiToken.objects.filter(pk=theirs.pk).exists()

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {spare_plaintext}")
    assert other.get("/api/pods/").status_code == 200
    assert api.delete(f"/api/auth/tokens/{spare.pk}/").status_code == 204
    assert other.get("/api/pods/").status_code == 401
    event = AuditEvent.objects.get(action="token.revoke")
    assert (event.actor, event.via, event.target_id) == (deployer, "api", str(spare.pk))
    assert event.before == {"user": "dora", "name": "ci", "prefix": spare.prefix}

    assert api.delete(f"/api/auth/tokens/{mine.pk}/").status_code == 204  # its own token, too
    assert api.get("/api/auth/tokens/").status_code == 401


def test_only_the_owner_or_staff_may_revoke_a_token(
    deployer: Any, viewer: Any, admin_user: Any, pod: Any
) -> None:
    token, _ = services.token_create(actor=services.SYSTEM, user=deployer, name="t")
    with pytest.raises(PermissionDenied):
        services.token_revoke(actor=services.Actor(user=viewer, via="api"), token=token)
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert not AuditEvent.objects.filter(action="token.revoke")
    services.token_revoke(actor=services.Actor(user=admin_user, via="api"), token=token)
    assert not ApiToken.objects.filter(pk=token.pk).exists()


# --- password exchange is throttled ----------------------------------------------------------------
def test_password_exchange_is_throttled(admin_user: Any, transactional_db: Any) -> None:
    client = APIClient()
    for i in range(20):
        wrong = {"username": "admin", "password": f"guess-{i}"}
        # a client-chosen X-Forwarded-For must not count as another client
        response = client.post("/api/auth/token/", wrong, format="json", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
        assert response.status_code == 401, (i, response.content)
    right = {"username": "admin", "password": "pw-admin-1"}
    response = client.post("/api/auth/token/", right, format="json", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == 429
    assert "Retry-After" in response
    assert not ApiToken.objects.exists()
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.7").post("/api/auth/token/", right, format="json")
    assert elsewhere.status_code == 201


# --- outsiders and viewers -------------------------------------------------------------------------
@pytest.fixture
def two_pods(nodes: list[Any], deployer: Any, viewer: Any) -> dict[str, Any]:
    """Pod eru (dora deploys, vic views) with a running workload of a deployment, and pod `other`
    (dora deploys there only) with a workload on the same node."""
    pod = nodes[0].pod
    other = services.pod_add(actor=services.SYSTEM, name="other")
    PodMemberFactory(pod=pod, user=viewer, role=PodMember.Role.VIEWER)
    PodMemberFactory(pod=other, user=deployer, role=PodMember.Role.DEPLOYER)
    d = DeploymentFactory(pod=pod)
    w = WorkloadFactory(name="web_main_aaaaaa", node=nodes[0], deployment=d)
    return {"pod": pod, "deployment": d, "workload": w}


def test_outsiders_see_nothing_and_touch_nothing(
    two_pods: dict[str, Any], outsider: Any, deployer: Any
) -> None:
    w, d = two_pods["workload"], two_pods["deployment"]
    clients = {user: _client(user) for user in (outsider, deployer)}  # deployer: of pod `other` only
    events = AuditEvent.objects.count()
    assert AuditEvent.objects.filter(pod=two_pods["pod"]).exists()
    for user, api in clients.items():
        assert api.get("/api/workloads/").json()["results"] == []
        assert api.get("/api/workloads/", {"deployment": d.pk}).json()["results"] == []
        assert api.get("/api/deployments/").json()["results"] == []
        assert api.get(f"/api/workloads/{w.pk}/").status_code == 404
        assert api.get(f"/api/deployments/{d.pk}/").status_code == 404
        assert [e["target_name"] for e in api.get("/api/audit/").json()["results"]] == (
            [] if user == outsider else ["other"]
        )
        for verb in ("start", "stop", "restart"):
            assert api.post(f"/api/workloads/{w.pk}/{verb}/").status_code == 404, (user, verb)
        assert api.delete(f"/api/workloads/{w.pk}/").status_code == 404
    assert Workload.objects.get(pk=w.pk).state == Workload.State.RUNNING
    assert AuditEvent.objects.count() == events


def test_viewers_may_look_but_not_operate(two_pods: dict[str, Any], viewer: Any) -> None:
    w = two_pods["workload"]
    api = _client(viewer)
    events = AuditEvent.objects.count()
    assert api.get(f"/api/workloads/{w.pk}/").json()["name"] == "web_main_aaaaaa"
    assert api.get("/api/audit/").json()["results"]
    assert api.post(f"/api/workloads/{w.pk}/stop/").status_code == 403
    assert api.delete(f"/api/workloads/{w.pk}/").status_code == 403
    assert Workload.objects.get(pk=w.pk).state == Workload.State.RUNNING
    assert AuditEvent.objects.count() == events

"""The REST API with token auth: deploy through it and the real worker, poll progress, check
Docker/etcd/DB; bad input is a 400 naming the field and changes nothing; permissions hold."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from clusters import etcd, services
from clusters.models import ApiToken, AuditEvent, Deployment, PodMember, Workload
from tests.conftest import IMAGE, NODES, wait_for

pytestmark = pytest.mark.services


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
    assert response.status_code == 201 and response.json()["token"].startswith("eru_")
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
    assert sum(created["plan"].values()) == 3 and set(created["plan"]) <= set(NODES)
    done = wait_for(
        lambda: (r := api.get(f"/api/deployments/{created['id']}/").json())["state"] != "running" and r
    )
    assert done["state"] == "done" and done["succeeded"] == 3 and done["percent"] == 100
    workloads = api.get("/api/workloads/", {"app": "api"}).json()["results"]
    assert len(workloads) == 3 and {w["state"] for w in workloads} == {"running"}
    for w in workloads:
        container = docker_clean[w["node"]].containers.get(w["container_id"])
        assert container.attrs["HostConfig"]["CpuQuota"] == 20000
        assert etcd.workload_key(w["container_id"]) in etcd.get_prefix(etcd.key("/workloads/"))
    event = AuditEvent.objects.get(action="deploy")
    assert event.via == "api" and event.actor == admin_user and event.request_id
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
    assert not Deployment.objects.exists() and not Workload.objects.exists()
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
    PodMember.objects.create(pod=pod, user=deployer, role=PodMember.Role.DEPLOYER)
    PodMember.objects.create(pod=pod, user=viewer, role=PodMember.Role.VIEWER)
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
    pod = nodes[0].pod
    for i in range(15):
        Workload.objects.create(
            name=f"q_e_{i:06d}", pod=pod, node=nodes[i % 2], app="q", entrypoint="e", image="i"
        )
    api = _client(admin_user)
    with django_assert_max_num_queries(6):
        assert len(api.get("/api/workloads/").json()["results"]) == 15
    with django_assert_max_num_queries(6):
        assert len(api.get("/api/nodes/").json()["results"]) == 2

"""The API's contract (fast tier: rows only, no Docker): errors under /api/ are JSON in DRF's shape,
lists are pages of at most MAX_PAGE_SIZE, every list filters through its FilterSet, a create retried
with the same Idempotency-Key answers the first result (and does the work once), and the OpenAPI
document says all of it — token auth, the error answers, the filters — with Swagger UI served from
local files only."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from clusters import permissions, services
from clusters.idempotency import STALE
from clusters.models import (
    AuditEvent,
    Deployment,
    IdempotentRequest,
    LambdaRun,
    Node,
    Pod,
    PodMember,
    Workload,
)
from clusters.pagination import MAX_PAGE_SIZE
from tests.conftest import IMAGE
from tests.factories import DeploymentFactory, PodFactory, WorkloadFactory


def _client(user: Any) -> APIClient:
    _, token = services.token_create(actor=services.SYSTEM, user=user, name="test")
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def dora(ui_members: Pod, deployer: Any) -> APIClient:
    return _client(deployer)


@pytest.fixture
def admin(admin_user: Any) -> APIClient:
    return _client(admin_user)


@pytest.fixture
def up(ui_node: Callable[..., Node], ui_alive: set[str]) -> list[Node]:
    ui_alive.update({"n1", "n2"})
    return [ui_node("n1"), ui_node("n2")]


@pytest.fixture
def schema(admin: APIClient) -> dict[str, Any]:
    response = admin.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return dict(response.json())


# --- errors are JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope/", "/api/workloads/999999/", "/api/pods/missing/", "/api/x"])
def test_a_404_under_api_is_json(admin: APIClient, path: str) -> None:
    response = admin.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}


def test_a_404_for_an_anonymous_caller_is_json_too(db: Any) -> None:
    response = Client().get("/api/nope/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_405_is_json_and_keeps_allow(admin: APIClient) -> None:
    response = admin.patch("/api/audit/", {}, format="json")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "PATCH" not allowed.'}
    assert "GET" in response["Allow"]


def test_a_500_under_api_is_json(admin: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(user: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(permissions, "visible_audit_events", boom)
    response = admin.get("/api/audit/")
    assert response.status_code == 500
    assert response.json() == {"detail": "A server error occurred."}


def test_pages_outside_api_keep_their_html(db: Any) -> None:
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- pages ---------------------------------------------------------------------------------------


def test_a_page_holds_at_most_max_page_size(admin: APIClient, db: Any) -> None:
    assert admin.get(f"/api/audit/?limit={MAX_PAGE_SIZE}").status_code == 200
    response = admin.get(f"/api/audit/?limit={MAX_PAGE_SIZE + 1}")
    assert response.status_code == 400
    assert f"from 1 to {MAX_PAGE_SIZE}" in response.json()["limit"][0]


def test_members_is_a_plain_list_as_documented(
    admin: APIClient, ui_members: Pod, schema: dict[str, Any]
) -> None:
    body = admin.get("/api/pods/eru/members/").json()
    assert isinstance(body, list)
    assert {m["user"] for m in body} == {"dora", "vic"}
    documented = schema["paths"]["/api/pods/{name}/members/"]["get"]["responses"]["200"]
    assert documented["content"]["application/json"]["schema"]["type"] == "array"


# --- filters -------------------------------------------------------------------------------------


def _names(response: Any, key: str = "name") -> set[Any]:
    assert response.status_code == 200, response.content
    return {row[key] for row in response.json()["results"]}


def test_workloads_filter_by_every_documented_field(admin: APIClient, up: list[Node]) -> None:
    n1, n2 = up
    d = DeploymentFactory(pod=n1.pod)
    a = WorkloadFactory(node=n1, app="web", entrypoint="main", deployment=d, health="healthy")
    b = WorkloadFactory(node=n2, app="api", entrypoint="worker", state=Workload.State.STOPPED)
    for query, expected in [
        ("app=web", {a.name}),
        ("entrypoint=worker", {b.name}),
        ("state=stopped", {b.name}),
        ("health=healthy", {a.name}),
        (f"deployment={d.pk}", {a.name}),
        ("node=n2", {b.name}),
        ("pod=eru", {a.name, b.name}),
        ("pod=other", set()),
        ("app=", {a.name, b.name}),  # empty: no filter
    ]:
        assert _names(admin.get(f"/api/workloads/?{query}")) == expected, query
    for query in ("deployment=0", "deployment=abc", "deployment= 1", f"deployment={2**64}", "state=bogus"):
        assert admin.get(f"/api/workloads/?{query}").status_code == 400, query
    refused = admin.get("/api/workloads/?deployment=0").json()
    assert refused == {"deployment": [f"deployment: must be an integer from 1 to {2**63 - 1}"]}


def test_nodes_filter_by_pod_and_bypass(
    admin: APIClient, up: list[Node], ui_node: Callable[..., Node]
) -> None:
    other = PodFactory(name="other")
    ui_node("n3", node_pod=other, bypass=True)
    assert _names(admin.get("/api/nodes/?pod=eru")) == {"n1", "n2"}
    assert _names(admin.get("/api/nodes/?bypass=true")) == {"n3"}
    assert admin.get("/api/nodes/?pod=missing").status_code == 404  # as before: not an empty list


def test_deployments_pods_and_audit_filter(admin: APIClient, up: list[Node]) -> None:
    pod = up[0].pod
    web = DeploymentFactory(pod=pod, pod_name="eru", app="web")
    DeploymentFactory(pod=pod, pod_name="eru", app="api", state=Deployment.State.FAILED)
    assert _names(admin.get("/api/deployments/?app=web"), "id") == {web.pk}
    assert _names(admin.get("/api/deployments/?state=failed&pod=eru"), "app") == {"api"}
    PodFactory(name="mem", favor=Pod.Favor.MEMORY)
    assert _names(admin.get("/api/pods/?favor=memory")) == {"mem"}
    AuditEvent.objects.create(via="api", action="pod.add", target_type="pod", pod_name="gone")
    AuditEvent.objects.create(via="ui", action="node.add", target_type="node", pod_name="eru")
    assert _names(admin.get("/api/audit/?pod=gone"), "action") == {"pod.add"}
    assert _names(admin.get("/api/audit/?action=node.add&via=ui"), "pod") == {"eru"}


# --- idempotent creates --------------------------------------------------------------------------

BODY = {"pod": "eru", "app": "web", "entrypoint": "main", "image": IMAGE, "count": 2, "cpu_limit": 0.1}


def test_a_retried_deploy_answers_the_first_result_and_deploys_once(
    dora: APIClient, up: list[Node], ui_enqueued: list[Any]
) -> None:
    first = dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201, first.content
    again = dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Deployment.objects.count() == 1
    assert Workload.objects.count() == 2
    assert AuditEvent.objects.filter(action="deployment.create").count() == 1


def test_the_same_key_with_another_body_is_a_422(
    dora: APIClient, up: list[Node], ui_enqueued: list[Any]
) -> None:
    assert dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-2").status_code == 201
    other = dora.post("/api/deployments/", {**BODY, "count": 3}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert Deployment.objects.count() == 1


def test_a_refused_create_keeps_no_key_and_no_key_means_no_replay(
    dora: APIClient, up: list[Node], ui_enqueued: list[Any]
) -> None:
    bad = dora.post("/api/deployments/", {**BODY, "count": 0}, format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert bad.status_code == 400
    assert not IdempotentRequest.objects.exists()  # an error changed nothing: a retry runs anew
    assert dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-3").status_code == 201
    assert dora.post("/api/deployments/", BODY, format="json").status_code == 201
    assert dora.post("/api/deployments/", BODY, format="json").status_code == 201
    assert Deployment.objects.count() == 3


def test_a_retried_lambda_runs_once(dora: APIClient, up: list[Node], ui_enqueued: list[Any]) -> None:
    body = {"pod": "eru", "image": IMAGE, "command": ["echo", "hi"], "timeout": 30}
    first = dora.post("/api/lambdas/", body, format="json", HTTP_IDEMPOTENCY_KEY="run-1")
    assert first.status_code == 201, first.content
    again = dora.post("/api/lambdas/", body, format="json", HTTP_IDEMPOTENCY_KEY="run-1")
    assert (again.status_code, again.json()) == (201, first.json())
    assert LambdaRun.objects.count() == 1


def test_a_retry_while_the_first_runs_is_a_409(
    dora: APIClient, up: list[Node], ui_enqueued: list[Any]
) -> None:
    assert dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-4").status_code == 201
    IdempotentRequest.objects.filter(key="k-4").update(status=0, response=None)  # as while it runs
    busy = dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    assert busy.status_code == 409
    assert "still being answered" in busy.json()["detail"]
    assert Deployment.objects.count() == 1


def test_a_key_whose_first_request_died_is_taken_again(
    dora: APIClient, deployer: Any, up: list[Node], ui_enqueued: list[Any]
) -> None:
    pending = IdempotentRequest.objects.create(
        user=deployer, key="k-dead", method="POST", path="/x/", body_digest=""
    )
    busy = dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-dead")
    assert busy.status_code == 422  # another body, and the first may still be running
    IdempotentRequest.objects.filter(pk=pending.pk).update(
        created_at=timezone.now() - timedelta(seconds=STALE + 1)
    )
    assert (
        dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-dead").status_code == 201
    )
    assert Deployment.objects.count() == 1


def test_keys_are_per_caller(
    dora: APIClient, admin: APIClient, up: list[Node], ui_enqueued: list[Any]
) -> None:
    assert dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert admin.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert Deployment.objects.count() == 2
    assert (
        dora.post("/api/deployments/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="x" * 300).status_code == 400
    )


# --- the schema ----------------------------------------------------------------------------------


def test_the_schema_documents_token_auth(schema: dict[str, Any]) -> None:
    token = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "header", "Authorization")
    assert "Token eru_" in token["description"]
    assert {"tokenAuth": []} in schema["paths"]["/api/workloads/"]["get"]["security"]


def test_the_schema_documents_errors_limits_filters_and_idempotency(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert {"400", "401", "403", "404", "422"} <= set(paths["/api/deployments/"]["post"]["responses"])
    assert "429" in paths["/api/auth/token/"]["post"]["responses"]
    assert {"401", "403", "404"} <= set(paths["/api/workloads/{id}/"]["get"]["responses"])
    assert {"202", "204"} <= set(paths["/api/workloads/{id}/"]["delete"]["responses"])
    assert "ValidationError" in schema["components"]["schemas"]
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]
    params = {p["name"]: p for p in paths["/api/workloads/"]["get"]["parameters"]}
    assert {"app", "entrypoint", "state", "status", "health", "deployment", "pod", "node"} <= set(params)
    assert params["limit"]["schema"]["maximum"] == MAX_PAGE_SIZE
    assert "running" in params["state"]["schema"]["enum"]
    for path, names in [
        ("/api/nodes/", {"pod", "bypass"}),
        ("/api/pods/", {"favor"}),
        ("/api/deployments/", {"pod", "app", "state", "kind"}),
        ("/api/audit/", {"pod", "action", "actor", "via"}),
    ]:
        assert names <= {p["name"] for p in paths[path]["get"]["parameters"]}, path
    create = {p["name"] for p in paths["/api/deployments/"]["post"]["parameters"]}
    assert "Idempotency-Key" in create
    assert "Idempotency-Key" in {p["name"] for p in paths["/api/lambdas/"]["post"]["parameters"]}


def test_swagger_ui_loads_only_local_files(admin: APIClient) -> None:
    response = admin.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
    assets = re.findall(r"""/static/([^"']+\.(?:js|css|png))""", html)
    assert any("swagger-ui" in a for a in assets)
    for asset in assets:
        assert finders.find(asset), asset
    assert Client().get(f"/static/{assets[0]}").status_code == 200  # whitenoise serves it


def test_roles_still_apply_to_filtered_lists(dora: APIClient, up: list[Node]) -> None:
    """A filter narrows what one may see; it never widens it."""
    hidden = PodFactory(name="hidden")
    WorkloadFactory(node=Node.objects.create(name="h1", pod=hidden, endpoint="tcp://h1:2376"), app="web")
    WorkloadFactory(node=up[0], app="web")
    assert {w["pod"] for w in dora.get("/api/workloads/?app=web").json()["results"]} == {"eru"}
    assert dora.get("/api/nodes/?pod=hidden").status_code == 404
    assert PodMember.objects.filter(pod=hidden).count() == 0

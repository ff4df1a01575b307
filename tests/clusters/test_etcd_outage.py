"""An etcd outage: writes that need etcd (a deploy reads which nodes are alive) are a 503 with
Retry-After naming etcd, not the caller's 400; reads keep working; the portal's form says why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from clusters import etcd, services
from clusters.api import exception_handler
from clusters.errors import invalid
from clusters.middleware import ApiJsonErrorsMiddleware
from clusters.models import Deployment
from tests.conftest import IMAGE, wait_for

BODY = {
    "pod": "eru",
    "app": "api",
    "entrypoint": "web",
    "image": IMAGE,
    "command": ["sleep", "600"],
    "cpu_limit": 0.1,
    "memory_limit": "16M",
    "cpu_bind": False,
}


def _api(user: Any) -> APIClient:
    _, token = services.token_create(actor=services.SYSTEM, user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.mark.services
def test_a_deploy_while_etcd_is_down_is_a_503_and_reads_keep_working(
    admin_user: Any, nodes: list[Any], cluster: Any, ui_client: Callable[[Any], Client]
) -> None:
    api = _api(admin_user)
    page = ui_client(admin_user)
    cluster.stop("etcd")
    try:
        refused = api.post("/api/deployments/", BODY, format="json")
        assert refused.status_code == 503, refused.json()
        assert refused["Retry-After"] == str(etcd.OUTAGE_RETRY_AFTER)
        assert "etcd" in refused.json()["detail"]
        plan = api.post("/api/deployments/plan/", BODY, format="json")
        assert plan.status_code == 503
        for path in ("/api/pods/", "/api/pods/eru/", "/api/nodes/", "/api/workloads/", "/api/deployments/"):
            assert api.get(path).status_code == 200, path
        for path in ("/", "/pods/eru/", "/pods/eru/deploy/", "/audit/"):
            assert page.get(path).status_code == 200, path
        form = {
            "app": "web", "entrypoint": "main", "image": IMAGE, "command": "sleep 3600", "count": "1",
            "cpu_request": "0", "cpu_limit": "0.1", "memory_request": "", "memory_limit": "16M",
            "cpu_bind": "unbind", "strategy": "AUTO", "nodes_limit": "0", "node_labels": "", "env": "",
            "labels": "", "action": "deploy",
        }  # fmt: skip
        shown = page.post("/pods/eru/deploy/", form)
        assert shown.status_code == 200
        assert "cannot tell which nodes are up: etcd unreachable" in shown.content.decode()
    finally:
        cluster.start("etcd")
    assert not Deployment.objects.exists()
    # Back: the client tries the endpoint again within etcd.RETRY_AFTER seconds, and plans as before.
    wait_for(lambda: api.post("/api/deployments/plan/", BODY, format="json").status_code == 200, timeout=10)


def test_an_etcd_error_behind_a_field_error_is_an_outage() -> None:
    try:
        try:
            raise etcd.EtcdError("etcd unreachable at 127.0.0.1:1: connection refused")
        except etcd.EtcdError as exc:
            raise invalid("pod", f"cannot tell which nodes are up: {exc}") from exc
    except ValidationError as wrapped:
        response = exception_handler(wrapped, {})
    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == str(etcd.OUTAGE_RETRY_AFTER)
    assert "etcd" in response.data["detail"]
    plain = exception_handler(etcd.EtcdError("etcd write failed: x"), {})
    assert plain is not None
    assert plain.status_code == 503
    refused = exception_handler(invalid("pod", "no such pod"), {})  # the caller's own error: still 400
    assert refused is not None
    assert refused.status_code == 400


@pytest.mark.django_db
def test_an_etcd_error_a_view_lets_through_is_a_503_page_or_json() -> None:
    middleware = ApiJsonErrorsMiddleware(lambda request: None)  # type: ignore[arg-type, return-value]
    down = etcd.EtcdError("etcd unreachable at 127.0.0.1:1: connection refused")
    api = middleware.process_exception(RequestFactory().post("/api/nodes/"), down)
    assert api is not None
    assert api.status_code == 503
    assert api["Content-Type"] == "application/json"
    assert api["Retry-After"] == str(etcd.OUTAGE_RETRY_AFTER)
    request = RequestFactory().post("/pods/eru/nodes/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    page = middleware.process_exception(request, down)
    assert page is not None
    assert page.status_code == 503
    assert "The cluster store (etcd) cannot be reached" in page.content.decode()
    assert middleware.process_exception(request, ValueError("not etcd")) is None

"""Whatever an automation script sends, the API answers with a 4xx and field errors — never a 500
— and a refused request changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from clusters.models import AuditEvent, Deployment, Node, Workload

pytestmark = pytest.mark.services

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["512M", "1M", "-1G", "AUTO", "a_b", "node1", "eru", "1e400", "NaN", "Infinity"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
DEPLOY_FIELDS = [
    "pod",
    "app",
    "entrypoint",
    "image",
    "count",
    "command",
    "env",
    "labels",
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
    "cpu_bind",
    "strategy",
    "nodes_limit",
    "node_names",
    "node_labels",
    "network",
]
bodies = st.dictionaries(st.sampled_from(DEPLOY_FIELDS), values, max_size=8).map(
    lambda d: {"pod": "eru", "app": "x", "entrypoint": "y", "image": "i", **d}
)


@pytest.fixture
def api(admin_user: Any, register: Any) -> APIClient:
    register("node1", cpu=1, memory="64M")
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_deploy_never_500(api: APIClient, body: dict[str, Any]) -> None:
    events = AuditEvent.objects.count()
    response = api.post("/api/deployments/", body, format="json")
    assert response.status_code in (201, 400, 403, 404), (response.status_code, body, response.content)
    if response.status_code != 201:
        assert AuditEvent.objects.count() == events
        assert (
            not Workload.objects.filter(state__in=Workload.HOLDING).exclude(deployment__isnull=False).exists()
        )
    response = api.post("/api/deployments/plan/", body, format="json")
    assert response.status_code in (200, 400, 403, 404), (response.status_code, body, response.content)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["name", "pod", "endpoint", "ca", "cert", "key", "labels", "cpu", "memory", "share"]),
        values,
        max_size=8,
    )
)
def test_node_add_never_500(api: APIClient, body: dict[str, Any]) -> None:
    response = api.post("/api/nodes/", body, format="json")
    assert response.status_code in (400, 404), (response.status_code, body, response.content)
    assert Node.objects.count() == 1
    assert not Deployment.objects.filter(state="running").exclude(workloads__isnull=False).exists()

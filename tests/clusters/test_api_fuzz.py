"""Whatever an automation script sends, the API answers with a 4xx and field errors — never a 500
— and a refused request changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from clusters import queue
from clusters.models import AuditEvent, Deployment, Node, Workload

pytestmark = pytest.mark.services

HUGE = [2**31, 2**63, 2**64, 2**70, -(2**63), -(2**70), 10**400]
SIZES = ["9" * 400, "9" * 20, "9" * 400 + "G", "99999999999999999999M", "1e400", "0x10", " 1G", "1.5G", "-0"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from(HUGE),  # ints past 64 bits, which databases cannot hold
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["512M", "1M", "-1G", "AUTO", "a_b", "node1", "eru", "NaN", "Infinity", *SIZES]),
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
objects = st.dictionaries(st.sampled_from(DEPLOY_FIELDS), values, max_size=8).map(
    lambda d: {"pod": "eru", "app": "x", "entrypoint": "y", "image": "i", **d}
)
# the numeric fields at their extremes, so the rare cases are not left to chance
extremes = st.fixed_dictionaries(
    {"pod": st.just("eru"), "app": st.just("x"), "entrypoint": st.just("y"), "image": st.just("i")},
    optional={
        "count": st.sampled_from([*HUGE, 1]),
        "nodes_limit": st.sampled_from([*HUGE, 0]),
        "cpu_request": st.sampled_from([*HUGE, 0, 1e308]),
        "cpu_limit": st.sampled_from([*HUGE, 0, 1e308]),
        "memory_request": st.sampled_from([*SIZES, *HUGE]),
        "memory_limit": st.sampled_from([*SIZES, *HUGE]),
    },
)
bodies = st.one_of(objects, extremes, values)  # values: lists, strings, numbers, null — not objects


@pytest.fixture
def api(admin_user: Any, register: Any, monkeypatch: Any) -> APIClient:
    """No task leaves the process: an accepted deploy must not have a worker (one may be running
    from other tests) write rows while later examples compare counts."""
    monkeypatch.setattr(queue, "enqueue_each", lambda *args, **kwargs: None)
    register("node1", cpu=1, memory="64M")
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def _counts() -> tuple[int, int, int]:
    return AuditEvent.objects.count(), Deployment.objects.count(), Workload.objects.count()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_deploy_never_500(api: APIClient, body: Any) -> None:
    before = _counts()
    response = api.post("/api/deployments/", body, format="json")
    assert response.status_code in (201, 400, 403, 404), (response.status_code, body, response.content)
    if response.status_code == 201:
        assert response.json()["total"] == Workload.objects.filter(deployment=response.json()["id"]).count()
    else:  # refused: no deployment, no workload, no audit event
        assert _counts() == before, body
    for dry_run in ("plan", "capacity"):
        before = _counts()
        response = api.post(f"/api/deployments/{dry_run}/", body, format="json")
        assert response.status_code in (200, 400, 403, 404), (
            dry_run,
            response.status_code,
            body,
            response.content,
        )
        assert _counts() == before, (dry_run, body)  # a dry run changes nothing, whatever the answer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(
                ["name", "pod", "endpoint", "ca", "cert", "key", "labels", "cpu", "memory", "share"]
            ),
            values,
            max_size=8,
        ),
        st.fixed_dictionaries(
            {"name": st.just("n2"), "pod": st.just("eru"), "endpoint": st.just("tcp://127.0.0.1:1")},
            optional={
                "cpu": st.sampled_from(HUGE),
                "memory": st.sampled_from(SIZES),
                "share": st.sampled_from(HUGE),
            },
        ),
        values,
    )
)
def test_node_add_never_500(api: APIClient, body: Any) -> None:
    events = AuditEvent.objects.count()
    response = api.post("/api/nodes/", body, format="json")
    assert response.status_code in (400, 404), (response.status_code, body, response.content)
    assert list(Node.objects.values_list("name", flat=True)) == ["node1"]
    assert AuditEvent.objects.count() == events


RESOURCE_EXTREMES = [
    {"memory_limit": "9" * 400},
    {"memory_request": "9" * 400},
    {"memory_limit": 2**70},
    {"cpu_limit": 2**70},
    {"cpu_request": 2**70},
]
DEPLOY_EXTREMES = [{"nodes_limit": 2**70}, {"count": 2**70}]  # not fields of the capacity dry run


@pytest.mark.parametrize(
    ("path", "change"),
    [
        *((path, change) for path in ("", "plan/") for change in RESOURCE_EXTREMES + DEPLOY_EXTREMES),
        *(("capacity/", change) for change in RESOURCE_EXTREMES),
    ],
)
def test_known_extremes_are_a_400_naming_the_field(api: APIClient, change: dict[str, Any], path: str) -> None:
    """The fuzzer's rare cases, pinned: sizes and numbers past what a database column can hold."""
    before = _counts()
    body = {"pod": "eru", "app": "x", "entrypoint": "y", "image": "i", **change}
    response = api.post(f"/api/deployments/{path}", body, format="json")
    assert response.status_code == 400, (response.status_code, response.content)
    assert set(change) <= set(response.json()), response.json()
    assert _counts() == before

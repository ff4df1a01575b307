"""The scheduling engine behind the deploy path: every strategy, nodes_limit, node filters by name
and label, existing instances counted per node, and the capacity dry run. Database only (the fast
tier): nodes are rows and liveness is `ui_alive`; test_deploy.py plans on the real nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from clusters import services
from clusters.models import Node
from tests.conftest import IMAGE
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def small(ui_node: Callable[..., Node], ui_alive: set[str]) -> list[Node]:
    """Two up nodes of 2 cores (200 pieces) and 1 GiB each."""
    ui_alive.update({"node1", "node2"})
    return [ui_node(name, memory=1 << 30) for name in ("node1", "node2")]


def _existing(node: Node, n: int, app: str = "a") -> None:
    WorkloadFactory.create_batch(n, node=node, app=app, entrypoint="e")


def _plan(pod: Any, **kwargs: Any) -> dict[str, int]:
    params = {
        "app": "a",
        "entrypoint": "e",
        "image": IMAGE,
        "cpu_limit": 0.5,
        "memory_limit": "100M",
        "cpu_bind": False,
        **kwargs,
    }
    return services.deployment_plan(services.deployment_validate(pod=pod, data=params))


def test_auto_evens_out_counts_with_existing_instances(small: list[Node]) -> None:
    _existing(small[0], 3)
    assert _plan(small[0].pod, count=5) == {"node1": 1, "node2": 4}


def test_auto_nodes_limit_is_the_maximum_per_node(small: list[Node]) -> None:
    with pytest.raises(ValidationError, match="reached nodelimit, a node can host at most 2 instances"):
        _plan(small[0].pod, count=5, nodes_limit=2)


def test_fill_tops_up_to_count_per_node(small: list[Node]) -> None:
    _existing(small[0], 1)
    assert _plan(small[0].pod, count=3, strategy="FILL", nodes_limit=2) == {"node1": 2, "node2": 3}
    _existing(small[1], 3)
    _existing(small[0], 2)
    with pytest.raises(ValidationError, match="each node has enough workloads"):
        _plan(small[0].pod, count=3, strategy="FILL")


def test_each_adds_count_on_every_node(small: list[Node]) -> None:
    assert _plan(small[0].pod, count=2, strategy="EACH") == {"node1": 2, "node2": 2}
    with pytest.raises(ValidationError, match="insufficient nodes, at least 1 needed"):
        _plan(small[0].pod, count=20, strategy="EACH")


def test_global_and_drained_follow_memory_usage(small: list[Node]) -> None:
    Node.objects.filter(name="node1").update(used_memory=600 << 20)
    assert _plan(small[0].pod, count=3, strategy="GLOBAL") == {"node2": 3}
    assert _plan(small[0].pod, count=5, strategy="DRAINED") == {"node1": 4, "node2": 1}


def test_bound_requests_count_cpu_plans(small: list[Node]) -> None:
    pod = small[0].pod
    assert _plan(pod, count=4, cpu_request=1, cpu_bind=True) == {"node1": 2, "node2": 2}
    with pytest.raises(ValidationError, match="need: 5, available: 4"):
        _plan(pod, count=5, cpu_request=1, cpu_bind=True)


def test_node_filters_by_name_and_label(small: list[Node]) -> None:
    Node.objects.filter(name="node2").update(labels={"zone": "b"})
    assert _plan(small[0].pod, count=2, node_labels={"zone": "b"}) == {"node2": 2}
    assert _plan(small[0].pod, count=2, node_names=["node1"]) == {"node1": 2}
    with pytest.raises(ValidationError, match="node map is empty"):
        _plan(small[0].pod, count=1, node_labels={"zone": "c"})


def test_capacity_dry_run_through_the_api(small: list[Node], admin_user: Any) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    body = {  # app, entrypoint and image play no part in capacity
        "pod": "eru",
        "cpu_limit": 0.5,
        "memory_limit": "100M",
        "cpu_bind": False,
    }
    assert api.post("/api/deployments/capacity/", body, format="json").json() == {
        "capacity": {"node1": 10, "node2": 10},
        "total": 20,
        "unlimited": False,
    }
    unlimited = api.post("/api/deployments/capacity/", {**body, "memory_limit": 0}, format="json").json()
    assert unlimited["unlimited"] is True


def test_nodes_of_an_unknown_pod_are_a_404(small: list[Node], admin_user: Any) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    assert api.get("/api/nodes/", {"pod": "nosuch"}).status_code == 404
    assert len(api.get("/api/nodes/", {"pod": "eru"}).json()["results"]) == 2

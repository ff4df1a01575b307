"""realloc, remap and dissociate on the real nodes: cgroups read back from Docker, usage from the rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from agents import reconcile
from clusters import services
from clusters.models import AuditEvent, Dissociated, Node, Workload
from tests.conftest import wait_for

pytestmark = pytest.mark.services
M = 1 << 20


def _host(docker_clean: dict[str, Any], w: Workload) -> dict[str, Any]:
    config: dict[str, Any] = docker_clean[w.node.name].containers.get(w.container_id).attrs["HostConfig"]
    return config


def _usage(name: str) -> tuple[dict[str, int], float, int]:
    node = Node.objects.get(name=name)
    return node.used_cpu_map, node.used_cpu, node.used_memory


def _realloc(w: Workload, **change: Any) -> Workload:
    return services.workload_realloc(actor=services.SYSTEM, workload=w, change=services.Change(**change))


def test_realloc_changes_the_cgroups_and_the_usage_exactly(
    deploy: Callable[..., Any], docker_clean: dict[str, Any]
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    assert _usage("node1") == ({}, 0.1, 16 * M)

    w = _realloc(w, cpu_request=0.4, cpu_limit=0.4, memory_request=16 * M, memory_limit=16 * M)  # deltas
    host = _host(docker_clean, w)
    assert (host["CpuQuota"], host["CpuPeriod"], host["Memory"]) == (50_000, 100_000, 32 * M)
    assert host["MemoryReservation"] == 16 * M
    assert _usage("node1") == ({}, 0.5, 32 * M)

    w = _realloc(w, cpu_request=0.5, cpu_limit=0.5, cpu_bind=True)  # 1 cpu, bound now
    host = _host(docker_clean, w)
    assert list(w.cpu_map.values()) == [100]
    assert host["CpusetCpus"] == next(iter(w.cpu_map))
    assert host["CpuQuota"] in (0, -1)  # the cpuset is the limit
    assert _usage("node1") == (w.cpu_map, 1.0, 32 * M)

    w = _realloc(w, memory_limit=0, memory_request=0, cpu_bind=False, absolute=True)  # unlimited memory
    assert _host(docker_clean, w)["Memory"] > 1 << 40
    assert _usage("node1") == ({}, 1.0, 0)
    events = AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_REALLOC, target_id=str(w.pk))
    assert events.count() == 3
    assert events.order_by("id").first().before["cpu_limit"] == 0.1  # type: ignore[union-attr]


def test_a_realloc_the_node_cannot_fit_is_refused_with_the_numbers_and_changes_nothing(
    deploy: Callable[..., Any], docker_clean: dict[str, Any]
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    node = Node.objects.get(name="node1")
    with pytest.raises(ValidationError) as caught:
        _realloc(w, memory_request=node.memory, memory_limit=node.memory)
    message = str(caught.value)
    assert list(caught.value.message_dict) == ["memory_request"]  # what the node lacks
    assert "node node1 has" in message
    assert f"{node.memory - 16 * M + 16 * M} bytes of memory free" in message
    assert _host(docker_clean, w)["Memory"] == 16 * M
    assert _usage("node1") == ({}, 0.1, 16 * M)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_REALLOC).exists()


def test_realloc_through_the_api_takes_sizes_and_names_bad_fields(
    deploy: Callable[..., Any], admin_user: Any, docker_clean: dict[str, Any]
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    api = APIClient()
    api.force_authenticate(admin_user)
    r = api.post(
        f"/api/workloads/{w.pk}/realloc/", {"memory_limit": "8M", "memory_request": "8M"}, format="json"
    )
    assert r.status_code == 200, r.content
    assert r.json()["memory_limit"] == 24 * M
    r = api.post(f"/api/workloads/{w.pk}/realloc/", {"memory_limit": "-100M"}, format="json")
    assert r.status_code == 400
    assert "memory" in str(r.json())
    r = api.post(f"/api/workloads/{w.pk}/realloc/", {"cpus": 1}, format="json")
    assert r.json() == {"cpus": ["cpus: unknown field"]}
    assert _host(docker_clean, Workload.objects.get(pk=w.pk))["Memory"] == 24 * M


def test_unbound_workloads_follow_the_share_pool(
    deploy: Callable[..., Any], docker_clean: dict[str, Any]
) -> None:
    free = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1)
    assert _host(docker_clean, free)["CpusetCpus"] == "0,1"
    bound = deploy("sleep", "600", app="bound", cpu_request=1, cpu_limit=1, cpu_bind=True)
    (core,) = bound.cpu_map
    other = "1" if core == "0" else "0"
    wait_for(lambda: _host(docker_clean, free)["CpusetCpus"] == other, timeout=15)

    services.workload_remove(actor=services.SYSTEM, workload=bound)
    wait_for(lambda: _host(docker_clean, free)["CpusetCpus"] == "0,1", timeout=15)


def test_dissociate_keeps_the_container_and_reconcile_leaves_it(
    deploy: Callable[..., Any], docker_clean: dict[str, Any]
) -> None:
    w = deploy("sleep", "600")
    client = docker_clean["node1"]
    (kept,) = services.workload_dissociate(actor=services.SYSTEM, workloads=[w])

    assert not Workload.objects.filter(pk=w.pk).exists()
    assert _usage("node1") == ({}, 0.0, 0)
    assert kept.container_id == w.container_id
    assert client.containers.get(w.container_id).status == "running"
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.WORKLOAD_DISSOCIATE, target_name=w.name
    ).exists()

    report = reconcile.reconcile_node(Node.objects.get(name="node1"), repair=True, grace=0)
    assert report.orphans == []
    assert client.containers.get(w.container_id).status == "running"

    client.containers.get(w.container_id).remove(force=True)
    reconcile.reconcile_node(Node.objects.get(name="node1"), repair=True, grace=0)
    assert not Dissociated.objects.exists()  # gone from Docker: forgotten


def test_dissociate_is_all_or_nothing(deploy: Callable[..., Any], docker_clean: dict[str, Any]) -> None:
    running = deploy("sleep", "600")
    Workload.objects.filter(pk=running.pk).update(action="stop")
    with pytest.raises(ValidationError, match="a stop in flight"):
        services.workload_dissociate(actor=services.SYSTEM, workloads=[running])
    assert Workload.objects.filter(pk=running.pk).exists()
    assert not Dissociated.objects.exists()

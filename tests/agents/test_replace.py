"""Eru's replace on the real nodes: the new containers take the old ones' place with their resources,
or the old ones come back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from clusters import services
from clusters.models import AuditEvent, Deployment, Node, Workload
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services


def _replace(pod: Any, **data: Any) -> Deployment:
    d = services.workload_replace(
        actor=services.SYSTEM, pod=pod, data={"app": "sw", "entrypoint": "e", **data}
    )
    return wait_for(lambda: (row := Deployment.objects.get(pk=d.pk)).is_final and row, timeout=60)


def _usage() -> list[tuple[str, dict[str, int], float, int]]:
    return [(n.name, n.used_cpu_map, n.used_cpu, n.used_memory) for n in Node.objects.order_by("name")]


def _status(client: Any, cid: str) -> str:
    try:
        return str(client.containers.get(cid).status)
    except Exception:  # noqa: BLE001 — docker.errors.NotFound
        return "gone"


def test_replace_swaps_each_container_keeping_node_and_resources(
    deploy: Callable[..., Any], docker_clean: dict[str, Any]
) -> None:
    one = deploy("sleep", "600", node="node1", cpu_request=1, cpu_limit=1, cpu_bind=True)
    two = deploy("sleep", "600", node="node2")
    before = _usage()

    d = _replace(one.pod, command=["sleep", "700"], batch=1)

    assert (d.kind, d.state, d.succeeded, d.failed) == ("replace", Deployment.State.DONE, 2, 0)
    assert not Workload.objects.filter(pk__in=[one.pk, two.pk]).exists()
    new = {w.node.name: w for w in Workload.objects.select_related("node")}
    assert set(new) == {"node1", "node2"}
    assert new["node1"].cpu_map == one.cpu_map
    assert new["node1"].replaces_id is None  # the old one is gone: it holds the allocation now
    for w, old in ((new["node1"], one), (new["node2"], two)):
        container = docker_clean[w.node.name].containers.get(w.container_id)
        assert container.status == "running"
        assert container.attrs["Config"]["Cmd"] == ["sleep", "700"]
        assert _status(docker_clean[w.node.name], old.container_id) == "gone"
    assert docker_clean["node1"].containers.get(new["node1"].container_id).attrs["HostConfig"][
        "CpusetCpus"
    ] == (next(iter(one.cpu_map)))
    assert _usage() == before  # counted once, before and after
    replaced = AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_REPLACED)
    assert {(e.before["id"], e.after["id"]) for e in replaced} == {
        (one.pk, new["node1"].pk),
        (two.pk, new["node2"].pk),
    }


def test_a_new_container_that_fails_brings_the_old_one_back_and_stops_there(
    deploy: Callable[..., Any], docker_clean: dict[str, Any]
) -> None:
    first, second = deploy("sleep", "600", node="node1", count=2)
    before = _usage()

    d = _replace(first.pod, image="eru/missing:latest", batch=1)

    assert (d.state, d.succeeded, d.failed) == (Deployment.State.FAILED, 0, 2)
    olds = Workload.objects.filter(pk__in=[first.pk, second.pk])
    assert {w.state for w in olds} == {Workload.State.RUNNING}
    for w in olds:
        assert _status(docker_clean["node1"], w.container_id) == "running"
    failed = list(Workload.objects.filter(deployment=d).order_by("seq"))
    assert "eru/missing" in failed[0].error
    assert failed[1].error.startswith("not replaced:")  # not attempted
    assert _usage() == before
    assert AuditEvent.objects.get(action=AuditEvent.Action.WORKLOAD_REPLACE_FAILED).after["restored"] is True
    leftovers = docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"})
    assert sorted(c.id for c in leftovers) == sorted([first.container_id, second.container_id])


def test_replace_waits_for_healthy_and_restores_when_it_never_is(
    deploy: Callable[..., Any], docker_clean: dict[str, Any], settings: Any
) -> None:
    settings.ERU_REPLACE_HEALTH_TIMEOUT = 3
    old = deploy("httpd", "-f", "-p", "8080", node="node1")
    check = {"tcp_ports": ["8080"]}

    d = _replace(old.pod, command=["httpd", "-f", "-p", "8081"], healthcheck=check)  # listens elsewhere
    assert d.state == Deployment.State.FAILED
    assert "not healthy after 3 s" in Workload.objects.get(deployment=d).error
    assert _status(docker_clean["node1"], old.container_id) == "running"

    d = _replace(old.pod, command=["httpd", "-f", "-p", "8080"], healthcheck=check)
    assert d.state == Deployment.State.DONE
    (new,) = Workload.objects.filter(deployment=d)
    assert new.healthcheck == {"tcp_ports": ["8080"], "http_port": "", "url": "/", "code": 0}


def test_replace_through_the_api(deploy: Callable[..., Any], admin_user: Any, viewer: Any) -> None:
    w = deploy("sleep", "600", node="node1")
    api = APIClient()
    api.force_authenticate(admin_user)
    body = {"pod": w.pod.name, "app": "sw", "entrypoint": "e", "image": IMAGE, "batch": 0}
    r = api.post("/api/workloads/replace/", body, format="json")
    assert r.status_code == 201, r.content
    assert (r.json()["kind"], r.json()["total"]) == ("replace", 1)
    wait_for(lambda: Deployment.objects.get(pk=r.json()["id"]).state == Deployment.State.DONE, timeout=30)
    r = api.post("/api/workloads/replace/", {**body, "app": "nothing"}, format="json")
    assert r.status_code == 400
    assert "no running or stopped workload of nothing/e" in str(r.json())

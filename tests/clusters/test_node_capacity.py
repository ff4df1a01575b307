"""A node's capacity after add (Eru's `node set --cpu --memory [--delta]`) and its usage check and fix
(`node resource [--fix]`): the services, the REST API and the node page. Nodes are plain rows
(tests.factories: 2 cores of 100 pieces, 4 GiB) except where marked `services`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from clusters import etcd, selectors, services
from clusters.models import AuditEvent, Node, Pod, Workload
from tests.factories import GIB, NodeFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def admin_actor(user: Any) -> services.Actor:
    return services.Actor(user=user, via="api")


@pytest.fixture
def busy(ui_pod: Pod, ui_alive: set[str]) -> Node:
    """n1 (engine NCPU 2): a bound workload holds 30 pieces of core 1, 1 GiB is used."""
    ui_alive.add("n1")
    node = NodeFactory(
        name="n1",
        pod=ui_pod,
        info={"NCPU": 2, "MemTotal": 5 * GIB},
        used_cpu_map={"1": 30},
        used_cpu=0.3,
        used_memory=GIB,
    )
    WorkloadFactory(
        node=node, cpu_request=0.3, cpu_bind=True, cpu_map={"1": 30}, memory_request=GIB, memory_limit=GIB
    )
    return node


def capacity(node: Node) -> tuple[dict[str, int], int]:
    node.refresh_from_db()
    return node.cpu_map, node.memory


# --- node_set -----------------------------------------------------------------------------------
def test_absolute_set_replaces_the_given_fields_audits_and_remaps(
    busy: Node, admin_user: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    services.node_set(actor=admin_actor(admin_user), node=busy, cpu="0:100,1:50", memory="8G")
    assert capacity(busy) == ({"0": 100, "1": 50}, 8 * GIB)
    event = AuditEvent.objects.get(action="node.set", target_name="n1")
    assert event.before["cpu_map"] == {"0": 100, "1": 100}
    assert event.before["memory"] == 4 * GIB
    assert event.after["cpu_map"] == {"0": 100, "1": 50}
    assert event.after["memory"] == 8 * GIB
    assert ("agents.remap_node", busy.pk) in ui_enqueued
    services.node_set(actor=admin_actor(admin_user), node=busy, memory=6 * GIB)
    assert capacity(busy) == ({"0": 100, "1": 50}, 6 * GIB)  # cpu kept


def test_delta_adds_per_core_and_may_be_negative(busy: Node, admin_user: Any) -> None:
    services.node_set(actor=admin_actor(admin_user), node=busy, cpu="0:-100,1:-50", memory="-2G", delta=True)
    assert capacity(busy) == ({"1": 50}, 2 * GIB)  # core 0 at 0 and unused: dropped
    services.node_set(actor=admin_actor(admin_user), node=busy, cpu={"0": 100}, delta=True)
    assert capacity(busy) == ({"0": 100, "1": 50}, 2 * GIB)  # a new core, unused


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"cpu": "0:100,1:20"}, "cpu", "cpu: core 1 would have 20 pieces, but its workloads hold 30 of it"),
        ({"cpu": 1}, "cpu", "cpu: core 1 would have 0 pieces, but its workloads hold 30 of it"),
        ({"cpu": "1:-80", "delta": True}, "cpu", "cpu: core 1 would have 20 pieces"),
        ({"cpu": "0:-100,1:-100", "delta": True}, "cpu", "cpu: core 1 would have 0 pieces"),
        ({"memory": "512M"}, "memory", f"memory: {512 << 20} bytes would be below the {GIB} bytes"),
        ({"memory": "-3.5G", "delta": True}, "memory", "would be below the 1073741824 bytes its workloads"),
        ({"memory": "lots"}, "memory", "memory: 'lots' is not a size"),
        ({"cpu": 3}, "cpu", "cpu: the engine reports 2 cores (NCPU), but core 2 would be beyond them"),
        ({"cpu": "0:100,1:100,7:100"}, "cpu", "set over_commit to declare them anyway"),
        ({"cpu": "0:1,0:2"}, "cpu", "cpu: core 0 is given twice"),
    ],
)
def test_refusals_name_the_field_and_change_nothing(
    busy: Node,
    admin_user: Any,
    ui_enqueued: list[tuple[Any, ...]],
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with pytest.raises(ValidationError) as err:
        services.node_set(actor=admin_actor(admin_user), node=busy, labels={"zone": "b"}, **change)
    assert message in err.value.message_dict[field][0]
    assert capacity(busy) == ({"0": 100, "1": 100}, 4 * GIB)
    assert busy.labels == {}
    assert not AuditEvent.objects.exists()
    assert not ui_enqueued


def test_an_empty_node_can_lose_every_core_but_one_and_not_the_last(ui_pod: Pod, admin_user: Any) -> None:
    node = NodeFactory(name="n2", pod=ui_pod)
    services.node_set(actor=admin_actor(admin_user), node=node, cpu="1:-100", delta=True)
    assert capacity(node)[0] == {"0": 100}
    with pytest.raises(ValidationError, match="invalid cpu map"):
        services.node_set(actor=admin_actor(admin_user), node=node, cpu="0:-100", delta=True)


def test_over_commit_declares_cores_the_engine_does_not_report(busy: Node, admin_user: Any) -> None:
    services.node_set(actor=admin_actor(admin_user), node=busy, cpu=4, over_commit=True)
    assert capacity(busy)[0] == {"0": 100, "1": 100, "2": 100, "3": 100}
    services.node_set(actor=admin_actor(admin_user), node=busy, memory="6G")  # cpu not given: no check
    assert capacity(busy)[1] == 6 * GIB


def test_labels_and_bypass_alone_keep_the_capacity_and_do_not_remap(
    busy: Node, admin_user: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    services.node_set(actor=admin_actor(admin_user), node=busy, labels={"zone": "a"})
    services.node_set(actor=admin_actor(admin_user), node=busy, bypass=True)
    services.node_set(actor=admin_actor(admin_user), node=busy, cpu="0:100,1:100", memory=4 * GIB)  # the same
    assert capacity(busy) == ({"0": 100, "1": 100}, 4 * GIB)
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "node.set",
        "node.down",
        "node.set",
    ]
    assert not ui_enqueued


def test_only_administrators_set_capacity(busy: Node, deployer: Any) -> None:
    with pytest.raises(PermissionDenied):
        services.node_set(actor=admin_actor(deployer), node=busy, memory="8G")
    assert capacity(busy)[1] == 4 * GIB


# --- node resource check and fix ---------------------------------------------------------------
def test_check_finds_nothing_on_a_consistent_node(busy: Node) -> None:
    WorkloadFactory(node=busy, state=Workload.State.FAILED, cpu_request=5, memory_request=GIB)  # holds none
    check = selectors.node_resource_check(busy)
    assert check == {
        "node": "n1",
        "ok": True,
        "diffs": [],
        "recorded": {"cpu": 0.3, "cpu_map": {"1": 30}, "memory": GIB},
        "counted": {"cpu": 0.3, "cpu_map": {"1": 30}, "memory": GIB},
    }


def test_check_lists_drift_and_fix_repairs_it_with_an_audit_row(
    busy: Node, admin_user: Any, ui_enqueued: list[tuple[Any, ...]]
) -> None:
    Node.objects.filter(pk=busy.pk).update(
        used_cpu=1.5, used_cpu_map={"0": 100, "1": 30}, used_memory=3 * GIB
    )
    busy.refresh_from_db()
    check = selectors.node_resource_check(busy)
    assert not check["ok"]
    assert check["diffs"] == [
        "used cpu: recorded 1.5, counted 0.3",
        "used pieces of core 0: recorded 100, counted 0",
        f"used memory: recorded {3 * GIB}, counted {GIB}",
    ]
    result = services.node_resource_fix(actor=admin_actor(admin_user), node=busy)
    assert result["ok"]
    assert result["diffs"] == []
    assert result["fixed"] == check["diffs"]
    busy.refresh_from_db()
    assert (busy.used_cpu, busy.used_cpu_map, busy.used_memory) == (0.3, {"1": 30}, GIB)
    event = AuditEvent.objects.get(action="node.resource_fix")
    assert event.before == {"cpu": 1.5, "cpu_map": {"0": 100, "1": 30}, "memory": 3 * GIB}
    assert event.after == {"cpu": 0.3, "cpu_map": {"1": 30}, "memory": GIB}
    assert ("agents.remap_node", busy.pk) in ui_enqueued
    again = services.node_resource_fix(actor=admin_actor(admin_user), node=busy)
    assert again["fixed"] == []
    assert AuditEvent.objects.filter(action="node.resource_fix").count() == 1  # nothing to fix: no row


def test_a_replacement_borrowing_its_old_allocation_is_not_counted_twice(busy: Node) -> None:
    old = Workload.objects.get(node=busy)
    WorkloadFactory(
        node=busy,
        state=Workload.State.PENDING,
        replaces=old,
        cpu_request=0.3,
        cpu_map={"1": 30},
        memory_request=GIB,
    )
    assert selectors.node_resource_check(busy)["ok"]


def test_only_administrators_fix(busy: Node, deployer: Any) -> None:
    Node.objects.filter(pk=busy.pk).update(used_memory=0)
    with pytest.raises(PermissionDenied):
        services.node_resource_fix(actor=admin_actor(deployer), node=busy)
    assert Node.objects.get(pk=busy.pk).used_memory == 0


# --- REST ---------------------------------------------------------------------------------------
@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    def login(user: Any) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return login


def test_patch_sets_capacity(busy: Node, admin_user: Any, api: Callable[[Any], APIClient]) -> None:
    response = api(admin_user).patch(
        "/api/nodes/n1/", {"cpu": 3, "memory": "8G", "over_commit": True}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["cpu_map"] == {"0": 100, "1": 100, "2": 100}
    assert body["memory"] == 8 * GIB
    assert body["cpu"] == 3.0
    delta = api(admin_user).patch("/api/nodes/n1/", {"memory": -GIB, "delta": True}, format="json")
    assert delta.json()["memory"] == 7 * GIB
    labels = api(admin_user).patch("/api/nodes/n1/", {"labels": {"zone": "a"}}, format="json")
    assert labels.json()["labels"] == {"zone": "a"}
    assert labels.json()["memory"] == 7 * GIB


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"memory": "512M"}, "memory", "would be below the 1073741824 bytes its workloads hold"),
        ({"cpu": "0:100"}, "cpu", "cpu: core 1 would have 0 pieces"),
        ({"cpu": 3}, "cpu", "(NCPU)"),
        ({"cpu": True}, "cpu", "cpu: a number of cores, or a cpu map"),
        ({"cpu": [1, 2]}, "cpu", "cpu: a number of cores, or a cpu map"),
        ({"memory": 1.5}, "memory", "memory: bytes, or a size"),
        ({"delta": "sometimes"}, "delta", "valid boolean"),
        ({"memroy": "8G"}, "memroy", "memroy: not a field of a node change (known: labels, bypass, cpu"),
    ],
)
def test_patch_refusals_are_400_naming_the_field(
    busy: Node,
    admin_user: Any,
    api: Callable[[Any], APIClient],
    body: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    response = api(admin_user).patch("/api/nodes/n1/", body, format="json")
    assert response.status_code == 400
    assert fragment in response.json()[field][0]
    assert capacity(busy) == ({"0": 100, "1": 100}, 4 * GIB)
    assert not AuditEvent.objects.exists()


def test_patch_is_for_administrators(
    busy: Node, ui_members: Pod, viewer: Any, api: Callable[[Any], APIClient]
) -> None:
    assert api(viewer).patch("/api/nodes/n1/", {"memory": "8G"}, format="json").status_code == 403
    assert capacity(busy)[1] == 4 * GIB


def test_resource_check_and_fix_over_the_api(
    busy: Node, ui_members: Pod, admin_user: Any, viewer: Any, api: Callable[[Any], APIClient]
) -> None:
    Node.objects.filter(pk=busy.pk).update(used_memory=2 * GIB)
    check = api(viewer).get("/api/nodes/n1/resource/")
    assert check.status_code == 200
    assert check.json() == {
        "node": "n1",
        "ok": False,
        "diffs": [f"used memory: recorded {2 * GIB}, counted {GIB}"],
        "recorded": {"cpu": 0.3, "cpu_map": {"1": 30}, "memory": 2 * GIB},
        "counted": {"cpu": 0.3, "cpu_map": {"1": 30}, "memory": GIB},
    }
    assert api(viewer).post("/api/nodes/n1/resource/").status_code == 403
    assert Node.objects.get(pk=busy.pk).used_memory == 2 * GIB
    fixed = api(admin_user).post("/api/nodes/n1/resource/")
    assert fixed.status_code == 200
    assert fixed.json()["ok"] is True
    assert fixed.json()["fixed"] == [f"used memory: recorded {2 * GIB}, counted {GIB}"]
    assert Node.objects.get(pk=busy.pk).used_memory == GIB


# --- the node page ------------------------------------------------------------------------------
def page_url(name: str, node: str = "n1") -> str:
    return reverse(f"clusters:{name}", args=[node])


def test_the_node_page_has_the_capacity_form_for_administrators_only(
    busy: Node, ui_members: Pod, ui_client: Callable[[Any], Client], admin_user: Any, viewer: Any
) -> None:
    body = ui_client(admin_user).get(page_url("node-detail")).content.decode()
    assert 'id="capacity-form"' in body
    assert f'hx-post="{page_url("node-capacity")}"' in body
    assert 'name="over_commit"' in body
    assert "Check usage" in body
    other = ui_client(viewer)
    assert 'id="capacity-form"' not in other.get(page_url("node-detail")).content.decode()
    assert other.post(page_url("node-capacity"), {"memory": "8G"}, headers=HX).status_code == 403
    assert other.post(page_url("node-resource"), headers=HX).status_code == 403
    assert capacity(busy)[1] == 4 * GIB


def test_the_form_sets_capacity_and_sends_the_page_back(
    busy: Node, ui_client: Callable[[Any], Client], admin_user: Any
) -> None:
    client = ui_client(admin_user)
    response = client.post(page_url("node-capacity"), {"memory": "1G", "delta": "on"}, headers=HX)
    assert response.status_code == 200
    assert (
        response["HX-Location"].startswith('{"path": "/nodes/n1/"') or "/nodes/n1/" in response["HX-Location"]
    )
    assert capacity(busy)[1] == 5 * GIB
    event = AuditEvent.objects.get(action="node.set")
    assert event.via == "ui"
    page = client.get(page_url("node-detail")).content.decode()
    assert "capacity now 2 cores (200 pieces) and 5G" in page
    plain = client.post(page_url("node-capacity"), {"cpu": "0:100,1:100,2:100", "over_commit": "on"})
    assert plain.status_code == 302
    assert plain["Location"] == page_url("node-detail")
    assert capacity(busy)[0] == {"0": 100, "1": 100, "2": 100}


def test_a_refusal_comes_back_beside_its_field(
    busy: Node, ui_client: Callable[[Any], Client], admin_user: Any
) -> None:
    client = ui_client(admin_user)
    response = client.post(
        page_url("node-capacity"), {"cpu": "0:100,1:10"}, headers={**HX, "HX-Target": "capacity-form"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.strip().startswith('<form id="capacity-form"')
    assert '<ul class="errorlist" id="id_cpu_error">' in body
    assert "cpu: core 1 would have 10 pieces, but its workloads hold 30 of it" in body
    assert 'value="0:100,1:10"' in body
    empty = client.post(page_url("node-capacity"), {}, headers=HX).content.decode()
    assert "Give cpu, memory or both." in empty
    without_js = client.post(page_url("node-capacity"), {"memory": "1M"}).content.decode()
    assert "<html" in without_js
    assert "Capacity of node n1" in without_js
    assert "memory: 1048576 bytes would be below" in without_js
    assert capacity(busy) == ({"0": 100, "1": 100}, 4 * GIB)
    assert not AuditEvent.objects.exists()


def test_check_usage_and_fix_on_the_node_page(
    busy: Node, ui_client: Callable[[Any], Client], admin_user: Any
) -> None:
    client = ui_client(admin_user)
    ok = client.get(page_url("node-resource"), headers={**HX, "HX-Target": "node-resource"}).content.decode()
    assert ok.strip().startswith('<div id="node-resource">')
    assert "The recorded usage matches its workloads" in ok
    assert "Fix" not in ok
    Node.objects.filter(pk=busy.pk).update(used_cpu_map={"0": 40, "1": 30})
    drift = client.get(
        page_url("node-resource"), headers={**HX, "HX-Target": "node-resource"}
    ).content.decode()
    assert "used pieces of core 0: recorded 40, counted 0" in drift
    assert f'hx-post="{page_url("node-resource")}"' in drift
    plain = client.get(page_url("node-resource")).content.decode()  # without JavaScript: a page
    assert "<html" in plain
    assert "used pieces of core 0: recorded 40, counted 0" in plain
    fixed = client.post(page_url("node-resource"), headers=HX)
    assert "/nodes/n1/" in fixed["HX-Location"]
    assert Node.objects.get(pk=busy.pk).used_cpu_map == {"1": 30}
    page = client.get(page_url("node-detail")).content.decode()
    assert "usage fixed (used pieces of core 0: recorded 40, counted 0)" in page
    assert AuditEvent.objects.get(action="node.resource_fix").via == "ui"


# --- against a real engine ----------------------------------------------------------------------
@pytest.mark.services
def test_over_commit_against_the_engines_ncpu(register: Any) -> None:
    node = register("node1")
    ncpu = node.info["NCPU"]
    with pytest.raises(ValidationError) as err:
        services.node_set(actor=services.SYSTEM, node=node, cpu=ncpu + 1)
    assert f"the engine reports {ncpu} cores (NCPU)" in err.value.message_dict["cpu"][0]
    services.node_set(actor=services.SYSTEM, node=node, cpu=ncpu + 1, memory="2G", over_commit=True)
    node.refresh_from_db()
    assert node.cores == ncpu + 1
    mirrored = json.loads(etcd.get_prefix(etcd.resource_key("node1"))[etcd.resource_key("node1")])
    assert mirrored["capacity"]["cpu_map"] == node.cpu_map
    assert mirrored["capacity"]["memory"] == 2 * GIB
    node.delete()
    twin = register("node1", cpu=ncpu + 1, over_commit=True)
    assert twin.cores == ncpu + 1

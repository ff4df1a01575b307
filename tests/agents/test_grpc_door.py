"""The gRPC door's credentials and rights, per the README's table, and what Eru's own agent sends
(running and healthy only) taken as well. Calls go through protocol.client, as an agent's do."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from clusters import etcd, services
from clusters.models import AuditEvent, Node, Workload
from protocol import core_pb2 as pb
from protocol.client import CoreClient
from tests.agents.conftest import Core

pytestmark = pytest.mark.services


@pytest.fixture
def secrets(core: Core, nodes: list[Node]) -> dict[str, str]:
    return {n.name: services.node_secret_rotate(actor=services.SYSTEM, node=n) for n in nodes}


def _client(core: Core, username: str, password: str) -> CoreClient:
    return CoreClient([core.address], username, password, timeout=5)


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()  # type: ignore[attr-defined, no-any-return]


def test_a_node_reports_for_itself_only(core: Core, secrets: dict[str, str]) -> None:
    node1 = _client(core, "node.node1", secrets["node1"])
    assert node1.info().version.startswith("eru-portal")
    assert node1.get_node("node1").podname == "eru"
    assert node1.set_node_status("node1", 9) is False
    assert etcd.is_alive("node1")
    assert _code(lambda: node1.get_node("node2")) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: node1.set_node_status("node2", 9)) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: node1.set_node_status("node1", 0)) == grpc.StatusCode.INVALID_ARGUMENT
    other = _client(core, "node.node1", secrets["node2"])  # node2's secret does not serve node1
    assert _code(other.info) == grpc.StatusCode.UNAUTHENTICATED
    wrong = _client(core, "node.node1", "erunode_wrong")
    assert _code(wrong.info) == grpc.StatusCode.UNAUTHENTICATED
    assert _client(core, "NODE.Node1", secrets["node1"]).info().version  # keys are lowered by gRPC


def test_a_revoked_secret_stops_working(core: Core, secrets: dict[str, str], nodes: list[Node]) -> None:
    from clusters import principals

    services.node_secret_revoke(actor=services.SYSTEM, node=nodes[0])
    principals.forget()  # the door's cache lasts CACHE_TTL seconds; another process' within that
    assert _code(_client(core, "node.node1", secrets["node1"]).info) == grpc.StatusCode.UNAUTHENTICATED
    actions = AuditEvent.objects.filter(target_name="node1").values_list("action", flat=True)
    assert {"node.secret_rotate", "node.secret_revoke"} <= set(actions)


def test_users_per_the_table(
    core: Core, secrets: dict[str, str], admin_user: Any, viewer: Any, nodes: list[Node]
) -> None:
    from clusters.models import PodMember

    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.VIEWER)
    vic = _client(core, "vic", "pw-vic-1")
    assert vic.get_node("node1").name == "node1"  # a viewer of the pod sees its nodes
    assert _code(lambda: vic.set_node_status("node1", 9)) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: vic.set_workloads_status([pb.WorkloadStatus(id="x", nodename="node1")])) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert _code(_client(core, "vic", "wrong").info) == grpc.StatusCode.UNAUTHENTICATED
    admin = _client(core, "ADMIN", "pw-admin-1")  # usernames match case-insensitively
    assert admin.set_node_status("node2", 9) is False  # Eru's `node set-status`
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="t")
    assert _client(core, "admin", token).get_node("node2").name == "node2"
    assert _client(core, "token", token).get_node("node2").name == "node2"
    assert _code(_client(core, "nobody", "x").info) == grpc.StatusCode.UNAUTHENTICATED
    assert not Node.objects.get(name="node2").agent  # an admin's heartbeat does not make an agent


def test_what_eru_s_own_agent_sends_is_taken(
    core: Core, secrets: dict[str, str], deploy: Callable[..., Any]
) -> None:
    w = deploy("sleep", "600", healthcheck={"tcp_ports": ["8080"]})
    node1 = _client(core, "node.node1", secrets["node1"])
    node1.set_node_status("node1", 30)
    eru = pb.WorkloadStatus(
        id=w.container_id, running=True, healthy=False, networks={"bridge": "10.1.2.3"},
        extension=json.dumps({"ERU": "1"}).encode(), appname="sw", entrypoint="e", nodename="node1",
    )  # fmt: skip
    taken = node1.set_workloads_status([eru, pb.WorkloadStatus(id="not-ours", nodename="node1")])
    assert [s.id for s in taken.status] == [w.container_id]
    row = Workload.objects.get(pk=w.pk)
    assert (row.status, row.health, row.networks) == ("running", "unhealthy", {"bridge": "10.1.2.3"})
    assert row.ports == w.ports  # Eru's agent says nothing of ports: they stay
    eru.running = False
    node1.set_workloads_status([eru])
    row = Workload.objects.get(pk=w.pk)
    assert (row.status, row.exit_code, row.status_label) == ("exited", None, "exited")


def test_two_agents_for_one_node_are_detected_audited_and_shown(nodes: list[Node], settings: Any) -> None:
    """Two hosts heartbeating as one node: an operator's error the core names."""
    node = Node.objects.select_related("pod").get(name="node1")
    actor = services.Actor(via="grpc", principal="node.node1")
    beat = {"actor": actor, "ttl": 30, "version": "a"}
    services.node_heartbeat(node=node, peer="10.0.0.1", **beat)
    services.node_heartbeat(node=node, peer="10.0.0.1", **beat)
    assert Node.objects.get(pk=node.pk).agent_conflict == ""
    services.node_heartbeat(node=node, peer="10.0.0.2", **beat)
    services.node_heartbeat(node=node, peer="10.0.0.1", **beat)
    shown = Node.objects.get(pk=node.pk).agent_conflict
    assert "10.0.0.1" in shown
    assert "10.0.0.2" in shown
    assert AuditEvent.objects.filter(action="node.agent_conflict", target_name="node1").count() == 1
    Node.objects.filter(pk=node.pk).update(
        agent_conflict_at=Node.objects.get(pk=node.pk).agent_heard_at - timedelta(seconds=60)
    )
    services.node_heartbeat(node=node, peer="10.0.0.1", **beat)  # the other one went quiet long ago
    assert Node.objects.get(pk=node.pk).agent_conflict == ""


def test_the_portal_and_the_api_show_the_agent_and_manage_its_secret(
    core: Core, nodes: list[Node], admin_user: Any, viewer: Any, client: Any
) -> None:
    from rest_framework.test import APIClient

    from clusters.models import PodMember

    api = APIClient()
    api.force_authenticate(admin_user)
    made = api.post("/api/nodes/node1/secret/")
    assert made.status_code == 201
    assert made.json()["agent_username"] == "node.node1"
    agent = _client(core, "node.node1", made.json()["agent_secret"])
    agent.set_node_status("node1", 30, version="eru-portal-agent 9.9")
    shown = api.get("/api/nodes/node1/").json()
    assert (shown["agent"], shown["agent_version"]) == (True, "eru-portal-agent 9.9")
    client.force_login(admin_user)
    page = client.get("/nodes/node1/").content.decode()
    assert "its agent" in page
    assert "eru-portal-agent 9.9" in page
    assert made.json()["agent_secret"] not in page  # shown once, when made
    again = client.post("/nodes/node1/agent/secret/").content.decode()
    assert "shown this once" in again
    assert client.post("/nodes/node1/agent/clear/").status_code == 302
    assert not Node.objects.get(name="node1").agent
    assert api.delete("/api/nodes/node1/secret/").status_code == 204
    assert Node.objects.get(name="node1").secret_digest == ""
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.VIEWER)
    api.force_authenticate(viewer)
    assert api.post("/api/nodes/node1/secret/").status_code == 403
    actions = set(AuditEvent.objects.filter(target_name="node1").values_list("action", flat=True))
    assert {"node.secret_rotate", "node.agent", "node.agent_clear", "node.secret_revoke"} <= actions


def test_an_unchanged_report_costs_no_query_unless_one_went_to_another_core(
    nodes: list[Node], django_assert_num_queries: Any
) -> None:
    from tests.factories import WorkloadFactory

    node = Node.objects.select_related("pod").get(name="node1")
    w = WorkloadFactory(node=node, pod=node.pod, container_id="c" * 64, state="running", status="running")
    actor = services.Actor(via="grpc", principal="node.node1")

    def report(seq: int, code: int = 3) -> list[str]:
        r = services.Report(
            "c" * 64, False, False, {}, status="exited", exit_code=code, restart_count=0, seq=seq
        )
        return services.node_report(actor=actor, node=node, reports=[r])

    assert report(1) == [w.container_id]
    assert Workload.objects.get(pk=w.pk).exit_code == 3
    with django_assert_num_queries(0):
        assert report(2) == [w.container_id]  # the same, and the next: recorded already
    Workload.objects.filter(pk=w.pk).update(exit_code=9)  # as another core would record seq 3
    assert report(4) == [w.container_id]  # a gap: the row is read and set right again
    assert Workload.objects.get(pk=w.pk).exit_code == 3
    report(5, code=4)  # a change is never skipped
    assert Workload.objects.get(pk=w.pk).exit_code == 4


def test_a_complete_list_judges_only_the_rows_older_than_the_list(nodes: list[Node]) -> None:
    """A workload recorded after the agent listed its containers is not missing from the list."""
    from django.utils import timezone

    from tests.factories import WorkloadFactory

    node = Node.objects.select_related("pod").get(name="node1")
    old = WorkloadFactory(node=node, pod=node.pod, container_id="a" * 64, state="running", status="running")
    listed_at = timezone.now()
    new = WorkloadFactory(node=node, pod=node.pod, container_id="b" * 64, state="running", status="running")
    actor = services.Actor(via="grpc", principal="node.node1")
    taken = services.node_report(actor=actor, node=node, reports=[], complete=True, listed_at=listed_at)
    assert taken == []
    assert Workload.objects.get(pk=old.pk).status == "missing"
    assert Workload.objects.get(pk=new.pk).status == "running"

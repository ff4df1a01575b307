"""Node registration over mutual TLS, capacity auto-detection, up/down and heartbeat liveness —
against the real dockerd nodes and etcd started by bin/test."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from clusters import etcd, selectors, services
from clusters.models import AuditEvent, Node
from tests.conftest import NODES, TLS_DIR
from tests.factories import WorkloadFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def test_node_add_detects_capacity_over_tls_and_writes_audit_and_etcd(register: Any) -> None:
    node = register("node1")
    info = node.info
    assert info["NCPU"] >= 1
    assert info["MemTotal"] > 1 << 30
    assert node.cpu_map == {str(i): 100 for i in range(info["NCPU"])}
    assert node.memory == info["MemTotal"] - (1 << 30)
    assert node.tls_key
    assert "PRIVATE KEY" not in node.tls_key  # encrypted at rest
    assert "PRIVATE KEY" in node.tls()[2]
    event = AuditEvent.objects.get(action="node.add")
    assert event.target_name == "node1"
    assert event.via == "system"
    keys = etcd.get_prefix(etcd.key("/"))
    assert etcd.node_key("node1") in keys
    assert etcd.pod_node_key("eru", "node1") in keys
    assert etcd.resource_key("node1") in keys
    assert "node1" in etcd.alive_nodes()


def test_node_add_explicit_capacity(register: Any) -> None:
    node = register("node1", cpu=1, memory="2G", share=10)
    assert node.cpu_map == {"0": 10}
    assert node.memory == 2 << 30


def test_node_add_refuses_a_client_from_another_ca(pod: Any, tls: dict[str, str]) -> None:
    rogue = {name: (TLS_DIR / "rogue" / f"{name}.pem").read_text() for name in ("ca", "cert", "key")}
    with pytest.raises(ValidationError) as err:
        services.node_add(actor=services.SYSTEM, pod=pod, name="bad", endpoint=NODES["node1"], **rogue)
    assert "endpoint" in err.value.message_dict
    assert "TLS" in err.value.message_dict["endpoint"][0]
    assert not Node.objects.exists()
    assert not AuditEvent.objects.filter(action="node.add").exists()


def test_node_add_refuses_an_endpoint_that_does_not_speak_tls(pod: Any, tls: dict[str, str]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"tcp://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ValidationError) as err:
            services.node_add(actor=services.SYSTEM, pod=pod, name="plain", endpoint=endpoint, **tls)
    finally:
        server.shutdown()
    assert "cannot register" in err.value.message_dict["endpoint"][0]
    assert not Node.objects.exists()


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [("tcp://127.0.0.1:1", "cannot reach"), ("unix:///var/run/docker.sock", "must be tcp://")],
)
def test_node_add_refuses_unreachable_or_non_tcp(
    pod: Any, tls: dict[str, str], endpoint: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as err:
        services.node_add(actor=services.SYSTEM, pod=pod, name="nope", endpoint=endpoint, **tls)
    assert fragment in err.value.message_dict["endpoint"][0]
    assert not Node.objects.exists()


def test_node_add_without_client_certificate_is_refused(pod: Any, tls: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as err:
        services.node_add(
            actor=services.SYSTEM, pod=pod, name="n", endpoint=NODES["node1"], ca=tls["ca"], cert="", key=""
        )
    assert "mutual TLS" in err.value.message_dict["endpoint"][0]


def test_duplicate_node_is_refused(register: Any) -> None:
    register("node1")
    with pytest.raises(ValidationError, match="already exists"):
        register("node1")


def test_down_and_up_change_availability_and_are_audited(nodes: list[Any]) -> None:
    node1 = nodes[0]
    services.node_set(actor=services.SYSTEM, node=node1, bypass=True)
    assert [n.name for n in selectors.available_nodes(node1.pod)] == ["node2"]
    services.node_set(actor=services.SYSTEM, node=node1, bypass=False)
    assert [n.name for n in selectors.available_nodes(node1.pod)] == ["node1", "node2"]
    assert list(AuditEvent.objects.filter(target_name="node1").values_list("action", flat=True))[:2] == [
        "node.up",
        "node.down",
    ]


def test_heartbeat_key_expires_and_the_node_goes_down(nodes: list[Any]) -> None:
    pod = nodes[0].pod
    etcd.delete_heartbeat("node1")
    etcd.heartbeat("node1", "eru", ttl=1)
    assert "node1" in etcd.alive_nodes()
    deadline = time.monotonic() + 5
    while "node1" in etcd.alive_nodes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "node1" not in etcd.alive_nodes()
    assert [n.name for n in selectors.available_nodes(pod)] == ["node2"]


def test_the_sweep_keeps_the_lease_alive_with_ttl_three_heartbeat_intervals(
    nodes: list[Any], settings: Any
) -> None:
    from agents.tasks import sweep_nodes

    settings.ERU_HEARTBEAT_INTERVAL = 2
    etcd.delete_heartbeat("node1")
    etcd.delete_heartbeat("node2")
    sweep_nodes()
    client = etcd.client()
    _, meta = client.get(etcd.node_status_key("node1"))
    lease = client.get_lease_info(meta.lease_id)
    assert lease.grantedTTL == 6
    sweep_nodes()  # same TTL: the same lease is kept alive, not replaced
    _, meta2 = client.get(etcd.node_status_key("node1"))
    assert meta2.lease_id == meta.lease_id
    assert etcd.alive_nodes() == {"node1", "node2"}


def test_the_sweep_records_an_unreachable_node(nodes: list[Any]) -> None:
    from agents.tasks import sweep_nodes

    Node.objects.filter(name="node2").update(endpoint="tcp://127.0.0.1:1")
    etcd.delete_heartbeat("node2")
    sweep_nodes()
    assert "cannot reach" in Node.objects.get(name="node2").last_error
    assert etcd.alive_nodes() == {"node1"}


def test_node_remove_refuses_while_workloads_hold_resources(nodes: list[Any]) -> None:
    from clusters.models import Workload

    node = nodes[0]
    WorkloadFactory(node=node, name="a_b_xxxxxx", app="a", entrypoint="b")
    with pytest.raises(ValidationError, match="still has workloads"):
        services.node_remove(actor=services.SYSTEM, node=node)
    Workload.objects.all().delete()
    services.node_remove(actor=services.SYSTEM, node=node)
    assert etcd.node_key("node1") not in etcd.get_prefix(etcd.key("/node/"))
    assert not Node.objects.filter(name="node1").exists()


def test_node_add_refuses_more_cores_than_the_engine_has(register: Any) -> None:
    with pytest.raises(ValidationError) as err:
        register("node1", cpu=512)
    assert "NCPU" in err.value.message_dict["cpu"][0]
    assert not Node.objects.exists()


def test_the_same_engine_cannot_be_registered_twice(register: Any, tls: dict[str, str], pod: Any) -> None:
    register("node1")
    with pytest.raises(ValidationError) as err:
        services.node_add(actor=services.SYSTEM, pod=pod, name="again", endpoint=NODES["node1"], **tls)
    assert "already registered as node node1" in err.value.message_dict["endpoint"][0]

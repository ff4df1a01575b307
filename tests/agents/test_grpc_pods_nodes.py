"""erucli pod … and node … over the gRPC door (agents/grpc_server/pod_calls.py), against the real
nodes, etcd and the database: a Python client built from our .proto sends exactly what erucli sends
(per-plugin JSON with dashed keys, memory as "2G", cpu as "0:100,1:100" on a set, a storage entry
that asks nothing), and every refusal has its status code and a message naming what was refused."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from agents.grpc_server import base, pod_calls
from clusters import etcd, services
from clusters.models import AuditEvent, Node, Pod, PodMember, Workload
from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc
from tests.conftest import NODES, TLS_DIR, wait_for
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.services

ADMIN = (("admin", "pw-admin-1"),)
VIEWER = (("vic", "pw-vic-1"),)
OUTSIDER = (("olga", "pw-olga-1"),)
GIB = 1 << 30
NOTHING_STORED = json.dumps({}).encode()  # erucli's storage entry when no storage flag is given


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()  # type: ignore[attr-defined]


def _cpumem(**fields: Any) -> dict[str, bytes]:
    """resources as erucli sends them: a cpumem entry (dashed keys) and a storage entry."""
    return {"cpumem": json.dumps(fields).encode(), "storage": NOTHING_STORED}


def _read_only(user: Any) -> tuple[tuple[str, str]]:
    _, token = services.token_create(actor=services.SYSTEM, user=user, name="ro", read_only=True)
    return ((user.username, token),)


# --- pods -------------------------------------------------------------------------------------
def test_pods_add_get_list_remove(
    stub: pb_grpc.CoreRPCStub, admin_user: Any, viewer: Any, outsider: Any, nodes: list[Node]
) -> None:
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.VIEWER)
    made = stub.AddPod(pb.AddPodOptions(name="web", desc="the web tier"), metadata=ADMIN, timeout=5)
    assert (made.name, made.desc) == ("web", "the web tier")
    assert Pod.objects.get(name="web").desc == "the web tier"
    event = AuditEvent.objects.get(action="pod.add", target_name="web")
    assert (event.via, event.actor_name) == ("grpc", "admin")
    assert etcd.pod_key("web") in etcd.get_prefix(etcd.key("/pod/"))

    assert stub.GetPod(pb.GetPodOptions(name="web"), metadata=ADMIN, timeout=5).desc == "the web tier"
    listed = stub.ListPods(pb.Empty(), metadata=ADMIN, timeout=5)
    assert [p.name for p in listed.pods] == ["eru", "web"]
    assert [p.name for p in stub.ListPods(pb.Empty(), metadata=VIEWER, timeout=5).pods] == ["eru"]
    assert list(stub.ListPods(pb.Empty(), metadata=OUTSIDER, timeout=5).pods) == []
    assert stub.GetPod(pb.GetPodOptions(name="eru"), metadata=VIEWER, timeout=5).name == "eru"

    code, message = _code(lambda: stub.GetPod(pb.GetPodOptions(name="web"), metadata=VIEWER, timeout=5))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "pod web not found")
    code, message = _code(lambda: stub.GetPod(pb.GetPodOptions(name="nope"), metadata=ADMIN, timeout=5))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "pod nope not found")
    code, message = _code(lambda: stub.AddPod(pb.AddPodOptions(name="web"), metadata=ADMIN, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pod web already exists" in message
    code, message = _code(lambda: stub.AddPod(pb.AddPodOptions(name="a b"), metadata=ADMIN, timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pod name" in message
    code, _ = _code(lambda: stub.AddPod(pb.AddPodOptions(name="mine"), metadata=VIEWER, timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, message = _code(lambda: stub.AddPod(pb.AddPodOptions(name="ro"), metadata=_read_only(admin_user)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "read-only" in message
    code, _ = _code(lambda: stub.ListPods(pb.Empty(), metadata=(("admin", "wrong"),), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = _code(lambda: stub.ListPods(pb.Empty(), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert not Pod.objects.filter(name__in=["a b", "mine", "ro"]).exists()

    code, message = _code(lambda: stub.RemovePod(pb.RemovePodOptions(name="eru"), metadata=ADMIN, timeout=5))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == "pod eru still has 2 nodes, delete them first"
    code, _ = _code(lambda: stub.RemovePod(pb.RemovePodOptions(name="eru"), metadata=VIEWER, timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = _code(lambda: stub.RemovePod(pb.RemovePodOptions(name="web"), metadata=OUTSIDER, timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND
    stub.RemovePod(pb.RemovePodOptions(name="web"), metadata=ADMIN, timeout=5)
    assert not Pod.objects.filter(name="web").exists()
    assert AuditEvent.objects.get(action="pod.remove", target_name="web").via == "grpc"
    assert etcd.pod_key("web") not in etcd.get_prefix(etcd.key("/pod/"))


# --- AddNode ----------------------------------------------------------------------------------
def _add(stub: pb_grpc.CoreRPCStub, tls: dict[str, str], metadata: Any = ADMIN, **fields: Any) -> pb.Node:
    options: dict[str, Any] = {
        "nodename": "node1",
        "endpoint": NODES["node1"],
        "podname": "eru",
        **tls,
        "resources": _cpumem(),
        **fields,
    }
    return stub.AddNode(pb.AddNodeOptions(**options), metadata=metadata, timeout=10)


def test_add_node_as_erucli_sends_it(
    stub: pb_grpc.CoreRPCStub, pod: Pod, admin_user: Any, tls: dict[str, str]
) -> None:
    storage = json.dumps({"storage": "0G", "disks": [], "volumes": ["0.0"]}).encode()  # `--storage 0`
    resources = {
        "cpumem": json.dumps({"cpu": 1, "share": "10", "memory": "2G", "numa-cpu": []}).encode(),
        "storage": storage,
    }
    node = _add(stub, tls, labels={"zone": "a"}, resources=resources)
    assert (node.name, node.podname, node.endpoint, dict(node.labels)) == (
        "node1",
        "eru",
        NODES["node1"],
        {"zone": "a"},
    )
    capacity = json.loads(node.resource_capacity)["cpumem"]
    assert (capacity["cpu"], capacity["cpu_map"], capacity["memory"]) == (1.0, {"0": 10}, 2 * GIB)
    assert json.loads(node.info)["NCPU"] >= 1
    row = Node.objects.get(name="node1")
    assert (row.cpu_map, row.share_base, row.memory, row.labels) == ({"0": 10}, 10, 2 * GIB, {"zone": "a"})
    assert row.tls() == (tls["ca"], tls["cert"], tls["key"])
    assert "PRIVATE KEY" not in row.tls_key
    event = AuditEvent.objects.get(action="node.add", target_name="node1")
    assert (event.via, event.actor_name, event.pod_name) == ("grpc", "admin", "eru")
    keys = etcd.get_prefix(etcd.key("/"))
    assert json.loads(keys[etcd.node_key("node1")])["labels"] == {"zone": "a"}
    assert etcd.pod_node_key("eru", "node1") in keys
    assert json.loads(keys[etcd.resource_key("node1")])["capacity"]["cpu_map"] == {"0": 10}
    wait_for(lambda: "node1" in etcd.alive_nodes(), timeout=5, interval=0.02)  # its first heartbeat

    # a detected capacity: cpu 0 and no memory, as erucli sends when neither flag is given
    node2 = _add(stub, tls, nodename="node2", endpoint=NODES["node2"], resources={"cpumem": b"{}"})
    info = Node.objects.get(name="node2").info
    assert json.loads(node2.resource_capacity)["cpumem"]["cpu"] == info["NCPU"]


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"podname": "nope"}, "NOT_FOUND", "pod nope not found"),
        ({"test": True}, "INVALID_ARGUMENT", "real Docker engines only"),
        ({"resources": {"cpumem": b"{cpu: 1"}}, "INVALID_ARGUMENT", "resources.cpumem: not JSON"),
        ({"resources": {"cpumem": b"[1]"}}, "INVALID_ARGUMENT", "resources.cpumem: a JSON object"),
        ({"resources": _cpumem(cpu=-1)}, "INVALID_ARGUMENT", "resources.cpumem.cpu: -1 cores"),
        ({"resources": _cpumem(cpu="0:100")}, "INVALID_ARGUMENT", "give a number of cores"),
        ({"resources": _cpumem(memory="8X")}, "INVALID_ARGUMENT", "'8X' is not a size"),
        ({"resources": _cpumem(memory="-2G")}, "INVALID_ARGUMENT", "memory: must be more than 0"),
        ({"resources": _cpumem(share="0.5")}, "INVALID_ARGUMENT", "resources.cpumem.share"),
        ({"resources": _cpumem(share=20000)}, "INVALID_ARGUMENT", "give 1 to 10000"),
        ({"resources": _cpumem(cpus=2)}, "INVALID_ARGUMENT", "resources.cpumem.cpus: not a cpumem field"),
        ({"resources": _cpumem(**{"numa-cpu": ["0,1"]})}, "INVALID_ARGUMENT", "NUMA"),
        (
            {"resources": {"gpu": b'{"count": 1}'}},
            "INVALID_ARGUMENT",
            "resources.gpu: no such resource plugin",
        ),
        (
            {"resources": {"cpumem": b"{}", "storage": b'{"storage": "10G"}'}},
            "INVALID_ARGUMENT",
            "resources.storage.storage: this project has no storage plugin",
        ),
        (
            {"resources": {"storage": b'{"volumes": ["/data:100G"]}'}},
            "INVALID_ARGUMENT",
            "no storage plugin",
        ),
        ({"resources": _cpumem(cpu=999)}, "INVALID_ARGUMENT", "erucli cannot over-commit"),
        ({"nodename": "a b"}, "INVALID_ARGUMENT", "node name"),
        ({"endpoint": "tcp://127.0.0.1:1"}, "INVALID_ARGUMENT", "cannot register tcp://127.0.0.1:1"),
        ({"ca": "", "cert": "", "key": ""}, "INVALID_ARGUMENT", "mutual TLS needs"),
    ],
)
def test_add_node_refusals_change_nothing(
    stub: pb_grpc.CoreRPCStub,
    pod: Pod,
    admin_user: Any,
    tls: dict[str, str],
    fields: Any,
    code: str,
    words: str,
) -> None:
    got, message = _code(lambda: _add(stub, tls, **fields))
    assert got == getattr(grpc.StatusCode, code), message
    assert words in message
    assert not Node.objects.exists()
    assert not AuditEvent.objects.filter(action="node.add").exists()
    assert etcd.get_prefix(etcd.key("/node/")) == {}


def test_add_node_rights_and_a_name_taken(
    stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, viewer: Any, tls: dict[str, str]
) -> None:
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.OWNER)
    code, message = _code(lambda: _add(stub, tls, nodename="node3", metadata=VIEWER))
    assert code == grpc.StatusCode.PERMISSION_DENIED, message
    code, _ = _code(lambda: _add(stub, tls, nodename="node3", metadata=OUTSIDER))
    assert code == grpc.StatusCode.UNAUTHENTICATED  # olga does not exist in this test
    code, message = _code(lambda: _add(stub, tls, nodename="node3", metadata=_read_only(admin_user)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "read-only" in message
    code, message = _code(lambda: _add(stub, tls))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "node node1 already exists")
    code, message = _code(lambda: _add(stub, tls, nodename="again"))  # node1's engine, another name
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "already registered as node node1" in message
    assert Node.objects.count() == 2


# --- ListPodNodes, GetNodeStatus --------------------------------------------------------------
def _names(stream: Iterator[pb.Node]) -> list[str]:
    return [n.name for n in stream]


def test_list_pod_nodes_filters_as_erucli_asks(
    stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, viewer: Any, outsider: Any
) -> None:
    wait_for(lambda: etcd.alive_nodes() == {"node1", "node2"}, timeout=5, interval=0.02)
    services.node_set(actor=services.SYSTEM, node=nodes[1], labels={"zone": "b", "ssd": "1"})
    services.node_set(actor=services.SYSTEM, node=nodes[0], bypass=True)

    def listed(metadata: Any = ADMIN, **options: Any) -> list[pb.Node]:
        return list(stub.ListPodNodes(pb.ListNodesOptions(**options), metadata=metadata, timeout=5))

    assert _names(listed(podname="eru")) == ["node2"]  # erucli pod nodes: the available ones
    everything = listed(podname="eru", all=True)  # erucli pod nodes --filter all
    assert _names(everything) == ["node1", "node2"]
    assert [(n.available, n.bypass) for n in everything] == [(False, True), (True, False)]
    assert json.loads(everything[1].info)["NCPU"] >= 1
    assert json.loads(everything[1].resource_capacity)["cpumem"]["memory"] == nodes[1].memory
    assert [n.info for n in listed(podname="eru", all=True, skip_info=True)] == ["", ""]
    assert _names(listed(podname="eru", all=True, labels={"zone": "b"})) == ["node2"]
    assert _names(listed(podname="eru", all=True, labels={"zone": "b", "ssd": "0"})) == []
    assert _names(listed(all=True)) == ["node1", "node2"]  # no pod: every pod's

    etcd.delete_heartbeat("node2")  # its lease gone: not available
    assert _names(listed(podname="eru")) == []
    assert _names(listed(podname="eru", all=True, timeout_in_second=1)) == ["node1", "node2"]

    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.VIEWER)
    assert _names(listed(VIEWER, podname="eru", all=True)) == ["node1", "node2"]
    assert _names(listed(OUTSIDER, all=True)) == []
    code, message = _code(lambda: listed(OUTSIDER, podname="eru"))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "pod eru not found")
    code, _ = _code(lambda: listed(podname="nope"))
    assert code == grpc.StatusCode.NOT_FOUND

    status = stub.GetNodeStatus(pb.GetNodeStatusOptions(nodename="node1"), metadata=VIEWER, timeout=5)
    assert (status.nodename, status.podname, status.alive) == ("node1", "eru", True)
    status = stub.GetNodeStatus(pb.GetNodeStatusOptions(nodename="node2"), metadata=ADMIN, timeout=5)
    assert status.alive is False
    code, message = _code(
        lambda: stub.GetNodeStatus(pb.GetNodeStatusOptions(nodename="node1"), metadata=OUTSIDER, timeout=5)
    )
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "node node1 not found")


# --- SetNode ----------------------------------------------------------------------------------
def _set(stub: pb_grpc.CoreRPCStub, metadata: Any = ADMIN, **fields: Any) -> pb.Node:
    options = {"nodename": "node1", "resources": _cpumem(), **fields}
    return stub.SetNode(pb.SetNodeOptions(**options), metadata=metadata, timeout=10)


def test_set_node_as_erucli_sends_it(stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any) -> None:
    node = _set(stub, resources=_cpumem(cpu="0:50", memory="1G"), labels={"zone": "a"})
    assert json.loads(node.resource_capacity)["cpumem"]["cpu_map"] == {"0": 50}
    assert dict(node.labels) == {"zone": "a"}
    row = Node.objects.get(name="node1")
    assert (row.cpu_map, row.memory, row.labels) == ({"0": 50}, GIB, {"zone": "a"})
    event = AuditEvent.objects.filter(action="node.set", target_name="node1").latest("pk")
    assert event.via == "grpc"
    assert event.after["cpu_map"] == {"0": 50}
    resource = json.loads(etcd.get_prefix(etcd.resource_key("node1"))[etcd.resource_key("node1")])
    assert resource["capacity"]["cpu_map"] == {"0": 50}

    _set(stub, resources=_cpumem(cpu="0:10", memory="512M"), delta=True)  # erucli node set --delta
    row.refresh_from_db()
    assert (row.cpu_map, row.memory, row.labels) == ({"0": 60}, GIB + (512 << 20), {"zone": "a"})
    _set(stub, resources=_cpumem(memory="-512M"), delta=True)
    _set(stub, resources=_cpumem(cpu="1", share="30"))  # one core of 30 pieces
    row.refresh_from_db()
    assert (row.cpu_map, row.memory, row.share_base) == ({"0": 30}, GIB, 100)

    assert _set(stub, bypass=pb.TriOpt.TRUE, resources={}).bypass is True  # erucli node down
    assert AuditEvent.objects.filter(action="node.down", target_name="node1", via="grpc").exists()
    assert _set(stub, bypass=pb.TriOpt.KEEP).bypass is True
    assert _set(stub, bypass=pb.TriOpt.FALSE, resources={}).bypass is False  # erucli node up
    assert AuditEvent.objects.filter(action="node.up", target_name="node1", via="grpc").exists()
    assert dict(_set(stub, labels={"zone": "b"}).labels) == {"zone": "b"}  # the map is replaced
    assert dict(_set(stub).labels) == {"zone": "b"}  # no --label: kept


def test_set_node_endpoint_and_certificates(
    stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, tls: dict[str, str]
) -> None:
    node = _set(stub, endpoint=NODES["node1"], **tls)  # the same engine answers with them: taken
    assert node.endpoint == NODES["node1"]
    event = AuditEvent.objects.filter(action="node.set", target_name="node1").latest("pk")
    assert event.via == "grpc"
    assert "PRIVATE KEY" not in json.dumps(event.after)
    code, message = _code(lambda: _set(stub, endpoint=NODES["node2"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "is another Docker engine" in message
    rogue = {name: (TLS_DIR / "rogue" / f"{name}.pem").read_text() for name in ("ca", "cert", "key")}
    code, message = _code(lambda: _set(stub, **rogue))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "nothing changed" in message
    row = Node.objects.get(name="node1")
    assert (row.endpoint, row.tls()) == (NODES["node1"], (tls["ca"], tls["cert"], tls["key"]))


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"nodename": "nope"}, "NOT_FOUND", "node nope not found"),
        ({"resources": _cpumem(cpu="0:x")}, "INVALID_ARGUMENT", "is not a number of pieces"),
        ({"resources": _cpumem(cpu="-1")}, "INVALID_ARGUMENT", "resources.cpumem.cpu: -1 cores"),
        ({"resources": _cpumem(cpu="0:-10")}, "INVALID_ARGUMENT", "cpu: core 0"),
        ({"resources": _cpumem(cpu="9999")}, "INVALID_ARGUMENT", "cpu"),
        ({"resources": _cpumem(cpu="999")}, "INVALID_ARGUMENT", "erucli cannot over-commit"),
        ({"resources": _cpumem(memory="lots")}, "INVALID_ARGUMENT", "'lots' is not a size"),
        ({"resources": _cpumem(memory="-1G")}, "INVALID_ARGUMENT", "memory"),
        ({"resources": _cpumem(share="50")}, "INVALID_ARGUMENT", "share: on a set, only with cpu"),
        ({"resources": {"cpumem": b"{"}}, "INVALID_ARGUMENT", "resources.cpumem: not JSON"),
        ({"resources": {"storage": b'{"rm-disks": "/dev/sdb"}'}}, "INVALID_ARGUMENT", "no storage plugin"),
        ({"resources": {"volume": b"{}"}}, "INVALID_ARGUMENT", "resources.volume: no such resource plugin"),
        ({"workloads_down": True}, "INVALID_ARGUMENT", "workloads_down (--mark-workloads-down)"),
        ({"labels": {"": "x"}}, "INVALID_ARGUMENT", "label"),
        ({"endpoint": "http://nowhere"}, "INVALID_ARGUMENT", "must be tcp://host:port"),
    ],
)
def test_set_node_refusals_change_nothing(
    stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, fields: Any, code: str, words: str
) -> None:
    before = Node.objects.values().get(name="node1")
    got, message = _code(lambda: _set(stub, **fields))
    assert got == getattr(grpc.StatusCode, code), message
    assert words in message, message
    assert Node.objects.values().get(name="node1") == before
    assert not AuditEvent.objects.filter(action__startswith="node.", via="grpc").exists()


def test_set_node_rights(
    stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, viewer: Any, outsider: Any
) -> None:
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.OWNER)
    code, _ = _code(lambda: _set(stub, VIEWER, bypass=pb.TriOpt.TRUE))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, message = _code(lambda: _set(stub, OUTSIDER, bypass=pb.TriOpt.TRUE))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "node node1 not found")
    code, message = _code(lambda: _set(stub, _read_only(admin_user), bypass=pb.TriOpt.TRUE))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "read-only" in message
    secret = services.node_secret_rotate(actor=services.SYSTEM, node=nodes[0])
    code, message = _code(lambda: _set(stub, (("node.node1", secret),), bypass=pb.TriOpt.TRUE))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "agent's calls only" in message
    assert Node.objects.get(name="node1").bypass is False


# --- resources --------------------------------------------------------------------------------
def test_node_and_pod_resource_with_fix(
    stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, viewer: Any
) -> None:
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.VIEWER)
    WorkloadFactory(node=nodes[0], memory_request=GIB, cpu_request=0.5)
    Node.objects.filter(name="node1").update(used_memory=GIB, used_cpu=0.5)  # as a deploy records it
    Node.objects.filter(name="node2").update(used_memory=3 * GIB)  # drift: no workload holds it

    def ask(metadata: Any = VIEWER, name: str = "node2", fix: bool = False) -> pb.NodeResource:
        options = pb.GetNodeResourceOptions(opts=pb.GetNodeOptions(nodename=name), fix=fix)
        return stub.GetNodeResource(options, metadata=metadata, timeout=5)

    drift = f"used memory: recorded {3 * GIB}, counted 0"
    seen = ask()
    assert (seen.name, list(seen.diffs)) == ("node2", [drift])
    assert json.loads(seen.resource_usage)["cpumem"]["memory"] == 3 * GIB
    assert json.loads(seen.resource_capacity)["cpumem"]["memory"] == nodes[1].memory

    by_node = {
        r.name: r for r in stub.GetPodResource(pb.GetPodOptions(name="eru"), metadata=VIEWER, timeout=5)
    }
    assert sorted(by_node) == ["node1", "node2"]
    assert list(by_node["node1"].diffs) == []
    assert list(by_node["node2"].diffs) == [drift]
    assert json.loads(by_node["node1"].resource_usage)["cpumem"]["cpu"] == 0.5

    code, _ = _code(lambda: ask(fix=True))  # a viewer may not fix
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, message = _code(lambda: ask(_read_only(admin_user), fix=True))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "read-only" in message
    assert list(ask(_read_only(admin_user)).diffs) == [drift]  # reading is a read-only token's
    assert Node.objects.get(name="node2").used_memory == 3 * GIB

    fixed = ask(ADMIN, fix=True)
    assert list(fixed.diffs) == [drift]  # what it repaired, as Eru answers
    assert json.loads(fixed.resource_usage)["cpumem"]["memory"] == 0
    assert Node.objects.get(name="node2").used_memory == 0
    event = AuditEvent.objects.get(action="node.resource_fix", target_name="node2")
    assert (event.via, event.before["memory"], event.after["memory"]) == ("grpc", 3 * GIB, 0)
    assert list(ask(ADMIN, fix=True).diffs) == []

    code, message = _code(lambda: ask(ADMIN, name="nope"))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "node nope not found")
    code, _ = _code(lambda: list(stub.GetPodResource(pb.GetPodOptions(name="nope"), metadata=ADMIN)))
    assert code == grpc.StatusCode.NOT_FOUND


# --- RemoveNode -------------------------------------------------------------------------------
def test_remove_node(stub: pb_grpc.CoreRPCStub, nodes: list[Node], admin_user: Any, viewer: Any) -> None:
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.OWNER)
    WorkloadFactory(node=nodes[0])

    def remove(metadata: Any = ADMIN, name: str = "node1") -> pb.Empty:
        return stub.RemoveNode(pb.RemoveNodeOptions(nodename=name), metadata=metadata, timeout=5)

    code, message = _code(remove)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == "node node1 not empty, still has workloads associated"
    Workload.objects.all().delete()
    code, _ = _code(lambda: remove(VIEWER))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, message = _code(lambda: remove(name="nope"))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, "node nope not found")
    assert Node.objects.filter(name="node1").exists()

    remove()
    assert not Node.objects.filter(name="node1").exists()
    assert AuditEvent.objects.get(action="node.remove", target_name="node1").via == "grpc"
    keys = etcd.get_prefix(etcd.key("/"))
    for key in (etcd.node_key("node1"), etcd.pod_node_key("eru", "node1"), etcd.resource_key("node1")):
        assert key not in keys
    assert "node1" not in etcd.alive_nodes()
    assert etcd.node_key("node2") in keys


# --- NodeStatusStream -------------------------------------------------------------------------
def _follow(call: Any) -> queue.Queue[Any]:
    """Read a stream on a thread of its own: its messages (then None, or its error) in a queue."""
    got: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for message in call:
                got.put(message)
            got.put(None)
        except grpc.RpcError as exc:
            got.put(exc)

    threading.Thread(target=read, daemon=True).start()
    return got


def test_node_status_stream_tells_liveness_changes(
    stub: pb_grpc.CoreRPCStub,
    register: Callable[..., Node],
    pod: Pod,
    admin_user: Any,
    viewer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pod_calls, "STATUS_POLL", 0.05)
    other = services.pod_add(actor=services.SYSTEM, name="other")
    register("node1")
    register("node2", pod=other)
    wait_for(lambda: etcd.alive_nodes() == {"node1", "node2"}, timeout=5, interval=0.02)
    PodMember.objects.create(pod=pod, user=viewer, role=PodMember.Role.VIEWER)

    admin_call = stub.NodeStatusStream(pb.Empty(), metadata=ADMIN, timeout=30)
    viewer_call = stub.NodeStatusStream(pb.Empty(), metadata=VIEWER, timeout=30)
    admin_seen, viewer_seen = _follow(admin_call), _follow(viewer_call)
    wait_for(lambda: base.streams.open == 2, timeout=5, interval=0.01)
    time.sleep(0.2)  # a few polls: each stream has read its baseline (a slot is taken before that)
    etcd.heartbeat("ghost", "eru", ttl=9)  # a key of a node this core does not know
    etcd.delete_heartbeat("node2")  # a node in a pod the viewer does not see
    etcd.delete_heartbeat("node1")

    def next_of(seen: queue.Queue[Any]) -> tuple[str, str, bool, str]:
        m = seen.get(timeout=5)
        return (m.nodename, m.podname, m.alive, m.error)

    assert next_of(viewer_seen) == ("node1", "eru", False, "")
    changes = {next_of(admin_seen) for _ in range(3)}  # one poll may see all three
    assert changes == {
        ("ghost", "", True, "node ghost not found"),
        ("node2", "other", False, ""),
        ("node1", "eru", False, ""),
    }
    etcd.heartbeat("node1", "eru", ttl=9)
    assert next_of(viewer_seen) == ("node1", "eru", True, "")
    assert next_of(admin_seen) == ("node1", "eru", True, "")
    assert admin_seen.empty()
    assert viewer_seen.empty()

    admin_call.cancel()
    viewer_call.cancel()
    wait_for(lambda: base.streams.open == 0, timeout=5, interval=0.01)  # their slots are given back

    secret = services.node_secret_rotate(actor=services.SYSTEM, node=Node.objects.get(name="node1"))
    refused = _follow(stub.NodeStatusStream(pb.Empty(), metadata=(("node.node1", secret),), timeout=5))
    error = refused.get(timeout=5)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

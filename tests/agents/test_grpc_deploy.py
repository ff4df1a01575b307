"""Deploying over the gRPC door as Eru's erucli does (CreateWorkload, CalculateCapacity, RunAndWait,
ReplaceWorkload), against the real nodes and worker: exactly erucli's shapes (dashed resource keys,
a storage entry of zeros, host network and user root by default), then Docker, etcd and the rows."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from rest_framework.test import APIClient

from clusters import etcd, services, sync
from clusters.models import AuditEvent, Deployment, LambdaRun, Node, PodMember, Workload
from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services
MiB = 1 << 20
DORA = (("dora", "pw-dora-1"),)
TRAPPED = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]  # stops at once (a bare sleep waits 10 s)


def resources(cpu: float = 0.1, memory: int = 16 * MiB, **storage: Any) -> dict[str, bytes]:
    """As erucli sends them: cpumem's four dashed keys (no cpu-bind unless set), storage always."""
    cpumem = {"cpu-request": 0, "cpu-limit": cpu, "memory-request": 0, "memory-limit": memory}
    store = {"storage-request": 0, "storage-limit": 0, "volumes-request": None, "volumes-limit": None}
    return {"cpumem": json.dumps(cpumem).encode(), "storage": json.dumps({**store, **storage}).encode()}


def erucli(*command: str, network: str = "host", **over: Any) -> pb.DeployOptions:
    """`erucli workload deploy --pod eru --entry web --image … [--network bridge] spec.yaml`."""
    fields: dict[str, Any] = {
        "name": "gapp",
        "entrypoint": pb.EntrypointOptions(name="web", commands=list(command) or ["sleep", "600"]),
        "resources": resources(),
        "podname": "eru",
        "node_filter": pb.NodeFilter(),
        "image": IMAGE,
        "count": 1,
        "networks": {network: ""},
        "user": "root",
        "raw_args": b"",
    }
    fields.update(over)
    return pb.DeployOptions(**fields)


@pytest.fixture
def dora(deployer: Any, nodes: list[Node]) -> Any:
    PodMember.objects.create(pod=nodes[0].pod, user=deployer, role=PodMember.Role.DEPLOYER)
    return deployer


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: Any = info.value
    return error.code(), str(error.details())


def test_create_workload_streams_each_workload_as_docker_etcd_and_the_rows_have_it(
    stub: pb_grpc.CoreRPCStub, dora: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    opts = erucli(network="bridge", count=2, env=["A=1"], labels={"v": "1"})
    messages = list(stub.CreateWorkload(opts, metadata=DORA, timeout=60))
    assert len(messages) == 2
    d = Deployment.objects.get()
    assert (d.state, d.succeeded, d.plan) == (Deployment.State.DONE, 2, {"node1": 1, "node2": 1})
    wait_for(lambda: sync.check().count == 0)
    keys = etcd.get_prefix(etcd.key("/"))
    for m in messages:
        assert m.success, m.error
        w = Workload.objects.select_related("node").get(container_id=m.id)
        assert (m.name, m.nodename, m.podname) == (w.name, w.node.name, "eru")
        assert w.state == Workload.State.RUNNING
        assert (w.cpu_limit, w.memory_limit, w.cpu_bind, w.network) == (0.1, 16 * MiB, False, "bridge")
        assert json.loads(m.resources)["cpumem"]["memory_limit"] == 16 * MiB
        assert m.hook == b""
        container = docker_clean[w.node.name].containers.get(m.id)
        assert container.status == "running"
        assert container.attrs["HostConfig"]["Memory"] == 16 * MiB
        assert container.attrs["HostConfig"]["NetworkMode"] == "bridge"
        assert "A=1" in container.attrs["Config"]["Env"]
        assert container.labels["v"] == "1"
        assert etcd.workload_key(m.id) in keys
        assert etcd.deploy_key("gapp", "web", w.node.name, m.id) in keys
    event = AuditEvent.objects.get(action="deployment.create")
    assert (event.via, event.actor_name) == ("grpc", "dora")


def test_erucli_s_defaults_and_what_cannot_be_honoured_are_refused_by_name(
    stub: pb_grpc.CoreRPCStub, dora: Any, viewer: Any, outsider: Any, nodes: list[Node]
) -> None:
    code, text = _code(lambda: list(stub.CreateWorkload(erucli(), metadata=DORA, timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "host_network" in text
    assert "--network bridge" in text
    storage = erucli(network="bridge", resources=resources(**{"storage-request": 1 << 30}))
    code, text = _code(lambda: list(stub.CreateWorkload(storage, metadata=DORA, timeout=10)))
    assert (code, "no storage plugin" in text) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    files = erucli(network="bridge", data={"/etc/x": b"x"}, user="app")
    code, text = _code(lambda: list(stub.CreateWorkload(files, metadata=DORA, timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "data:" in text
    assert "user:" in text
    PodMember.objects.create(pod=nodes[0].pod, user=viewer, role=PodMember.Role.VIEWER)
    vic = (("vic", "pw-vic-1"),)
    bridge = erucli(network="bridge")
    assert _code(lambda: list(stub.CreateWorkload(bridge, metadata=vic, timeout=10)))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    olga = (("olga", "pw-olga-1"),)
    assert _code(lambda: list(stub.CreateWorkload(bridge, metadata=olga, timeout=10)))[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    assert (
        _code(lambda: stub.CalculateCapacity(bridge, metadata=olga, timeout=10))[0]
        == grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: list(stub.CreateWorkload(bridge, timeout=10)))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert not Deployment.objects.exists()


def test_a_policy_that_grants_the_host_network_takes_erucli_s_default(
    stub: pb_grpc.CoreRPCStub, dora: Any, nodes: list[Node], worker: Any, docker_clean: dict[str, Any]
) -> None:
    services.pod_policy_set(actor=services.SYSTEM, pod=nodes[0].pod, fields={"host_network": True})
    (m,) = list(
        stub.CreateWorkload(erucli(node_filter=pb.NodeFilter(includes=["node2"])), metadata=DORA, timeout=60)
    )
    assert (m.success, m.nodename) == (True, "node2")
    assert docker_clean["node2"].containers.get(m.id).attrs["HostConfig"]["NetworkMode"] == "host"


def test_a_quota_refusal_is_resource_exhausted(
    stub: pb_grpc.CoreRPCStub, dora: Any, nodes: list[Node]
) -> None:
    team = services.team_add(actor=services.SYSTEM, name="web")
    services.team_member_add(actor=services.SYSTEM, team=team, user=dora)
    services.quota_set(actor=services.SYSTEM, pod=nodes[0].pod, team=team, workloads=1)
    code, text = _code(
        lambda: list(stub.CreateWorkload(erucli(network="bridge", count=2), metadata=DORA, timeout=10))
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "web" in text
    assert not Deployment.objects.exists()


def test_capacity_is_the_rest_api_s(stub: pb_grpc.CoreRPCStub, dora: Any, nodes: list[Node]) -> None:
    opts = erucli(resources=resources(cpu=0.5, memory=100 * MiB), deploy_strategy=pb.DeployOptions.DUMMY)
    got = stub.CalculateCapacity(opts, metadata=DORA, timeout=10)
    api = APIClient()
    api.force_authenticate(dora)
    body = {"pod": "eru", "cpu_limit": 0.5, "memory_limit": 100 * MiB, "cpu_bind": False}
    rest = api.post("/api/deployments/capacity/", body, format="json").json()
    assert rest["total"] > 0
    assert (got.total, dict(got.node_capacities)) == (rest["total"], rest["capacity"])
    one = stub.CalculateCapacity(
        erucli(resources=resources(cpu=0.5, memory=100 * MiB), node_filter=pb.NodeFilter(excludes=["node1"])),
        metadata=DORA,
        timeout=10,
    )
    assert dict(one.node_capacities) == {"node2": rest["capacity"]["node2"]}


def _lambda_options(*command: str, **over: Any) -> pb.RunAndWaitOptions:
    """`erucli lambda --pod eru --name run --image … [--stdin] -- command`: its DeployOptions."""
    deploy = pb.DeployOptions(
        name="lambda",
        entrypoint=pb.EntrypointOptions(name="run", commands=list(command), dir="/"),
        resources=resources(cpu=1.0, memory=512 * MiB),
        podname="eru",
        node_filter=pb.NodeFilter(),
        image=IMAGE,
        count=over.pop("count", 1),
        user="root",
        open_stdin=over.pop("open_stdin", False),
    )
    return pb.RunAndWaitOptions(deploy_options=deploy, **over)


class Requests:
    """The client's side of RunAndWait: the options, then whatever is put (None ends it)."""

    def __init__(self, first: pb.RunAndWaitOptions) -> None:
        self.q: queue.Queue[pb.RunAndWaitOptions | None] = queue.Queue()
        self.q.put(first)

    def send(self, cmd: bytes) -> None:
        self.q.put(pb.RunAndWaitOptions(cmd=cmd))

    def __iter__(self) -> Iterator[pb.RunAndWaitOptions]:
        while (item := self.q.get()) is not None:
            yield item


def test_run_and_wait_takes_stdin_and_ends_with_the_exit_code(
    stub: pb_grpc.CoreRPCStub, dora: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    requests = Requests(_lambda_options("sh", "-c", "wc -l; echo oops >&2; exit 3", open_stdin=True))
    requests.send(b"\n")  # erucli's first send, always
    requests.send(b"\x80" + json.dumps({"Row": 24, "Col": 80}).encode())  # a resize: not stdin
    for rune in b"ab\ncd\n":
        requests.send(bytes([rune]))  # erucli sends stdin rune by rune, and never half-closes
    t0 = time.monotonic()
    got = list(stub.RunAndWait(iter(requests), metadata=DORA, timeout=60))
    assert got[0].std_stream_type == pb.TYPEWORKLOADID
    name = got[0].workload_id
    assert name.startswith("lambda_run_")
    assert got[0].data == b""
    out = [(m.std_stream_type, m.data) for m in got[1:]]
    assert (pb.STDOUT, b"3\n") in out  # the leading newline is stdin too, as in Eru
    assert (pb.STDERR, b"oops\n") in out
    assert out[-1] == (pb.STDOUT, b"[exitcode] 3")
    assert all(m.workload_id == name for m in got)
    assert time.monotonic() - t0 < 20
    run = LambdaRun.objects.get()
    assert (run.state, run.exit_code, run.stdin) == (LambdaRun.State.DONE, 3, "\nab\ncd\n")
    assert AuditEvent.objects.get(action="lambda.run").via == "grpc"
    assert not Workload.objects.exists()


def test_run_and_wait_of_two_and_async(
    stub: pb_grpc.CoreRPCStub, dora: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    requests = Requests(_lambda_options("echo", "hi", count=2))
    requests.send(b"\n")
    requests.q.put(None)
    got = list(stub.RunAndWait(iter(requests), metadata=DORA, timeout=60))
    ids = [m.workload_id for m in got[:2]]
    assert [m.std_stream_type for m in got[:2]] == [pb.TYPEWORKLOADID, pb.TYPEWORKLOADID]
    for name in ids:
        mine = [m.data for m in got[2:] if m.workload_id == name]
        assert mine == [b"hi\n", b"[exitcode] 0"]
    async_first = _lambda_options("sleep", "1", **{"async": True, "async_timeout": 30})
    got = list(stub.RunAndWait(iter([async_first]), metadata=DORA, timeout=30))
    assert [m.std_stream_type for m in got] == [pb.TYPEWORKLOADID]  # Eru: the ids, then it runs on
    run = LambdaRun.objects.order_by("-pk").first()
    assert run is not None
    assert run.timeout == 30
    wait_for(lambda: LambdaRun.objects.get(pk=run.pk).is_final, timeout=30)
    bad = _lambda_options("true", **{"async": True, "async_timeout": 99999})
    code, text = _code(lambda: list(stub.RunAndWait(iter([bad]), metadata=DORA, timeout=10)))
    assert (code, text.startswith("async_timeout:")) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, _ = _code(
        lambda: list(stub.RunAndWait(iter([pb.RunAndWaitOptions(cmd=b"x")]), metadata=DORA, timeout=10))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_replace_swaps_the_container(
    stub: pb_grpc.CoreRPCStub,
    dora: Any,
    worker: Any,
    docker_clean: dict[str, Any],
    deploy: Callable[..., Any],
) -> None:
    old = deploy(*TRAPPED, labels={"v": "1"})
    opts = pb.ReplaceOptions(
        deployOpt=pb.DeployOptions(
            name="sw",
            entrypoint=pb.EntrypointOptions(name="e", commands=[*TRAPPED, "new"]),
            podname="",
            node_filter=pb.NodeFilter(),
            image=IMAGE,
            count=1,
            user="root",
        ),
        filter_labels={"v": "1"},
    )  # erucli workload replace --entry e --image …: no pod, no network, no resources
    (m,) = list(stub.ReplaceWorkload(opts, metadata=DORA, timeout=60))
    assert m.error == ""
    assert (m.remove.id, m.remove.success) == (old.container_id, True)
    assert m.create.success
    assert m.create.id != old.container_id
    new = Workload.objects.get()
    assert (new.container_id, new.command) == (m.create.id, [*TRAPPED, "new"])
    client = docker_clean["node1"]
    assert client.containers.get(m.create.id).status == "running"
    assert [c.id for c in client.containers.list(all=True, filters={"label": "ERU=1"})] == [m.create.id]
    assert AuditEvent.objects.get(action="workload.replace").via == "grpc"
    by_id = pb.ReplaceOptions(deployOpt=opts.deployOpt, IDs=[m.create.id[:12]], copy={"/a": "/b"})
    code, text = _code(lambda: list(stub.ReplaceWorkload(by_id, metadata=DORA, timeout=10)))
    assert (code, text.startswith("copy:")) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    nothing = pb.ReplaceOptions(deployOpt=opts.deployOpt, filter_labels={"v": "2"}, IDs=[m.create.id[:12]])
    assert _code(lambda: list(stub.ReplaceWorkload(nothing, metadata=DORA, timeout=10)))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    host = pb.DeployOptions()
    host.CopyFrom(opts.deployOpt)
    host.networks["host"] = ""  # erucli deploy --auto-replace: its deploy's default network
    code, text = _code(lambda: list(stub.ReplaceWorkload(pb.ReplaceOptions(deployOpt=host), metadata=DORA)))
    assert (code, "--network bridge" in text) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    gone = pb.ReplaceOptions(deployOpt=opts.deployOpt, IDs=["f" * 64])
    assert (
        _code(lambda: list(stub.ReplaceWorkload(gone, metadata=DORA, timeout=10)))[0]
        == grpc.StatusCode.NOT_FOUND
    )


def test_a_client_that_goes_away_cancels_its_lambda(
    stub: pb_grpc.CoreRPCStub, dora: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    requests = Requests(_lambda_options("sh", "-c", "echo up; sleep 60"))
    call = stub.RunAndWait(iter(requests), metadata=DORA, timeout=60)
    assert next(call).std_stream_type == pb.TYPEWORKLOADID
    assert next(call).data == b"up\n"
    call.cancel()  # erucli's ^C: Eru's lambda ends with its call
    run = wait_for(lambda: (r := LambdaRun.objects.get()).is_final and r, timeout=20)
    assert run.state == LambdaRun.State.CANCELLED
    event = AuditEvent.objects.get(action="lambda.cancel")
    assert (event.actor_name, event.via) == ("dora", "grpc")


def test_a_lambda_that_cannot_start_says_why_and_exits_non_zero(
    stub: pb_grpc.CoreRPCStub, dora: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    got = list(stub.RunAndWait(iter([_lambda_options("/no/such/command")]), metadata=DORA, timeout=60))
    kinds = [m.std_stream_type for m in got]
    assert kinds[0] == pb.TYPEWORKLOADID
    assert pb.ERUERROR in kinds
    assert got[-1].data == b"[exitcode] 1"  # erucli exits 1
    assert LambdaRun.objects.get().state == LambdaRun.State.FAILED


def test_a_workload_that_fails_is_a_message_with_its_error(
    stub: pb_grpc.CoreRPCStub, dora: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    opts = erucli(network="bridge", image="eru/nosuch:latest")  # never pulled: not on the nodes
    (m,) = list(stub.CreateWorkload(opts, metadata=DORA, timeout=60))
    assert (m.success, m.id) == (False, "")
    assert "nosuch" in m.error
    assert m.name == Workload.objects.get().name
    assert Deployment.objects.get().state == Deployment.State.FAILED


def test_a_client_gone_after_the_ids_cancels_and_one_gone_mid_stdin_makes_nothing(
    stub: pb_grpc.CoreRPCStub,
    dora: Any,
    worker: Any,
    docker_clean: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agents.grpc_server import deploy_calls

    # A quiet while well past the client's 0.2 s: its cancel always lands mid-stdin, however slow the
    # machine (at 0.5 s, a loaded CI let the quiet while end first and the lambda be made).
    monkeypatch.setattr(deploy_calls, "STDIN_QUIET", 3.0)
    call = stub.RunAndWait(iter(Requests(_lambda_options("sleep", "60"))), metadata=DORA, timeout=60)
    assert next(call).std_stream_type == pb.TYPEWORKLOADID
    call.cancel()  # before any output: the run must not go on unwatched
    run = wait_for(lambda: (r := LambdaRun.objects.get()).is_final and r, timeout=20)
    assert run.state == LambdaRun.State.CANCELLED
    requests = Requests(_lambda_options("cat", open_stdin=True))
    requests.send(b"\n")
    for _ in range(3):
        requests.send(b"x")  # then the client dies, mid-stdin: no lambda with half its stdin
    call = stub.RunAndWait(iter(requests), metadata=DORA, timeout=60)
    time.sleep(0.2)
    call.cancel()
    time.sleep(deploy_calls.STDIN_QUIET + 1.0)  # past it: a lambda would have been made by now
    assert LambdaRun.objects.count() == 1


def test_a_bidirectional_call_with_no_first_message_ends_in_time(
    stub: pb_grpc.CoreRPCStub, dora: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.grpc_server import base

    monkeypatch.setattr(base, "FIRST_WAIT", 0.5)
    for call in (stub.RunAndWait, stub.ExecuteWorkload):
        # a client that opens the call and says nothing; one queue each, so the 0 that ends the
        # first client's sending thread cannot be taken by the second call's (it half-closes then)
        silent: queue.Queue[int] = queue.Queue()
        began = time.monotonic()
        code, text = _code(
            lambda call=call, silent=silent: list(call(iter(silent.get, 0), metadata=DORA, timeout=10))
        )
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, text
        assert "no first message" in text
        assert time.monotonic() - began < 5
        silent.put(0)  # the client's own sending thread ends
    wait_for(lambda: base.streams.open == 0, timeout=5)


def test_a_deploy_while_etcd_is_down_is_unavailable_and_makes_nothing(
    stub: pb_grpc.CoreRPCStub, dora: Any, cluster: Any
) -> None:
    cluster.stop("etcd")
    try:
        code, text = _code(
            lambda: list(stub.CreateWorkload(erucli(network="bridge"), metadata=DORA, timeout=30))
        )
        assert code == grpc.StatusCode.UNAVAILABLE, text
        assert "etcd" in text
        assert stub.ListPods(pb.Empty(), metadata=DORA, timeout=10).pods  # reads keep working
    finally:
        cluster.start("etcd")
    assert not Deployment.objects.exists()

"""Eru's workload calls at the gRPC door (agents/grpc_server/workload_calls.py and stream_calls.py),
through a client built from our .proto, sending what erucli sends, against the real nodes: Docker,
etcd and the rows looked at behind the door's back."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from agents.grpc_server import base, stream_calls
from clusters import etcd, services
from clusters.models import Dissociated, PodMember, Workload
from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc
from tests.conftest import wait_for

pytestmark = pytest.mark.services
M = 1 << 20
DORA = (("dora", "pw-dora-1"),)
VIC = (("vic", "pw-vic-1"),)
OLGA = (("olga", "pw-olga-1"),)
ADMIN = (("admin", "pw-admin-1"),)
Md = tuple[tuple[str, str], ...]


@pytest.fixture
def people(nodes: list[Any], deployer: Any, viewer: Any, outsider: Any, admin_user: Any) -> dict[str, Any]:
    """dora deploys in pod eru, vic views it, olga is in no pod."""
    pod = nodes[0].pod
    PodMember.objects.create(pod=pod, user=deployer, role=PodMember.Role.DEPLOYER)
    PodMember.objects.create(pod=pod, user=viewer, role=PodMember.Role.VIEWER)
    return {"dora": deployer, "vic": viewer, "olga": outsider, "admin": admin_user}


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    return info.value.code(), info.value.details()  # type: ignore[attr-defined]


def _cpumem(**keys: Any) -> bytes:
    return json.dumps(keys).encode()


def _storage(request: int = 0) -> bytes:
    """What erucli always sends beside cpumem."""
    return json.dumps(
        {"storage-request": request, "storage-limit": 0, "volumes-request": None, "volumes-limit": None}
    ).encode()


def _host(docker: dict[str, Any], w: Workload) -> dict[str, Any]:
    return docker[w.node.name].containers.get(w.container_id).attrs["HostConfig"]  # type: ignore[no-any-return]


def test_lists_and_gets_show_what_each_may_see(
    stub: pb_grpc.CoreRPCStub, people: dict[str, Any], deploy: Callable[..., Any]
) -> None:
    web = deploy("sleep", "600", count=2, env=["SECRET=s3cret"], labels={"tier": "web"})
    db = deploy("sleep", "600", node="node2", entrypoint="f", labels={"tier": "db"})
    Workload.objects.filter(pk=web[1].pk).update(state=Workload.State.PENDING, container_id="")  # none yet
    listed = list(stub.ListWorkloads(pb.ListWorkloadsOptions(appname="sw"), metadata=DORA))
    assert sorted(w.id for w in listed) == sorted([web[0].container_id, db.container_id])  # not the pending
    mine = next(w for w in listed if w.id == web[0].container_id)
    assert (mine.podname, mine.nodename, mine.name, mine.labels["tier"]) == (
        "eru",
        "node1",
        web[0].name,
        "web",
    )
    assert "SECRET=s3cret" in mine.env  # a deployer sees the pod's secrets
    assert mine.status.running
    assert json.loads(mine.resources)["cpumem"]["cpu_limit"] == 0.1

    def ids(**options: Any) -> list[str]:
        return [w.id for w in stub.ListWorkloads(pb.ListWorkloadsOptions(**options), metadata=DORA)]

    assert ids(appname="sw", labels={"tier": "db"}) == [db.container_id]
    assert ids(appname="sw", entrypoint="f") == [db.container_id]
    assert ids(nodename="node1") == [web[0].container_id]
    assert len(ids(limit=1)) == 1
    assert ids(appname="nope") == []

    short = web[0].container_id[:12]
    assert stub.GetWorkload(pb.WorkloadID(id=short), metadata=DORA).id == web[0].container_id
    assert stub.GetWorkload(pb.WorkloadID(id=db.name), metadata=DORA).id == db.container_id
    got = stub.GetWorkloads(pb.WorkloadIDs(IDs=[short, db.container_id]), metadata=DORA)
    assert [w.id for w in got.workloads] == [web[0].container_id, db.container_id]
    status = stub.GetWorkloadsStatus(pb.WorkloadIDs(IDs=[db.container_id]), metadata=DORA).status
    assert (status[0].id, status[0].running, status[0].nodename, status[0].appname) == (
        db.container_id, True, "node2", "sw",
    )  # fmt: skip
    node1 = stub.ListNodeWorkloads(pb.GetNodeOptions(nodename="node1"), metadata=DORA).workloads
    assert [w.id for w in node1] == [web[0].container_id]
    filtered = pb.GetNodeOptions(nodename="node2", labels={"tier": "web"})
    assert list(stub.ListNodeWorkloads(filtered, metadata=DORA).workloads) == []

    assert (
        _code(lambda: stub.GetWorkload(pb.WorkloadID(id="f" * 64), metadata=DORA))[0]
        == grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: stub.GetWorkload(pb.WorkloadID(id=short[:6]), metadata=DORA))[0] == (
        grpc.StatusCode.NOT_FOUND  # a prefix shorter than 7 is no id
    )
    nodeless = pb.GetNodeOptions(nodename="")
    assert (
        _code(lambda: stub.ListNodeWorkloads(nodeless, metadata=DORA))[0] == grpc.StatusCode.INVALID_ARGUMENT
    )
    ghost = pb.GetNodeOptions(nodename="ghost")
    assert _code(lambda: stub.ListNodeWorkloads(ghost, metadata=DORA))[0] == grpc.StatusCode.NOT_FOUND
    missing = pb.WorkloadIDs(IDs=[db.container_id, "nope-nope"])
    assert _code(lambda: stub.GetWorkloadsStatus(missing, metadata=DORA))[0] == grpc.StatusCode.NOT_FOUND

    # A viewer sees the workloads, env keys without their values; an outsider sees none of them.
    seen = list(stub.ListWorkloads(pb.ListWorkloadsOptions(appname="sw", entrypoint="e"), metadata=VIC))
    assert [list(w.env) for w in seen] == [["SECRET=******"]]
    assert stub.GetWorkload(pb.WorkloadID(id=short), metadata=VIC).env == ["SECRET=******"]
    assert list(stub.ListWorkloads(pb.ListWorkloadsOptions(), metadata=OLGA)) == []
    assert (
        _code(lambda: stub.GetWorkload(pb.WorkloadID(id=short), metadata=OLGA))[0]
        == grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: stub.ListNodeWorkloads(pb.GetNodeOptions(nodename="node1"), metadata=OLGA))[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: stub.ListWorkloads(pb.ListWorkloadsOptions(), metadata=(("dora", "x"),)))[0] == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    code, details = _code(lambda: stub.Send(pb.SendOptions(IDs=[short]), metadata=DORA))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "does not copy files" in details


def test_control_is_answered_once_the_worker_did_it(
    stub: pb_grpc.CoreRPCStub,
    people: dict[str, Any],
    deploy: Callable[..., Any],
    docker_clean: dict[str, Any],
) -> None:
    w, other = deploy("sleep", "600", count=2)
    container = docker_clean["node1"].containers.get(w.container_id)

    def control(kind: str, *ids: str, md: Md = DORA, **extra: Any) -> list[pb.ControlWorkloadMessage]:
        return list(
            stub.ControlWorkload(pb.ControlWorkloadOptions(IDs=list(ids), type=kind, **extra), metadata=md)
        )

    answers = control("stop", w.container_id[:12])  # as erucli: the short id
    assert [(m.id, m.error) for m in answers] == [(w.container_id, "")]
    container.reload()
    assert container.status == "exited"  # the worker did it before the answer
    assert Workload.objects.get(pk=w.pk).state == Workload.State.STOPPED
    assert [m.error for m in control("start", w.name)] == [""]
    container.reload()
    assert container.status == "running"
    started = container.attrs["State"]["StartedAt"]
    assert [m.error for m in control("restart", w.container_id, other.container_id)] == ["", ""]
    container.reload()
    assert container.status == "running"
    assert container.attrs["State"]["StartedAt"] != started

    Workload.objects.filter(pk=other.pk).update(state=Workload.State.REMOVING)
    refused = control("stop", other.container_id)
    assert refused[0].id == other.container_id
    assert "is removing" in refused[0].error  # that id's answer, as Eru gives it

    assert _code(lambda: control("pause", w.container_id))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: control("stop", w.container_id, force=True))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: control("stop"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: control("stop", w.container_id, "f" * 64))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: control("stop", w.container_id, md=VIC))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: control("stop", w.container_id, md=OLGA))[0] == grpc.StatusCode.NOT_FOUND
    _, token = services.token_create(actor=services.SYSTEM, user=people["dora"], name="ro", read_only=True)
    read_only = (("dora", token),)
    assert stub.GetWorkload(pb.WorkloadID(id=w.container_id), metadata=read_only).id == w.container_id
    code, details = _code(lambda: control("stop", w.container_id, md=read_only))
    assert (code, "read-only" in details) == (grpc.StatusCode.PERMISSION_DENIED, True)
    container.reload()
    assert container.status == "running"  # none of the refused calls did anything


def test_realloc_takes_erucli_s_dashed_keys(
    stub: pb_grpc.CoreRPCStub,
    people: dict[str, Any],
    deploy: Callable[..., Any],
    docker_clean: dict[str, Any],
) -> None:
    w = deploy("sleep", "600", cpu_request=0.1, cpu_limit=0.1, memory_limit="16M")
    grow = {
        "cpumem": _cpumem(
            **{"cpu-request": 0.1, "cpu-limit": 0.4, "memory-request": 0, "memory-limit": 16 * M},
            **{"keep-cpu-bind": True},
        ),
        "storage": _storage(),
    }
    answer = stub.ReallocResource(pb.ReallocOptions(id=w.container_id[:12], resources=grow), metadata=DORA)
    assert answer.error == ""
    host = _host(docker_clean, w)
    assert (host["CpuQuota"], host["CpuPeriod"], host["Memory"]) == (50_000, 100_000, 32 * M)
    row = Workload.objects.get(pk=w.pk)
    assert (row.cpu_request, row.cpu_limit, row.memory_limit, row.cpu_bind) == (0.2, 0.5, 32 * M, False)

    def refused(resources: dict[str, bytes], md: Md = DORA, ident: str = w.container_id) -> tuple[Any, str]:
        return _code(
            lambda: stub.ReallocResource(pb.ReallocOptions(id=ident, resources=resources), metadata=md)
        )

    code, details = refused({"cpumem": _cpumem(**{"cpu-limit": 0.1}), "storage": _storage(1 << 30)})
    assert (code, "no storage plugin" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, details = refused({"cpumem": _cpumem(**{"cpu-limit": 0.1}), "gpu": b"{}"})
    assert (code, "gpu" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, details = refused({"cpumem": _cpumem(**{"cpu-limits": 0.1})})
    assert (code, "cpu-limits" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, details = refused({"cpumem": _cpumem(**{"memory-request": 1 << 50, "memory-limit": 1 << 50})})
    assert (code, "node node1 has" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    assert refused({"cpumem": _cpumem(**{"cpu-limit": 0.1})}, md=VIC)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert refused({"cpumem": _cpumem(**{"cpu-limit": 0.1})}, md=OLGA)[0] == grpc.StatusCode.NOT_FOUND
    assert refused({}, ident="")[0] == grpc.StatusCode.INVALID_ARGUMENT
    Workload.objects.filter(pk=w.pk).update(action="stop")
    code, details = refused({"cpumem": _cpumem(**{"cpu-limit": 0.1})})
    assert (code, "in flight" in details) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    assert _host(docker_clean, w)["Memory"] == 32 * M  # nothing refused changed anything


def test_remove_and_dissociate(
    stub: pb_grpc.CoreRPCStub,
    people: dict[str, Any],
    deploy: Callable[..., Any],
    docker_clean: dict[str, Any],
) -> None:
    gone, kept, busy = deploy("sleep", "600", count=3)
    assert etcd.get_prefix(etcd.workload_key(gone.container_id))

    def remove(*ids: str, md: Md = DORA) -> list[pb.RemoveWorkloadMessage]:
        return list(stub.RemoveWorkload(pb.RemoveWorkloadOptions(IDs=list(ids), force=True), metadata=md))

    assert _code(lambda: remove(gone.container_id, md=VIC))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: remove(gone.container_id, "f" * 64))[0] == grpc.StatusCode.NOT_FOUND
    assert [(m.id, m.success) for m in remove(gone.container_id[:12])] == [(gone.container_id, True)]
    assert not docker_clean["node1"].containers.list(all=True, filters={"id": gone.container_id})
    assert not Workload.objects.filter(pk=gone.pk).exists()
    assert not etcd.get_prefix(etcd.workload_key(gone.container_id))
    assert not etcd.get_prefix(etcd.deploy_key("sw", "e", "node1", gone.container_id))

    Workload.objects.filter(pk=busy.pk).update(action="replace")
    answer = remove(busy.container_id)
    assert (answer[0].success, "being replaced" in answer[0].hook) == (False, True)

    def dissociate(*ids: str, md: Md = DORA) -> list[pb.DissociateWorkloadMessage]:
        return list(stub.DissociateWorkload(pb.DissociateWorkloadOptions(IDs=list(ids)), metadata=md))

    assert _code(lambda: dissociate(kept.container_id, md=VIC))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: dissociate(kept.container_id, md=OLGA))[0] == grpc.StatusCode.NOT_FOUND
    answers = dissociate(kept.name, busy.container_id)
    assert [m.id for m in answers] == [kept.container_id, busy.container_id]
    assert answers[0].error == ""
    assert "busy" in answers[1].error  # one refused does not keep the other
    assert docker_clean["node1"].containers.get(kept.container_id).status == "running"
    assert not Workload.objects.filter(pk=kept.pk).exists()
    assert Dissociated.objects.filter(container_id=kept.container_id).exists()
    assert Workload.objects.filter(pk=busy.pk).exists()


def test_logs_and_exec(
    stub: pb_grpc.CoreRPCStub, people: dict[str, Any], deploy: Callable[..., Any], settings: Any
) -> None:
    settings.ERU_STREAM_IDLE = 1
    w = deploy("sh", "-c", "echo one; echo two >&2; echo three; while true; do sleep 0.3; echo tick; done")
    wait_for(lambda: len(list(stub.LogStream(pb.LogStreamOptions(id=w.container_id), metadata=DORA))) >= 4)

    def log(md: Md = DORA, **options: Any) -> Any:
        return stub.LogStream(pb.LogStreamOptions(id=w.container_id, **options), metadata=md)

    first = list(log())[:3]  # Docker may keep a stderr line before the stdout line written before it
    assert sorted((m.id, m.data, m.std_stream_type) for m in first) == [
        (w.container_id, b"one\n", pb.STDOUT), (w.container_id, b"three\n", pb.STDOUT),
        (w.container_id, b"two\n", pb.STDERR),
    ]  # fmt: skip
    assert [m.data for m in log(tail="1")] == [b"tick\n"]
    assert list(log(until="1")) == []  # nothing before 1970-01-01T00:00:01
    assert list(log(since=str(int(time.time()) + 3600))) == []
    follow = log(tail="0", follow=True)
    assert [next(follow).data for _ in range(2)] == [b"tick\n", b"tick\n"]  # new lines as they come
    follow.cancel()
    until = log(tail="0", follow=True, until=str(time.time() + 1.5))
    assert 2 <= len(list(until)) <= 8  # a follow ends at its until
    assert _code(lambda: log(until="soon"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: log(tail="-1"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: log(md=VIC))[0] == grpc.StatusCode.PERMISSION_DENIED  # logs carry secrets
    assert _code(lambda: log(md=OLGA))[0] == grpc.StatusCode.NOT_FOUND

    def execute(md: Md = DORA, **options: Any) -> list[pb.AttachWorkloadMessage]:
        first = pb.ExecuteWorkloadOptions(workload_id=w.container_id[:12], **options)
        return list(stub.ExecuteWorkload(iter([first]), metadata=md))

    out = execute(
        ADMIN, commands=["sh", "-c", "echo hi; echo $X >&2; cd; pwd; exit 3"], envs=["X=ex"], workdir="/tmp"
    )
    assert [(m.data, m.std_stream_type) for m in out[:-1] if m.std_stream_type == pb.STDERR] == [
        (b"ex\n", pb.STDERR)
    ]
    assert [m.data for m in out[:-1] if m.std_stream_type == pb.STDOUT] == [b"hi\n", b"/root\n"]
    assert (out[-1].data, out[-1].workload_id) == (b"[exitcode] 3", w.container_id)  # erucli exits with 3
    assert execute(ADMIN, commands=["true"])[-1].data == b"[exitcode] 0"
    assert _code(lambda: execute(commands=["true"]))[0] == grpc.StatusCode.PERMISSION_DENIED  # owners only
    code, details = _code(lambda: execute(ADMIN, commands=["sh"], open_stdin=True))
    assert (code, "--interactive" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    assert _code(lambda: execute(ADMIN, commands=[]))[0] == grpc.StatusCode.INVALID_ARGUMENT
    Workload.objects.filter(pk=w.pk).update(state=Workload.State.STOPPED)
    assert _code(lambda: execute(ADMIN, commands=["true"]))[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_the_status_stream_tells_changes_and_removals(
    stub: pb_grpc.CoreRPCStub,
    people: dict[str, Any],
    deploy: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_calls, "POLL", 0.2)
    w, quiet = deploy("sleep", "600", count=2, labels={"watch": "yes"})
    Workload.objects.filter(pk=quiet.pk).update(labels={})
    watch = stub.WorkloadStatusStream(
        pb.WorkloadStatusStreamOptions(appname="sw", labels={"watch": "yes"}), metadata=VIC
    )
    got: list[pb.WorkloadStatusStreamMessage] = []

    def read() -> None:
        with contextlib.suppress(grpc.RpcError):  # CANCELLED, at the end
            got.extend(watch)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: base.streams.open == 1)
    time.sleep(0.5)
    assert got == []  # changes only, from the start of the watch
    services.workload_control(actor=services.SYSTEM, workload=w, action="stop")
    services.workload_control(actor=services.SYSTEM, workload=quiet, action="stop")
    wait_for(lambda: any(not m.status.running for m in got), timeout=30)
    change = next(m for m in got if not m.status.running)
    assert (change.id, change.workload.id, change.status.status, change.delete) == (
        w.container_id, w.container_id, "exited", False,
    )  # fmt: skip
    assert change.workload.env == []
    services.workload_remove(actor=services.SYSTEM, workload=Workload.objects.get(pk=w.pk))
    wait_for(lambda: any(m.delete for m in got), timeout=30)
    assert {m.id for m in got} == {w.container_id}  # not the workload without the label
    watch.cancel()
    reader.join(timeout=5)
    wait_for(lambda: base.streams.open == 0, timeout=5)


def test_idle_followers_are_bounded_and_unary_calls_still_answer(
    stub: pb_grpc.CoreRPCStub,
    people: dict[str, Any],
    deploy: Callable[..., Any],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.ERU_STREAM_IDLE = 1
    monkeypatch.setattr(base, "streams", base.Streams(50))
    w = deploy("sleep", "600")  # a quiet container: its followers wait on Docker
    options = pb.LogStreamOptions(id=w.container_id, follow=True)
    followers = [stub.LogStream(options, metadata=DORA) for _ in range(50)]
    wait_for(lambda: base.streams.open == 50, timeout=20)
    for _ in range(5):
        began = time.monotonic()
        assert stub.Info(pb.Empty(), metadata=DORA).version
        assert stub.GetWorkload(pb.WorkloadID(id=w.container_id), metadata=DORA).id == w.container_id
        assert time.monotonic() - began < 1.0
    began = time.monotonic()
    code, details = _code(lambda: stub.LogStream(options, metadata=DORA))
    assert (code, "at most 50 streams" in details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, True)
    assert time.monotonic() - began < 1.0  # at once, not after a wait
    assert _code(lambda: stub.WorkloadStatusStream(pb.WorkloadStatusStreamOptions(), metadata=DORA))[0] == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    for follower in followers:
        follower.cancel()
    wait_for(lambda: base.streams.open == 0, timeout=10)  # each one's slot back within a quiet while
    again = stub.LogStream(options, metadata=DORA)
    wait_for(lambda: base.streams.open == 1, timeout=5)
    again.cancel()
    wait_for(lambda: base.streams.open == 0, timeout=10)

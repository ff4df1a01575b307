"""Faults, each with nothing lost: a control action asked while the broker is down (or whose message
the broker lost) is sent again and carried out once; a mirror write etcd refused lands within
seconds of etcd being back; recovery audits what it resolves."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents import tasks
from clusters import etcd, queue, services, sync
from clusters.models import AuditEvent, Workload
from tests.conftest import wait_for

pytestmark = pytest.mark.services


def _row(w: Workload) -> Workload:
    return Workload.objects.get(pk=w.pk)


def _audits(w: Workload, action: str) -> int:
    return AuditEvent.objects.filter(action=action, target_id=str(w.pk)).count()


def _beat(predicate: Callable[[], Any]) -> Callable[[], Any]:
    """What beat does every 5 s (here every poll): send lost control requests again, then look."""

    def look() -> Any:
        tasks.resend_actions()
        return predicate()

    return look


def test_a_stop_asked_while_redis_is_down_is_carried_out_once_it_is_back(
    deploy: Callable[..., Any], cluster: Any, docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    w = deploy("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done")  # stops at once
    monkeypatch.setattr(tasks, "STALE_ACTION", 2)
    cluster.stop("redis")
    try:
        asked = time.monotonic()
        services.workload_control(actor=services.SYSTEM, workload=w, action="stop")  # the send fails
        assert time.monotonic() - asked < 10  # the user is not kept waiting for the broker
        assert _row(w).action == "stop"
        time.sleep(3)
    finally:
        cluster.start("redis")
    back = time.monotonic()
    row = wait_for(_beat(lambda: (r := _row(w)).state == Workload.State.STOPPED and r), timeout=60)
    delay = time.monotonic() - back
    print(f"stop carried out {delay:.1f} s after the broker was back")
    assert delay < 15
    assert row.action == ""
    assert row.task_id == ""
    assert docker_clean["node1"].containers.get(w.container_id).status == "exited"
    time.sleep(1)  # copies sent again meanwhile find it done
    tasks.resend_actions()
    time.sleep(1)
    assert _audits(w, "workload.stopped") == 1
    assert _audits(w, "workload.stop") == 1


def test_a_restart_whose_message_was_lost_runs_once(
    deploy: Callable[..., Any], docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    from celery import current_app

    w = deploy("sleep", "600")
    container = docker_clean["node1"].containers.get(w.container_id)
    started = container.attrs["State"]["StartedAt"]
    lost: list[tuple[Any, ...]] = []
    send = current_app.send_task

    def lose(name: str, args: Any = None, task_id: str | None = None, **kw: Any) -> Any:
        if name == "agents.control_workload" and not lost:  # the broker took it, then lost it
            lost.append((args, task_id))
            return None
        return send(name, args=args, task_id=task_id, **kw)

    monkeypatch.setattr(queue.current_app, "send_task", lose)
    services.workload_control(actor=services.SYSTEM, workload=w, action="restart")
    assert lost
    time.sleep(1)
    assert _row(w).action == "restart"  # nothing came: the request waits
    Workload.objects.filter(pk=w.pk).update(updated_at=timezone.now() - timedelta(seconds=60))
    row = wait_for(_beat(lambda: (r := _row(w)).action == "" and r), timeout=30)
    assert row.state == Workload.State.RUNNING
    assert not row.error
    container.reload()
    restarted = container.attrs["State"]["StartedAt"]
    assert restarted != started
    # The lost message turns up after all (a Redis replica had it): it finds the request done.
    args, task_id = lost[0]
    tasks.control_workload.apply(args=args, task_id=task_id)
    container.reload()
    assert container.attrs["State"]["StartedAt"] == restarted
    assert _audits(w, "workload.restart") == 1


def test_one_copy_of_a_request_claims_it(deploy: Callable[..., Any]) -> None:
    """Reconcile may send a request again while its first message still waits: whichever copy comes
    first claims it; the other finds it claimed (or done). A retry of the claimer claims again, and
    anyone does once the claim is stale (its worker died)."""
    w = deploy("sleep", "600")
    Workload.objects.filter(pk=w.pk).update(action="stop", task_id="t1", claimed_at=None)
    claim = services.workload_control_claim
    first = claim(workload_id=w.pk, action="stop", task_id="t1", stale_after=60)
    assert first is not None
    assert first.claimed_at is not None
    assert claim(workload_id=w.pk, action="stop", task_id="t1", stale_after=60) is None  # a copy
    token = datetime.fromisoformat(first.claimed_at.isoformat())  # as a retry carries it
    again = claim(workload_id=w.pk, action="stop", task_id="t1", stale_after=60, held=token)
    assert again is not None  # the holder's retry
    assert claim(workload_id=w.pk, action="stop", task_id="t2", stale_after=60, held=again.claimed_at) is None
    # Its claim went stale (the retry waited long) and a copy took over: the old token claims nothing.
    Workload.objects.filter(pk=w.pk).update(claimed_at=timezone.now() - timedelta(seconds=120))
    taken = claim(workload_id=w.pk, action="stop", task_id="t1", stale_after=60)
    assert taken is not None
    assert claim(workload_id=w.pk, action="stop", task_id="t1", stale_after=60, held=again.claimed_at) is None
    # A claimed request is not sent again while its claim is fresh; a stale one is.
    old = timezone.now() - timedelta(seconds=120)
    Workload.objects.filter(pk=w.pk).update(updated_at=old)
    assert services.workload_resend_actions(unclaimed_after=10, claim_after=60) == []
    Workload.objects.filter(pk=w.pk).update(claimed_at=old, updated_at=old)
    assert services.workload_resend_actions(unclaimed_after=10, claim_after=60) == [w.pk]
    assert services.workload_resend_actions(unclaimed_after=10, claim_after=60) == []  # not at once


def test_a_mirror_write_refused_while_etcd_is_down_lands_seconds_after_it_is_back(
    nodes: list[Any], worker: Any, cluster: Any
) -> None:
    node = nodes[0]
    cluster.stop("etcd")
    try:
        pod = services.pod_add(actor=services.SYSTEM, name="later", desc="made while etcd was down")
        services.node_set(actor=services.SYSTEM, node=node, labels={"zone": "b"})
        time.sleep(2)  # the retries back off meanwhile
    finally:
        cluster.start("etcd")
    back = time.monotonic()

    def landed() -> bool:
        try:
            keys = etcd.get_prefix(etcd.key("/"))
        except etcd.EtcdError:
            return False
        meta = keys.get(etcd.node_key(node.name), "")
        return etcd.pod_key(pod.name) in keys and '"zone":"b"' in meta

    wait_for(landed, timeout=30, interval=0.1)
    delay = time.monotonic() - back
    print(f"mirror writes landed {delay:.1f} s after etcd was back")
    assert delay < 6
    assert sync.check().count == 0


def test_a_retried_mirror_write_puts_what_the_rows_say_now(nodes: list[Any]) -> None:
    """The retry re-reads the rows: a key whose row is gone is deleted, not written back."""
    pod = services.pod_add(actor=services.SYSTEM, name="gone", desc="")
    key = etcd.pod_key(pod.name)
    node_meta = etcd.node_key(nodes[0].name)
    etcd.apply(deletes=[node_meta])
    services.pod_remove(actor=services.SYSTEM, pod=pod)
    etcd.apply({key: "{}"})  # a stale value left by a write that raced the removal
    heartbeat = etcd.node_status_key(nodes[0].name)
    assert sync.rewrite([key, node_meta, heartbeat, "/elsewhere/x"]) == 2
    keys = etcd.get_prefix(etcd.key("/"))
    assert key not in keys
    assert node_meta in keys
    assert heartbeat in keys  # a heartbeat is no row's: left alone


def test_recovery_resolves_what_a_crash_left_each_audited(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    """After a crash: a creation whose worker died before making its container (an allocation with
    no container), a container no row holds, and a node usage no workload holds. One reconcile run
    resolves each, and the audit says so. (A lambda whose worker died mid-run: tests/agents/
    test_lambda.py, test_a_run_whose_worker_was_lost_is_ended_and_its_container_removed.)"""
    from agents import reconcile
    from clusters.models import Node
    from tests.conftest import IMAGE
    from tests.factories import WorkloadFactory

    old = timezone.now() - timedelta(hours=1)
    stranded = WorkloadFactory(
        node=nodes[0], name="dead_e_bbbbbb", app="dead", entrypoint="e", command=["sleep", "600"],
        state=Workload.State.CREATING, task_id="dead-worker", claimed_at=old, memory_request=16 << 20,
    )  # fmt: skip
    Workload.objects.filter(pk=stranded.pk).update(updated_at=old)
    Node.objects.filter(pk=nodes[0].pk).update(used_memory=(16 << 20) + (64 << 20))  # 64M held by no one
    orphan = docker_clean["node1"].containers.create(
        IMAGE, ["sleep", "600"], name="lost_e_cccccc", labels={"ERU": "1", "eru.nodename": "node1"}
    )
    monkeypatch.setattr(reconcile, "ORPHAN_GRACE", 0)
    dry = reconcile.reconcile_node(Node.objects.get(pk=nodes[0].pk), repair=False, grace=0)
    assert dry.orphans == ["lost_e_cccccc"]
    assert dry.usage == [f"used memory: recorded {80 << 20}, counted {16 << 20}"]
    tasks.reconcile_containers()
    wait_for(lambda: _row(stranded).state == Workload.State.RUNNING)
    assert _audits(stranded, "workload.created") == 1
    names = {c.name for c in docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"})}
    assert names == {"dead_e_bbbbbb"}
    removed = AuditEvent.objects.get(action="workload.removed", target_type="container")
    assert (removed.target_name, removed.target_id) == ("lost_e_cccccc", orphan.id)
    assert removed.after == {"orphan": "no workload holds it"}
    fix = AuditEvent.objects.get(action="node.resource_fix", target_name="node1")
    assert fix.after["memory"] == 16 << 20
    assert Node.objects.get(pk=nodes[0].pk).used_memory == 16 << 20
    again = reconcile.reconcile_node(Node.objects.get(pk=nodes[0].pk), repair=False, grace=0)
    assert again.drift == 0, again.lines()


def test_mirror_keys_are_traced_to_their_rows_and_lost_requests_are_looked_for_every_5_s() -> None:
    from django.conf import settings

    keys = [
        etcd.pod_key("p"), etcd.node_key("n1"), etcd.pod_node_key("p", "n2"), etcd.resource_key("n3"),
        etcd.workload_key("c1"), etcd.deploy_key("a", "e", "n1", "c2"), etcd.node_workload_key("n1", "c3"),
        etcd.workload_status_key("a", "e", "n1", "c4"), etcd.node_status_key("n4"), etcd.key("/node/n5:ca"),
        "/elsewhere/pod/info/q",
    ]  # fmt: skip
    assert sync.owners(keys) == ({"p"}, {"n1", "n2", "n3"}, {"c1", "c2", "c3", "c4"})
    entry = settings.CELERY_BEAT_SCHEDULE["resend-actions"]
    assert (entry["task"], entry["schedule"]) == (tasks.resend_actions.name, 5.0)
    assert tasks.mirror_retry.name == sync.RETRY_TASK


def test_a_retry_that_waited_past_its_claim_leaves_the_request_to_the_copy_that_took_it(
    deploy: Callable[..., Any], raw_docker: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's token travels with the retry. A first try fails and its retry waits so long that
    the claim goes stale; reconcile's copy (same task id) claims it; the late retry then finds another
    holder's claim and does nothing, while the copy carries the request out: it runs once."""
    from engine import docker

    w = deploy("sleep", "600")
    calls: list[str] = []
    real_stop = tasks._CONTROL["stop"]
    copy: list[Workload] = []

    def flaky(client: Any, target: str) -> Any:
        calls.append(target)
        if len(calls) == 1:
            stale = timezone.now() - timedelta(seconds=tasks.STALE_CLAIM + 60)
            Workload.objects.filter(pk=w.pk).update(claimed_at=stale)  # its retry waited that long
            taken = services.workload_control_claim(  # the copy, mid-way through its own run
                workload_id=w.pk, action="stop", task_id=_row(w).task_id, stale_after=tasks.STALE_CLAIM
            )
            assert taken is not None
            copy.append(taken)
            raise docker.DockerError("connection reset", permanent=False)
        return real_stop(client, target)

    from celery import current_app

    send = current_app.send_task

    def held_back(name: str, args: Any = None, task_id: str | None = None, **kw: Any) -> Any:
        if name == "agents.control_workload":  # this test delivers it itself, eagerly
            return None
        return send(name, args=args, task_id=task_id, **kw)

    monkeypatch.setattr(queue.current_app, "send_task", held_back)
    monkeypatch.setitem(tasks._CONTROL, "stop", flaky)
    services.workload_control(actor=services.SYSTEM, workload=w, action="stop")
    task_id = _row(w).task_id
    tasks.control_workload.apply(args=[w.pk, "stop"], task_id=task_id)  # eager: the retry runs at once
    assert len(calls) == 1  # the late retry did not reach Docker: the copy holds the request
    assert _row(w).action == "stop"
    claim = copy[0].claimed_at
    assert claim is not None
    tasks.control_workload.apply(args=[w.pk, "stop"], kwargs={"claim": claim.isoformat()}, task_id=task_id)
    assert len(calls) == 2
    row = _row(w)
    assert (row.state, row.action) == (Workload.State.STOPPED, "")
    container = raw_docker[row.node.name].containers.get(row.container_id)
    assert container.attrs["State"]["Running"] is False

"""Orphans — containers labelled ERU=1 that no workload row holds — are reported, then removed;
containers of live workloads are never touched."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents import reconcile, tasks
from clusters import services
from tests.conftest import IMAGE, wait_for
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.services


def test_orphans_are_reported_then_removed(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any], monkeypatch: Any
) -> None:
    pod = nodes[0].pod
    data = {
        "app": "keep",
        "entrypoint": "e",
        "image": IMAGE,
        "command": ["sleep", "600"],
        "cpu_limit": 0.1,
        "cpu_bind": False,
        "node_names": ["node1"],
    }
    spec = services.deployment_validate(pod=pod, data=data)
    d = services.deployment_create(actor=services.SYSTEM, spec=spec)
    wait_for(lambda: d.workloads.filter(state="running").exists())
    raw = docker_clean["node1"]
    raw.containers.create(
        IMAGE, ["sleep", "600"], name="lost_e_abcdef", labels={"ERU": "1", "eru.nodename": "node1"}
    )
    # made under another node's name (one engine registered twice): not node1's to judge
    raw.containers.create(
        IMAGE, ["sleep", "600"], name="twin_e_abcdef", labels={"ERU": "1", "eru.nodename": "node9"}
    )
    out = StringIO()
    call_command("reconcile", stdout=out)  # no drift: exits 0
    assert "node1: 0 orphan container(s);" in out.getvalue()  # too young: may be mid-deploy
    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("reconcile", "--grace", "0", stdout=out)
    assert refused.value.returncode == 1  # drift found: cron and monitoring see it
    assert "node1: 1 orphan container(s) lost_e_abcdef;" in out.getvalue()
    assert len(raw.containers.list(all=True, filters={"label": "ERU=1"})) == 3
    monkeypatch.setattr(reconcile, "ORPHAN_GRACE", 0)
    tasks.reconcile_containers()
    names = {c.name for c in raw.containers.list(all=True, filters={"label": "ERU=1"})}
    assert names == {d.workloads.get().name, "twin_e_abcdef"}


def test_lost_and_stranded_work_is_sent_again(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    """A pending row whose message was lost, a creation claimed by a worker that died, and a removal
    that never finished are all picked up by the reconcile task."""
    from datetime import timedelta

    from django.utils import timezone

    from clusters.models import Workload

    old = timezone.now() - timedelta(hours=1)
    rows = {}
    for name, state in (("lost", Workload.State.PENDING), ("dead", Workload.State.CREATING)):
        rows[name] = WorkloadFactory(
            node=nodes[0],
            name=f"{name}_e_aaaaaa",
            app=name,
            entrypoint="e",
            command=["sleep", "600"],
            state=state,
            task_id="gone",
            claimed_at=old,
        )
    Workload.objects.filter(pk__in=[w.pk for w in rows.values()]).update(updated_at=old)
    tasks.reconcile_containers()
    wait_for(lambda: Workload.objects.filter(state=Workload.State.RUNNING).count() == 2)
    Workload.objects.filter(pk=rows["lost"].pk).update(state=Workload.State.REMOVING, updated_at=old)
    tasks.reconcile_containers()
    wait_for(lambda: not Workload.objects.filter(pk=rows["lost"].pk).exists())
    names = [c.name for c in docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"})]
    assert names == ["dead_e_aaaaaa"]


def test_reconcile_etcd_repairs_drift_once_at_a_time(nodes: list[Any]) -> None:
    from clusters import etcd, sync

    etcd.client().delete(etcd.node_key("node1"))
    lock = etcd.client().lock(tasks.reconcile_lock_name(), ttl=30)
    assert lock.acquire(timeout=1)
    try:
        tasks.reconcile_etcd()  # another run holds the lock: this one does nothing
        assert sync.check().count == 1
    finally:
        lock.release()
    tasks.reconcile_etcd()
    assert sync.check().count == 0

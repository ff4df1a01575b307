"""A worker's liveness key in etcd (agents/liveness.py), and the claims of a worker whose key is gone:
lost once CLAIM_GRACE seconds old, so the work goes again at the next reconcile or re-send instead of
after STALE_CLAIM — never a claim of a live worker, of an unknown one, or while etcd cannot tell."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents import liveness, tasks
from clusters import etcd, queue, services
from clusters.models import Workload
from clusters.services.workloads import CLAIM_GRACE
from tests.conftest import wait_for
from tests.factories import WorkloadFactory

pytestmark = pytest.mark.services


def test_the_test_worker_keeps_its_key_and_a_keeper_puts_it_again_and_takes_it_away(worker: Any) -> None:
    assert wait_for(lambda: worker.hostname in etcd.live_workers(), timeout=10)
    keeper = liveness.Keeper("keeper@test", ttl=3).start()
    try:
        assert wait_for(lambda: "keeper@test" in etcd.live_workers(), timeout=5)
        etcd.client().delete(etcd.worker_key("keeper@test"))  # gone under its live lease
        assert "keeper@test" not in etcd.live_workers()
        assert wait_for(lambda: "keeper@test" in etcd.live_workers(), timeout=5)  # put again
    finally:
        keeper.stop()
    assert "keeper@test" not in etcd.live_workers()  # an orderly stop: gone at once


def _claimed(state: str, worker: str, age: float, **fields: Any) -> Workload:
    claimed_at = timezone.now() - timedelta(seconds=age)
    w: Workload = WorkloadFactory(
        state=state, task_id=f"t-{worker}-{age}", claimed_by=worker, claimed_at=claimed_at, **fields
    )
    Workload.objects.filter(pk=w.pk).update(updated_at=claimed_at)  # quiet since its claim
    return w


def test_a_creation_claimed_by_a_gone_worker_is_sent_again_and_claimed_anew(transactional_db: Any) -> None:
    keeper = liveness.Keeper("alive@test").start()
    try:
        wait_for(lambda: "alive@test" in etcd.live_workers(), timeout=5)
        old = CLAIM_GRACE + 5
        lost = _claimed(Workload.State.CREATING, "gone@test", old)
        live = _claimed(Workload.State.CREATING, "alive@test", old)
        unknown = _claimed(Workload.State.CREATING, "", old)  # an older worker's: no name
        young = _claimed(Workload.State.CREATING, "gone@test", CLAIM_GRACE - 20)
        create, _ = services.workload_collect_stale(pending_after=600, claim_after=tasks.STALE_CLAIM)
        assert create == [lost.pk]
        lost.refresh_from_db()
        assert (lost.claimed_at, lost.claimed_by) == (None, "")
        for kept in (live, unknown, young):
            before = kept.claimed_at
            kept.refresh_from_db()
            assert kept.claimed_at == before
        # The message sent again claims it, under its own task id and worker.
        again = services.workload_claim(
            workload_id=lost.pk, task_id="t-new", stale_after=600, worker="w2@test"
        )
        assert again is not None
        assert (again.task_id, again.claimed_by) == ("t-new", "w2@test")
        assert services.workload_claim(workload_id=live.pk, task_id="t-x", stale_after=600) is None
    finally:
        keeper.stop()


def test_a_stop_claimed_by_a_gone_worker_is_sent_again_and_claimed_by_its_copy(
    transactional_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = CLAIM_GRACE + 5
    lost = _claimed(Workload.State.RUNNING, "gone@test", old, action="stop")
    unknown = _claimed(Workload.State.RUNNING, "", old, action="stop")
    messages: list[Any] = []  # kept here: the session's worker would carry the copy out first
    monkeypatch.setattr(queue, "enqueue_each", lambda name, calls, **kw: messages.append((name, calls, kw)))
    sent = services.workload_resend_actions(unclaimed_after=10, claim_after=tasks.STALE_CLAIM)
    assert sent == [lost.pk]
    assert messages == [("agents.control_workload", [(lost.pk, "stop")], {"task_ids": [lost.task_id]})]
    lost.refresh_from_db()
    assert lost.claimed_at is None
    copy = services.workload_control_claim(
        workload_id=lost.pk, action="stop", task_id=lost.task_id, stale_after=tasks.STALE_CLAIM
    )
    assert copy is not None  # the copy under the request's own task id carries it out
    before = unknown.claimed_at
    unknown.refresh_from_db()
    assert unknown.claimed_at == before


def test_no_claim_is_lost_while_etcd_cannot_tell(transactional_db: Any, cluster: Any) -> None:
    lost = _claimed(Workload.State.CREATING, "gone@test", CLAIM_GRACE + 5)
    cluster.stop("etcd")
    try:
        began = time.monotonic()
        create, _ = services.workload_collect_stale(pending_after=600, claim_after=tasks.STALE_CLAIM)
        assert time.monotonic() - began < 15
    finally:
        cluster.start("etcd")
        wait_for(_etcd_answers, timeout=30)  # the client tries a failed endpoint again after a while
    assert create == []
    lost.refresh_from_db()
    assert lost.claimed_by == "gone@test"


def _etcd_answers() -> bool:
    try:
        etcd.live_workers()
    except etcd.EtcdError:
        return False
    return True

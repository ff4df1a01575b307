"""The usage history's arithmetic and bounds, on the database: the 15 s step keeps the latest sample,
the 5 min step the average, the node the sum of its workloads; pruning keeps the rows bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied

from clusters import services
from clusters.models import NodeUsage, WorkloadUsage
from clusters.services.usage import Use, bucket
from tests.factories import NodeFactory, UserFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


def test_steps_hold_the_latest_the_average_and_the_node_sum() -> None:
    node = NodeFactory()
    a, b = (
        WorkloadFactory(node=node, container_id="a" * 64),
        WorkloadFactory(node=node, container_id="b" * 64),
    )
    stranger = WorkloadFactory(container_id="c" * 64)  # another node's: not this node's to report
    record = lambda at, **uses: services.usage_record(  # noqa: E731
        actor=services.SYSTEM, node=node, usage={k * 64: v for k, v in uses.items()}, at=at
    )
    assert record(T0, a=Use(0.5, 100), b=Use(None, 50), c=Use(1.0, 1)) == 2
    assert record(T0 + 5, a=Use(0.3, 300), b=Use(0.2, 70)) == 2  # the same 15 s step
    assert record(T0 + 20, a=Use(0.1, 200)) == 1  # the next one
    fine = WorkloadUsage.objects.filter(workload=a, step=15).order_by("at")
    assert [(r.cpu, r.memory) for r in fine] == [(0.3, 300), (0.1, 200)]
    coarse = WorkloadUsage.objects.get(workload=a, step=300)
    assert (coarse.n, coarse.cpu, coarse.memory) == (3, pytest.approx(0.3), 200)
    assert WorkloadUsage.objects.get(workload=b, step=300).n == 1  # its first sample had no rate
    assert not WorkloadUsage.objects.filter(workload=stranger).exists()
    node_fine = NodeUsage.objects.filter(node=node, step=15).order_by("at")
    assert [(r.cpu, r.memory) for r in node_fine] == [(pytest.approx(0.5), 370), (0.1, 200)]
    assert NodeUsage.objects.get(node=node, step=300).n == 3


def test_pruning_keeps_an_hour_of_15_s_steps_and_a_day_of_5_min_steps() -> None:
    w = WorkloadFactory(container_id="a" * 64)
    start = T0 - 26 * 3600
    for i in range(0, 26 * 3600, 60):  # a sample a minute for 26 hours
        services.usage_record(
            actor=services.SYSTEM, node=w.node, usage={w.container_id: Use(0.1, 1)}, at=start + i
        )
    now = datetime.fromtimestamp(T0, tz=UTC)
    services.usage_prune(now=now)
    fine = WorkloadUsage.objects.filter(workload=w, step=15)
    coarse = WorkloadUsage.objects.filter(workload=w, step=300)
    assert fine.count() == 60  # one a minute, for the last hour
    assert coarse.count() == 288  # a day of 5 min steps
    assert min(r.at for r in fine) >= now - timedelta(hours=1)
    assert NodeUsage.objects.filter(node=w.node, step=15).count() == 60
    assert bucket(T0 + 14.9, 15) == bucket(T0, 15) != bucket(T0 + 15, 15)


def test_only_the_nodes_agent_an_admin_or_the_system_records_usage() -> None:
    w = WorkloadFactory(container_id="a" * 64)
    actor = services.Actor(user=UserFactory(), via="api")
    with pytest.raises(PermissionDenied):
        services.usage_record(actor=actor, node=w.node, usage={w.container_id: Use(0.1, 1)}, at=T0)
    other = services.Actor(via="grpc", principal="node.elsewhere")
    with pytest.raises(PermissionDenied):
        services.usage_record(actor=other, node=w.node, usage={w.container_id: Use(0.1, 1)}, at=T0)

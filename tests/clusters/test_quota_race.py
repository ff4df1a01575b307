"""Several processes deploy for one team at once, on different nodes: the team's quota is never
overshot, exactly what it allows is granted, and every other deploy is refused naming the quota.
On SQLite (the services tier) and again on PostgreSQL (bin/test's PG_TESTS), where the quota row's
lock — not the nodes', which differ — is what serialises them."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from clusters import services
from clusters.models import Deployment, PodMember, Team, TeamMember, Workload
from clusters.services.quotas import team_use
from tests.clusters.quota_race_child import deploy_for_team
from tests.conftest import IMAGE, wait_for
from tests.factories import UserFactory

pytestmark = pytest.mark.services

PROCESSES = 6
HOLD = 0.3  # s each deploy stays in its transaction after its quota check


def test_racing_deploys_for_one_team_never_overshoot_its_quota(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    pod = nodes[0].pod
    dora = UserFactory(username="dora")
    PodMember.objects.create(pod=pod, user=dora, role=PodMember.Role.DEPLOYER)
    web = Team.objects.create(name="web")
    TeamMember.objects.create(team=web, user=dora)
    services.quota_set(actor=services.SYSTEM, pod=pod, team=web, cpu=0.3)  # three of 0.1
    db_name = str(settings.DATABASES["default"]["NAME"])
    connections.close_all()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(PROCESSES)
    names = [n.name for n in nodes]
    jobs = [
        (db_name, settings.ERU_ETCD_PREFIX, IMAGE, names[i % len(names)], HOLD, barrier)
        for i in range(PROCESSES)
    ]
    with ctx.Pool(PROCESSES) as pool:
        results = pool.starmap(deploy_for_team, jobs)
    granted = [r for r in results if r == "granted"]
    refused = [r for r in results if r.startswith("refused")]
    assert len(granted) == 3, results
    assert len(refused) == PROCESSES - 3, results
    expected = "refused: quota of team web in pod eru: cpu 0.3 — 0.3 in use, this deploy asks for 0.1"
    assert all(r == expected for r in refused), refused
    use = team_use(pod, web)
    assert use.workloads == 3
    assert use.cpu == pytest.approx(0.3)
    assert Deployment.objects.filter(team=web).count() == 3
    wait_for(lambda: Workload.objects.filter(state=Workload.State.RUNNING, team=web).count() == 3)

"""Several processes deploy into the same scarce capacity at once: the node is never over-committed,
exactly the capacity is granted, and every loser gets Eru's capacity error."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from clusters.models import Deployment, Node, Workload
from tests.clusters.race_child import deploy_once
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services

PROCESSES = 6


def test_concurrent_deploys_never_overcommit(
    register: Any, worker: Any, docker_clean: dict[str, Any]
) -> None:
    register("node1", cpu=2)  # 2 cores × 100 pieces: room for exactly two 1-cpu bound workloads
    register("node2", cpu=1)  # and one more here
    db_name = str(settings.DATABASES["default"]["NAME"])
    connections.close_all()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(PROCESSES)
    with ctx.Pool(PROCESSES) as pool:
        results = pool.starmap(deploy_once, [(db_name, settings.ERU_ETCD_PREFIX, IMAGE, barrier)] * PROCESSES)
    granted = [r for r in results if r == "granted"]
    refused = [r for r in results if r.startswith("refused")]
    assert len(granted) == 3, results
    assert len(refused) == PROCESSES - 3
    assert all("not enough resource" in r for r in refused), refused
    for node in Node.objects.all():
        assert sum(node.used_cpu_map.values()) <= sum(node.cpu_map.values())
        held = Workload.objects.filter(node=node, state__in=Workload.HOLDING)
        assert node.used_cpu == sum(w.cpu_request for w in held)
        pieces: dict[str, int] = {}
        for w in held:
            for core, n in w.cpu_map.items():
                pieces[core] = pieces.get(core, 0) + n
        assert pieces == {k: v for k, v in node.used_cpu_map.items() if v}
    assert Deployment.objects.count() == 3
    wait_for(lambda: Workload.objects.filter(state=Workload.State.RUNNING).count() == 3)
    cpusets = [
        c.attrs["HostConfig"]["CpusetCpus"]
        for client in docker_clean.values()
        for c in client.containers.list(filters={"label": "ERU=1"})
    ]
    assert sorted(cpusets) == sorted(["0", "1", "0"])

"""The core's own Prometheus metrics (GET /metrics).

- Eru's node metrics — memory_capacity, memory_used, cpu_used, cpu_map (bound pieces per core),
  pod_node_up, and the counter core_deploy — are computed from the database (and etcd's heartbeat
  keys) at scrape time by a custom collector: every web process gives the same answer.
- The rest counts events as they happen in whichever process they happen in (deploy latency in the
  workers, task outcomes, gRPC calls): prometheus-client's multiprocess mode, where each process
  writes its counts to files under PROMETHEUS_MULTIPROC_DIR and a scrape adds them up. bin/eru sets
  that directory (and empties it when the processes start); without it, each process counts alone.

Access: an API token of an administrator, or a client address in ERU_METRICS_ALLOW."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, UnknownMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from clusters import etcd, selectors
from clusters.models import AuditEvent, Node

HOSTNAME = socket.gethostname()
DEPLOY_SECONDS = Histogram(
    "eru_workload_create_seconds",
    "from a workload's deploy request to its container running",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
TASKS = Counter("eru_tasks", "Celery tasks that ended, by task and outcome", ["task", "outcome"])


class NodeCollector(Collector):
    """Eru's node metrics, from the database at scrape time."""

    def collect(self) -> Iterator[Any]:
        alive = etcd.alive_nodes()
        labels = ["podname", "nodename"]
        capacity = GaugeMetricFamily("memory_capacity", "memory a node offers (bytes)", labels=labels)
        used = GaugeMetricFamily("memory_used", "memory its workloads hold (bytes)", labels=labels)
        cpu = GaugeMetricFamily("cpu_used", "CPU its workloads hold (cores)", labels=labels)
        cpu_map = GaugeMetricFamily("cpu_map", "bound pieces held per core", labels=[*labels, "cpuid"])
        up = GaugeMetricFamily(
            "pod_node_up", "1: the node heartbeats and takes work", labels=["hostname", *labels]
        )
        fields = (
            "name",
            "pod__name",
            "memory",
            "used_memory",
            "used_cpu",
            "used_cpu_map",
            "cpu_map",
            "bypass",
        )
        for name, pod, memory, used_memory, used_cpu, used_map, cpu_map_, bypass in Node.objects.values_list(
            *fields
        ).order_by("name"):
            capacity.add_metric([pod, name], memory)
            used.add_metric([pod, name], used_memory)
            cpu.add_metric([pod, name], used_cpu)
            for core in sorted(cpu_map_, key=selectors.core_order):
                cpu_map.add_metric([pod, name, core], (used_map or {}).get(core, 0))
            up.add_metric([HOSTNAME, pod, name], 1 if name in alive and not bypass else 0)
        yield from (capacity, used, cpu, cpu_map, up)
        # Eru's name exactly: prometheus-client would call a counter core_deploy_total (Go's client
        # keeps the name), so this one goes out untyped; PromQL's rate() takes it all the same.
        deployed = UnknownMetricFamily(
            "core_deploy", "workloads deployed (containers made)", labels=["hostname"]
        )
        deployed.add_metric(
            [HOSTNAME], AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_CREATED).count()
        )
        yield deployed


def exposition() -> bytes:
    """The text a scrape gets: the database's numbers, then the processes' counts."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    from prometheus_client import REGISTRY  # this process alone

    return generate_latest(registry) + generate_latest(REGISTRY)


def allowed_address(address: str, allow: list[str]) -> bool:
    """Whether a client address is in the allow-list (addresses or networks, e.g. 10.0.0.0/8)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in allow:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False

"""Reads that write nothing: which nodes may take work, a node's resources and a workload's request as
the scheduling engine sees them, a node's Docker client, and the container a workload row describes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import docker as docker_sdk
from django.conf import settings

import scheduling
from clusters import etcd
from clusters.errors import invalid
from clusters.models import Node, Pod, Workload
from engine import docker


def node_client(node: Node, *, timeout: int | None = None) -> docker_sdk.DockerClient:
    """The node's Docker engine over mutual TLS (cached per endpoint, certificates and timeout)."""
    tls = docker.TLSMaterial(*node.tls())
    return docker.connect(node.endpoint, tls, timeout=timeout or settings.ERU_DOCKER_TIMEOUT)


def node_resources(node: Node) -> scheduling.NodeResources:
    return scheduling.NodeResources(
        name=node.name,
        cpu_map=node.cpu_map,
        memory=node.memory,
        used_cpu_map=node.used_cpu_map,
        used_cpu=node.used_cpu,
        used_memory=node.used_memory,
        share_base=node.share_base,
        max_fragment_cores=settings.ERU_MAX_FRAGMENT_CORES,
    )


def request_of(w: Workload) -> scheduling.ResourceRequest:
    return scheduling.ResourceRequest(
        w.cpu_request, w.cpu_limit, w.memory_request, w.memory_limit, w.cpu_bind
    )


def available_nodes(pod: Pod) -> list[Node]:
    """Nodes of the pod that may take new workloads: not bypassed and heartbeat key present."""
    try:
        alive = etcd.alive_nodes(strict=True)
    except etcd.EtcdError as exc:
        raise invalid("pod", f"cannot tell which nodes are up: {exc}") from exc
    return [n for n in pod.nodes.filter(bypass=False) if n.is_available(alive)]


def deploy_candidates(pod: Pod, node_names: Sequence[str], node_labels: Mapping[str, str]) -> list[Node]:
    """Available nodes of the pod, narrowed by names and labels (exact match on every label)."""
    nodes = available_nodes(pod)
    if node_names:
        known = set(pod.nodes.filter(name__in=node_names).values_list("name", flat=True))
        unknown = [n for n in node_names if n not in known]
        if unknown:
            raise invalid("node_names", f"no such node in pod {pod.name}: {', '.join(unknown)}")
        up = {n.name for n in nodes}
        down = [n for n in node_names if n not in up]
        if down:
            raise invalid("node_names", f"node is down (set down or no heartbeat): {', '.join(down)}")
        nodes = [n for n in nodes if n.name in node_names]
    nodes = [n for n in nodes if all(n.labels.get(k) == v for k, v in node_labels.items())]
    if not nodes:
        raise invalid("pod", "node map is empty: no available node matches this deploy")
    return nodes


def container_spec(w: Workload) -> dict[str, Any]:
    """Everything the Docker adapter needs to create the workload's container."""
    labels = {
        **w.labels,
        "ERU": "1",
        "ERU_META": etcd.dumps({"Publish": [], "HealthCheck": None}),
        "eru.nodename": w.node.name,
        "eru.podname": w.pod.name,
    }
    env = [
        *w.env,
        f"APP_NAME={w.app}",
        f"ERU_POD={w.pod.name}",
        f"ERU_NODE_NAME={w.node.name}",
        f"ERU_WORKLOAD_SEQ={w.seq}",
    ]
    resources = scheduling.docker_settings(request_of(w), w.cpu_map, share_base=w.node.share_base)
    return {
        "name": w.name,
        "image": w.image,
        "command": w.command,
        "env": env,
        "labels": labels,
        "resources": resources,
        "network": w.network,
    }

"""Rows as Eru's messages: a node, a workload and its status, resources as Eru's JSON per plugin (its
underscored keys), and a viewer's env masked as on every other read path."""

from __future__ import annotations

import json
from typing import Any

from clusters import etcd, permissions, secrets
from clusters.models import Node, Workload
from protocol import core_pb2 as pb

PLUGIN = "cpumem"  # the one resource plugin this project has


def node_message(node: Node, *, alive: set[str] | None = None, skip_info: bool = False) -> pb.Node:
    """alive: the nodes known to heartbeat (one etcd read for a list); None: ask etcd for this one."""
    resources = node.resource_json()
    if alive is None:
        alive = {node.name} if etcd.is_alive(node.name) else set()
    return pb.Node(
        name=node.name,
        endpoint=node.endpoint,
        podname=node.pod.name,
        available=node.is_available(alive),
        bypass=node.bypass,
        labels={str(k): str(v) for k, v in node.labels.items()},
        info="" if skip_info else json.dumps(node.info),
        resource_capacity=json.dumps({PLUGIN: resources["capacity"]}),
        resource_usage=json.dumps({PLUGIN: resources["usage"]}),
    )


def resources_json(w: Workload) -> str:
    """A workload's resources as Eru has them: {"cpumem": {"cpu_request": …, "cpu_map": …}}."""
    resources: dict[str, Any] = w.eru_json()["resources"]
    return json.dumps(resources)


def status_message(w: Workload) -> pb.WorkloadStatus:
    return pb.WorkloadStatus(
        id=w.container_id,
        running=w.status == Workload.Status.RUNNING,
        healthy=w.healthy,
        networks={str(k): str(v) for k, v in w.networks.items()},
        extension=json.dumps(w.labels).encode(),
        appname=w.app,
        nodename=w.node.name,
        entrypoint=w.entrypoint,
        status=w.status,
        health=w.health if w.health != Workload.Health.NONE else "",
        name=w.name,
    )


def publish_of(w: Workload) -> dict[str, str]:
    """Eru's publish: per network, "ip:port,…" for the entrypoint's published ports."""
    ports = [str(p).split(":")[-1] for p in w.options.get("publish", [])]
    if not ports:
        return {}
    return {str(net): ",".join(f"{ip}:{port}" for port in ports) for net, ip in w.networks.items() if ip}


def workload_message(w: Workload, user: Any, seen: dict[int, bool] | None = None) -> pb.Workload:
    """user: who reads it; one who may not see the pod's secrets gets env keys without values.
    seen: whether the user may, per pod id, kept across the rows of one answer (one role query a pod)."""
    seen = {} if seen is None else seen
    if w.pod_id not in seen:
        seen[w.pod_id] = permissions.can_see_secrets(user, w.pod)
    env = [str(e) for e in w.env] if seen[w.pod_id] else secrets.mask_env(w.env)
    return pb.Workload(
        id=w.container_id,
        podname=w.pod.name,
        nodename=w.node.name,
        name=w.name,
        privileged=bool(w.options.get("privileged")),
        labels={str(k): str(v) for k, v in w.labels.items()},
        publish=publish_of(w),
        image=w.image,
        status=status_message(w),
        create_time=int(w.created_at.timestamp()),
        env=[str(e) for e in env],
        resources=resources_json(w),
    )

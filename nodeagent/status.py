"""What the agent reports of one container: Eru's WorkloadStatus (id, running, healthy, networks,
extension = the labels as JSON, appname, entrypoint, nodename) plus this project's fields (status,
exit code, restart count, ports, health, uptime), from one inspect; and the health check the core
wrote into the container's ERU_META label, in Eru's field names."""

from __future__ import annotations

import json
import time
from typing import Any

from engine.docker import ContainerInfo
from protocol import core_pb2 as pb

RUNNING, EXITED, OOM_KILLED, RESTARTING, PAUSED, MISSING = (
    "running",
    "exited",
    "oom_killed",
    "restarting",
    "paused",
    "missing",
)
HEALTHY, UNHEALTHY = "healthy", "unhealthy"
_STATES = {"running": RUNNING, "restarting": RESTARTING, "paused": PAUSED, "removing": MISSING}


def parse_name(name: str) -> tuple[str, str]:
    """(appname, entrypoint) of an Eru workload name, app_entry_ident (as Eru's core parses it)."""
    parts = name.split("_")
    if len(parts) < 3:
        return "", ""
    return "_".join(parts[:-2]), parts[-2]


def healthcheck(labels: dict[str, str]) -> dict[str, Any] | None:
    """The container's health check from its ERU_META label (Eru's Go field names), as the engine's
    check takes it; None when it has none (or the label cannot be read)."""
    try:
        meta = json.loads(labels.get("ERU_META") or "{}")
        check = meta.get("HealthCheck") if isinstance(meta, dict) else None
    except ValueError:
        return None
    if not isinstance(check, dict) or not (check.get("TCPPorts") or check.get("HTTPPort")):
        return None
    return {
        "tcp_ports": [str(p) for p in check.get("TCPPorts") or []],
        "http_port": str(check.get("HTTPPort") or ""),
        "url": str(check.get("HTTPURL") or "/"),
        "code": int(check.get("HTTPCode") or 0),
    }


def address(info: ContainerInfo) -> str:
    """Where to check the container: its first network's address; 127.0.0.1 in host mode."""
    if "host" in info.networks:
        return "127.0.0.1"
    return next((ip for ip in info.networks.values() if ip), "")


def status_of(info: ContainerInfo) -> str:
    if info.status in ("exited", "dead", "created"):
        return OOM_KILLED if info.oom_killed else EXITED
    return _STATES.get(info.status, EXITED)


def report(info: ContainerInfo, hostname: str, health: str, now: float | None = None) -> pb.WorkloadStatus:
    """The WorkloadStatus of a container as inspected. `health`: the last check's result ("" when
    not checked yet, or when it has no check)."""
    status = status_of(info)
    running = status == RUNNING
    app, entry = parse_name(info.name)
    check = healthcheck(info.labels)
    message = pb.WorkloadStatus(
        id=info.id,
        running=running,
        healthy=running and (health == HEALTHY if check else True),
        networks={net: ip for net, ip in info.networks.items() if ip} if running or status == PAUSED else {},
        extension=json.dumps(info.labels, sort_keys=True).encode(),
        appname=app,
        nodename=hostname,
        entrypoint=entry,
        status=status,
        restart_count=info.restart_count,
        ports=[pb.PublishedPort(**p) for p in info.ports],
        health=health if check and running else "",
        name=info.name,
    )
    if status in (EXITED, OOM_KILLED, RESTARTING):
        message.exit_code = info.exit_code
    up = (now or time.time()) - info.started if info.started else None
    if running and up is not None and up < 60:
        message.up_seconds = max(up, 0.0)
    return message


def missing(container_id: str, name: str, hostname: str) -> pb.WorkloadStatus:
    app, entry = parse_name(name)
    return pb.WorkloadStatus(
        id=container_id, appname=app, entrypoint=entry, nodename=hostname, status=MISSING, name=name
    )


def same(a: pb.WorkloadStatus, b: pb.WorkloadStatus) -> bool:
    """The same news (uptime, which changes by itself, and the sequence number aside)."""
    a2, b2 = pb.WorkloadStatus(), pb.WorkloadStatus()
    a2.CopyFrom(a)
    b2.CopyFrom(b)
    for m in (a2, b2):
        m.ClearField("up_seconds")
        m.ClearField("seq")
    return a2 == b2

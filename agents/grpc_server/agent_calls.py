"""The calls Eru's agent makes — Info, GetNode, SetNodeStatus, SetWorkloadsStatus — and this project's
agent's SetWorkloadsUsage (pb.PortalRPC). Thin: hand the report to clusters.services."""

from __future__ import annotations

import logging
import platform
import re
import time
from datetime import UTC, datetime

import grpc
from django.conf import settings

from agents.grpc_server.base import actor, node_of, unary
from agents.grpc_server.messages import node_message
from clusters import principals, services
from clusters.models import Node, Workload
from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
VERSION = "eru-portal 0.1"


_reporting: dict[tuple[int, str], tuple[float, Node]] = {}
REPORTING_TTL = 2.0  # s: an agent reports often; its node row is read once in a while, not per call


def _reporting_node(name: str, principal: principals.Principal, context: grpc.ServicerContext) -> Node:
    """The node an agent reports for: as _node, kept briefly for a node's own principal. What the
    reports need of it (its id, name and pod) does not change; its lost-or-not is read under its lock."""
    if principal.node_id is None:
        return node_of(name, principal, context)
    now = time.monotonic()
    hit = _reporting.get((principal.node_id, name))
    if hit is not None and hit[0] > now:
        return hit[1]
    node = node_of(name, principal, context)
    if len(_reporting) > 10_000:
        _reporting.clear()
    _reporting[(principal.node_id, name)] = (now + REPORTING_TTL, node)
    return node


def _peer(context: grpc.ServicerContext) -> str:
    """The caller's host, without its port: "ipv4:10.0.0.5:51234" → "10.0.0.5"."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return re.sub(r"^\[|\]:\d+$", "", rest.rsplit(":", 1)[0] if "]" not in rest else rest)
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else peer


def _user_agent(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "user-agent":
            return str(value)
    return ""


def report_of(status: pb.WorkloadStatus) -> services.Report:
    return services.Report(
        container_id=status.id,
        running=status.running,
        healthy=status.healthy,
        networks=dict(status.networks),
        status=status.status,
        exit_code=status.exit_code if status.HasField("exit_code") else None,
        restart_count=status.restart_count if status.HasField("restart_count") else None,
        ports=[{"ip": p.ip, "private": p.private, "public": p.public, "type": p.type} for p in status.ports]
        if status.status
        else None,
        health=status.health,
        up=status.up_seconds if status.HasField("up_seconds") else None,
        nodename=status.nodename,
        seq=status.seq,
    )


class AgentCalls:
    """Eru's agent's calls (Info and GetNode serve every principal)."""

    @unary(write=False, agent=True)
    def Info(
        self, request: pb.Empty, context: grpc.ServicerContext, principal: principals.Principal
    ) -> pb.CoreInfo:
        return pb.CoreInfo(
            version=VERSION,
            revison="",
            build_at="",
            golang_version=f"python {platform.python_version()}",
            os_arch=f"{platform.system().lower()}/{platform.machine()}",
            identifier=settings.ERU_ETCD_PREFIX,
        )

    @unary(write=False, agent=True)
    def GetNode(
        self, request: pb.GetNodeOptions, context: grpc.ServicerContext, principal: principals.Principal
    ) -> pb.Node:
        return node_message(node_of(request.nodename, principal, context))

    @unary(agent=True)
    def SetNodeStatus(
        self, request: pb.SetNodeStatusOptions, context: grpc.ServicerContext, principal: principals.Principal
    ) -> pb.NodeStatusReply:
        node = _reporting_node(request.nodename, principal, context)
        version = request.agent_version or _user_agent(context)
        resync = services.node_heartbeat(
            actor=actor(principal),
            node=node,
            ttl=request.ttl,
            peer=_peer(context),
            version=version,
            dropped=request.log_lines_dropped,
        )
        return pb.NodeStatusReply(resync=resync)

    @unary(agent=True)
    def SetWorkloadsStatus(
        self,
        request: pb.SetWorkloadsStatusOptions,
        context: grpc.ServicerContext,
        principal: principals.Principal,
    ) -> pb.WorkloadsStatus:
        by_node: dict[str, list[pb.WorkloadStatus]] = {}
        for status in request.status:
            name = status.nodename or request.nodename or _node_of(status.id, principal)
            by_node.setdefault(name, []).append(status)
        if request.complete:
            by_node.setdefault(request.nodename, [])
        taken: set[str] = set()
        for name, statuses in by_node.items():
            node = _reporting_node(name, principal, context)
            taken.update(
                services.node_report(
                    actor=actor(principal),
                    node=node,
                    reports=[report_of(s) for s in statuses],
                    complete=request.complete and name == request.nodename,
                    listed_at=_time(request.listed_at),
                )
            )
        return pb.WorkloadsStatus(status=[s for s in request.status if s.id in taken])


class PortalService(pb_grpc.PortalRPCServicer):
    """This project's own calls, beside Eru's."""

    @unary(agent=True)
    def SetWorkloadsUsage(
        self,
        request: pb.SetWorkloadsUsageOptions,
        context: grpc.ServicerContext,
        principal: principals.Principal,
    ) -> pb.Empty:
        node = _reporting_node(request.nodename, principal, context)
        usage = {u.id: services.Use(cpu=u.cpu, memory=u.memory) for u in request.usage}
        now = time.time()  # the agent's clock, unless it is far off the core's
        at = request.at if abs(request.at - now) < 60 else now
        services.usage_record(actor=actor(principal), node=node, usage=usage, at=at)
        return pb.Empty()


def _time(unix: float) -> datetime | None:
    """An agent's clock reading, if it is one (0: not given)."""
    return datetime.fromtimestamp(unix, tz=UTC) if unix > 0 else None


def _node_of(container_id: str, principal: principals.Principal) -> str:
    """The node of a status that names none (Eru's core looks the workload up the same way)."""
    if principal.node_id is not None:
        return Node.objects.filter(pk=principal.node_id).values_list("name", flat=True).first() or ""
    w = Workload.objects.filter(container_id=container_id).select_related("node").first()
    return w.node.name if w else ""

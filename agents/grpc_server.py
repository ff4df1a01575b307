"""The core's gRPC door: Eru's pb.CoreRPC (protocol/core.proto), the calls Eru's agent makes — Info,
GetNode, SetNodeStatus, SetWorkloadsStatus. Thin: authenticate the call (clusters.principals), hand
it to clusters.services, map the errors to gRPC status codes with their message (all Eru's erucli
prints)."""

from __future__ import annotations

import functools
import json
import logging
import platform
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import close_old_connections

from clusters import etcd, permissions, principals, services
from clusters.models import AuditEvent, Node, Workload
from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
VERSION = "eru-portal 0.1"
T = TypeVar("T")
Handler = Callable[[Any, Any, grpc.ServicerContext, principals.Principal], T]
READS = {"Info", "GetNode"}  # the calls a read-only API token may make


def _call(method: Handler[T]) -> Callable[[Any, Any, grpc.ServicerContext], T]:
    """Authenticate, run, and turn the project's errors into gRPC ones."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        close_old_connections()
        try:
            principal = principals.authenticate(context.invocation_metadata())
            if principal is None:
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "no valid credential: send one metadata entry, key = username (node.<name> for an "
                    "agent), value = password, API token or node secret",
                )
            if principal.read_only and method.__name__ not in READS:
                raise PermissionDenied(f"this token is read-only: {method.__name__} is a write")
            return method(self, request, context, principal)
        except PermissionDenied as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc) or "permission denied")
        except ValidationError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(exc.messages))
        except etcd.EtcdError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        finally:
            close_old_connections()

    return wrapper


def _actor(principal: principals.Principal) -> services.Actor:
    via = AuditEvent.Via.GRPC
    if principal.is_node:
        return services.Actor(via=via, principal=principal.name)
    return services.Actor(user=principal.user, via=via)


def _node(name: str, principal: principals.Principal, context: grpc.ServicerContext) -> Node:
    """The node a call names, among those the principal may see (a node: itself only)."""
    if principal.node_id is not None:
        nodes = Node.objects.filter(pk=principal.node_id)
    else:
        nodes = permissions.visible_nodes(principal.user)
    node = nodes.select_related("pod").filter(name=name).first()
    if node is None:
        if principal.is_node and name:
            raise PermissionDenied(f"{principal.name} may act only for its own node, not for {name}")
        context.abort(grpc.StatusCode.NOT_FOUND, f"node {name or '(no name)'} not found")
    return node


_reporting: dict[tuple[int, str], tuple[float, Node]] = {}
REPORTING_TTL = 2.0  # s: an agent reports often; its node row is read once in a while, not per call


def _reporting_node(name: str, principal: principals.Principal, context: grpc.ServicerContext) -> Node:
    """The node an agent reports for: as _node, kept briefly for a node's own principal. What the
    reports need of it (its id, name and pod) does not change; its lost-or-not is read under its lock."""
    if principal.node_id is None:
        return _node(name, principal, context)
    now = time.monotonic()
    hit = _reporting.get((principal.node_id, name))
    if hit is not None and hit[0] > now:
        return hit[1]
    node = _node(name, principal, context)
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


def _node_message(node: Node) -> pb.Node:
    resources = node.resource_json()
    return pb.Node(
        name=node.name,
        endpoint=node.endpoint,
        podname=node.pod.name,
        available=node.is_available({node.name} if etcd.is_alive(node.name) else set()),
        bypass=node.bypass,
        labels={str(k): str(v) for k, v in node.labels.items()},
        info=json.dumps(node.info),
        resource_capacity=json.dumps({"cpumem": resources["capacity"]}),
        resource_usage=json.dumps({"cpumem": resources["usage"]}),
    )


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


class CoreService(pb_grpc.CoreRPCServicer):
    @_call
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

    @_call
    def GetNode(
        self, request: pb.GetNodeOptions, context: grpc.ServicerContext, principal: principals.Principal
    ) -> pb.Node:
        return _node_message(_node(request.nodename, principal, context))

    @_call
    def SetNodeStatus(
        self, request: pb.SetNodeStatusOptions, context: grpc.ServicerContext, principal: principals.Principal
    ) -> pb.NodeStatusReply:
        node = _reporting_node(request.nodename, principal, context)
        version = request.agent_version or _user_agent(context)
        resync = services.node_heartbeat(
            actor=_actor(principal),
            node=node,
            ttl=request.ttl,
            peer=_peer(context),
            version=version,
            dropped=request.log_lines_dropped,
        )
        return pb.NodeStatusReply(resync=resync)

    @_call
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
                    actor=_actor(principal),
                    node=node,
                    reports=[report_of(s) for s in statuses],
                    complete=request.complete and name == request.nodename,
                    listed_at=_time(request.listed_at),
                )
            )
        return pb.WorkloadsStatus(status=[s for s in request.status if s.id in taken])


class PortalService(pb_grpc.PortalRPCServicer):
    """This project's own calls, beside Eru's."""

    @_call
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
        services.usage_record(actor=_actor(principal), node=node, usage=usage, at=at)
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


def serve(address: str | None = None, *, workers: int | None = None) -> tuple[grpc.Server, int]:
    """Start the door (not blocking): the server and the port it listens on (address port 0: any)."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers or settings.ERU_GRPC_WORKERS, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_CoreRPCServicer_to_server(CoreService(), server)
    pb_grpc.add_PortalRPCServicer_to_server(PortalService(), server)
    port = server.add_insecure_port(address or settings.ERU_GRPC_ADDRESS)
    if port == 0:
        raise OSError(f"cannot listen on {address or settings.ERU_GRPC_ADDRESS}")
    server.start()
    return server, port

"""Pods and nodes: erucli pod … and node … (Eru's pb.CoreRPC). Thin: every write is a
clusters.services call (its permission, its audit with via = grpc), every read is what the REST API
lets the caller see (clusters.permissions): administrators add and remove pods and nodes and change
nodes; anyone who sees a pod reads it, its nodes and their resources.

Where this core differs from Eru's, on purpose:
- ListPodNodes: without `all`, only the available nodes (not set down, heartbeat alive), as Eru;
  `timeout_in_second` is not needed (the listing is the database's and one etcd read, not a call to
  every engine) and is ignored.
- AddNode: `test` (Eru's fake engines) is refused; the node's agent credential is not in Eru's Node
  message: make it with the REST API (POST /api/nodes/{name}/secret/) or the portal.
- SetNode: empty endpoint or TLS material keeps the node's (Eru would clear the certificates); new
  ones are taken only once the node's own engine answered with them. `workloads_down` (erucli's
  --mark-workloads-down) is refused: a workload's status here is what its node reports, the next
  report would undo the mark.
- GetNodeStatus of a node with no heartbeat answers alive = false (Eru: an error).
- NodeStatusStream: the liveness changes of the nodes the caller sees, read from etcd every
  STATUS_POLL seconds (a key that goes and comes back within one poll is not seen)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
from django.core.exceptions import PermissionDenied, ValidationError

from agents.grpc_server import node_resources
from agents.grpc_server.base import Context, Principal, actor, ended, idle, node_of, stream, unary
from agents.grpc_server.messages import node_message
from clusters import etcd, permissions, services
from clusters.errors import invalid
from clusters.models import Node, Pod
from protocol import core_pb2 as pb

STATUS_POLL = 0.5  # s: NodeStatusStream's look at etcd's heartbeat keys
BYPASS = {pb.TriOpt.KEEP: None, pb.TriOpt.TRUE: True, pb.TriOpt.FALSE: False}
OVER_COMMIT = "set over_commit to declare them anyway"


@contextlib.contextmanager
def _erucli_words() -> Iterator[None]:
    """The services' refusal of more cores than the engine has names a REST field erucli lacks."""
    try:
        yield
    except ValidationError as exc:
        if not any(OVER_COMMIT in m for m in exc.messages):
            raise
        hint = "erucli cannot over-commit: declare them with the REST API (over_commit)"
        raise type(exc)({"cpu": [m.replace(OVER_COMMIT, hint) for m in exc.messages]}) from exc


def pod_of(name: str, principal: Principal, context: Context) -> Pod:
    """The pod a call names, among those the principal may see."""
    pod = permissions.visible_pods(principal.user).filter(name=name).first() if name else None
    if pod is None:
        context.abort(grpc.StatusCode.NOT_FOUND, f"pod {name or '(no name)'} not found")
    return pod


def pod_message(pod: Pod) -> pb.Pod:
    return pb.Pod(name=pod.name, desc=pod.desc)


def _labels_match(node: Node, labels: dict[str, str]) -> bool:
    """Eru's utils.LabelsFilter: every label asked, with that value."""
    return all(k in node.labels and str(node.labels[k]) == v for k, v in labels.items())


class PodCalls:
    """Mixed into server.CoreService."""

    # --- pods ---------------------------------------------------------------------------------
    @unary()
    def AddPod(self, request: pb.AddPodOptions, context: Context, principal: Principal) -> pb.Pod:
        return pod_message(services.pod_add(actor=actor(principal), name=request.name, desc=request.desc))

    @unary()
    def RemovePod(self, request: pb.RemovePodOptions, context: Context, principal: Principal) -> pb.Empty:
        services.pod_remove(actor=actor(principal), pod=pod_of(request.name, principal, context))
        return pb.Empty()

    @unary(write=False)
    def GetPod(self, request: pb.GetPodOptions, context: Context, principal: Principal) -> pb.Pod:
        return pod_message(pod_of(request.name, principal, context))

    @unary(write=False)
    def ListPods(self, request: pb.Empty, context: Context, principal: Principal) -> pb.Pods:
        pods = permissions.visible_pods(principal.user).order_by("name")
        return pb.Pods(pods=[pod_message(p) for p in pods])

    @stream(write=False)
    def GetPodResource(
        self, request: pb.GetPodOptions, context: Context, principal: Principal
    ) -> Iterator[pb.NodeResource]:
        pod = pod_of(request.name, principal, context)
        rows = list(Node.objects.filter(pod=pod).select_related("pod").order_by("name"))
        messages = [node_resources.resource_message(n) for n in rows]
        idle()
        yield from messages

    # --- nodes --------------------------------------------------------------------------------
    @unary(write=False)
    def GetNodeResource(
        self, request: pb.GetNodeResourceOptions, context: Context, principal: Principal
    ) -> pb.NodeResource:
        """erucli node resource [--fix]: fix stores the usage counted from the workloads (a write,
        administrators'); its diffs are then the differences it repaired, as Eru's."""
        node = node_of(request.opts.nodename, principal, context)
        if not request.fix:
            return node_resources.resource_message(node)
        if principal.read_only:
            raise PermissionDenied("this token is read-only: GetNodeResource with fix is a write")
        check = services.node_resource_fix(actor=actor(principal), node=node)
        node.refresh_from_db()
        return node_resources.resource_message(node, {"diffs": check["fixed"]})

    @unary()
    def AddNode(self, request: pb.AddNodeOptions, context: Context, principal: Principal) -> pb.Node:
        if request.test:
            raise invalid(
                "test", "test: this core registers real Docker engines only (Eru's test nodes are fakes)"
            )
        pod = pod_of(request.podname, principal, context)
        permissions.require_admin(principal.user)  # before the engine is probed
        asked = node_resources.parse(request.resources, adding=True)
        with _erucli_words():
            node = services.node_add(
                actor=actor(principal),
                pod=pod,
                name=request.nodename,
                endpoint=request.endpoint,
                ca=request.ca,
                cert=request.cert,
                key=request.key,
                labels=dict(request.labels),
                cpu=asked.cpu if isinstance(asked.cpu, int) else None,
                memory=asked.memory,
                share=asked.share,
            )
        node.refresh_from_db()
        return node_message(node)

    @unary()
    def RemoveNode(self, request: pb.RemoveNodeOptions, context: Context, principal: Principal) -> pb.Empty:
        services.node_remove(actor=actor(principal), node=node_of(request.nodename, principal, context))
        return pb.Empty()

    @stream(write=False)
    def ListPodNodes(
        self, request: pb.ListNodesOptions, context: Context, principal: Principal
    ) -> Iterator[pb.Node]:
        """erucli pod nodes: the pod's nodes (every visible pod's when no pod is named) with the
        labels asked; only the available ones unless `all` (erucli --filter all; --filter down lists
        both and shows the difference)."""
        rows = permissions.visible_nodes(principal.user).select_related("pod").order_by("name")
        if request.podname:
            rows = rows.filter(pod=pod_of(request.podname, principal, context))
        labels = dict(request.labels)
        alive = etcd.alive_nodes()
        messages = [
            node_message(n, alive=alive, skip_info=request.skip_info)
            for n in rows
            if _labels_match(n, labels) and (request.all or n.is_available(alive))
        ]
        idle()
        yield from messages

    @unary()
    def SetNode(self, request: pb.SetNodeOptions, context: Context, principal: Principal) -> pb.Node:
        """erucli node set / up / down: labels (replaced when any is given), bypass, the capacity
        (cpu "0:100,1:100" or a number of cores, memory a size; added with delta), endpoint and
        TLS material."""
        node = node_of(request.nodename, principal, context)
        permissions.require_admin(principal.user)  # before an engine is probed
        if request.workloads_down:
            raise invalid(
                "workloads_down",
                "workloads_down (--mark-workloads-down): not supported, a workload's status here is what "
                "its node reports (the next report would undo it); set the node down to stop new workloads",
            )
        asked = node_resources.parse(request.resources, adding=False)
        with _erucli_words():
            node = services.node_set(
                actor=actor(principal),
                node=node,
                labels=dict(request.labels) if request.labels else None,
                bypass=BYPASS.get(request.bypass),
                cpu=asked.cpu,
                memory=asked.memory,
                delta=request.delta,
                endpoint=request.endpoint,
                ca=request.ca,
                cert=request.cert,
                key=request.key,
            )
        return node_message(node)

    @unary(write=False)
    def GetNodeStatus(
        self, request: pb.GetNodeStatusOptions, context: Context, principal: Principal
    ) -> pb.NodeStatusStreamMessage:
        node = node_of(request.nodename, principal, context)
        return pb.NodeStatusStreamMessage(
            nodename=node.name, podname=node.pod.name, alive=etcd.is_alive(node.name)
        )

    @stream(write=False, long=True)
    def NodeStatusStream(
        self, request: pb.Empty, context: Context, principal: Principal
    ) -> Iterator[pb.NodeStatusStreamMessage]:
        """Every change of a visible node's liveness from now on (its heartbeat key appears: alive;
        it expires or is deleted: not), until the caller goes. Administrators also hear of keys of
        nodes this core does not know (with an error), as Eru's watch tells them."""
        staff = permissions.can_admin(principal.user)
        was = etcd.alive_nodes(strict=True)
        wake = ended(context)  # the caller went: stop waiting at once
        while context.is_active():
            idle()
            if wake.wait(STATUS_POLL):
                return
            now = etcd.alive_nodes(strict=True)
            changed = was ^ now
            was = now
            if not changed:
                continue
            pods = dict(
                permissions.visible_nodes(principal.user)
                .filter(name__in=changed)
                .values_list("name", "pod__name")
            )
            for name in sorted(changed):
                if name in pods:
                    yield pb.NodeStatusStreamMessage(nodename=name, podname=pods[name], alive=name in now)
                elif staff and not Node.objects.filter(name=name).exists():
                    yield pb.NodeStatusStreamMessage(
                        nodename=name, alive=name in now, error=f"node {name} not found"
                    )

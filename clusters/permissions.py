"""Who may see and change what — one module for views, API, admin and services alike.

Staff users administer everything. Other users act on a pod through their PodMember role:
viewer (see), deployer (see, deploy, operate workloads), owner (deployer + manage members).
API tokens belong to their user: each user may revoke their own, staff any."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from clusters.models import ApiToken, AuditEvent, Deployment, Node, Pod, PodMember, Workload
from clusters.users import AnyUser

DEPLOY_ROLES = (PodMember.Role.DEPLOYER, PodMember.Role.OWNER)


def visible_pods(user: AnyUser | None) -> QuerySet[Pod]:
    if not user or not user.is_authenticated:
        return Pod.objects.none()
    if user.is_staff:
        return Pod.objects.all()
    return Pod.objects.filter(members__user=user)


def visible_nodes(user: AnyUser | None) -> QuerySet[Node]:
    return Node.objects.filter(pod__in=visible_pods(user))


def visible_workloads(user: AnyUser | None) -> QuerySet[Workload]:
    return Workload.objects.filter(pod__in=visible_pods(user))


def visible_deployments(user: AnyUser | None) -> QuerySet[Deployment]:
    return Deployment.objects.filter(pod__in=visible_pods(user))


def visible_audit_events(user: AnyUser | None) -> QuerySet[AuditEvent]:
    """Staff see every event; others the events of the pods they belong to (never pod-less ones,
    such as token or system events)."""
    if can_admin(user):
        return AuditEvent.objects.all()
    return AuditEvent.objects.filter(pod__in=visible_pods(user))


def can_admin(user: AnyUser | None) -> bool:
    """Pods and nodes are infrastructure: only staff add, change or remove them."""
    return bool(user and user.is_authenticated and user.is_staff)


def can_deploy(user: AnyUser | None, pod: Pod) -> bool:
    if not user or not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return PodMember.objects.filter(pod=pod, user=user, role__in=DEPLOY_ROLES).exists()


def can_manage_members(user: AnyUser | None, pod: Pod) -> bool:
    """Memberships are privileges: staff, or an owner of that very pod, may grant and take them."""
    if not user or not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return PodMember.objects.filter(pod=pod, user=user, role=PodMember.Role.OWNER).exists()


def can_revoke_token(user: AnyUser | None, token: ApiToken) -> bool:
    if not user or not user.is_authenticated:
        return False
    return bool(user.is_staff or token.user_id == user.pk)


def require_admin(user: AnyUser | None) -> None:
    if user is not None and not can_admin(user):
        raise PermissionDenied("Only administrators may change pods and nodes.")


def require_deploy(user: AnyUser | None, pod: Pod) -> None:
    """user None is the system (workers, management commands)."""
    if user is not None and not can_deploy(user, pod):
        raise PermissionDenied(f"You may not deploy to or operate workloads in pod {pod.name}.")


def require_manage_members(user: AnyUser | None, pod: Pod) -> None:
    """user None is the system (management commands)."""
    if user is not None and not can_manage_members(user, pod):
        raise PermissionDenied(f"Only staff or an owner of pod {pod.name} may change its members.")


def require_exec(user: AnyUser | None, pod: Pod) -> None:
    """A command run in a workload's container acts as the workload, with its secrets: staff and the
    pod's owners only (not its deployers). user None is the system."""
    if user is not None and not can_manage_members(user, pod):
        raise PermissionDenied(f"Only staff or an owner of pod {pod.name} may run commands in its workloads.")


def require_revoke_token(user: AnyUser | None, token: ApiToken) -> None:
    if user is not None and not can_revoke_token(user, token):
        raise PermissionDenied("You may only revoke your own tokens.")


def get_pod_for_user(user: AnyUser | None, name: str) -> Pod:
    return get_object_or_404(visible_pods(user), name=name)


def get_workload_for_user(user: AnyUser | None, pk: int) -> Workload:
    return get_object_or_404(visible_workloads(user).select_related("pod", "node"), pk=pk)


def get_deployment_for_user(user: AnyUser | None, pk: int) -> Deployment:
    return get_object_or_404(visible_deployments(user).select_related("pod"), pk=pk)


def require_node_report(user: AnyUser | None, principal: str, node: Node) -> None:
    """Heartbeats and workload status of a node: its own agent (principal node.<name>; a node's
    credential serves only that node), an administrator (Eru's `node set-status`), or the system."""
    if principal:
        if principal != node.grpc_username:
            raise PermissionDenied(f"{principal} may report only for its own node, not for {node.name}.")
        return
    if user is not None and not can_admin(user):
        raise PermissionDenied(f"Only node {node.name}'s agent or an administrator may report its status.")

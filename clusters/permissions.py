"""Who may see and change what — one module for views, API, admin and services alike.

Staff users administer everything. Other users act on a pod through their PodMember role:
viewer (see), deployer (see, deploy, operate workloads), owner (deployer + manage members)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from clusters.models import Deployment, Node, Pod, PodMember, Workload

DEPLOY_ROLES = (PodMember.Role.DEPLOYER, PodMember.Role.OWNER)


def visible_pods(user: Any) -> QuerySet[Pod]:
    if not user or not user.is_authenticated:
        return Pod.objects.none()
    if user.is_staff:
        return Pod.objects.all()
    return Pod.objects.filter(members__user=user)


def deployable_pods(user: Any) -> QuerySet[Pod]:
    if user.is_staff:
        return Pod.objects.all()
    return Pod.objects.filter(members__user=user, members__role__in=DEPLOY_ROLES)


def visible_nodes(user: Any) -> QuerySet[Node]:
    return Node.objects.filter(pod__in=visible_pods(user))


def visible_workloads(user: Any) -> QuerySet[Workload]:
    return Workload.objects.filter(pod__in=visible_pods(user))


def visible_deployments(user: Any) -> QuerySet[Deployment]:
    return Deployment.objects.filter(pod__in=visible_pods(user))


def can_admin(user: Any) -> bool:
    """Pods and nodes are infrastructure: only staff add, change or remove them."""
    return bool(user and user.is_authenticated and user.is_staff)


def can_deploy(user: Any, pod: Pod) -> bool:
    if not user or not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return PodMember.objects.filter(pod=pod, user=user, role__in=DEPLOY_ROLES).exists()


def require_admin(user: Any) -> None:
    if user is not None and not can_admin(user):
        raise PermissionDenied("Only administrators may change pods and nodes.")


def require_deploy(user: Any, pod: Pod) -> None:
    """user None is the system (workers, management commands)."""
    if user is not None and not can_deploy(user, pod):
        raise PermissionDenied(f"You may not deploy to or operate workloads in pod {pod.name}.")


def get_pod_for_user(user: Any, name: str) -> Pod:
    return get_object_or_404(visible_pods(user), name=name)


def get_workload_for_user(user: Any, pk: int) -> Workload:
    return get_object_or_404(visible_workloads(user).select_related("pod", "node"), pk=pk)


def get_deployment_for_user(user: Any, pk: int) -> Deployment:
    return get_object_or_404(visible_deployments(user).select_related("pod"), pk=pk)

"""Who may see and change what — one module for views, API, admin, the gRPC door and services alike.

Roles. A user's role in a pod is the highest of the role granted to them (PodMember) and the roles
granted to the teams they are in (PodTeamRole): viewer < deployer < owner. A viewer sees the pod, its
nodes, workloads, deployments and their audit events; a deployer also deploys and operates workloads
(start/stop/restart/remove, realloc, replace, dissociate, cancel, lambdas); an owner also runs
commands in its workloads (exec) and manages the pod's members and team roles.

Owners. An owner grants any role, owner included, to users and teams, and changes or takes away the
roles of viewers and deployers. The owner role itself is taken away (downgraded or removed) only by
staff, or by an owner from themselves (stepping down): an owner who makes someone else owner cannot be
evicted by them. A pod that has an owner always keeps one — an active user holding owner, themselves
or through a team: removing, downgrading, taking out of the team, deactivating or deleting its last
owner is refused for everyone, staff included (make someone else owner first). A new pod has no owner
until staff grant one; until then only staff manage it.

Teams. Staff make and remove teams and alone change who is in one: being in a team grants every role
the team holds, in every pod, so joining one is a portal-wide privilege. A pod's owners grant and take
a team's role in their pod (under the owner rules above). Anyone sees the teams they are in.

Staff (is_staff) = portal administrator: every pod as its owner, and the infrastructure — pods, nodes
(labels, capacity, up/down), spec policies, teams, quotas — in the portal, the API and the admin site
alike: the admin site opens every clusters model to staff through this module (Django's per-model
permissions are not used). Superuser (is_superuser) adds user accounts: adding and removing users and
setting their staff, superuser and active flags (the admin's users page, audited); staff see users
there read-only, so staff cannot make themselves superuser. The last active superuser cannot be
demoted, deactivated or removed.

API tokens belong to their user: each user may revoke their own, staff any.

Secrets (env values) and logs. Those who may deploy to a pod (staff, its deployers and owners) see
its workloads' and deployments' env values plainly, as they always did, and read their logs and its
lambdas' output: they could read them anyway (a replace keeps each workload's env and may change its
command to print it; a deploy chooses its own env), so a reveal step would protect nothing. A viewer
sees the keys only, each value replaced by one fixed marker (clusters.secrets), and reads no log:
logs carry secrets often and cannot be masked, so every log path answers a viewer 403 and the pages
leave the log panels out. A deployment of a removed pod (no pod any more): staff only."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from clusters.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    Node,
    Pod,
    PodMember,
    PodTeamRole,
    Team,
    Workload,
)
from clusters.users import AnyUser

Role = PodMember.Role
RANK: dict[str, int] = {Role.VIEWER.value: 1, Role.DEPLOYER.value: 2, Role.OWNER.value: 3}
DEPLOY_ROLES = (Role.DEPLOYER, Role.OWNER)


def _person(user: AnyUser | None) -> User | None:
    """The user row behind a request's user, or None (no one, or anonymous)."""
    return user if isinstance(user, User) and user.is_authenticated else None


def _roles_from(least: str) -> list[str]:
    return [r for r, rank in RANK.items() if rank >= RANK[least]]


def role_in(user: AnyUser | None, pod: Pod) -> str | None:
    """The user's role in the pod: the highest of their own (PodMember) and their teams'
    (PodTeamRole); None when they hold none. One query. Staff hold no role by being staff: the can_*
    functions grant them everything."""
    person = _person(user)
    if person is None:
        return None
    own = PodMember.objects.filter(pod=pod, user=person).values_list("role", flat=True)
    teams = PodTeamRole.objects.filter(pod=pod, team__memberships__user=person).values_list("role", flat=True)
    held = [r for r in own.union(teams) if r in RANK]
    return max(held, key=RANK.__getitem__, default=None)


def has_role(user: AnyUser | None, pod: Pod, least: str) -> bool:
    role = role_in(user, pod)
    return role is not None and RANK[role] >= RANK[least]


def pods_with_role(user: AnyUser | None, least: str = Role.VIEWER) -> QuerySet[Pod]:
    """The pods where the user holds at least `least`, themselves or through a team (staff not
    counted): one query, two subqueries, no duplicates."""
    person = _person(user)
    if person is None:
        return Pod.objects.none()
    roles = _roles_from(least)
    own = PodMember.objects.filter(user=person, role__in=roles).values("pod")
    teams = PodTeamRole.objects.filter(team__memberships__user=person, role__in=roles).values("pod")
    return Pod.objects.filter(Q(pk__in=own) | Q(pk__in=teams))


def visible_pods(user: AnyUser | None) -> QuerySet[Pod]:
    if not user or not user.is_authenticated:
        return Pod.objects.none()
    if user.is_staff:
        return Pod.objects.all()
    return pods_with_role(user)


def visible_nodes(user: AnyUser | None) -> QuerySet[Node]:
    return Node.objects.filter(pod__in=visible_pods(user))


def visible_workloads(user: AnyUser | None) -> QuerySet[Workload]:
    return Workload.objects.filter(pod__in=visible_pods(user))


def visible_deployments(user: AnyUser | None) -> QuerySet[Deployment]:
    """A deployment outlives its pod (pod None, its pod_name kept): then staff only see it."""
    if can_admin(user):
        return Deployment.objects.all()
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
    return bool(user.is_staff) or has_role(user, pod, Role.DEPLOYER)


def can_see_secrets(user: AnyUser | None, pod: Pod | None) -> bool:
    """Env values of the pod's workloads and deployments (see the module's docstring): those who may
    deploy there. No pod (a deployment whose pod was removed): staff only."""
    if pod is None:
        return can_admin(user)
    return can_deploy(user, pod)


def can_read_logs(user: AnyUser | None, pod: Pod | None) -> bool:
    """Logs and a lambda's output carry secrets as often as not: those who see the secrets."""
    return can_see_secrets(user, pod)


def can_manage_members(user: AnyUser | None, pod: Pod) -> bool:
    """Memberships are privileges: staff, or an owner of that very pod (themselves or through a
    team), grant and take them — under the owner rules (can_take_owner, owners_kept)."""
    if not user or not user.is_authenticated:
        return False
    return bool(user.is_staff) or has_role(user, pod, Role.OWNER)


def can_take_owner(user: AnyUser | None, pod: Pod, holder: AnyUser | None = None) -> bool:
    """Downgrade or remove an owner role in the pod: staff; or an owner stepping down from their own
    (holder: the user whose own row it is; None for a team's role, which only staff take)."""
    if not user or not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return holder is not None and holder.pk == user.pk and can_manage_members(user, pod)


def can_manage_teams(user: AnyUser | None) -> bool:
    """Teams and who is in them: staff only (joining a team grants its roles in every pod)."""
    return can_admin(user)


def can_manage_users(user: AnyUser | None) -> bool:
    """User accounts and their staff, superuser and active flags: superusers only."""
    return bool(user and user.is_authenticated and user.is_superuser)


def visible_teams(user: AnyUser | None) -> QuerySet[Team]:
    """Staff see every team; others the teams they are in."""
    person = _person(user)
    if person is None:
        return Team.objects.none()
    if person.is_staff:
        return Team.objects.all()
    return Team.objects.filter(pk__in=person.team_memberships.values("team"))


def owners(pod: Pod) -> QuerySet[User]:
    """The pod's owners: active users holding owner themselves or through a team."""
    own = PodMember.objects.filter(pod=pod, role=Role.OWNER).values("user")
    teams = PodTeamRole.objects.filter(pod=pod, role=Role.OWNER).values("team__memberships__user")
    return User.objects.filter(Q(pk__in=own) | Q(pk__in=teams), is_active=True)


def pods_with_owner(pod_ids: Iterable[int]) -> set[int]:
    """Of these pods, those that have an owner (see owners): two queries for any number of pods."""
    ids = list(pod_ids)
    own = PodMember.objects.filter(pod__in=ids, role=Role.OWNER, user__is_active=True)
    teams = PodTeamRole.objects.filter(pod__in=ids, role=Role.OWNER, team__memberships__user__is_active=True)
    return set(own.values_list("pod", flat=True)) | set(teams.values_list("pod", flat=True))


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


def require_take_owner(user: AnyUser | None, pod: Pod, holder: AnyUser | None = None) -> None:
    """user None is the system."""
    if user is not None and not can_take_owner(user, pod, holder):
        raise PermissionDenied(
            f"Only staff may take the owner role away from another owner of pod {pod.name} "
            "(an owner may step down themselves)."
        )


def require_manage_teams(user: AnyUser | None) -> None:
    if user is not None and not can_manage_teams(user):
        raise PermissionDenied("Only administrators may make, remove or change teams.")


def require_manage_users(user: AnyUser | None) -> None:
    if user is not None and not can_manage_users(user):
        raise PermissionDenied("Only superusers may add, change or remove users.")


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

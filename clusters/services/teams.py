"""Teams, who is in them, and the roles they hold in pods. Teams and their members are staff's;
a team's role in a pod is staff's or the pod's owners', under the owner rules of
clusters.permissions (the owner role is taken only by staff; a pod keeps an owner). Every change
is audited with its before and after."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from clusters import permissions
from clusters.models import AuditEvent, Pod, PodMember, PodTeamRole, Team, TeamMember, Workload
from clusters.services._common import NAME_RE, Actor, audit, invalid
from clusters.services.pods import lock_pods, owners_kept


def _roles_of(team: Team) -> dict[str, str]:
    return dict(team.pod_roles.order_by("pod__name").values_list("pod__name", "role"))


def _owned_by(team: Team) -> list[int]:
    """The pods where this team is owner: its members' leaving may leave them without one."""
    return list(team.pod_roles.filter(role=PodMember.Role.OWNER).values_list("pod", flat=True))


def team_add(*, actor: Actor, name: str, desc: str = "") -> Team:
    """A new team (staff). Names as pod names: letters, digits, '.' and '-'."""
    permissions.require_manage_teams(actor.user)
    name = (name or "").strip()
    if not name:
        raise invalid("name", "team name is empty")
    if not NAME_RE.match(name):
        raise invalid("name", "team name: use letters, digits, '.' and '-' (at most 63 characters)")
    desc = (desc or "").strip()[:255]
    with transaction.atomic():
        if Team.objects.filter(name=name).exists():
            raise invalid("name", f"team {name} already exists")
        team = Team.objects.create(name=name, desc=desc)
        audit(actor, AuditEvent.Action.TEAM_ADD, team, after={"name": name, "desc": desc})
    return team


def team_remove(*, actor: Actor, team: Team) -> None:
    """Remove a team, its memberships, pod roles and quotas (staff); refused when that would leave a
    pod it owns without an owner, or while workloads run on its quotas (they would count on none)."""
    permissions.require_manage_teams(actor.user)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        held = Workload.objects.filter(Workload.holding(), team=team).count()
        if held:
            raise invalid("team", f"team {team.name} has {held} workloads on its quotas; remove them first")
        had_owner = lock_pods(_owned_by(team))
        before: dict[str, Any] = {
            "name": team.name,
            "desc": team.desc,
            "members": sorted(team.memberships.values_list("user__username", flat=True)),
            "roles": _roles_of(team),
            "quotas": {
                q.pod.name: {"cpu": q.cpu, "memory": q.memory, "workloads": q.workloads}
                for q in team.quotas.select_related("pod")
            },
        }
        audit(actor, AuditEvent.Action.TEAM_REMOVE, team, before=before)
        team.delete()
        owners_kept(had_owner, "team")


def team_member_add(*, actor: Actor, team: Team, user: User | None) -> TeamMember:
    """Put `user` in `team` (staff): they get every role the team holds. Already in: no change."""
    permissions.require_manage_teams(actor.user)
    if user is None or not user.pk:
        raise invalid("user", "no such user")
    with transaction.atomic():
        member = TeamMember.objects.select_for_update().filter(team=team, user=user).first()
        if member is not None:
            return member  # nothing changes, nothing to audit
        member = TeamMember.objects.create(team=team, user=user)
        audit(
            actor,
            AuditEvent.Action.TEAM_MEMBER_ADD,
            member,
            after={"team": team.name, "user": user.username, "roles": _roles_of(team)},
        )
    return member


def team_member_remove(*, actor: Actor, team: Team, user: User) -> None:
    """Take `user` out of `team` (staff); refused when that leaves a pod the team owns without an
    owner. Not in it: a field error."""
    permissions.require_manage_teams(actor.user)
    with transaction.atomic():
        had_owner = lock_pods(_owned_by(team))
        member = TeamMember.objects.select_for_update().filter(team=team, user=user).first()
        if member is None:
            raise invalid("user", f"{getattr(user, 'username', user)} is not in team {team.name}")
        audit(
            actor,
            AuditEvent.Action.TEAM_MEMBER_REMOVE,
            member,
            before={"team": team.name, "user": user.username, "roles": _roles_of(team)},
        )
        member.delete()
        owners_kept(had_owner, "user")


def team_role_set(*, actor: Actor, pod: Pod, team: Team | None, role: str) -> PodTeamRole:
    """Grant `team` a role in `pod` (add or change it): staff or an owner of the pod. Downgrading a
    team that owns the pod is staff's, and never when it holds the pod's last owners."""
    permissions.require_manage_members(actor.user, pod)
    if role not in PodMember.Role.values:
        raise invalid("role", f"role must be one of {', '.join(PodMember.Role.values)}")
    if team is None or not team.pk:
        raise invalid("team", "no such team")
    with transaction.atomic():
        had_owner = lock_pods([pod.pk])
        grant = PodTeamRole.objects.select_for_update().filter(pod=pod, team=team).first()
        before = {"team": team.name, "role": grant.role} if grant else None
        if grant is None:
            grant = PodTeamRole.objects.create(pod=pod, team=team, role=role)
        elif grant.role != role:
            if grant.role == PodMember.Role.OWNER:
                permissions.require_take_owner(actor.user, pod)
            grant.role = role
            grant.save(update_fields=["role"])
        else:
            return grant  # nothing changes, nothing to audit
        owners_kept(had_owner, "role")
        audit(
            actor,
            AuditEvent.Action.TEAM_ROLE_SET,
            grant,
            pod=pod,
            before=before,
            after={"team": team.name, "role": role},
        )
    return grant


def team_role_remove(*, actor: Actor, pod: Pod, team: Team) -> None:
    """Take `team`'s role in `pod` away: staff or an owner of the pod (an owner team's: staff only,
    and never the pod's last owners). Holding none: a field error."""
    permissions.require_manage_members(actor.user, pod)
    with transaction.atomic():
        had_owner = lock_pods([pod.pk])
        grant = PodTeamRole.objects.select_for_update().filter(pod=pod, team=team).first()
        if grant is None:
            raise invalid("team", f"team {team.name} holds no role in pod {pod.name}")
        if grant.role == PodMember.Role.OWNER:
            permissions.require_take_owner(actor.user, pod)
        audit(
            actor,
            AuditEvent.Action.TEAM_ROLE_REMOVE,
            grant,
            pod=pod,
            before={"team": team.name, "role": grant.role},
        )
        grant.delete()
        owners_kept(had_owner, "team")

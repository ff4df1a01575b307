"""Pods and who belongs to them. The owner rules (clusters.permissions' docstring): owners grant any
role, the owner role is taken away only by staff or by its holder stepping down, and a pod that has
an owner always keeps one (owners_kept, which teams and users services use too)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction

from clusters import etcd, permissions, sync
from clusters.errors import state_refused
from clusters.models import AuditEvent, Pod, PodMember
from clusters.services._common import NAME_RE, Actor, audit, invalid


def pod_add(*, actor: Actor, name: str, desc: str = "", favor: str = Pod.Favor.CPU) -> Pod:
    permissions.require_admin(actor.user)
    name = (name or "").strip()
    if not name:
        raise invalid("name", "pod name is empty")
    if not NAME_RE.match(name):
        raise invalid("name", "pod name: use letters, digits, '.' and '-' (at most 63 characters)")
    if favor not in Pod.Favor.values:
        raise invalid("favor", f"favor must be one of {', '.join(Pod.Favor.values)}")
    with transaction.atomic():
        if Pod.objects.filter(name=name).exists():
            raise invalid("name", f"pod {name} already exists")
        pod = Pod.objects.create(name=name, desc=desc[:255], favor=favor)
        audit(
            actor, AuditEvent.Action.POD_ADD, pod, pod=pod, after={"name": name, "desc": desc, "favor": favor}
        )
        sync.push(sync.pod_keys(pod))
    return pod


def pod_remove(*, actor: Actor, pod: Pod) -> None:
    permissions.require_admin(actor.user)
    with transaction.atomic():
        nodes = pod.nodes.count()
        if nodes:
            raise state_refused("pod", f"pod {pod.name} still has {nodes} nodes, delete them first")
        # Its deployments stay (their pod empties, pod_name stays), as its audit rows do: the pod's
        # name finds them (a filter by pod reads pod_name), this row among them.
        before = {
            **pod.eru_json(),
            "members": {m.user.username: m.role for m in pod.members.select_related("user")},
            "team_roles": {r.team.name: r.role for r in pod.team_roles.select_related("team")},
            "quotas": {
                q.team.name: {"cpu": q.cpu, "memory": q.memory, "workloads": q.workloads}
                for q in pod.quotas.select_related("team")
            },
        }
        audit(actor, AuditEvent.Action.POD_REMOVE, pod, pod=pod, before=before)
        sync.push(deletes=[etcd.pod_key(pod.name)])
        pod.delete()


def lock_pods(pod_ids: Iterable[int]) -> set[int]:
    """Lock the pods' rows (in id order) for a change of who holds which role in them, so that two
    changes that would each leave the other owner cannot both win. Returns those that have an owner."""
    ids = sorted(set(pod_ids))
    list(Pod.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    return permissions.pods_with_owner(ids)


def owners_kept(had_owner: set[int], field: str) -> None:
    """After a change, inside its transaction: refuse it (a field error; the transaction rolls back)
    when a pod that had an owner has none left."""
    lost = had_owner - permissions.pods_with_owner(had_owner)
    if lost:
        names = ", ".join(Pod.objects.filter(pk__in=lost).order_by("name").values_list("name", flat=True))
        raise invalid(
            field,
            f"pod {names} would be left without an owner: a pod always keeps one, make someone else "
            "owner first",
        )


def member_set(*, actor: Actor, pod: Pod, user: User | None, role: str) -> PodMember:
    """Grant `user` a role in `pod` (add or change the PodMember row); staff or an owner of the pod.
    Downgrading an owner is staff's, or their own; the pod's last owner is never downgraded."""
    permissions.require_manage_members(actor.user, pod)
    if role not in PodMember.Role.values:
        raise invalid("role", f"role must be one of {', '.join(PodMember.Role.values)}")
    if user is None or not user.pk:
        raise invalid("user", "no such user")
    with transaction.atomic():
        had_owner = lock_pods([pod.pk])
        member = PodMember.objects.select_for_update().filter(pod=pod, user=user).first()
        before = {"user": user.username, "role": member.role} if member else None
        if member is None:
            member = PodMember.objects.create(pod=pod, user=user, role=role)
        elif member.role != role:
            if member.role == PodMember.Role.OWNER:
                permissions.require_take_owner(actor.user, pod, user)
            member.role = role
            member.save(update_fields=["role"])
        else:
            return member  # nothing changes, nothing to audit
        owners_kept(had_owner, "role")
        audit(
            actor,
            AuditEvent.Action.MEMBER_SET,
            member,
            pod=pod,
            before=before,
            after={"user": user.username, "role": role},
        )
    return member


def member_remove(*, actor: Actor, pod: Pod, user: User) -> None:
    """Take `user`'s role in `pod` away; staff or an owner of the pod (an owner's: staff, or their
    own; never the last owner's). Not a member: a field error."""
    permissions.require_manage_members(actor.user, pod)
    with transaction.atomic():
        had_owner = lock_pods([pod.pk])
        member = PodMember.objects.select_for_update().filter(pod=pod, user=user).first()
        if member is None:
            raise invalid("user", f"{getattr(user, 'username', user)} is not a member of pod {pod.name}")
        if member.role == PodMember.Role.OWNER:
            permissions.require_take_owner(actor.user, pod, user)
        audit(
            actor,
            AuditEvent.Action.MEMBER_REMOVE,
            member,
            pod=pod,
            before={"user": user.username, "role": member.role},
        )
        member.delete()
        owners_kept(had_owner, "user")

"""Quotas per team per pod: cpu (the sum of requests), memory (bytes of requests) and the number of
workloads a team's workloads may hold in a pod, set by administrators (audited). A deploy, a lambda
and a realloc run on one team's quota — the one the request names, else the deployer's only team —
checked in the transaction that allocates, against the quota row locked there (clusters.quotas does
the arithmetic). Use is counted from the rows that hold an allocation (Workload.holding(): a
replacement that borrows its old workload's counts once, as the old one).

A quota may be set below the current use: as Kubernetes' ResourceQuota, it then refuses new work
(and growth) until the use is under it again; nothing running is touched, and shrinking is allowed."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet, Sum

import schema
from clusters import permissions
from clusters.errors import quota_refused
from clusters.models import AuditEvent, Pod, Quota, Team, Workload
from clusters.quotas import AXES, Amount, Ask, Limits, excess, percent, refusal, show
from clusters.services._common import Actor, audit, invalid
from clusters.users import AnyUser

MAX_QUOTA_CPU = 1e6  # cpus: far above any fleet
MAX_QUOTA_WORKLOADS = 2**31 - 1  # the column's (PositiveIntegerField) top on every database


def member_teams(user: AnyUser | None) -> QuerySet[Team]:
    """The teams the user is in, by name (none for the system or the anonymous user)."""
    if user is None or not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name")


def teams_of(user: AnyUser | None) -> list[Team]:
    return list(member_teams(user))


def deploy_team(user: AnyUser | None, pod: Pod, name: str | None) -> Team | None:
    """The team on whose quota a deploy runs: the one named (the user must be in it; administrators
    and the system may name any team), else the user's only team. When some of the user's teams have
    a quota in this pod, it runs on one of those (the only one by default; several: choose): naming a
    team without one here does not step past the quota. None: no team (no quota applies)."""
    here = Quota.objects.filter(pod=pod, team=OuterRef("pk"))
    found = list(member_teams(user).annotate(quoted=Exists(here)))  # one query: teams and quotas
    mine: list[Team] = list(found)
    quoted: list[Team] = [t for t in found if t.quoted]
    privileged = user is None or permissions.can_admin(user)
    if name:
        team = next((t for t in mine if t.name == name), None)
        if team is None and (user is None or permissions.can_admin(user)):
            team = Team.objects.filter(name=name).first()
            if team is None:
                raise invalid("team", f"team: no such team {name[:64]!r}")
        if team is None:
            yours = ", ".join(t.name for t in mine) or "none"
            raise invalid("team", f"team: you are not in team {name[:64]!r} (your teams: {yours})")
        if quoted and team not in quoted and not privileged:
            names = ", ".join(t.name for t in quoted)
            raise invalid("team", f"team: {team.name} has no quota in pod {pod.name}; deploy on {names}")
        return team
    if len(quoted) == 1:
        return quoted[0]
    if len(mine) == 1:
        return mine[0]
    if len(quoted) > 1:
        names = ", ".join(t.name for t in quoted)
        raise invalid(
            "team", f"team: you are in teams {names}: choose one (its quota in pod {pod.name} applies)"
        )
    return None


def _amount(row: Mapping[str, Any]) -> Amount:
    return Amount(float(row["cpu"] or 0.0), int(row["memory"] or 0), int(row["n"] or 0))


def _use_rows(pod: Pod, teams: Iterable[Team]) -> dict[int, Amount]:
    """Each team's use in the pod, in one query: the rows that hold an allocation, read from the
    index workload_team_use alone (COUNT(*), not of a column outside it)."""
    rows = (
        Workload.objects.filter(Workload.holding(), pod=pod, team__in=list(teams))
        .order_by()
        .values("team")
        .annotate(cpu=Sum("cpu_request"), memory=Sum("memory_request"), n=Count("*"))
    )
    return {int(row["team"]): _amount(row) for row in rows}


def team_use(pod: Pod, team: Team) -> Amount:
    """What the team's workloads hold in the pod now."""
    return _use_rows(pod, [team]).get(team.pk, Amount())


def limits_of(quota: Quota) -> Limits:
    return Limits(quota.cpu, quota.memory, quota.workloads)


def require_quota(*, pod: Pod, team: Team | None, ask: Ask, field: str | Mapping[str, str]) -> None:
    """Refuse (a ValidationError on `field`, or on the field `field` maps the first axis over to)
    what would take the team above its quota in the pod. Call it inside the transaction that
    allocates, after its node locks: the quota row is locked here, so two changes for one team are
    counted one after the other (on SQLite the immediate transaction already serialises them)."""
    if team is None:
        return
    quota = Quota.objects.select_for_update().filter(pod=pod, team=team).first()
    if quota is None:
        return
    limits, use = limits_of(quota), team_use(pod, team)
    message = refusal(team.name, pod.name, limits, use, ask)
    if message is None:
        return
    if not isinstance(field, str):
        field = field[excess(limits, use, ask)[0]]
    raise quota_refused(field, message)


@dataclass(frozen=True)
class Axis:
    """One line of a quota as a page shows it: limit (None: none), use, how full."""

    name: str
    limit: float | None
    use: float

    @property
    def pct(self) -> int | None:
        return percent(self.use, self.limit)

    @property
    def limit_text(self) -> str:
        return "no limit" if self.limit is None else show(self.name, self.limit)

    @property
    def use_text(self) -> str:
        return show(self.name, self.use)


@dataclass(frozen=True)
class QuotaRow:
    """A team's quota in a pod with its current use."""

    team: Team
    limits: Limits
    use: Amount

    @property
    def axes(self) -> list[Axis]:
        return [Axis(a, getattr(self.limits, a), getattr(self.use, a)) for a in AXES]


def quota_rows(pod: Pod, teams: Iterable[Team] | QuerySet[Team] | None = None) -> list[QuotaRow]:
    """The pod's quotas (only those of `teams`, when given) with each team's use: two queries (one
    when there is none)."""
    quotas = Quota.objects.filter(pod=pod).select_related("team").order_by("team__name")
    if teams is not None:
        quotas = quotas.filter(team__in=teams)
    found = list(quotas)
    use = _use_rows(pod, [q.team for q in found])
    return [QuotaRow(q.team, limits_of(q), use.get(q.team_id, Amount())) for q in found]


def visible_quota_rows(user: AnyUser | None, pod: Pod) -> list[QuotaRow]:
    """What a pod's page shows: administrators every team's quota, members their own teams'."""
    return quota_rows(pod, None if permissions.can_admin(user) else member_teams(user))


def _cpu(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("cpu: expected a number of cpus, not true/false")
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"cpu: expected a number of cpus, got {str(value)[:40]!r}") from None
    if not math.isfinite(number) or not 0 <= number <= MAX_QUOTA_CPU:
        raise ValueError(f"cpu: {str(value)[:40]} is not a number of cpus from 0 to {MAX_QUOTA_CPU:g}")
    return number


def _memory(value: object) -> int | None:
    if value is None or value == "":
        return None
    size = schema.parse_size(value, field="memory")
    if size < 0:
        raise ValueError(f"memory: {str(value)[:40]} is below 0")
    return size


def _workloads(value: object) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isdigit():
        text = int(text)
    if not isinstance(text, int) or isinstance(text, bool) or not 0 <= text <= MAX_QUOTA_WORKLOADS:
        raise ValueError(
            f"workloads: {str(value)[:40]!r} is not a whole number from 0 to {MAX_QUOTA_WORKLOADS}"
        )
    return text


def quota_clean(*, cpu: object = None, memory: object = None, workloads: object = None) -> Limits:
    """A quota's values, checked (every bad one at once, by field): cpus a finite number from 0,
    memory bytes or a size like 8G, workloads a whole number from 0; None or empty: no limit."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name, check, value in (
        ("cpu", _cpu, cpu),
        ("memory", _memory, memory),
        ("workloads", _workloads, workloads),
    ):
        try:
            values[name] = check(value)
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    return Limits(**values)


def _shown(quota: Quota | None) -> dict[str, Any] | None:
    if quota is None:
        return None
    return {"team": quota.team.name, "cpu": quota.cpu, "memory": quota.memory, "workloads": quota.workloads}


def quota_set(
    *,
    actor: Actor,
    pod: Pod,
    team: Team | None,
    cpu: object = None,
    memory: object = None,
    workloads: object = None,
) -> Quota:
    """Administrators: set the team's quota in the pod (all three; None: no limit on that one).
    Audited with before and after; a quota below the current use is allowed (see the module)."""
    permissions.require_admin(actor.user)
    if team is None or not team.pk:
        raise invalid("team", "team: no such team")
    limits = quota_clean(cpu=cpu, memory=memory, workloads=workloads)
    with transaction.atomic():
        quota = Quota.objects.select_for_update().filter(pod=pod, team=team).first()
        before = _shown(quota)
        if quota is None:
            quota = Quota(pod=pod, team=team)
        elif limits_of(quota) == limits:
            return quota  # nothing changes, nothing to audit
        quota.cpu, quota.memory, quota.workloads = limits.cpu, limits.memory, limits.workloads
        quota.save()
        audit(actor, AuditEvent.Action.QUOTA_SET, quota, pod=pod, before=before, after=_shown(quota))
    return quota


def quota_remove(*, actor: Actor, pod: Pod, team: Team | None) -> None:
    """Administrators: take the team's quota in the pod away (no limit then); audited."""
    permissions.require_admin(actor.user)
    with transaction.atomic():
        quota = Quota.objects.select_for_update().filter(pod=pod, team=team).first() if team else None
        if quota is None:
            name = team.name if team else "?"
            raise invalid("team", f"team: team {name} has no quota in pod {pod.name}")
        audit(actor, AuditEvent.Action.QUOTA_REMOVE, quota, pod=pod, before=_shown(quota))
        quota.delete()

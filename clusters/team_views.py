"""The portal's access pages: a pod's members and team roles (its owners and staff manage them, on
the pod page through an htmx slot, or on a page of their own without JavaScript), and the teams page
(everyone sees the teams they are in; staff make and remove teams and change who is in them). Who
may do what is clusters.permissions'; every change is a clusters.services call, audited. A refusal
(the owner rules: clusters.permissions' docstring) is shown in the panel and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseLocation, trigger_client_event

from clusters import permissions, services
from clusters.models import Pod, PodMember, PodTeamRole, Team
from clusters.users import HtmxHttpRequest

ACCESS = "clusters/pod_access.html"
ROLES = PodMember.Role.values


def _actor(request: HtmxHttpRequest) -> services.Actor:
    return services.actor_from_request(request, via="ui")


def _text(exc: ValidationError | PermissionDenied) -> str:
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


def _user(name: str) -> User | None:
    return User.objects.filter(username=name.strip()).first() if name.strip() else None


def _team(name: str) -> Team | None:
    return Team.objects.filter(name=name.strip()).first() if name.strip() else None


# --- a pod's members and team roles ----------------------------------------------------------------
def _managed_pod(request: HtmxHttpRequest, name: str) -> Pod:
    """The pod (404 if not visible), for one who may manage its members (403 otherwise)."""
    pod = permissions.get_pod_for_user(request.user, name)
    permissions.require_manage_members(request.user, pod)
    return pod


def _access(request: HtmxHttpRequest, pod: Pod, **extra: Any) -> HttpResponse:
    context = {
        "pod": pod,
        "members": PodMember.objects.filter(pod=pod).select_related("user").order_by("user__username"),
        "team_roles": PodTeamRole.objects.filter(pod=pod).select_related("team").order_by("team__name"),
        "teams": Team.objects.order_by("name").values_list("name", flat=True),
        "roles": ROLES,
        "is_admin": permissions.can_admin(request.user),
        **extra,
    }
    return render(request, f"{ACCESS}#access" if request.htmx else ACCESS, context)


@login_required
@require_GET
def pod_access(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """The panel (htmx: the pod page's slot asks for it; an empty answer removes the slot for those
    who may not manage members) or, without JavaScript, a page of its own."""
    pod = permissions.get_pod_for_user(request.user, name)
    if not permissions.can_manage_members(request.user, pod):
        if request.htmx:
            return HttpResponse("")
        raise PermissionDenied(f"Only staff or an owner of pod {pod.name} may manage its members.")
    return _access(request, pod)


def _change(request: HtmxHttpRequest, pod: Pod, call: Callable[[], object], done: str) -> HttpResponse:
    """Run a service call; answer the panel again (htmx, with what happened, and `access-changed`
    for whoever listens) or go back to the access page (a form without JavaScript)."""
    try:
        call()
    except (ValidationError, PermissionDenied) as exc:
        if request.htmx:  # the panel names the kind of refusal (data-refusal): denied or invalid
            refusal = "denied" if isinstance(exc, PermissionDenied) else "invalid"
            return _access(request, pod, error=_text(exc), refusal=refusal)
        messages.error(request, _text(exc))
    else:
        if request.htmx:
            return trigger_client_event(_access(request, pod, done=done), "access-changed")
        messages.success(request, done)
    return redirect("clusters:pod-access", name=pod.name)


@login_required
@require_POST
def pod_member_set(request: HtmxHttpRequest, name: str) -> HttpResponse:
    pod = _managed_pod(request, name)
    username, role = request.POST.get("user", ""), request.POST.get("role", "")
    user = _user(username)

    def call() -> object:
        if user is None:
            raise ValidationError({"user": [f"user: no such user {username.strip()[:150]!r}"]})
        return services.member_set(actor=_actor(request), pod=pod, user=user, role=role)

    return _change(request, pod, call, f"{username.strip()} is {role} of pod {pod.name}.")


@login_required
@require_POST
def pod_member_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    pod = _managed_pod(request, name)
    username = request.POST.get("user", "")
    user = _user(username)

    def call() -> object:
        if user is None:
            raise ValidationError({"user": [f"user: no such user {username.strip()[:150]!r}"]})
        services.member_remove(actor=_actor(request), pod=pod, user=user)
        return None

    return _change(request, pod, call, f"{username.strip()} is no longer a member of pod {pod.name}.")


@login_required
@require_POST
def pod_team_set(request: HtmxHttpRequest, name: str) -> HttpResponse:
    pod = _managed_pod(request, name)
    team_name, role = request.POST.get("team", ""), request.POST.get("role", "")
    team = _team(team_name)

    def call() -> object:
        if team is None:
            raise ValidationError({"team": [f"team: no such team {team_name.strip()[:64]!r}"]})
        return services.team_role_set(actor=_actor(request), pod=pod, team=team, role=role)

    return _change(request, pod, call, f"Team {team_name.strip()} is {role} of pod {pod.name}.")


@login_required
@require_POST
def pod_team_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    pod = _managed_pod(request, name)
    team_name = request.POST.get("team", "")
    team = _team(team_name)

    def call() -> object:
        if team is None:
            raise ValidationError({"team": [f"team: no such team {team_name.strip()[:64]!r}"]})
        services.team_role_remove(actor=_actor(request), pod=pod, team=team)
        return None

    return _change(request, pod, call, f"Team {team_name.strip()} no longer holds a role in pod {pod.name}.")


# --- teams ---------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def team_list(request: HtmxHttpRequest) -> HttpResponse:
    """The teams one sees (staff: all); staff make one here (POST name, desc)."""
    is_admin = permissions.can_manage_teams(request.user)
    error = ""
    if request.method == "POST":
        if not is_admin:
            raise PermissionDenied("Only administrators may make teams.")
        try:
            team = services.team_add(
                actor=_actor(request), name=request.POST.get("name", ""), desc=request.POST.get("desc", "")
            )
        except ValidationError as exc:
            error = _text(exc)
        else:
            messages.success(request, f"Team {team.name} made.")
            url = reverse("clusters:team-detail", args=[team.name])
            return HttpResponseLocation(url) if request.htmx else redirect(url)
    teams = permissions.visible_teams(request.user).annotate(member_count=Count("memberships"))
    context = {
        "teams": teams.prefetch_related("pod_roles__pod").order_by("name"),
        "is_admin": is_admin,
        "error": error,
        "data": request.POST,
    }
    return render(request, "clusters/team_list.html", context)


def _visible_team(request: HtmxHttpRequest, name: str) -> Team:
    return get_object_or_404(permissions.visible_teams(request.user), name=name)


@login_required
@require_http_methods(["GET", "POST"])
def team_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """A team: its members and pod roles; staff put users in it here (POST user)."""
    team = _visible_team(request, name)
    is_admin = permissions.can_manage_teams(request.user)
    error = ""
    if request.method == "POST":
        if not is_admin:
            raise PermissionDenied("Only administrators may change who is in a team.")
        username = request.POST.get("user", "")
        try:
            user = _user(username)
            if user is None:
                raise ValidationError({"user": [f"user: no such user {username.strip()[:150]!r}"]})
            services.team_member_add(actor=_actor(request), team=team, user=user)
        except ValidationError as exc:
            error = _text(exc)
        else:
            messages.success(request, f"{user.username} is in team {team.name}.")
            return redirect("clusters:team-detail", name=team.name)
    context = {
        "team": team,
        "members": team.memberships.select_related("user").order_by("user__username"),
        "roles": team.pod_roles.select_related("pod").order_by("pod__name"),
        "is_admin": is_admin,
        "error": error,
    }
    return render(request, "clusters/team_detail.html", context)


@login_required
@require_POST
def team_member_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    team = _visible_team(request, name)
    permissions.require_manage_teams(request.user)
    username = request.POST.get("user", "")
    user = _user(username)
    try:
        if user is None:
            raise ValidationError({"user": [f"user: no such user {username.strip()[:150]!r}"]})
        services.team_member_remove(actor=_actor(request), team=team, user=user)
    except ValidationError as exc:
        messages.error(request, _text(exc))
    else:
        messages.success(request, f"{username.strip()} is no longer in team {team.name}.")
    return redirect("clusters:team-detail", name=team.name)


@login_required
@require_POST
def team_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    team = _visible_team(request, name)
    permissions.require_manage_teams(request.user)
    try:
        services.team_remove(actor=_actor(request), team=team)
    except ValidationError as exc:
        messages.error(request, _text(exc))
        return redirect("clusters:team-detail", name=team.name)
    messages.success(request, f"Team {name} removed.")
    return redirect("clusters:team-list")

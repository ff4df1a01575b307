"""Admin of who may do what: quotas, teams and their pod roles, user accounts (clusters.admin has the
rest). Every save and delete goes through clusters.services, checked and audited."""

from __future__ import annotations

from copy import copy
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

import schema
from clusters import permissions, services
from clusters.admin_base import REFUSED, PortalAdmin, RefusalsShown, _actor, _text
from clusters.models import (
    Pod,
    PodTeamRole,
    Quota,
    Team,
    TeamMember,
)
from schema import format_size


# --- quotas -------------------------------------------------------------------------------------
class QuotaForm(forms.ModelForm[Quota]):
    """Memory as people write it (8G, or bytes); the values are checked by services.quota_clean."""

    memory = forms.CharField(required=False, help_text="bytes or a size like 8G; empty: no limit")

    class Meta:
        model = Quota
        fields = ["pod", "team", "cpu", "memory", "workloads"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.memory is not None:
            self.initial["memory"] = format_size(self.instance.memory)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            limits = services.quota_clean(
                cpu=data.get("cpu"), memory=data.get("memory"), workloads=data.get("workloads")
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field, errors)
        else:
            data.update(cpu=limits.cpu, memory=limits.memory, workloads=limits.workloads)
        return data


@admin.register(Quota)
class QuotaAdmin(PortalAdmin):
    """A team's quota in a pod: each save and delete goes through services.quota_set / quota_remove
    (administrators only, audited). Pod and team are fixed once the row exists."""

    form = QuotaForm
    list_display = ["pod", "team", "cpu", "memory_shown", "workloads", "updated_at"]
    list_filter = ["pod"]
    list_select_related = ["pod", "team"]
    search_fields = ["pod__name", "team__name"]

    @admin.display(description="memory", ordering="memory")
    def memory_shown(self, obj: Quota) -> str:
        return "no limit" if obj.memory is None else format_size(obj.memory)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["pod", "team"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Quota, form: Any, change: bool) -> None:
        limits = {"cpu": obj.cpu, "memory": obj.memory, "workloads": obj.workloads}
        quota = self.call(request, services.quota_set, pod=obj.pod, team=obj.team, **limits)
        if quota is not None:
            obj.pk = quota.pk

    def delete_model(self, request: HttpRequest, obj: Quota) -> None:
        self.call(request, services.quota_remove, pod=obj.pod, team=obj.team)


# --- teams and their pod roles ------------------------------------------------------------------
class _ThroughServices(BaseInlineFormSet):  # type: ignore[type-arg]
    """An inline whose rows are saved by TeamAdmin.save_formset through services, never by itself."""


class TeamMemberInline(admin.TabularInline[TeamMember, Team]):
    model = TeamMember
    formset = _ThroughServices
    fields = ["user"]
    raw_id_fields = ["user"]
    extra = 1
    verbose_name = "member"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_manage_teams(request.user)

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission


class TeamRoleInline(admin.TabularInline[PodTeamRole, Team]):
    model = PodTeamRole
    formset = _ThroughServices
    fields = ["pod", "role"]
    extra = 1
    verbose_name = "pod role"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_admin(request.user)

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission


class TeamAdminForm(forms.ModelForm[Team]):
    def clean_name(self) -> str:
        """As services.team_add wants it (it checks again), so the form shows the error in place."""
        name = str(self.cleaned_data.get("name") or "").strip()
        if not schema.NAME_RE.match(name):
            raise forms.ValidationError("team name: use letters, digits, '.' and '-' (at most 63 characters)")
        return name


@admin.register(Team)
class TeamAdmin(PortalAdmin):
    """A team, its members and its pod roles. Made and removed by services.team_add / team_remove;
    each member added or taken out and each pod role set or taken is a service call, audited. Name
    and description are fixed once it exists; a row changed to someone (or some pod) else is a
    remove and an add."""

    form = TeamAdminForm
    list_display = ["name", "desc", "member_count", "created_at"]
    search_fields = ["name", "desc", "memberships__user__username"]
    inlines = [TeamMemberInline, TeamRoleInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        teams: QuerySet[Team] = super().get_queryset(request)
        return teams.annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Team) -> int:
        return int(getattr(obj, "member_count", 0))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["name", "desc"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        if change:
            return  # name and description are fixed; the inlines say what changes
        team = self.call(request, services.team_add, name=obj.name, desc=obj.desc)
        if team is not None:
            obj.pk = team.pk

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []  # the log's
        team = form.instance
        if not team.pk:
            return
        deleted = set(formset.deleted_forms)
        for row in formset.forms:
            was = formset.model.objects.filter(pk=row.instance.pk).first() if row.instance.pk else None
            gone = row in deleted
            if not gone and not row.has_changed():
                continue
            data = getattr(row, "cleaned_data", {})
            if formset.model is TeamMember:
                self._member_row(request, team, was, None if gone else data.get("user"))
            else:
                pod, role = data.get("pod"), str(data.get("role") or "")
                self._role_row(request, team, was, None if gone or pod is None else (pod, role))

    def _member_row(self, request: HttpRequest, team: Team, was: Any, user: User | None) -> None:
        if was is not None and (user is None or user.pk != was.user_id):
            self.call(request, services.team_member_remove, team=team, user=was.user)
        if user is not None and (was is None or user.pk != was.user_id):
            self.call(request, services.team_member_add, team=team, user=user)

    def _role_row(self, request: HttpRequest, team: Team, was: Any, new: tuple[Pod, str] | None) -> None:
        if was is not None and (new is None or new[0].pk != was.pod_id):
            self.call(request, services.team_role_remove, pod=was.pod, team=team)
        if new is not None:
            self.call(request, services.team_role_set, pod=new[0], team=team, role=new[1])

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        self.call(request, services.team_remove, team=obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Its memberships and roles go with it, through services.team_remove (audited)."""
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected


@admin.register(PodTeamRole)
class PodTeamRoleAdmin(PortalAdmin):
    """A team's role in a pod, as PodMemberAdmin for a user's: services.team_role_set /
    team_role_remove (checked, audited); pod and team fixed once the row exists."""

    list_display = ["pod", "team", "role"]
    list_filter = ["role", "pod"]
    list_select_related = ["pod", "team"]
    search_fields = ["pod__name", "team__name"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["pod", "team"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: PodTeamRole, form: Any, change: bool) -> None:
        grant = self.call(request, services.team_role_set, pod=obj.pod, team=obj.team, role=obj.role)
        if grant is not None:
            obj.pk = grant.pk

    def delete_model(self, request: HttpRequest, obj: PodTeamRole) -> None:
        self.call(request, services.team_role_remove, pod=obj.pod, team=obj.team)


# --- users --------------------------------------------------------------------------------------
class PasswordForm(AdminPasswordChangeForm):  # type: ignore[type-arg]
    """The admin's password form, saved by services.user_password_set (audited)."""

    def __init__(self, user: User, *args: Any, actor: services.Actor, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.actor = actor

    def save(self, commit: bool = True) -> User:
        usable = self.cleaned_data.get("set_usable_password", True)
        password = self.cleaned_data["password1"] if usable else None
        return services.user_password_set(actor=self.actor, user=self.user, password=password)


admin.site.unregister(User)
admin.site.unregister(Group)  # Django's groups and per-model permissions mean nothing here


@admin.register(User)
class UserAdmin(RefusalsShown, DjangoUserAdmin[User]):
    """Users: staff see them (no password hash), superusers add, change and remove them, each
    through clusters.services.user_* (audited: USER_ADD, USER_SET, USER_REMOVE). What the flags
    grant is in clusters.permissions: is_staff = portal administrator, is_superuser = also users."""

    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Access",
            {
                "fields": ("is_active", "is_staff", "is_superuser"),
                "description": (
                    "Staff: portal administrator — every pod as its owner, nodes, teams, quotas, this "
                    "site. Superuser: also user accounts. Pod roles: the pod's members and teams."
                ),
            },
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    readonly_fields = ["last_login", "date_joined"]
    list_filter = ("is_staff", "is_superuser", "is_active")
    filter_horizontal = ()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.can_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage_users(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_manage_users(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_manage_users(request.user)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or permissions.can_manage_users(request.user):
            return fieldsets
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f != "password"]})
            for name, opts in fieldsets
        ]

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        actor = _actor(request)
        try:
            if change:
                fields = {f: form.cleaned_data[f] for f in form.changed_data if f in services.USER_FIELDS}
                services.user_set(actor=actor, user=obj, fields=fields)
            else:
                usable = form.cleaned_data.get("set_usable_password", True)
                password = form.cleaned_data.get("password1") if usable else None
                obj.pk = services.user_add(actor=actor, username=obj.username, password=password).pk
        except (ValidationError, PermissionDenied) as exc:
            setattr(request, REFUSED, True)
            messages.error(request, _text(exc))

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        self.call(request, services.user_remove, user=obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Their memberships and tokens go with them, through services.user_remove (audited)."""
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        """Django's password page, on a copy of this admin whose form saves through services."""
        page = copy(self)
        page.change_password_form = partial(PasswordForm, actor=_actor(request))
        return DjangoUserAdmin.user_change_password(page, request, id, form_url)

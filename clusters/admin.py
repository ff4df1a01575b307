"""Admin: a window on the domain, not a second write path. Every change it offers calls
clusters.services (checked and audited like any other): node labels and up/down, memberships and team
roles, teams and who is in them, spec policies, quotas, and user accounts (their staff, superuser and
active flags, their password). Pods, workloads, deployments, audit events and API tokens are read-only
here (their changes are the portal's and the API's: actions, not forms). TLS material, token digests and
password hashes are never shown.

Who sees what here is clusters.permissions', as in the portal (Django's per-model permissions and groups
are not used): staff see and change every clusters model; user accounts are shown to staff read-only
and changed by superusers only. A refusal by a service is shown as an error, never as a success."""

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
from clusters.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    Node,
    Pod,
    PodMember,
    PodPolicy,
    PodTeamRole,
    Quota,
    Team,
    TeamMember,
    Workload,
)
from schema import format_size

REFUSED = "_eru_refused"  # set on a request whose change a service refused: no success message then


def _actor(request: HttpRequest) -> services.Actor:
    return services.actor_from_request(request, via="admin")


def _text(exc: ValidationError | PermissionDenied) -> str:
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


class RefusalsShown:
    """For model admins whose saves and deletes call services: a refusal is shown as an error (and
    the admin's success message is dropped), never a 500 and never "changed successfully"."""

    def call(self, request: HttpRequest, service: Any, **kwargs: Any) -> Any:
        try:
            return service(actor=_actor(request), **kwargs)
        except (ValidationError, PermissionDenied) as exc:
            setattr(request, REFUSED, True)
            messages.error(request, _text(exc))
            return None

    def message_user(
        self,
        request: HttpRequest,
        message: Any,
        level: int | str = messages.INFO,
        extra_tags: str = "",
        fail_silently: bool = False,
    ) -> None:
        if level == messages.SUCCESS and getattr(request, REFUSED, False):
            return
        super().message_user(request, message, level, extra_tags, fail_silently)  # type: ignore[misc]


class PortalAdmin(RefusalsShown, admin.ModelAdmin[Any]):
    """Staff see and change what the portal lets them (clusters.permissions.can_admin)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.can_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return permissions.can_admin(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_admin(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_admin(request.user)


class ReadOnlyAdmin(PortalAdmin):
    """View only: state changes go through clusters.services (see the actions)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _run(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, objects: QuerySet[Any], call: Any, done: str
) -> None:
    """Call a service per object; report successes and each refusal, never a 500."""
    ok = 0
    for obj in objects:
        try:
            call(obj)
        except (ValidationError, PermissionDenied) as exc:
            modeladmin.message_user(request, f"{obj}: {_text(exc)}", messages.ERROR)
        else:
            ok += 1
    if ok:
        modeladmin.message_user(request, f"{ok} {done}.", messages.SUCCESS)


@admin.register(Pod)
class PodAdmin(ReadOnlyAdmin):
    list_display = ["name", "favor", "desc", "created_at"]
    search_fields = ["name"]


class NodeAdminForm(forms.ModelForm[Node]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "labels" in self.fields:  # compared with the row, not with a hidden copy of its default
            self.fields["labels"].show_hidden_initial = False

    def clean_labels(self) -> dict[str, str]:
        """The shape a node's labels must have (services.node_set checks it again as it saves)."""
        labels = self.cleaned_data.get("labels") or {}
        if not isinstance(labels, dict):
            raise forms.ValidationError('labels: a map of names to values, e.g. {"zone": "a"}')
        try:
            return schema.clean_labels(labels)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(Node)
class NodeAdmin(PortalAdmin):
    """Labels and up/down are edited here, saved by services.node_set (validated, audited, mirrored
    to etcd); a node is added (its TLS material, its probed capacity) in the portal or the API."""

    form = NodeAdminForm
    list_display = ["name", "pod", "endpoint", "bypass", "cores", "memory", "used_cpu", "used_memory"]
    list_filter = ["pod", "bypass"]
    list_select_related = ["pod"]
    search_fields = ["name", "endpoint"]
    exclude = ["tls_ca", "tls_cert", "tls_key", "secret_digest"]
    actions = ["mark_down", "mark_up"]
    EDITABLE = ("labels", "bypass")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        return super().get_queryset(request).defer("tls_ca", "tls_cert", "tls_key")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        hidden = set(self.exclude or ())
        return [f.name for f in Node._meta.concrete_fields if f.name not in hidden | {"id", *self.EDITABLE}]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its workloads first: the portal's and the API's node remove

    def save_model(self, request: HttpRequest, obj: Node, form: Any, change: bool) -> None:
        changed = {f: form.cleaned_data[f] for f in self.EDITABLE if f in form.changed_data}
        if changed:
            self.call(request, services.node_set, node=obj, **changed)

    @admin.action(description="Mark selected nodes down (no new workloads)")
    def mark_down(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        actor = _actor(request)
        _run(
            self,
            request,
            queryset,
            lambda n: services.node_set(actor=actor, node=n, bypass=True),
            "marked down",
        )

    @admin.action(description="Mark selected nodes up")
    def mark_up(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        actor = _actor(request)
        _run(
            self,
            request,
            queryset,
            lambda n: services.node_set(actor=actor, node=n, bypass=False),
            "marked up",
        )


@admin.register(Workload)
class WorkloadAdmin(ReadOnlyAdmin):
    list_display = ["name", "pod", "node", "state", "container_id", "created_at"]
    list_filter = ["state", "pod"]
    list_select_related = ["pod", "node"]
    search_fields = ["name", "app", "container_id"]
    actions = ["remove"]

    @admin.action(description="Remove selected workloads (their containers are deleted)")
    def remove(self, request: HttpRequest, queryset: QuerySet[Workload]) -> None:
        actor = _actor(request)
        workloads = queryset.select_related("pod", "node")
        _run(
            self,
            request,
            workloads,
            lambda w: services.workload_remove(actor=actor, workload=w),
            "removal(s) requested",
        )


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "pod",
        "app",
        "entrypoint",
        "strategy",
        "count",
        "succeeded",
        "failed",
        "state",
        "created_at",
    ]
    list_filter = ["state", "strategy", "pod"]
    list_select_related = ["pod"]
    search_fields = ["app", "entrypoint"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["time", "actor_name", "via", "action", "target_type", "target_name", "pod"]
    list_filter = ["via", "action", "target_type"]
    list_select_related = ["pod"]
    search_fields = ["actor_name", "target_name", "request_id"]
    date_hierarchy = "time"


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    exclude = ["digest"]
    actions = ["revoke"]

    @admin.action(description="Revoke selected API tokens (requests with them get 401)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        actor = _actor(request)
        _run(self, request, queryset, lambda t: services.token_revoke(actor=actor, token=t), "revoked")


@admin.register(PodMember)
class PodMemberAdmin(PortalAdmin):
    """Adds, role changes and deletes call services (checked and audited). Pod and user are fixed once
    the row exists: a membership of someone else is a delete and an add, both audited."""

    list_display = ["pod", "user", "role"]
    list_filter = ["role", "pod"]
    list_select_related = ["pod", "user"]
    search_fields = ["pod__name", "user__username"]
    raw_id_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["pod", "user"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: PodMember, form: Any, change: bool) -> None:
        member = self.call(request, services.member_set, pod=obj.pod, user=obj.user, role=obj.role)
        if member is not None:
            obj.pk = member.pk

    def delete_model(self, request: HttpRequest, obj: PodMember) -> None:
        self.call(request, services.member_remove, pod=obj.pod, user=obj.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PodMember]) -> None:
        for member in queryset.select_related("pod", "user"):
            self.call(request, services.member_remove, pod=member.pod, user=member.user)


@admin.register(PodPolicy)
class PodPolicyAdmin(PortalAdmin):
    """A pod's spec policy: each save goes through services.pod_policy_set (checked and audited)."""

    list_display = ["pod", "privileged", "host_network", "docker_socket", "host_paths", "sysctls", "cap_add"]
    list_select_related = ["pod"]
    fields = ["pod", "privileged", "host_network", "docker_socket", "host_paths", "sysctls", "cap_add"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["pod"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # to take grants back, clear them: a save, audited

    def save_model(self, request: HttpRequest, obj: PodPolicy, form: Any, change: bool) -> None:
        fields = {f: getattr(obj, f) for f in services.POLICY_FIELDS}
        self.call(request, services.pod_policy_set, pod=obj.pod, fields=fields)


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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Quota]) -> None:
        for quota in queryset.select_related("pod", "team"):
            self.call(request, services.quota_remove, pod=quota.pod, team=quota.team)


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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            self.call(request, services.team_remove, team=team)

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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PodTeamRole]) -> None:
        for grant in queryset.select_related("pod", "team"):
            self.call(request, services.team_role_remove, pod=grant.pod, team=grant.team)


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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.call(request, services.user_remove, user=user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Their memberships and tokens go with them, through services.user_remove (audited)."""
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        """Django's password page, on a copy of this admin whose form saves through services."""
        page = copy(self)
        page.change_password_form = partial(PasswordForm, actor=_actor(request))
        return DjangoUserAdmin.user_change_password(page, request, id, form_url)

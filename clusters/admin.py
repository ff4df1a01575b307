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

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

import schema
from clusters import (
    admin_access,  # noqa: F401 — registers quotas, teams and users
    services,
)
from clusters.admin_base import PortalAdmin, ReadOnlyAdmin, _actor, _run
from clusters.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    Node,
    Pod,
    PodMember,
    PodPolicy,
    Workload,
)


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
    list_display = ["name", "user", "prefix", "read_only", "expires_at", "created_at", "last_used_at"]
    list_filter = ["read_only"]
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

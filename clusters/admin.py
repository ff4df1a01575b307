"""Admin: a window on the domain, not a second write path. Pods, nodes, workloads, deployments,
audit events and API tokens are read-only here; the few changes offered are admin actions that
call clusters.services (so they are checked and audited like any other). Memberships are privileges:
they stay editable here, but every add, role change and delete goes through services.member_set /
member_remove and is audited. TLS material and token digests are never shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from clusters import services
from clusters.models import ApiToken, AuditEvent, Deployment, Node, Pod, PodMember, PodPolicy, Workload


def _actor(request: HttpRequest) -> services.Actor:
    return services.actor_from_request(request, via="admin")


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
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
            text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            modeladmin.message_user(request, f"{obj}: {text}", messages.ERROR)
        else:
            ok += 1
    if ok:
        modeladmin.message_user(request, f"{ok} {done}.", messages.SUCCESS)


@admin.register(Pod)
class PodAdmin(ReadOnlyAdmin):
    list_display = ["name", "favor", "desc", "created_at"]
    search_fields = ["name"]


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ["name", "pod", "endpoint", "bypass", "cores", "memory", "used_cpu", "used_memory"]
    list_filter = ["pod", "bypass"]
    list_select_related = ["pod"]
    search_fields = ["name", "endpoint"]
    exclude = ["tls_ca", "tls_cert", "tls_key"]
    actions = ["mark_down", "mark_up"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        return super().get_queryset(request).defer("tls_ca", "tls_cert", "tls_key")

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
class PodMemberAdmin(admin.ModelAdmin[PodMember]):
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
        member = services.member_set(actor=_actor(request), pod=obj.pod, user=obj.user, role=obj.role)
        obj.pk = member.pk

    def delete_model(self, request: HttpRequest, obj: PodMember) -> None:
        services.member_remove(actor=_actor(request), pod=obj.pod, user=obj.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PodMember]) -> None:
        actor = _actor(request)
        for member in queryset.select_related("pod", "user"):
            services.member_remove(actor=actor, pod=member.pod, user=member.user)


@admin.register(PodPolicy)
class PodPolicyAdmin(admin.ModelAdmin[PodPolicy]):
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
        try:
            services.pod_policy_set(actor=_actor(request), pod=obj.pod, fields=fields)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)

"""The admin's shared pieces: who acts, refusals shown as errors, the base classes (staff see and
change what clusters.permissions lets them: the same as in the portal)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from clusters import permissions, services

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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """The bulk delete action, row by row through delete_model (its service: checked, audited,
        a refusal shown), never one DELETE past the services."""
        related = getattr(self, "list_select_related", ())
        rows = queryset.select_related(*related) if isinstance(related, list | tuple) else queryset
        for obj in rows:
            self.delete_model(request, obj)  # type: ignore[attr-defined]

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

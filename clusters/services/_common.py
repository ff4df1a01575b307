"""What every service shares: who acts, the audit row, field errors, label cleaning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.http import HttpRequest

import schema
from clusters.errors import invalid
from clusters.models import AuditEvent, Pod
from clusters.users import AnyUser

NAME_RE = schema.NAME_RE

__all__ = ["NAME_RE", "SYSTEM", "Actor", "actor_from_request", "audit", "clean_labels", "invalid"]


@dataclass(frozen=True)
class Actor:
    """Who acts (None = the system: workers, beat, management commands) and through what."""

    user: AnyUser | None = None
    via: str = AuditEvent.Via.SYSTEM
    request_id: str = ""
    principal: str = ""  # who, when it is no user: a node's agent (node.<name>)

    @property
    def stored_user(self) -> User | None:
        """The user to record on a row (audit, created_by): None for the system or anonymous."""
        return self.user if isinstance(self.user, User) and self.user.is_authenticated else None


SYSTEM = Actor()


def actor_from_request(request: HttpRequest, via: str) -> Actor:
    """Who acts in a portal or API request (DRF's Request passes for Django's: it proxies it). A
    user of any other kind is anonymous here, never the system (which may do anything)."""
    user = request.user if isinstance(request.user, User | AnonymousUser) else AnonymousUser()
    return Actor(user=user, via=via, request_id=getattr(request, "request_id", ""))


def audit(
    actor: Actor,
    action: AuditEvent.Action,
    target: models.Model,
    *,
    pod: Pod | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.stored_user,
        actor_name=getattr(actor.user, "username", "") if actor.user else actor.principal,
        via=actor.via,
        request_id=actor.request_id,
        action=action,
        target_type=target.__class__.__name__.lower(),
        target_id=str(target.pk or ""),
        target_name=str(target),
        pod=pod,
        pod_name=pod.name if pod is not None else "",
        before=before,
        after=after,
    )


def clean_labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """A node's labels, cleaned; a 400 on `labels` otherwise."""
    try:
        return schema.clean_labels(labels or {})
    except ValueError as exc:
        raise invalid("labels", str(exc)) from exc

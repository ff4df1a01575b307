"""What every service shares: who acts, the audit row, field errors, label cleaning."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from clusters.models import AuditEvent, Pod

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


@dataclass(frozen=True)
class Actor:
    """Who acts (None = the system: workers, beat, management commands) and through what."""

    user: Any = None
    via: str = AuditEvent.Via.SYSTEM
    request_id: str = ""


SYSTEM = Actor()


def actor_from_request(request: Any, via: str) -> Actor:
    return Actor(user=request.user, via=via, request_id=getattr(request, "request_id", ""))


def invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def audit(
    actor: Actor,
    action: str,
    target: Any,
    *,
    pod: Pod | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_name=getattr(actor.user, "username", "") if actor.user else "",
        via=actor.via,
        request_id=actor.request_id,
        action=action,
        target_type=target.__class__.__name__.lower(),
        target_id=str(target.pk or ""),
        target_name=str(target),
        pod=pod,
        before=before,
        after=after,
    )


def clean_labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for k, v in (labels or {}).items():
        if not isinstance(k, str) or not k.strip() or "=" in k:
            raise invalid("labels", f"label key {k!r} must be a non-empty string without '='")
        result[k.strip()] = str(v)
    return result

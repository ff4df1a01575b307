"""The audit log's retention: rows older than ERU_AUDIT_RETENTION_DAYS are deleted (0 keeps them
forever), in batches, each its own short transaction, so a first prune of a long history never holds
the database for long.

No audit row records a prune: the rule is the operator's setting, not anyone's act, and the audit
vocabulary (AuditEvent.Action) has no entry for it; the task logs how many rows went."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.models import AuditEvent

BATCH = 5000


def audit_prune(*, now: datetime | None = None, days: int | None = None, batch: int = BATCH) -> int:
    """Delete the audit rows older than `days` (default: ERU_AUDIT_RETENTION_DAYS; 0 = none),
    `batch` rows at a time, oldest first. Returns how many were deleted."""
    days = settings.ERU_AUDIT_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = AuditEvent.objects.filter(time__lt=cutoff).order_by("time", "id")
    gone = 0
    while ids := list(old.values_list("pk", flat=True)[:batch]):
        with transaction.atomic():
            gone += AuditEvent.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            break
    return gone

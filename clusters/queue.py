"""The one way clusters hands work to the workers: by task name, after the transaction commits."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any, task_id: str | None = None) -> None:
    """One message; `task_id` names it (for a request that the worker claims by its message's id)."""
    enqueue_each(task_name, [args], task_ids=[task_id])


def enqueue_each(
    task_name: str, calls: Iterable[tuple[Any, ...]], *, task_ids: Sequence[str | None] = ()
) -> None:
    """One message per argument tuple, sent once the transaction commits. A broker failure neither
    drops the transaction's other callbacks nor turns a committed change into an error for the
    user (robust), and it stops the batch at the first failure instead of waiting out the broker
    once per message; the reconcile task re-sends what was not sent."""
    batch = [list(args) for args in calls]
    ids = list(task_ids) or [None] * len(batch)

    def _send() -> None:
        for i, (args, task_id) in enumerate(zip(batch, ids, strict=True)):
            try:
                current_app.send_task(task_name, args=args, task_id=task_id)
            except Exception as exc:
                log.warning(
                    "could not send %d %s task(s); reconcile will: %s", len(batch) - i, task_name, exc
                )
                return

    transaction.on_commit(_send, robust=True)

"""The one way clusters hands work to the workers: by task name, after the transaction commits."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any) -> None:
    enqueue_each(task_name, [args])


def enqueue_each(task_name: str, calls: Iterable[tuple[Any, ...]]) -> None:
    """One message per argument tuple, sent once the transaction commits. A broker failure neither
    drops the transaction's other callbacks nor turns a committed change into an error for the
    user (robust), and it stops the batch at the first failure instead of waiting out the broker
    once per message; the reconcile task re-sends what was not sent."""
    batch = [list(args) for args in calls]

    def _send() -> None:
        for i, args in enumerate(batch):
            try:
                current_app.send_task(task_name, args=args)
            except Exception as exc:
                log.warning(
                    "could not send %d %s task(s); reconcile will: %s", len(batch) - i, task_name, exc
                )
                return

    transaction.on_commit(_send, robust=True)

"""The one way clusters hands work to the workers: by task name, after the transaction commits."""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction


def enqueue(task_name: str, *args: Any) -> None:
    # robust: a broker failure must not drop the other callbacks of the transaction nor turn a
    # committed change into an error for the user; the reconcile task re-sends stale work.
    transaction.on_commit(lambda: current_app.send_task(task_name, args=list(args)), robust=True)

"""A lambda's output on its way from the worker to whoever watches: one Redis stream per run.

The worker owns a lambda's containers from creation to removal, so it is the worker that reads their
output (Docker's log, followed) and appends each line to the run's stream, with its events (starting,
started, exit, end). A web process reads the stream from its first entry, so a watcher that comes late,
reconnects (by entry id) or is served by another web process misses nothing, even once the container
is gone; reading Docker from the web side instead would race the removal. The stream is bounded
(MAXLEN) and expires an hour after the end; the run's row keeps the last bytes for good."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings

MAX_ENTRIES = 10_000
KEPT_AFTER_END = 3600  # s after its last entry (a lambda runs at most 3000 s: services.lambdas)

_client: redis.Redis | None = None
_lock = threading.Lock()


def client() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=30)
        return _client


def key(run_id: int) -> str:
    return f"eru:lambda:{settings.ERU_ETCD_PREFIX}:{run_id}"


def publish(run_id: int, event: str, **fields: Any) -> None:
    """Append an entry: `line` (name, stream, data), `starting`, `started`, `exit` (name, exit_code),
    `end` (state, exit_code)."""
    entry = json.dumps({"event": event, **fields})
    pipe = client().pipeline(transaction=False)
    pipe.xadd(key(run_id), {"j": entry}, maxlen=MAX_ENTRIES, approximate=True)
    pipe.expire(key(run_id), KEPT_AFTER_END)  # at each entry: no stream outlives its last by more
    pipe.execute()


def entries(
    run_id: int, *, after: str = "0-0", idle: float = 15.0
) -> Iterator[tuple[str, dict[str, Any]] | None]:
    """The run's entries (entry id, entry) from after `after`, as they come; None after `idle` seconds
    without one (the caller keeps its client's connection alive); ends after the `end` entry."""
    last = after
    while True:
        got: Any = client().xread({key(run_id): last}, count=500, block=int(idle * 1000))
        if not got:
            yield None
            continue
        for entry_id, fields in got[0][1]:
            last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            entry: dict[str, Any] = json.loads(fields[b"j"])
            yield last, entry
            if entry["event"] == "end":
                return


def kept_line(seq: int, text: str) -> str:
    """A line as the run's row keeps it (LambdaRun.output): after its workload's number."""
    return f"{seq}| {text}\n"


def kept_lines(output: str) -> Iterator[tuple[int, str]]:
    """The (workload number, line) of a run's kept output."""
    for line in output.splitlines():
        seq, _, data = line.partition("| ")
        yield (int(seq) if seq.isdigit() else 0), data


def exists(run_id: int) -> bool:
    return bool(client().exists(key(run_id)))

"""A workload's log, read from its node's Docker over mutual TLS (engine.logs) and handed out as a
stream: to the API as NDJSON, to the browser as server-sent events. Streams are bounded per process
(settings.ERU_STREAMS): one beyond the bound is refused at once with a 503, never left to hang, and
every stream lets its slot go when it ends or its client leaves."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from clusters import selectors
from clusters.errors import invalid
from clusters.models import Workload
from engine import docker, logs

MAX_TAIL = 10_000
_slots = threading.BoundedSemaphore(settings.ERU_STREAMS)
_RELATIVE = re.compile(r"^(\d{1,9})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Busy(Exception):
    """Every stream slot of this process is taken."""


def resume_of(last_event_id: str | None) -> str:
    """Where a browser's EventSource, reconnecting, left off: the Docker time of the last line it had
    ("" when it says nothing readable)."""
    return last_event_id if last_event_id and logs.cursor(last_event_id)[0] else ""


def since_of(value: str | None) -> float | None:
    """`since` as people give it: unix seconds, an ISO 8601 time, or a while ago (30s, 10m, 2h, 1d)."""
    if not value:
        return None
    relative = _RELATIVE.match(value)
    if relative:
        ago = timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
        return (timezone.now() - ago).timestamp()
    try:
        return float(value) if re.fullmatch(r"\d{1,12}(\.\d{1,9})?", value) else _iso(value)
    except ValueError:
        raise invalid("since", "since: unix seconds, an ISO 8601 time or a while ago such as 10m") from None


def _iso(value: str) -> float:
    when = datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.get_current_timezone())).timestamp()


def tail_of(value: str | None, default: int = 100) -> int | None:
    """`tail`: how many of the last lines, from 0 to MAX_TAIL; "all" for every line."""
    if value in (None, ""):
        return default
    if value == "all":
        return None
    if not (value.isdigit() and int(value) <= MAX_TAIL):
        raise invalid("tail", f"tail: a number of lines from 0 to {MAX_TAIL}, or all")
    return int(value)


def lines(
    w: Workload, *, tail: int | None, since: float | None, follow: bool, after: str = ""
) -> Iterator[logs.LogLine | None]:
    """The workload's log lines (None: a quiet while, while following), after the line of Docker
    time `after` if given. Nothing when it has no container yet; a DockerError when its node does
    not answer."""
    if not w.container_id:
        return iter(())
    client = selectors.node_client(w.node, timeout=int(settings.ERU_STREAM_IDLE) + 10)
    idle = settings.ERU_STREAM_IDLE
    return logs.read(client, w.container_id, tail=tail, since=since, follow=follow, idle=idle, after=after)


def take() -> None:
    """A stream slot, or Busy at once."""
    if not _slots.acquire(blocking=False):
        raise Busy(f"too many open streams on this web process (at most {settings.ERU_STREAMS}); try again")


def held(stream: Iterator[bytes]) -> Iterator[bytes]:
    """The stream, giving its slot back when it ends, fails, or its client goes (the server closes it)."""
    try:
        yield from stream
    finally:
        _slots.release()


def _json(line: logs.LogLine) -> str:
    return json.dumps({"stream": line.stream, "time": line.time, "data": line.text})


def ndjson(source: Iterator[logs.LogLine | None], *, follow: bool = False) -> Iterator[bytes]:
    """One JSON object per line ({"stream", "time", "data"}); an empty line to keep a follow alive,
    and one at once when following, so the answer starts (its headers go) before the first line."""
    if follow:
        yield b"\n"
    try:
        for line in source:
            if line is None:
                yield b"\n"
            else:
                yield _json(line).encode() + b"\n"
    except docker.DockerError as exc:
        yield json.dumps({"error": str(exc)}).encode() + b"\n"


def events(source: Iterator[logs.LogLine | None]) -> Iterator[bytes]:
    """Server-sent events: a `line` event per line (JSON data), a comment to keep a follow alive, an
    `error` event when the node stops answering, and `end` when the log ends."""
    yield b"retry: 3000\n\n"
    try:
        for line in source:
            if line is None:
                yield b": keep-alive\n\n"
                continue
            yield f"id: {line.time}\nevent: line\ndata: {_json(line)}\n\n".encode()
    except docker.DockerError as exc:
        yield f"event: error\ndata: {json.dumps(str(exc))}\n\n".encode()
    yield b"event: end\ndata: {}\n\n"

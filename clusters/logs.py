"""A workload's log, read from its node's Docker over mutual TLS (engine.logs) and handed out as a
stream: to the API as NDJSON, to the browser as server-sent events. Streams are bounded per process
(settings.ERU_STREAMS): one beyond the bound is refused at once with a 503, never left to hang, and
every stream lets its slot go when it ends or its client leaves.

Several workloads' logs (an app's, an entrypoint's, a deployment's) merge into one stream, each line
tagged with its workload: their last lines first, in Docker's time order, then, followed, the new
ones as they come, read by one thread per container into one bounded queue."""

from __future__ import annotations

import heapq
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone

from clusters import selectors
from clusters.errors import invalid
from clusters.models import Workload
from engine import docker, logs

MAX_TAIL = 10_000
MAX_MERGED = 50  # workloads in one merged log
MERGED_TAIL = 1_000  # last lines per workload of a merged log
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
    try:
        if relative:
            ago = timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
            return (timezone.now() - ago).timestamp()
        return float(value) if re.fullmatch(r"\d{1,12}(\.\d{1,9})?", value) else _iso(value)
    except (ValueError, OverflowError):
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
    return _count(value, MAX_TAIL, f"tail: a number of lines from 0 to {MAX_TAIL}, or all")


def merged_tail_of(value: str | None, default: int = 100) -> int:
    """`tail` of a merged log: the last lines of each workload, from 0 to MERGED_TAIL."""
    if value in (None, ""):
        return default
    return _count(value, MERGED_TAIL, f"tail: a number of lines per workload from 0 to {MERGED_TAIL}")


def _count(value: str, most: int, message: str) -> int:
    if not (value.isascii() and value.isdigit() and int(value) <= most):
        raise invalid("tail", message)
    return int(value)


def lines(
    w: Workload, *, tail: int | None, since: float | None, follow: bool, after: str = ""
) -> Iterator[logs.LogLine | None]:
    """The workload's log lines (None: a quiet while, while following), after the line of Docker
    time `after` if given. Nothing when it has no container yet; a DockerError when its node does
    not answer."""
    if not w.container_id:
        return
    client = selectors.node_client(w.node, timeout=int(settings.ERU_STREAM_IDLE) + 10)
    idle = settings.ERU_STREAM_IDLE
    yield from logs.read(
        client, w.container_id, tail=tail, since=since, follow=follow, idle=idle, after=after
    )


def take() -> None:
    """A stream slot, or Busy at once."""
    if not _slots.acquire(blocking=False):
        raise Busy(f"too many open streams on this web process (at most {settings.ERU_STREAMS}); try again")


def streamed(body: Callable[[], Iterator[bytes]], content_type: str) -> StreamingHttpResponse:
    """A streaming response holding one of this process's stream slots until it ends (Busy at once
    when none is free); made by `body` only once a slot is held."""
    take()
    response = StreamingHttpResponse(held(body()), content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front passes each line as it comes
    return response


def held(stream: Iterator[bytes]) -> Iterator[bytes]:
    """The stream, giving its slot back when it ends, fails, or its client goes (the server closes it)."""
    try:
        yield from stream
    finally:
        _slots.release()


@dataclass(frozen=True, slots=True)
class Tagged:
    """A line of one of several workloads' logs, or (no line) why no more of its lines come."""

    workload: Workload
    line: logs.LogLine | None = None
    error: str = ""


def merged(
    workloads: Sequence[Workload], *, tail: int, since: float | None, follow: bool
) -> Iterator[Tagged | None]:
    """The workloads' logs as one: each one's last `tail` lines (from `since`), merged in Docker's
    time order; with `follow`, then their new lines as they come, a None after a quiet while, until
    every one's log has ended. A node that does not answer ends only its own workloads' part, with a
    Tagged error. (The follow goes on from each one's last line, or for one with no line yet from the
    time this call began, by the node's clock.)"""
    begun = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(workloads)))) as pool:
        backlogs = list(pool.map(lambda w: _backlog(w, tail, since), workloads))
    runs = []
    for i, (w, (got, error)) in enumerate(zip(workloads, backlogs, strict=True)):
        if error:
            yield Tagged(w, error=error)
        runs.append([(line.cursor, i, n, Tagged(w, line)) for n, line in enumerate(got)])
    for *_, item in heapq.merge(*runs):
        yield item
    if follow:
        ok = [
            (w, got[-1].time if got else "")
            for w, (got, error) in zip(workloads, backlogs, strict=True)
            if not error
        ]
        yield from _followed(ok, since=begun if since is None else since)


def _backlog(w: Workload, tail: int, since: float | None) -> tuple[list[logs.LogLine], str]:
    """A workload's last lines in Docker's time order, or why they could not be read."""
    try:
        got = [line for line in lines(w, tail=tail, since=since, follow=False) if line is not None]
    except docker.DockerError as exc:
        return [], str(exc)
    return sorted(got, key=lambda line: line.cursor), ""


_ENDED = None  # what a reader puts last


def _followed(resume: list[tuple[Workload, str]], *, since: float) -> Iterator[Tagged | None]:
    box: queue.Queue[Tagged | None] = queue.Queue(maxsize=1000)  # a slow client slows the readers
    stop = threading.Event()

    def put(item: Tagged | None) -> None:
        while not stop.is_set():
            try:
                box.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    def reader(w: Workload, after: str) -> None:
        try:
            for line in lines(w, tail=None, since=None if after else since, follow=True, after=after):
                if stop.is_set():
                    return
                if line is not None:
                    put(Tagged(w, line))
        except docker.DockerError as exc:
            put(Tagged(w, error=str(exc)))
        finally:
            put(_ENDED)

    for w, after in resume:
        threading.Thread(target=reader, args=(w, after), name=f"log {w.name}", daemon=True).start()
    running = len(resume)
    try:
        while running:
            try:
                item = box.get(timeout=settings.ERU_STREAM_IDLE)
            except queue.Empty:
                yield None
                continue
            if item is _ENDED:
                running -= 1
            else:
                yield item
    finally:
        stop.set()  # each reader ends at its next line or quiet while


def _json(item: logs.LogLine | Tagged) -> str:
    if isinstance(item, Tagged):
        head = {"workload": item.workload.pk, "name": item.workload.name}
        if item.line is None:
            return json.dumps({**head, "error": item.error})
        item, data = item.line, head
    else:
        data = {}
    return json.dumps({**data, "stream": item.stream, "time": item.time, "data": item.text})


def ndjson(source: Iterator[logs.LogLine | Tagged | None], *, follow: bool = False) -> Iterator[bytes]:
    """One JSON object per line ({"stream", "time", "data"}, with "workload" and "name" in a merged
    log, where {"workload", "name", "error"} ends one workload's part); an empty line to keep a follow alive,
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


def events(source: Iterator[logs.LogLine | Tagged | None]) -> Iterator[bytes]:
    """Server-sent events: a `line` event per line (JSON data), a comment to keep a follow alive, an
    `error` event when the node stops answering, and `end` when the log ends."""
    yield b"retry: 3000\n\n"
    try:
        for line in source:
            if line is None:
                yield b": keep-alive\n\n"
                continue
            at = f"id: {line.time}\n" if isinstance(line, logs.LogLine) else ""  # resumable: one log
            yield f"{at}event: line\ndata: {_json(line)}\n\n".encode()
    except docker.DockerError as exc:
        yield f"event: error\ndata: {json.dumps(str(exc))}\n\n".encode()
    yield b"event: end\ndata: {}\n\n"

"""A container's log, as Docker keeps it: stdout and stderr told apart, each line with Docker's time,
from a tail and/or a time on, followed or not. A follow that hears nothing for `idle` seconds yields
None (the caller keeps its client's connection alive, or learns it is gone) and goes on from the last
line's time: a cursor, not a bare attach, so nothing is read twice and nothing is missed.

Docker's multiplexed stream (an 8-byte header per frame: the stream, three zero bytes, a big-endian
length) is read here, not by the SDK, which would turn its read timeout off. Containers without a tty
only (the core makes every ERU container without one)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import requests.exceptions
import urllib3.exceptions

from engine.docker import DockerError, _classify, time_cursor

_STREAMS = {1: "stdout", 2: "stderr"}
MAX_LINE = 64 << 10  # bytes of a line without its newline held before it goes out as it is
_HEADER = struct.Struct(">BxxxL")
_TIMEOUTS = (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: str  # stdout, stderr
    time: str  # Docker's RFC 3339 time with nanoseconds
    text: str

    @property
    def cursor(self) -> tuple[int, int]:
        return cursor(self.time)


cursor = time_cursor  # a Docker time, as an ordered (seconds, nanoseconds)


def read(
    client: docker.DockerClient,
    container_id: str,
    *,
    tail: int | None = None,
    since: float | None = None,
    follow: bool = False,
    idle: float = 15.0,
    after: str = "",
) -> Iterator[LogLine | None]:
    """The lines of the container's log: the last `tail` (None: all) from `since` (unix time) on, and
    with `follow` the new ones as they come, a None after every `idle` seconds without one. With
    `after` (the Docker time of the last line the caller has: a cursor), only the lines after it."""
    last = after if cursor(after)[0] else ""  # Docker's time of the last line given
    while True:
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow)}
        if not last:
            params["tail"] = "all" if tail is None else str(tail)
            if since is not None:
                params["since"] = f"{since:.9f}"
        else:  # again after a quiet while: from the last line's second, its own lines skipped
            seconds, nanos = cursor(last)
            params["tail"], params["since"] = "all", f"{seconds}.{nanos:09d}"
        behind = cursor(last) if last else None
        response = _open(client, container_id, params, idle if follow else 60.0)
        try:
            for line in _lines(response):
                if behind is not None:
                    if line.cursor <= behind:
                        continue
                    behind = None
                last = line.time
                yield line
            return  # the log ended: not followed, or the container stopped
        except _TIMEOUTS:
            yield None
        finally:
            response.close()


def _open(client: docker.DockerClient, container_id: str, params: dict[str, Any], idle: float) -> Any:
    api = client.api
    url = f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs"
    try:
        response = api.get(url, params=params, stream=True, timeout=(10, idle))
        try:
            response.raise_for_status()
        except requests.exceptions.HTTPError as exc:  # as the SDK words it: NotFound, APIError
            docker.errors.create_api_error_from_http_exception(exc)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise _classify(exc, "logs") from exc
    return response


def _lines(response: Any) -> Iterator[LogLine]:
    """Docker's frames, split into lines per stream (a frame may hold part of a line, or several).
    Read in chunks of what has come (read1), not two reads per frame: a frame is often one line."""
    partial = {1: b"", 2: b""}
    raw = response.raw
    buffer = b""
    while True:
        chunk = raw.read1(1 << 16)
        if not chunk:
            break
        buffer += chunk
        at = 0
        while len(buffer) - at >= 8:
            kind, length = _HEADER.unpack_from(buffer, at)
            if len(buffer) - at - 8 < length:
                break
            data = partial.get(kind, b"") + buffer[at + 8 : at + 8 + length]
            at += 8 + length
            *whole, partial[kind] = data.split(b"\n")
            for piece in whole:
                yield _line(kind, piece)
            if len(partial[kind]) > MAX_LINE:  # no newline in sight: bounded, handed out as a line
                yield _line(kind, partial[kind])
                partial[kind] = b""
        buffer = buffer[at:]
    for kind, rest in partial.items():
        if rest:
            yield _line(kind, rest)


def _line(kind: int, chunk: bytes) -> LogLine:
    text = chunk.decode(errors="replace").rstrip("\r")
    stamp, _, rest = text.partition(" ")
    return LogLine(_STREAMS.get(kind, "stdout"), stamp, rest)


__all__ = ["DockerError", "LogLine", "cursor", "read"]

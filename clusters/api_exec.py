"""REST API: non-interactive exec in a workload's container (WorkloadViewSet's exec action), and the
NDJSON its stream is told in (the portal's exec form reads the same)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.http import QueryDict, StreamingHttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clusters import logs, services
from clusters.api_common import actor
from clusters.models import Workload
from clusters.services.exec import MAX_ARG, MAX_ARGS, Event
from engine import docker
from engine import exec as engine_exec


class WorkloadExecRequestSerializer(serializers.Serializer[Any]):
    """The body of an exec (the shape only: clusters.services.workload_exec checks it)."""

    command = serializers.ListField(
        child=serializers.CharField(max_length=MAX_ARG, allow_blank=True, trim_whitespace=False),
        min_length=1,
        max_length=MAX_ARGS,
        help_text='argv, run without a shell, e.g. ["sh", "-c", "echo hi"]',
    )
    env = serializers.ListField(
        child=serializers.CharField(max_length=MAX_ARG, trim_whitespace=False),
        max_length=MAX_ARGS,
        required=False,
        help_text="KEY=value entries added to the container's environment (the audit keeps the keys only)",
    )
    workdir = serializers.CharField(required=False, allow_blank=True, help_text="an absolute path")
    user = serializers.CharField(required=False, allow_blank=True, help_text="name or uid[:group or gid]")
    timeout = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=settings.ERU_EXEC_TIMEOUT,
        help_text="seconds its output is read, at most ERU_EXEC_TIMEOUT (the default)",
    )


EXEC_EVENT = inline_serializer(
    "WorkloadExecEvent",
    {
        "stream": serializers.ChoiceField(choices=["stdout", "stderr"], required=False),
        "data": serializers.CharField(required=False, help_text="what it wrote, as it came (not lines)"),
        "exit_code": serializers.IntegerField(
            required=False, allow_null=True, help_text="last: its exit code (null: not known)"
        ),
        "timed_out": serializers.BooleanField(required=False, help_text="last, when its time ran out"),
        "message": serializers.CharField(required=False, help_text="last: why no exit code"),
        "error": serializers.CharField(required=False, help_text="last, when Docker failed"),
    },
)

EXEC_DESCRIPTION = (
    "Run a command in the workload's running container (no shell, no tty, no stdin): staff and the "
    "pod's owners only. Answers one JSON object per line as the output comes ({stream, data}: "
    "stdout or stderr, a part of what it wrote), then a last one: {exit_code}, with timed_out and "
    "message when its time ran out (Docker cannot stop an exec'd process: it may run on), or {error} "
    "when the node failed mid-way. Empty lines keep it alive. Audited (the command, the env's keys, "
    "then how it ended). 400 when the workload does not run; 503 when this process holds its most "
    "streams (ERU_STREAMS)."
)


def ndjson(events: Iterator[Event]) -> Iterator[bytes]:
    """The exec's stream as NDJSON: an empty line at once (the answer starts) and for each quiet
    while; {stream, data} parts (UTF-8 decoded per stream, a character split between two parts
    kept whole); then {exit_code…} or {error}."""
    yield b"\n"
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("stdout", "stderr")
    }
    try:
        for item in events:
            if item is None:
                yield b"\n"
            elif isinstance(item, engine_exec.Output):
                text = decoders[item.stream].decode(item.data)
                if text:
                    yield _line({"stream": item.stream, "data": text})
            else:
                for name, decoder in decoders.items():
                    if rest := decoder.decode(b"", final=True):
                        yield _line({"stream": name, "data": rest})
                end: dict[str, Any] = {"exit_code": item.exit_code}
                if item.timed_out:
                    end["timed_out"] = True
                if item.message:
                    end["message"] = item.message
                yield _line(end)
    except docker.DockerError as exc:
        yield _line({"error": str(exc)})


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def streamed(events: Iterator[Event]) -> StreamingHttpResponse | Response:
    """The exec's NDJSON on one of this process's stream slots, or a 503 when none is free."""
    try:
        return logs.streamed(lambda: ndjson(events), "application/x-ndjson")
    except logs.Busy as exc:
        return Response({"detail": str(exc)}, status=503, headers={"Retry-After": "5"})


def _body(request: Request) -> dict[str, Any]:
    """The exec's fields as given: JSON, or a form (command and env as repeated fields)."""
    data: Any = request.data
    if not isinstance(data, Mapping):
        raise exceptions.ValidationError({"non_field_errors": ["expected an object of exec fields"]})
    lists = {"command", "env"}
    if isinstance(data, QueryDict):
        return {key: data.getlist(key) if key in lists else data[key] for key in data}
    return dict(data)


def _given(body: Mapping[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


class WorkloadExecMixin(viewsets.GenericViewSet[Workload]):
    """The exec action of WorkloadViewSet."""

    @extend_schema(
        request=WorkloadExecRequestSerializer,
        responses={(200, "application/x-ndjson"): EXEC_EVENT, 400: None, 403: None, 503: None},
        description=EXEC_DESCRIPTION,
    )
    @action(detail=True, methods=["post"], url_path="exec")
    def exec(self, request: Request, pk: str) -> StreamingHttpResponse | Response:
        workload = self.get_object()
        body = _body(request)
        events = services.workload_exec(
            actor=actor(request),
            workload=workload,
            command=_given(body, "command", None),
            env=_given(body, "env", ()),
            workdir=_given(body, "workdir", ""),
            user=_given(body, "user", ""),
            timeout=body.get("timeout"),
        )
        return streamed(events)

"""The long workload streams of Eru's pb.CoreRPC: WorkloadStatusStream (a watch), LogStream (a log,
followed or not) and ExecuteWorkload (a command's output and exit code). Each takes one of the door's
stream slots (base.streams) and holds no database connection while it waits: the watch looks at the
rows changed since its last look every POLL seconds, the log and the exec block on their node's
Docker (a quiet while ends every ERU_STREAM_IDLE seconds, when a gone client is noticed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import grpc
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from agents.grpc_server.base import Context, Principal, actor, ended, first_message, idle, stream, workload_of
from agents.grpc_server.messages import status_message, workload_message
from agents.grpc_server.workload_calls import eru_workloads, labels_match
from clusters import logs, permissions, services
from clusters.errors import invalid
from clusters.models import Workload
from engine import docker
from engine import exec as engine_exec
from engine import logs as engine_logs
from protocol import core_pb2 as pb

POLL = 1.0  # s between two looks of a status watch
MARGIN = timedelta(seconds=2)  # a look takes the rows changed this long before the last one too
MAX_LINE = engine_logs.MAX_LINE
EXIT_PREFIX = b"[exitcode] "  # Eru's last message of an exec: erucli exits with the number after it
_STD = {"stdout": pb.STDOUT, "stderr": pb.STDERR}


def _fingerprint(w: Workload) -> bytes:
    return status_message(w).SerializeToString(deterministic=True)


def _until(value: str) -> float | None:
    """`until` as `since` is given (unix seconds, ISO 8601, a while ago such as 10m)."""
    try:
        return logs.since_of(value)
    except ValidationError:
        raise invalid("until", "until: unix seconds, an ISO 8601 time or a while ago such as 10m") from None


def _seconds(line: engine_logs.LogLine) -> float:
    seconds, nanos = engine_logs.cursor(line.time)
    return seconds + nanos / 1e9


class Lines:
    """Bytes of one stream cut into lines as Eru's scanner cuts them: each with a newline, a
    carriage return before it dropped, a line longer than MAX_LINE handed out as it is."""

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        *whole, self.partial = (self.partial + data).split(b"\n")
        out = [line.removesuffix(b"\r") + b"\n" for line in whole]
        if len(self.partial) > MAX_LINE:
            out.append(self.partial)
            self.partial = b""
        return out

    def rest(self) -> list[bytes]:
        rest, self.partial = self.partial, b""
        return [rest.removesuffix(b"\r") + b"\n"] if rest else []


class StreamCalls:
    """Mixed into server.CoreService."""

    @stream(write=False, long=True)
    def WorkloadStatusStream(
        self, request: pb.WorkloadStatusStreamOptions, context: Context, principal: Principal
    ) -> Iterator[pb.WorkloadStatusStreamMessage]:
        """As Eru's watch: from now on, a message for every change of a matching workload's status
        (the workload and its status), and {id, delete} when it is gone. Each filter given applies
        (Eru's key prefixes ignore a node without an entrypoint, an entrypoint without an app)."""
        wanted = dict(request.labels)

        def rows() -> QuerySet[Workload]:
            return eru_workloads(
                principal, appname=request.appname, entrypoint=request.entrypoint, nodename=request.nodename
            )

        gone = ended(context)
        look = timezone.now()
        seen = {w.container_id: _fingerprint(w) for w in rows() if labels_match(w.labels, wanted)}
        while True:
            idle()
            if gone.wait(POLL):
                return
            since, look = look - MARGIN, timezone.now()
            changed = [w for w in rows().filter(updated_at__gte=since) if labels_match(w.labels, wanted)]
            present = set(rows().values_list("container_id", flat=True))
            out: list[pb.WorkloadStatusStreamMessage] = []
            for w in changed:
                mark = _fingerprint(w)
                if seen.get(w.container_id) != mark:
                    seen[w.container_id] = mark
                    out.append(
                        pb.WorkloadStatusStreamMessage(
                            id=w.container_id,
                            workload=workload_message(w, principal.user),
                            status=status_message(w),
                        )
                    )
            for cid in sorted(set(seen) - present):
                del seen[cid]
                out.append(pb.WorkloadStatusStreamMessage(id=cid, delete=True))
            idle()
            yield from out

    @stream(write=False, long=True)
    def LogStream(
        self, request: pb.LogStreamOptions, context: Context, principal: Principal
    ) -> Iterator[pb.LogStreamMessage]:
        """The workload's log as Eru sends it: a message per line (with its newline), stdout and
        stderr told apart; tail ("all", the default, or a number), since and until (unix seconds,
        ISO 8601 or a while ago such as 10m), follow. As the REST API: not for a pod's viewers."""
        w = workload_of(request.id, principal, context)
        if not permissions.can_read_logs(principal.user, w.pod):
            raise PermissionDenied(
                f"Logs may carry secrets: only those who may deploy to pod {w.pod.name} read its logs."
            )
        tail = logs.tail_of(request.tail or "all")
        since = logs.since_of(request.since)
        until = _until(request.until)
        if until is not None and since is not None and until < since:
            raise invalid("until", "until: before since; nothing to show")
        gone = ended(context)
        source = logs.lines(w, tail=tail, since=since, follow=request.follow)
        idle()
        try:
            for line in source:
                if gone.is_set():
                    return
                if line is None:  # a quiet while of a follow
                    if until is not None and time.time() > until:
                        return
                    continue
                if until is not None and _seconds(line) > until:
                    return
                data = (line.text + "\n").encode()
                yield pb.LogStreamMessage(id=w.container_id, data=data, std_stream_type=_STD[line.stream])
        except docker.DockerError as exc:
            yield pb.LogStreamMessage(id=w.container_id, error=str(exc))

    @stream(long=True)
    def ExecuteWorkload(
        self, request: Iterator[pb.ExecuteWorkloadOptions], context: Context, principal: Principal
    ) -> Iterator[pb.AttachWorkloadMessage]:
        """Non-interactive (no tty, no stdin): the first message says what to run; the answer is the
        output, line by line per stream, then "[exitcode] N" (Eru's last message). A command past
        its time ends the call DEADLINE_EXCEEDED; a node that fails mid-way, UNAVAILABLE."""
        first = first_message(request, context)
        if first is None:
            raise invalid("workload_id", "send ExecuteWorkloadOptions first: workload_id and commands")
        if first.open_stdin:
            raise invalid(
                "open_stdin",
                "open_stdin: this core runs commands without a terminal or stdin; run exec without "
                "--interactive",
            )
        w = workload_of(first.workload_id, principal, context)
        events = services.workload_exec(
            actor=actor(principal),
            workload=w,
            command=list(first.commands),
            env=list(first.envs),
            workdir=first.workdir,
        )
        split = {name: Lines() for name in _STD}

        def message(name: str, data: bytes) -> pb.AttachWorkloadMessage:
            return pb.AttachWorkloadMessage(workload_id=w.container_id, data=data, std_stream_type=_STD[name])

        try:
            for item in events:
                idle()
                if item is None:
                    if not context.is_active():
                        return
                    continue
                if isinstance(item, engine_exec.Output):
                    for data in split[item.stream].feed(item.data):
                        yield message(item.stream, data)
                    continue
                for name, lines in split.items():
                    for data in lines.rest():
                        yield message(name, data)
                if item.exit_code is None:
                    why = item.message or "its exit code is not known"
                    code = (
                        grpc.StatusCode.DEADLINE_EXCEEDED if item.timed_out else grpc.StatusCode.UNAVAILABLE
                    )
                    context.abort(code, f"exec in {w.name}: {why}")
                yield message("stdout", EXIT_PREFIX + str(item.exit_code).encode())
        except docker.DockerError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"exec in {w.name}: {exc}")

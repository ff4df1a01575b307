"""Deploying: CreateWorkload, CalculateCapacity, RunAndWait, ReplaceWorkload (Eru's pb.CoreRPC).

Each goes through the services the REST API uses (validation with the gRPC entry's defaults, the
pod's spec policy, quotas, audit via grpc); agents.grpc_server.options maps Eru's options. The
streams answer as the work ends: CreateWorkload and ReplaceWorkload poll the deployment's rows (a
short interval that grows while nothing changes; no database connection held once quiet), and
RunAndWait follows the lambda's output stream (clusters.lambda_output) as Eru's lambda does:
every workload's id first, then its output, then `[exitcode] N`."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import grpc
import redis
from django.core.exceptions import ValidationError

from agents.grpc_server import options
from agents.grpc_server.base import Context, Principal, actor, first_message, idle, stream, unary, workload_of
from agents.grpc_server.messages import publish_of, resources_json
from clusters import lambda_output, permissions, selectors, services
from clusters.models import Deployment, LambdaRun, Pod, Workload
from clusters.services.lambdas import MAX_STDIN, MAX_TIMEOUT
from protocol import core_pb2 as pb

POLL_MIN = 0.02  # s between two looks at a deployment's rows while they change
POLL_MAX = 0.1  # s at most, while nothing changes
QUIET, QUIET_POLL = 1.0, 0.5  # s: after this long with no change, no connection held, looks this far apart
OUTPUT_IDLE = 1.0  # s a lambda's output stream is waited on before the client is looked at again
STDIN_QUIET = 0.5  # s without a stdin message after which a lambda's stdin is taken as complete
STDIN_WAIT = 30.0  # s at most that stdin is collected before the lambda starts
ESCAPE, WINCH = 0x1D, 0x80  # Eru's stdin: ^] closes it; 0x80 + JSON is a terminal resize (ignored)
SETTLING = (Workload.State.PENDING, Workload.State.CREATING)
EXIT_PREFIX = b"[exitcode] "
KILLED = 137  # a lambda timed out or cancelled was killed: the code a shell would report
Type = pb.StdStreamType


def _pod(principal: Principal, name: str, context: Context) -> Pod:
    """The pod named, among those the principal may see (NOT_FOUND otherwise, as REST's 404)."""
    pod = permissions.visible_pods(principal.user).filter(name=name).first()
    if pod is None:
        context.abort(grpc.StatusCode.NOT_FOUND, f"pod {name[:64]} not found")
    return pod


def _excluding(pod: Pod, d: options.Deploy) -> dict[str, Any]:
    """node_filter.excludes: the nodes named (or the pod's available ones) but these."""
    if not d.excludes:
        return d.data
    names = d.data.get("node_names") or [n.name for n in selectors.available_nodes(pod)]
    left = sorted(n for n in names if n not in d.excludes)
    if not left:
        raise ValidationError(
            {"node_filter.excludes": [f"node_filter.excludes: leaves no node of pod {pod.name} to deploy on"]}
        )
    return {**d.data, "node_names": left}


def _hinted(exc: ValidationError, data: dict[str, Any]) -> ValidationError:
    """A refusal of the host network (erucli's default) says how to deploy without it."""
    if data.get("network") == "host" and hasattr(exc, "error_dict") and "network" in exc.error_dict:
        errors = {k: [str(m) for e in v for m in e.messages] for k, v in exc.error_dict.items()}
        errors["network"] = [f"{m} ({options.HOST_HINT})" for m in errors["network"]]
        return ValidationError(errors)
    return exc


@contextlib.contextmanager
def _hinting(data: dict[str, Any]) -> Iterator[None]:
    try:
        yield
    except ValidationError as exc:
        hinted = _hinted(exc, data)
        if hinted is exc:
            raise
        raise hinted from exc  # its cause kept: an etcd outage behind it is still one (UNAVAILABLE)


def _spec(
    principal: Principal, request: pb.DeployOptions, context: Context, call: options.Call
) -> tuple[services.DeploySpec, dict[str, Any]]:
    """The deploy's spec, validated for its pod (which the principal may deploy to), and its fields."""
    d = options.deploy_fields(request, call)
    pod = _pod(principal, d.pod, context)
    permissions.require_deploy(principal.user, pod)
    data = _excluding(pod, d)
    with _hinting(data):
        return services.deployment_validate(pod=pod, data=data, entry="grpc"), data


def created_message(w: Workload) -> pb.CreateWorkloadMessage:
    """A settled workload as Eru reports a creation (hook output stays in the worker's log)."""
    failed = w.state == Workload.State.FAILED
    return pb.CreateWorkloadMessage(
        podname=w.pod.name,
        nodename=w.node.name,
        id=w.container_id,
        name=w.name,
        success=not failed,
        error=w.error if failed else "",
        publish=publish_of(w),
        resources=resources_json(w),
    )


class _Poll:
    """The wait between two looks: short while rows change, longer while nothing does. The database
    connection is kept while rows change (a reconnect per poll would cost more than the look) and
    given back once nothing changed for QUIET seconds; the looks are then QUIET_POLL apart."""

    def __init__(self) -> None:
        self.wait = POLL_MIN
        self.since = time.monotonic()

    def sleep(self, changed: bool) -> None:
        now = time.monotonic()
        if changed:
            self.since = now
        self.wait = POLL_MIN if changed else min(POLL_MAX, self.wait * 1.5)
        if now - self.since >= QUIET:
            idle()
            self.wait = QUIET_POLL
        time.sleep(self.wait)


def _created(deployment_id: int, context: Context) -> Iterator[pb.CreateWorkloadMessage]:
    """One message per workload of the deployment as it settles (running or failed), to its end."""
    sent: set[int] = set()
    poll = _Poll()
    while True:
        state, total = Deployment.objects.values_list("state", "total").get(pk=deployment_id)
        rows = (
            Workload.objects.filter(deployment_id=deployment_id)
            .exclude(state__in=SETTLING)
            .exclude(pk__in=sent)
            .select_related("pod", "node")
            .order_by("pk")
        )
        changed = False
        for w in rows:
            sent.add(w.pk)
            changed = True
            yield created_message(w)
        if len(sent) >= total or state != Deployment.State.RUNNING or not context.is_active():
            return  # final: its rows were settled before it was (a row gone since is not told)
        poll.sleep(changed)


class _Stdin(threading.Thread):
    """Reads the rest of RunAndWait's request stream (grpcio's sync API blocks on it): stdin bytes
    onto a queue, None at its end."""

    def __init__(self, requests: Iterator[pb.RunAndWaitOptions]) -> None:
        super().__init__(daemon=True, name="grpc-stdin")
        self.requests = requests
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        self.collected = threading.Event()
        self.cancelled = False  # the call ended before stdin did: the client went away

    def run(self) -> None:
        try:
            for r in self.requests:
                if self.collected.is_set():
                    continue  # the lambda has its stdin already: the rest is read and dropped
                self.chunks.put(r.cmd)
        except Exception:  # noqa: BLE001 — the call ended (cancelled): so does stdin
            self.cancelled = True
        self.chunks.put(None)

    def collect(self) -> bytes:
        """Stdin until the client half-closes, sends ^], or is quiet for STDIN_QUIET seconds."""
        try:
            return self._collect()
        finally:
            self.collected.set()

    def _collect(self) -> bytes:
        data = bytearray()
        deadline = time.monotonic() + STDIN_WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = self.chunks.get(timeout=min(STDIN_QUIET, left))
            except queue.Empty:
                break
            if chunk is None:
                break
            if not chunk or chunk[0] == WINCH:
                continue
            if ESCAPE in chunk:
                data += chunk[: chunk.index(ESCAPE)]
                break
            data += chunk
            if len(data) > MAX_STDIN:
                raise ValidationError({"cmd": [f"cmd: stdin is above the limit of {MAX_STDIN >> 20} MiB"]})
        return bytes(data)


def _attach(name: str, data: bytes, kind: int) -> pb.AttachWorkloadMessage:
    return pb.AttachWorkloadMessage(workload_id=name, data=data, std_stream_type=kind)  # type: ignore[arg-type]


def _exit_messages(entry: dict[str, Any]) -> list[pb.AttachWorkloadMessage]:
    """A workload's end: `[exitcode] N` on stdout as Eru sends it, after why when it did not exit."""
    name, code, ended = str(entry.get("name", "")), entry.get("exit_code"), entry.get("ended")
    out = []
    if code is None or ended != LambdaRun.State.DONE:
        out.append(_attach(name, f"{name} ended {ended}".encode(), Type.ERUERROR))
        if code is None:
            code = KILLED if ended in (LambdaRun.State.TIMEOUT, LambdaRun.State.CANCELLED) else 1
    out.append(_attach(name, EXIT_PREFIX + str(code).encode(), Type.STDOUT))
    return out


def _output(run: LambdaRun, context: Context) -> Generator[pb.AttachWorkloadMessage, None, bool]:
    """The run's output as Eru's lambda sends it, until its end: True; False when the client went."""
    idle()
    for item in lambda_output.entries(run.pk, idle=OUTPUT_IDLE):
        if item is None:
            if not context.is_active():
                return False
            run.refresh_from_db()
            idle()
            if run.is_final and not lambda_output.exists(run.pk):  # its end never reached the stream
                return True
            continue
        entry = item[1]
        event = entry["event"]
        if event == "line":
            kind = Type.STDERR if entry.get("stream") == "stderr" else Type.STDOUT
            yield _attach(str(entry.get("name", "")), f"{entry.get('data', '')}\n".encode(), kind)
        elif event == "exit":
            yield from _exit_messages(entry)
        elif event == "end":
            return True
    return True


def _cancel_unless_final(run: LambdaRun, who: services.Actor) -> None:
    """Eru's lambda ends with its call: a client gone before the end cancels the run."""
    run.refresh_from_db()
    if not run.is_final:
        services.lambda_cancel(actor=who, run=run)


def _replace_pod(principal: Principal, r: options.Replace, ws: list[Workload], context: Context) -> Pod:
    """The replace's pod: the one named; else the IDs' pod; else the one holding the app's entrypoint."""
    if r.pod:
        return _pod(principal, r.pod, context)
    if ws:
        pods = {w.pod.pk: w.pod for w in ws}
    else:
        visible = permissions.visible_workloads(principal.user).filter(
            app=r.data["app"], entrypoint=r.data["entrypoint"]
        )
        pods = {p.pk: p for p in Pod.objects.filter(pk__in=visible.values("pod"))}
    if len(pods) != 1:
        where = ", ".join(sorted(p.name for p in pods.values())) or "none"
        raise ValidationError(
            {"podname": [f"podname: give the pod (erucli --pod); workloads of the app are in: {where}"]}
        )
    return next(iter(pods.values()))


def _replaced(d: Deployment, context: Context) -> Iterator[pb.ReplaceWorkloadMessage]:
    """One message per replacement as it ends: swapped in (create and remove), or failed (error)."""
    old: dict[str, str] = d.spec.get("containers", {})  # new row's name -> the old container's id
    sent: set[int] = set()
    poll = _Poll()
    while True:
        state = Deployment.objects.values_list("state", flat=True).get(pk=d.pk)
        rows = Workload.objects.filter(deployment=d).exclude(pk__in=sent).select_related("pod", "node")
        changed = False
        for w in rows.order_by("pk"):
            if w.state == Workload.State.FAILED:
                remove = pb.RemoveWorkloadMessage(id=old.get(w.name, ""), success=False)
                yield pb.ReplaceWorkloadMessage(remove=remove, error=w.error or "replace failed")
            elif w.replaces_id is None and w.state in Workload.OBSERVED:
                remove = pb.RemoveWorkloadMessage(id=old.get(w.name, ""), success=True)
                yield pb.ReplaceWorkloadMessage(create=created_message(w), remove=remove)
            else:
                continue
            sent.add(w.pk)
            changed = True
        if len(sent) >= d.total or state != Deployment.State.RUNNING or not context.is_active():
            return
        poll.sleep(changed)


class DeployCalls:
    """Mixed into server.CoreService."""

    @stream(long=True)
    def CreateWorkload(  # noqa: N802 — Eru's name
        self, request: pb.DeployOptions, context: Context, principal: Principal
    ) -> Iterator[pb.CreateWorkloadMessage]:
        spec, data = _spec(principal, request, context, "CreateWorkload")
        with _hinting(data):
            deployment = services.deployment_create(actor=actor(principal), spec=spec)
        yield from _created(deployment.pk, context)

    @unary(write=False)
    def CalculateCapacity(  # noqa: N802
        self, request: pb.DeployOptions, context: Context, principal: Principal
    ) -> pb.CapacityMessage:
        d = options.deploy_fields(request, "CalculateCapacity")
        pod = _pod(principal, d.pod, context)
        permissions.require_deploy(principal.user, pod)
        spec = services.placement_validate(pod=pod, data=_excluding(pod, d), entry="grpc")
        per_node, total = services.deployment_capacity(spec)
        return pb.CapacityMessage(total=total, node_capacities=per_node)

    @stream(long=True)
    def RunAndWait(  # noqa: N802
        self, request: Iterator[pb.RunAndWaitOptions], context: Context, principal: Principal
    ) -> Iterator[pb.AttachWorkloadMessage]:
        first = first_message(request, context)
        if first is None or not first.HasField("deploy_options"):
            raise ValidationError(
                {"deploy_options": ["deploy_options: the first message must carry the deploy options"]}
            )
        is_async = bool(getattr(first, "async"))
        timeout = MAX_TIMEOUT
        if is_async and first.async_timeout:
            timeout = first.async_timeout
            if not 1 <= timeout <= MAX_TIMEOUT:
                raise ValidationError({"async_timeout": [f"async_timeout: from 1 to {MAX_TIMEOUT} seconds"]})
        spec, data = _spec(principal, first.deploy_options, context, "RunAndWait")
        stdin = None
        if first.deploy_options.open_stdin and not is_async:  # Eru: async has no stdin
            reader = _Stdin(request)
            reader.start()
            idle()
            raw = reader.collect()
            if reader.cancelled or not context.is_active():
                return  # the client went away mid-stdin: nothing was made
            try:
                stdin = raw.decode()
            except UnicodeDecodeError:
                raise ValidationError({"cmd": ["cmd: stdin must be UTF-8 text here"]}) from None
        who = actor(principal)
        with _hinting(data):
            run = services.lambda_create(actor=who, spec=spec, timeout=timeout, stdin=stdin)
        ended = is_async  # an async run goes on without its caller, as Eru's
        try:
            names = Workload.objects.filter(lambda_run=run).order_by("seq").values_list("name", flat=True)
            for name in list(names):  # Eru: every workload's id first (here its name: ids resolve names)
                yield _attach(name, b"", Type.TYPEWORKLOADID)
            if not is_async:
                ended = yield from _output(run, context)
        except redis.RedisError as exc:  # its output out of reach: cancelled, as if the client went
            context.abort(grpc.StatusCode.UNAVAILABLE, f"lambda output: Redis: {exc}")
        finally:
            if not ended:
                _cancel_unless_final(run, who)

    @stream(long=True)
    def ReplaceWorkload(  # noqa: N802
        self, request: pb.ReplaceOptions, context: Context, principal: Principal
    ) -> Iterator[pb.ReplaceWorkloadMessage]:
        r = options.replace_fields(request)
        ws = [workload_of(ident, principal, context) for ident in r.ids]
        pod = _replace_pod(principal, r, ws, context)
        permissions.require_deploy(principal.user, pod)
        data = {**r.data, **({"ids": [w.pk for w in ws]} if ws else {})}
        with _hinting(data):  # erucli's --auto-replace sends its deploy's network (host by default)
            d = services.workload_replace(actor=actor(principal), pod=pod, data=data)
        yield from _replaced(d, context)

"""Workloads: list, get, status, control, remove, realloc, dissociate, send (Eru's pb.CoreRPC); the
long streams (status watch, logs, exec) are in stream_calls.

Ids are Eru's: a container id, a unique prefix of one, or a workload's name (base.workload_of). Rows
that have no container yet (pending, being created, failed) are not Eru workloads: lists leave them
out. Writes check every id and every right before acting on any: an id the caller cannot see is
NOT_FOUND, a pod where they may not operate PERMISSION_DENIED, and nothing is done; what a row's state
refuses (a workload being removed, replaced…) is that id's own answer, as Eru gives it."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from agents.grpc_server.base import (
    Context,
    Principal,
    actor,
    ended,
    idle,
    node_of,
    stream,
    unary,
    workload_of,
)
from agents.grpc_server.messages import PLUGIN, status_message, workload_message
from clusters import permissions, services
from clusters.errors import invalid
from clusters.models import Workload
from protocol import core_pb2 as pb

WAIT = 60.0  # s: how long a control or a removal is waited for before its answer says it is not done
POLL = 0.2  # s: how often the rows of those waited for are looked at
CPUMEM_KEYS = ("cpu-request", "cpu-limit", "memory-request", "memory-limit", "cpu-bind", "keep-cpu-bind")
STORAGE_KEYS = ("storage-request", "storage-limit", "volumes-request", "volumes-limit")
LEFT = "the row went at once; reconcile removes the container when the node answers"
NO_STORAGE = "this project has no storage plugin: storage and volumes cannot be requested or changed"


def labels_match(labels: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    """Eru's label filter: every label asked for, with that very value."""
    return all(k in labels and str(labels[k]) == v for k, v in wanted.items())


def eru_workloads(
    principal: Principal, *, appname: str = "", entrypoint: str = "", nodename: str = ""
) -> QuerySet[Workload]:
    """The workloads the principal may see that Eru would know (those with a container), of the app,
    entrypoint and node given (each filter on its own; empty: any)."""
    rows = permissions.visible_workloads(principal.user).exclude(container_id="")
    if appname:
        rows = rows.filter(app=appname)
    if entrypoint:
        rows = rows.filter(entrypoint=entrypoint)
    if nodename:
        rows = rows.filter(node__name=nodename)
    return rows.select_related("pod", "node").order_by("pk")


def workloads_of(ids: Iterable[str], principal: Principal, context: Context) -> list[Workload]:
    """Each id's workload (NOT_FOUND for the first the principal cannot see); one row once."""
    found: dict[int, Workload] = {}
    for ident in ids:
        w = workload_of(ident, principal, context)
        found.setdefault(w.pk, w)
    return list(found.values())


def require_ids(ids: Iterable[str]) -> list[str]:
    given = [i for i in ids if i]
    if not given:
        raise invalid("IDs", "IDs: give at least one workload id")
    return given


def require_deploy(principal: Principal, workloads: Iterable[Workload]) -> None:
    """Every pod's right first: a refusal for one is a refusal of the whole call, before any act."""
    for w in {w.pod_id: w for w in workloads}.values():
        permissions.require_deploy(principal.user, w.pod)


def refusal(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


class Waiter:
    """Waits (a short poll, no DB connection held between looks) until the client leaves or `WAIT`
    passes; `cancelled` is set by gRPC when the call ends."""

    def __init__(self, context: Context) -> None:
        self.cancelled = ended(context)
        self.deadline = time.monotonic() + WAIT

    def sleep(self) -> bool:
        """False once the client is gone or the time is up."""
        idle()
        if time.monotonic() >= self.deadline:
            return False
        return not self.cancelled.wait(POLL)


def _control_outcome(row: dict[str, Any] | None, task_id: str, kind: str) -> str | None:
    """None while the worker has not carried the request out; else its error ("" when it worked)."""
    if row is None:
        return "the workload was removed before the worker carried this out"
    if row["task_id"] == task_id:
        return None
    if row["task_id"]:
        return f"a newer request ({row['action'] or 'another'}) replaced this {kind}"
    return str(row["error"])


def _removal_outcome(row: dict[str, Any] | None) -> tuple[bool, str] | None:
    if row is None:
        return True, ""
    if row["state"] != Workload.State.REMOVING:
        return False, f"the workload is {row['state']}, not removed"
    if row["error"]:
        return False, f"removing failed (reconcile tries again): {row['error']}"
    return None


def wait_rows(
    context: Context,
    pending: dict[int, Any],
    outcome: Callable[[int, dict[str, Any] | None], Any],
    fields: tuple[str, ...],
) -> Iterator[tuple[int, Any]]:
    """(pk, outcome) for each pending row as it is done; (pk, None) for those not done in time."""
    waiter = Waiter(context)
    while pending:
        rows = {r["pk"]: r for r in Workload.objects.filter(pk__in=list(pending)).values("pk", *fields)}
        for pk in list(pending):
            result = outcome(pk, rows.get(pk))
            if result is not None:
                del pending[pk]
                yield pk, result
        if pending and not waiter.sleep():
            break
    for pk in list(pending):
        yield pk, None


def _cpu(value: Any, key: str) -> float:
    """A number of cpus (a delta); absent: 0."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(key, f"{key}: expected a number of cpus, got {json.dumps(value)[:40]}")
    return float(value)


def _bytes(value: Any, key: str) -> int:
    """A number of bytes (a delta) as erucli sends it, an integer; absent: 0."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(key, f"{key}: expected a whole number of bytes, got {json.dumps(value)[:40]}")
    return value


def _plugin(resources: Mapping[str, bytes], name: str) -> dict[str, Any] | None:
    raw = resources.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("resources", f"resources.{name}: not JSON") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise invalid("resources", f"resources.{name}: expected a JSON object")
    return data


def realloc_change(resources: Mapping[str, bytes]) -> services.Change:
    """erucli's realloc resources ({"cpumem": {dashed keys: deltas}, "storage": {...}}) as the
    service's Change. Storage entries that ask nothing (zeros, no volumes) are taken as such; any
    other is refused: there is no storage plugin. So is any other plugin, or key."""
    unknown = sorted(set(resources) - {PLUGIN, "storage"})
    if unknown:
        raise invalid("resources", f"resources: no resource plugin {', '.join(unknown)} here (only {PLUGIN})")
    storage = _plugin(resources, "storage") or {}
    for key, value in storage.items():
        if key not in STORAGE_KEYS:
            raise invalid("resources", f"resources.storage: unknown key {key}")
        if value not in (None, 0, 0.0, "", [], "0"):
            raise invalid("resources", f"resources.storage.{key}: {NO_STORAGE}")
    cpumem = _plugin(resources, PLUGIN)
    if cpumem is None:
        return services.Change()
    extra = sorted(set(cpumem) - set(CPUMEM_KEYS))
    if extra:
        raise invalid("resources", f"resources.cpumem: unknown key {', '.join(extra)}")
    flags = {}
    for key in ("cpu-bind", "keep-cpu-bind"):
        value = cpumem.get(key, False)
        if not isinstance(value, bool):
            raise invalid(key, f"{key}: expected true or false")
        flags[key] = value
    if flags["cpu-bind"] and flags["keep-cpu-bind"]:
        raise invalid("cpu-bind", "cpu-bind and keep-cpu-bind: give one of them")
    # Eru's cpumem: keep-cpu-bind keeps, cpu-bind binds, neither unbinds (erucli's --cpu-unbind).
    bind = None if flags["keep-cpu-bind"] else flags["cpu-bind"]
    return services.Change(
        cpu_request=_cpu(cpumem.get("cpu-request"), "cpu-request"),
        cpu_limit=_cpu(cpumem.get("cpu-limit"), "cpu-limit"),
        memory_request=_bytes(cpumem.get("memory-request"), "memory-request"),
        memory_limit=_bytes(cpumem.get("memory-limit"), "memory-limit"),
        cpu_bind=bind,
    )


class WorkloadCalls:
    """Mixed into server.CoreService."""

    @stream(write=False)
    def ListWorkloads(
        self, request: pb.ListWorkloadsOptions, context: Context, principal: Principal
    ) -> Iterator[pb.Workload]:
        rows = eru_workloads(
            principal, appname=request.appname, entrypoint=request.entrypoint, nodename=request.nodename
        )
        wanted = dict(request.labels)
        found = [w for w in rows if labels_match(w.labels, wanted)]
        if request.limit > 0:
            found = found[: request.limit]
        seen: dict[int, bool] = {}
        messages = [workload_message(w, principal.user, seen) for w in found]
        idle()
        yield from messages

    @unary(write=False)
    def GetWorkload(self, request: pb.WorkloadID, context: Context, principal: Principal) -> pb.Workload:
        return workload_message(workload_of(request.id, principal, context), principal.user)

    @unary(write=False)
    def GetWorkloads(self, request: pb.WorkloadIDs, context: Context, principal: Principal) -> pb.Workloads:
        found = [workload_of(i, principal, context) for i in request.IDs]
        seen: dict[int, bool] = {}
        return pb.Workloads(workloads=[workload_message(w, principal.user, seen) for w in found])

    @unary(write=False)
    def ListNodeWorkloads(
        self, request: pb.GetNodeOptions, context: Context, principal: Principal
    ) -> pb.Workloads:
        if not request.nodename:
            raise invalid("nodename", "nodename: name the node whose workloads to list")
        node = node_of(request.nodename, principal, context)
        wanted = dict(request.labels)
        rows = [w for w in eru_workloads(principal).filter(node=node) if labels_match(w.labels, wanted)]
        seen: dict[int, bool] = {}
        return pb.Workloads(workloads=[workload_message(w, principal.user, seen) for w in rows])

    @unary(write=False)
    def GetWorkloadsStatus(
        self, request: pb.WorkloadIDs, context: Context, principal: Principal
    ) -> pb.WorkloadsStatus:
        found = [workload_of(i, principal, context) for i in request.IDs]
        return pb.WorkloadsStatus(status=[status_message(w) for w in found])

    @stream(long=True)
    def ControlWorkload(
        self, request: pb.ControlWorkloadOptions, context: Context, principal: Principal
    ) -> Iterator[pb.ControlWorkloadMessage]:
        """As Eru: one message per id once its worker has carried it out (or failed: its error). An
        id the caller cannot see fails the whole call (NOT_FOUND) before any is acted on."""
        ids = require_ids(request.IDs)
        if request.type not in services.CONTROL_ACTIONS:
            raise invalid(
                "type", f"type: {request.type!r} is not one of {', '.join(services.CONTROL_ACTIONS)}"
            )
        if request.force:
            raise invalid("force", "force: this core has no forced stop; stop without --force")
        found = workloads_of(ids, principal, context)
        require_deploy(principal, found)
        who = actor(principal)
        pending: dict[int, tuple[str, str]] = {}
        for w in found:
            try:
                done = services.workload_control(actor=who, workload=w, action=request.type)
            except ValidationError as exc:
                yield pb.ControlWorkloadMessage(id=w.container_id, error=refusal(exc))
                continue
            pending[w.pk] = (w.container_id, done.task_id)
        asked = dict(pending)

        def outcome(pk: int, row: dict[str, Any] | None) -> str | None:
            return _control_outcome(row, asked[pk][1], request.type)

        for pk, error in wait_rows(context, pending, outcome, ("task_id", "action", "error")):
            if error is None:
                error = f"not carried out within {WAIT:g} s: the worker still has it"
            yield pb.ControlWorkloadMessage(id=asked[pk][0], error=error)

    @stream(long=True)
    def RemoveWorkload(
        self, request: pb.RemoveWorkloadOptions, context: Context, principal: Principal
    ) -> Iterator[pb.RemoveWorkloadMessage]:
        """One message per id once its container is gone (the worker removes it, forced as Eru's
        --force does: this core's removal always is). An unknown id fails the call, as in Eru."""
        found = workloads_of(require_ids(request.IDs), principal, context)
        require_deploy(principal, found)
        who = actor(principal)
        pending: dict[int, str] = {}
        for w in found:
            cid = w.container_id
            try:
                done = services.workload_remove(actor=who, workload=w)
            except ValidationError as exc:
                yield pb.RemoveWorkloadMessage(id=cid, success=False, hook=refusal(exc))
                continue
            if done.pk is None:  # gone at once: its node is down, reconcile removes the container
                note = "" if done.state == Workload.State.FAILED else f"node {w.node.name} is down: {LEFT}"
                yield pb.RemoveWorkloadMessage(id=cid, success=True, hook=note)
                continue
            pending[w.pk] = cid
        asked = dict(pending)
        for pk, result in wait_rows(
            context, pending, lambda pk, row: _removal_outcome(row), ("state", "error")
        ):
            ok, why = result if result is not None else (False, f"still removing after {WAIT:g} s")
            yield pb.RemoveWorkloadMessage(id=asked[pk], success=ok, hook=why)

    @unary()
    def ReallocResource(
        self, request: pb.ReallocOptions, context: Context, principal: Principal
    ) -> pb.ReallocResourceMessage:
        if not request.id:
            raise invalid("id", "id: name the workload to realloc")
        change = realloc_change(request.resources)
        w = workload_of(request.id, principal, context)
        services.workload_realloc(actor=actor(principal), workload=w, change=change)
        return pb.ReallocResourceMessage(error="")

    @stream()
    def DissociateWorkload(
        self, request: pb.DissociateWorkloadOptions, context: Context, principal: Principal
    ) -> Iterator[pb.DissociateWorkloadMessage]:
        """One message per id (each on its own: one refused does not keep the others)."""
        found = workloads_of(require_ids(request.IDs), principal, context)
        require_deploy(principal, found)
        who = actor(principal)
        for w in found:
            try:
                services.workload_dissociate(actor=who, workloads=[w])
            except ValidationError as exc:
                yield pb.DissociateWorkloadMessage(id=w.container_id, error=refusal(exc))
                continue
            yield pb.DissociateWorkloadMessage(id=w.container_id)

    @stream()
    def Send(
        self, request: pb.SendOptions, context: Context, principal: Principal
    ) -> Iterator[pb.SendMessage]:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Send: this project does not copy files into workloads; put them in the image, or pass "
            "them as env or a command at deploy",
        )
        yield pb.SendMessage()  # not reached: a generator, as every stream handler is

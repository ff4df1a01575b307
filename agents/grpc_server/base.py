"""What every call of the gRPC door shares: authentication (clusters.principals), the rights a kind
of principal has (a node's secret serves its agent's calls only; a read-only token its reads only),
errors mapped to gRPC status codes carrying the service layer's message (never UNKNOWN), the bound on
long streams, and the lookups by Eru's names and ids.

Long calls — follows, watches, deploys that answer as they go — take one of ERU_GRPC_STREAMS slots;
the thread pool has that many threads more than ERU_GRPC_WORKERS, so unary calls always find a thread.
A call that finds every slot taken is answered RESOURCE_EXHAUSTED at once. A stream that waits closes
its thread's database connection first (`idle`): no connection is held while nothing happens."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import close_old_connections, connection
from django.http import Http404

from clusters import etcd, permissions, principals, services
from clusters.errors import QuotaExceeded, StateConflict
from clusters.models import AuditEvent, Node, Workload

log = logging.getLogger(__name__)
T = TypeVar("T")
Principal = principals.Principal
Context = grpc.ServicerContext

FIRST_WAIT = 10.0  # s a bidirectional call's first message (its options) is waited for
NO_CREDENTIAL = (
    "no valid credential: send one metadata entry, key = username (node.<name> for an agent), "
    "value = password, API token or node secret"
)


class Streams:
    """At most `limit` long calls at once in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.open = 0

    def take(self) -> bool:
        if not self._free.acquire(blocking=False):
            return False
        with self._lock:
            self.open += 1
        return True

    def give(self) -> None:
        with self._lock:
            self.open -= 1
        self._free.release()


streams = Streams(settings.ERU_GRPC_STREAMS)


def ended(context: Context) -> threading.Event:
    """An event set when the call ends (its client went, or it was cancelled) — set at once when it
    ended already: a client that cancels before the handler asks is not waited for without end
    (gRPC registers no callback on a call that has terminated)."""
    gone = threading.Event()
    if not context.add_callback(gone.set):
        gone.set()
    return gone


def idle() -> None:
    """Before a stream waits: give its database connection back (the next query opens one)."""
    if not connection.in_atomic_block:
        connection.close()


def _abort_for(exc: Exception, context: Context) -> None:
    """Abort the call with the status code of one of the project's errors (re-raise others)."""
    if (down := etcd.outage(exc)) is not None:  # also a field error raised from one: not the caller's
        context.abort(grpc.StatusCode.UNAVAILABLE, etcd.outage_message(down))
    if isinstance(exc, PermissionDenied):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc) or "permission denied")
    if isinstance(exc, QuotaExceeded):
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "; ".join(exc.messages))
    if isinstance(exc, StateConflict):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "; ".join(exc.messages))
    if isinstance(exc, ValidationError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(exc.messages))
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        context.abort(grpc.StatusCode.NOT_FOUND, str(exc) or "not found")
    if (type(exc) is Exception and not exc.args) or isinstance(exc, grpc.RpcError):
        raise exc  # context.abort's own (grpcio raises a bare Exception), or the client went away
    # Not one of the project's errors: a bug, logged with its trace; the caller is told so (INTERNAL,
    # never grpcio's UNKNOWN), without the exception's text.
    log.exception("gRPC door: %s failed", type(exc).__name__)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the core's log has it")


def first_message(requests: Iterator[T], context: Context, *, timeout: float | None = None) -> T | None:
    """The first message of a client stream (its options), within `timeout` s — a client that opens a
    call and sends nothing holds no slot for long — or None if the client closed it without one.
    grpcio's sync iterator blocks: it is read on a thread of its own."""
    got: list[T | None] = []
    ready = threading.Event()

    def read() -> None:
        try:
            got.append(next(requests, None))
        except Exception:  # noqa: BLE001 — the call ended (cancelled): no message
            got.append(None)
        ready.set()

    timeout = FIRST_WAIT if timeout is None else timeout
    idle()
    threading.Thread(target=read, daemon=True, name="grpc-first").start()
    if not ready.wait(timeout):
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no first message within {timeout:.0f} s")
    return got[0]


def _principal(name: str, context: Context, *, agent: bool, write: bool) -> Principal:
    principal = principals.authenticate(context.invocation_metadata())
    if principal is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, NO_CREDENTIAL)
    if principal.read_only and write:
        raise PermissionDenied(f"this token is read-only: {name} is a write")
    if principal.is_node and not agent:
        raise PermissionDenied(f"a node's secret serves its agent's calls only, not {name}")
    return principal


def unary(*, write: bool = True, agent: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A call answered with one message: handler(self, request, context, principal). `write`: a
    read-only token may not make it; `agent`: a node's secret may (else users only)."""

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: Context) -> T:
            close_old_connections()
            try:
                principal = _principal(method.__name__, context, agent=agent, write=write)
                return method(self, request, context, principal)
            except Exception as exc:  # noqa: BLE001 — mapped to a status, or re-raised
                _abort_for(exc, context)
                raise
            finally:
                close_old_connections()

        return wrapper

    return decorate


def stream(
    *, write: bool = True, long: bool = False
) -> Callable[[Callable[..., Iterator[T]]], Callable[..., Iterator[T]]]:
    """A call answered with a stream (the request may be a stream too): the handler is a generator.
    `long`: it may last (a follow, a watch, a deploy answered as it goes) and takes a stream slot."""

    def decorate(method: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: Context) -> Iterator[T]:
            close_old_connections()
            taken = False
            try:
                principal = _principal(method.__name__, context, agent=False, write=write)
                if long:
                    if not streams.take():
                        context.abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"this core serves at most {streams.limit} streams at once "
                            "(ERU_GRPC_STREAMS); try again, or another core",
                        )
                    taken = True  # given back when the handler ends (its thread is free), not before
                yield from method(self, request, context, principal)
            except Exception as exc:  # noqa: BLE001 — mapped to a status, or re-raised
                _abort_for(exc, context)
                raise
            finally:
                if taken:
                    streams.give()
                close_old_connections()

        return wrapper

    return decorate


def actor(principal: Principal) -> services.Actor:
    via = AuditEvent.Via.GRPC
    if principal.is_node:
        return services.Actor(via=via, principal=principal.name)
    return services.Actor(user=principal.user, via=via)


def node_of(name: str, principal: Principal, context: Context) -> Node:
    """The node a call names, among those the principal may see (a node: itself only)."""
    if principal.node_id is not None:
        nodes = Node.objects.filter(pk=principal.node_id)
    else:
        nodes = permissions.visible_nodes(principal.user)
    node = nodes.select_related("pod").filter(name=name).first()
    if node is None:
        if principal.is_node and name:
            raise PermissionDenied(f"{principal.name} may act only for its own node, not for {name}")
        context.abort(grpc.StatusCode.NOT_FOUND, f"node {name or '(no name)'} not found")
    return node


MIN_ID = 7  # a container id's prefix must be at least this long (docker's short ids are 12)


def workload_of(ident: str, principal: Principal, context: Context) -> Workload:
    """The workload an Eru id names, among those the principal may see: its container id, a unique
    prefix of it (at least MIN_ID characters), or its name."""
    rows = permissions.visible_workloads(principal.user).select_related("pod", "node")
    found = list(rows.filter(container_id=ident)[:1]) if ident else []
    if not found and len(ident) >= MIN_ID:
        found = list(rows.filter(container_id__startswith=ident)[:2])
        if len(found) > 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"id {ident} is the prefix of several workloads")
    if not found and ident:
        found = list(rows.filter(name=ident)[:1])
    if not found:
        context.abort(grpc.StatusCode.NOT_FOUND, f"workload {ident or '(no id)'} not found")
    return found[0]

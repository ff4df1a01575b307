"""REST API: Eru's day-two operations on workloads and deployments (replace, realloc, dissociate,
cancel), as mixins of the viewsets in clusters.api."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

import schema
from clusters import permissions, services
from clusters import serializers as s
from clusters.api_common import actor
from clusters.idempotency import idempotent
from clusters.models import Deployment, Workload
from clusters.pagination import MAX_BIGINT
from clusters.services.dissociate import MAX_AT_ONCE as MAX_DISSOCIATE

REALLOC_BODY = inline_serializer(
    "ReallocRequest",
    {
        "cpu_request": serializers.FloatField(
            required=False, help_text="delta (or, absolute, the new value)"
        ),
        "cpu_limit": serializers.FloatField(required=False),
        "memory_request": serializers.CharField(required=False, help_text="bytes or a size like -64M"),
        "memory_limit": serializers.CharField(required=False),
        "cpu_bind": serializers.BooleanField(required=False, allow_null=True, help_text="null: keep"),
        "absolute": serializers.BooleanField(required=False, help_text="new values, not deltas"),
    },
)
REPLACE_BODY = inline_serializer(
    "ReplaceRequest",
    {
        "pod": serializers.CharField(),
        "app": serializers.CharField(),
        "entrypoint": serializers.CharField(),
        "image": serializers.CharField(required=False, help_text="the new image; absent: each keeps its own"),
        "spec": serializers.CharField(required=False, help_text="Eru's spec file (YAML), as deploy takes it"),
        "filter_labels": serializers.DictField(child=serializers.CharField(), required=False),
        "nodes": serializers.ListField(child=serializers.CharField(), required=False),
        "ids": serializers.ListField(child=serializers.IntegerField(), required=False),
        "batch": serializers.IntegerField(required=False, help_text="at a time; default 1, 0: all at once"),
        "timeout": serializers.IntegerField(required=False, help_text="seconds before it is cancelled"),
    },
)
DISSOCIATE_BODY = inline_serializer(
    "DissociateRequest",
    {
        "ids": serializers.ListField(child=serializers.IntegerField(), required=False),
        "node": serializers.CharField(required=False, help_text="all the node's workloads"),
    },
)
DISSOCIATED = inline_serializer(
    "Dissociated",
    {
        "dissociated": serializers.ListField(child=serializers.DictField()),
    },
)
REALLOC_FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "cpu_bind", "absolute")


def _body(request: Request) -> Mapping[str, Any]:
    if not isinstance(request.data, Mapping):
        raise exceptions.ValidationError({"non_field_errors": ["expected a JSON object"]})
    return request.data


def cpu_amount(value: object, *, field: str) -> float | None:
    """A realloc's cpu field (a delta or, absolute, the new value): None when not given. Raises
    ValueError naming the field (the API answers it as a 400, the portal beside the field)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # anything else is refused below
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{field}: expected a number of cpus, got {str(value)[:40]!r}")
    return number


def size_amount(value: object, *, field: str) -> int | None:
    """A realloc's memory field: bytes or a size like -64M; None when not given (ValueError as above)."""
    if value is None or value == "":
        return None
    return schema.parse_size(value, field=field)


def _cpu(data: Mapping[str, Any], name: str) -> float | None:
    try:
        return cpu_amount(data.get(name), field=name)
    except ValueError as exc:
        raise exceptions.ValidationError({name: [str(exc)]}) from exc


def _size(data: Mapping[str, Any], name: str) -> int | None:
    try:
        return size_amount(data.get(name), field=name)
    except ValueError as exc:
        raise exceptions.ValidationError({name: [str(exc)]}) from exc


def _flag(data: Mapping[str, Any], name: str, *, allow_null: bool) -> bool | None:
    value = data.get(name)
    if value is None and allow_null:
        return None
    if value is None:
        return False
    if not isinstance(value, bool):
        raise exceptions.ValidationError(
            {name: [f"{name}: expected true, false" + (" or null" if allow_null else "")]}
        )
    return value


def realloc_change(data: Mapping[str, Any]) -> services.Change:
    """The realloc body as the service takes it; an unknown field is a 400 naming it."""
    unknown = sorted(set(data) - set(REALLOC_FIELDS))
    if unknown:
        raise exceptions.ValidationError({f: [f"{f}: unknown field"] for f in unknown})
    return services.Change(
        cpu_request=_cpu(data, "cpu_request"),
        cpu_limit=_cpu(data, "cpu_limit"),
        memory_request=_size(data, "memory_request"),
        memory_limit=_size(data, "memory_limit"),
        cpu_bind=_flag(data, "cpu_bind", allow_null=True),
        absolute=bool(_flag(data, "absolute", allow_null=False)),
    )


class WorkloadOpsMixin(viewsets.GenericViewSet[Workload]):
    """replace, realloc and dissociate actions of WorkloadViewSet."""

    @extend_schema(request=REPLACE_BODY, responses={201: s.DeploymentSerializer})
    @action(detail=False, methods=["post"])
    @idempotent
    def replace(self, request: Request) -> Response:
        """Eru's replace: new containers for the app's entrypoint in the pod (all its running or stopped
        workloads, or those with these labels, on these nodes, with these ids), each on its node with
        its resources, `batch` at a time: the old one stopped, the new one started (healthy where it
        has a health check), then the old one removed; when a new one fails, the old one comes back
        and the rest are not replaced. Fields not given (image, command, env…) stay as each had them;
        resource fields are not taken (see realloc). Progress: GET /api/deployments/{id}/ (kind replace)."""
        body = _body(request)
        name = body.get("pod")
        if not isinstance(name, str) or not name.strip():
            raise exceptions.ValidationError({"pod": ["pod: this field is required"]})
        pod = permissions.get_pod_for_user(request.user, name.strip())
        d = services.workload_replace(actor=actor(request), pod=pod, data=body)
        return Response(
            s.DeploymentSerializer(d, context={"request": request}).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=REALLOC_BODY, responses={200: s.WorkloadSerializer})
    @action(detail=True, methods=["post"])
    def realloc(self, request: Request, pk: str) -> Response:
        """Eru's realloc: change the workload's cpu and memory, request and limit, live (docker update).
        Values are deltas, as in Eru (negative shrinks), or with `absolute` the new values; cpu_bind
        true binds, false unbinds, null keeps. Refused with the numbers when the node cannot fit it."""
        change = realloc_change(_body(request))
        w = services.workload_realloc(actor=actor(request), workload=self.get_object(), change=change)
        return Response(s.WorkloadSerializer(w, context={"request": request}).data)

    @extend_schema(request=DISSOCIATE_BODY, responses={200: DISSOCIATED})
    @action(detail=False, methods=["post"])
    def dissociate(self, request: Request) -> Response:
        """Eru's dissociate: forget workloads (by ids, or all of a node) and keep their containers
        running, unmanaged; their allocation goes back to the node. All of them, or none."""
        body = _body(request)
        ids, node_name = body.get("ids"), body.get("node")
        if (ids is None) == (node_name is None):
            raise exceptions.ValidationError({"ids": ["ids: give ids or a node, not both"]})
        if node_name is not None:
            node = permissions.visible_nodes(request.user).filter(name=str(node_name)).first()
            if node is None:
                raise exceptions.NotFound(f"node {str(node_name)[:64]} not found")
            workloads = services.dissociation_candidates(node)
        else:
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_BIGINT for i in ids
            ):
                raise exceptions.ValidationError(
                    {"ids": [f"ids: a list of workload ids (1 to {MAX_BIGINT})"]}
                )
            if len(ids) > MAX_DISSOCIATE:
                raise exceptions.ValidationError({"ids": [f"ids: at most {MAX_DISSOCIATE} at once"]})
            workloads = list(self.get_queryset().filter(pk__in=ids))
            missing = sorted(set(ids) - {w.pk for w in workloads})
            if missing:
                raise exceptions.NotFound(f"no such workload: {', '.join(map(str, missing[:20]))}")
        done = services.workload_dissociate(actor=actor(request), workloads=workloads)
        return Response(
            {
                "dissociated": [
                    {"name": d.name, "container_id": d.container_id, "node": d.node.name} for d in done
                ]
            }
        )


class DeploymentOpsMixin(viewsets.GenericViewSet[Deployment]):
    """The cancel action of DeploymentViewSet."""

    @extend_schema(request=None, responses={200: s.DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel: the creations no worker began stop and give back what they hold; the containers made
        stay. A lambda's deployment is cancelled as its lambda is (killed, then removed)."""
        d = services.deployment_cancel(actor=actor(request), deployment=self.get_object())
        return Response(s.DeploymentSerializer(d, context={"request": request}).data)

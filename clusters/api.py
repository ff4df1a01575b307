"""REST API (DRF). Reads go through the permission querysets; writes validate shapes with a
serializer and then call clusters.services — the same write path as the portal."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import exceptions, mixins, routers, status, viewsets
from rest_framework.decorators import (
    action,
    api_view,
    authentication_classes,
    permission_classes,
)
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

import scheduling
import schema
from clusters import etcd, lambda_stream, logs, metrics, permissions, services
from clusters import filters as f
from clusters import serializers as s
from clusters.api_common import actor as _actor
from clusters.api_exec import WorkloadExecMixin
from clusters.api_nodes import NodeViewSet
from clusters.api_ops import DeploymentOpsMixin, WorkloadOpsMixin
from clusters.api_quotas import PodQuotaMixin
from clusters.api_teams import PodTeamsMixin, TeamViewSet
from clusters.api_tokens import ApiTokenViewSet
from clusters.authentication import TokenAuthentication
from clusters.errors import invalid
from clusters.idempotency import idempotent
from clusters.models import AuditEvent, Deployment, LambdaRun, Pod, PodMember, Workload
from clusters.pagination import bounded_int


class EtcdUnavailable(exceptions.APIException):
    """etcd is down: a write that needs it (liveness, the mirror) is refused for now, not for good."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "etcd_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.wait = etcd.OUTAGE_RETRY_AFTER  # DRF's handler sends it as Retry-After


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Domain validation errors (django ValidationError from services) become 400 with field errors;
    an etcd outage behind one (or raised as such) is a 503 with Retry-After instead."""
    if (down := etcd.outage(exc)) is not None:
        exc = EtcdUnavailable(etcd.outage_message(down))
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    return drf_exception_handler(exc, context)


def _valid(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class PodViewSet(
    PodTeamsMixin,
    PodQuotaMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Pod],
):
    serializer_class = s.PodSerializer
    filterset_class = f.PodFilter
    lookup_field = "name"
    lookup_value_regex = "[^/]+"  # names may contain dots (services.NAME_RE)

    def get_queryset(self) -> QuerySet[Pod]:
        return permissions.visible_pods(self.request.user)

    @extend_schema(request=s.PodCreateSerializer, responses={201: s.PodSerializer})
    def create(self, request: Request) -> Response:
        pod = services.pod_add(actor=_actor(request), **_valid(s.PodCreateSerializer, request))
        return Response(s.PodSerializer(pod).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, name: str) -> Response:
        services.pod_remove(actor=_actor(request), pod=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], request=None, responses=s.MemberSerializer(many=True))
    @extend_schema(methods=["PUT"], request=s.MemberSerializer, responses=s.MemberSerializer)
    @extend_schema(
        methods=["DELETE"], request=None, responses={204: None}, parameters=[s.MEMBER_USER_PARAMETER]
    )
    @action(detail=True, methods=["get", "put", "delete"], pagination_class=None)
    def members(self, request: Request, name: str) -> Response:
        """Staff and the pod's owners: list members, set a user's role (PUT {user, role}), or take it
        away (DELETE ?user=name). Owners may grant owner; taking it from another owner is staff's
        (403), and the pod's last owner is never taken (400). Others who see the pod get 403 before
        any user lookup. Roles through teams: GET/PUT/DELETE /api/pods/{name}/teams/."""
        pod = self.get_object()
        if not permissions.can_manage_members(request.user, pod):
            raise exceptions.PermissionDenied(
                f"Only staff or an owner of pod {pod.name} may manage its members."
            )
        if request.method == "GET":
            rows = PodMember.objects.filter(pod=pod).select_related("user").order_by("user__username")
            return Response(s.MemberSerializer(rows, many=True).data)
        if request.method == "PUT":
            data = _valid(s.MemberSerializer, request)
            member = services.member_set(actor=_actor(request), pod=pod, **data)
            return Response(s.MemberSerializer(member).data)
        ref = s.MemberRefSerializer(data={"user": request.query_params.get("user", "")})
        ref.is_valid(raise_exception=True)
        services.member_remove(actor=_actor(request), pod=pod, user=ref.validated_data["user"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], request=None, responses=s.PodPolicySerializer)
    @extend_schema(methods=["PUT"], request=s.PodPolicySerializer, responses=s.PodPolicySerializer)
    @action(detail=True, methods=["get", "put"])
    def policy(self, request: Request, name: str) -> Response:
        """The pod's spec policy: what its members who are not administrators may ask of a container
        (administrators may ask anything). Anyone who sees the pod reads it; administrators change the
        fields they send (PUT, audited)."""
        pod = self.get_object()
        if request.method == "PUT":
            if not isinstance(request.data, Mapping):
                raise exceptions.ValidationError(
                    {"non_field_errors": ["expected an object of policy fields"]}
                )
            policy = services.pod_policy_set(actor=_actor(request), pod=pod, fields=request.data)
        else:
            policy = services.policy_of(pod)
        return Response(s.PodPolicySerializer(policy).data)


def _require_logs(request: Request, pods: list[Pod | None]) -> None:
    """Logs (and a lambda's output) carry secrets: a 403 unless the caller may read every pod's
    (permissions.can_read_logs: not a viewer's)."""
    for pod in {p.pk if p else None: p for p in pods}.values():
        if not permissions.can_read_logs(request.user, pod):
            where = f"pod {pod.name}" if pod is not None else "a removed pod"
            raise exceptions.PermissionDenied(
                f"Logs may carry secrets: only those who may deploy to {where} read its logs."
            )


def _ndjson(body: Callable[[], Iterator[bytes]]) -> StreamingHttpResponse | Response:
    """An NDJSON stream on one of this process's stream slots, or a 503 when none is free."""
    try:
        return logs.streamed(body, "application/x-ndjson")
    except logs.Busy as exc:
        return Response({"detail": str(exc)}, status=503, headers={"Retry-After": "5"})


MERGED_LOGS = (
    "Several workloads' logs merged into one, each line naming its workload: those the filters "
    "choose (app or deployment needed; entrypoint, node, pod narrow it; at most "
    f"{logs.MAX_MERGED} with a container). Their last `tail` lines each (at most {logs.MERGED_TAIL}), "
    "in Docker's time order; with follow, then the new lines as they come. A node that does not "
    "answer ends its workloads' part with an error object."
)


class WorkloadViewSet(
    WorkloadOpsMixin,
    WorkloadExecMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Workload],
):
    serializer_class = s.WorkloadSerializer
    filterset_class = f.WorkloadFilter

    def get_queryset(self) -> QuerySet[Workload]:
        return permissions.visible_workloads(self.request.user).select_related("pod", "node")

    @extend_schema(
        parameters=[s.FORCE_PARAMETER],
        responses={
            202: OpenApiResponse(s.WorkloadSerializer, "removal asked: the worker removes the container"),
            204: OpenApiResponse(None, "removed at once (?force=true, or its node is down)"),
        },
    )
    def destroy(self, request: Request, pk: str) -> Response:
        """Remove: the worker removes the container, then the row goes (202, the workload in state
        removing). On a node that is down (no answer, heartbeat expired), or with ?force=true, the row
        and its allocation go at once (204); reconcile removes the container when its node answers."""
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        w = services.workload_remove(actor=_actor(request), workload=self.get_object(), force=force)
        if not w.pk:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(w).data, status=status.HTTP_202_ACCEPTED)

    def _control(self, request: Request, action_name: str) -> Response:
        w = services.workload_control(actor=_actor(request), workload=self.get_object(), action=action_name)
        return Response(self.get_serializer(w).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=s.LOG_PARAMETERS,
        responses={(200, "application/x-ndjson"): s.LOG_LINE, 503: None},
        description=(
            "The workload's log from its container: one JSON object per line (stream stdout or "
            "stderr, Docker's time, data). With follow, the stream stays open and brings new lines; "
            "an empty line keeps it alive every ERU_STREAM_IDLE seconds. 503 when this process holds "
            "its most streams (ERU_STREAMS)."
        ),
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk: str) -> StreamingHttpResponse | Response:
        w = self.get_object()
        _require_logs(request, [w.pod])
        params = request.query_params
        tail, since = logs.tail_of(params.get("tail")), logs.since_of(params.get("since"))
        follow = params.get("follow", "").lower() in ("1", "true", "yes")
        source = logs.lines(w, tail=tail, since=since, follow=follow)
        return _ndjson(lambda: logs.ndjson(source, follow=follow))

    @extend_schema(
        parameters=[*s.MERGED_LOG_PARAMETERS, *s.LOG_PARAMETERS[1:]],
        operation_id="workloads_logs_merged",
        responses={(200, "application/x-ndjson"): s.MERGED_LOG_LINE, 400: None, 503: None},
        description=MERGED_LOGS,
    )
    @action(detail=False, methods=["get"], url_path="logs")
    def merged_logs(self, request: Request) -> StreamingHttpResponse | Response:
        params = request.query_params
        if not (params.get("app") or params.get("deployment")):
            raise invalid("app", "app: name the app (or a deployment) whose logs to merge")
        tail, since = logs.merged_tail_of(params.get("tail")), logs.since_of(params.get("since"))
        follow = params.get("follow", "").lower() in ("1", "true", "yes")
        chosen = list(
            self.filter_queryset(self.get_queryset())
            .exclude(container_id="")
            .order_by("seq", "pk")[: logs.MAX_MERGED + 1]
        )
        if len(chosen) > logs.MAX_MERGED:
            raise invalid(
                "app",
                f"app: more than {logs.MAX_MERGED} workloads match; a merged log takes at most "
                f"{logs.MAX_MERGED}: narrow it with entrypoint, node or deployment",
            )
        _require_logs(request, [w.pod for w in chosen])
        source = logs.merged(chosen, tail=tail, since=since, follow=follow)
        return _ndjson(lambda: logs.ndjson(source, follow=follow))

    @extend_schema(request=None, responses={202: s.WorkloadSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        return self._control(request, "start")

    @extend_schema(request=None, responses={202: s.WorkloadSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        return self._control(request, "stop")

    @extend_schema(request=None, responses={202: s.WorkloadSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, pk: str) -> Response:
        return self._control(request, "restart")


_CONTAINER_FIELDS = schema.container_fields(schema.DeployRequest)


def _deploy_body(request: Request) -> Mapping[str, Any]:
    """The request's fields as the schema takes them. A form-encoded body (QueryDict) keeps every
    value of a list field (`command`, `env`, `node_names`) and reads map fields as `labels.key=value`."""
    data: Any = request.data
    if not isinstance(data, Mapping):
        raise exceptions.ValidationError({"non_field_errors": ["expected an object of deploy fields"]})
    if not isinstance(data, QueryDict):
        return data
    lists, maps = _CONTAINER_FIELDS
    body: dict[str, Any] = {}
    for key in data:
        name, _, sub = key.partition(".")
        if sub and name in maps:
            body.setdefault(name, {})[sub] = data[key]
        else:
            body[key] = data.getlist(key) if key in lists else data[key]
    return body


def _pod_of(request: Request, body: Mapping[str, Any]) -> Pod:
    """The pod a deploy body names, as the caller may see it (404 otherwise)."""
    name = body.get("pod")
    if not isinstance(name, str) or not name.strip():
        raise exceptions.ValidationError({"pod": ["pod: this field is required"]})
    return permissions.get_pod_for_user(request.user, name.strip())


class DeploymentViewSet(
    DeploymentOpsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Deployment]
):
    serializer_class = s.DeploymentSerializer
    filterset_class = f.DeploymentFilter

    def get_queryset(self) -> QuerySet[Deployment]:
        qs = permissions.visible_deployments(self.request.user).select_related("pod", "created_by")
        return qs.prefetch_related("workloads")

    def _spec(self, request: Request) -> services.DeploySpec:
        body = _deploy_body(request)
        return services.deployment_validate(pod=_pod_of(request, body), data=body)

    @extend_schema(request=schema.DeployRequest, responses={201: s.DeploymentSerializer})
    @idempotent
    def create(self, request: Request) -> Response:
        """Deploy: plan and allocate now, create the containers in the background; poll GET for progress.
        The body may carry `spec`: Eru's spec file, as its YAML text or the same structure as JSON
        (appname; entrypoints with cmd or commands, privileged, dir, log, publish, healthcheck, hook,
        restart, sysctls; volumes, labels, dns, extra_hosts). Its `entrypoint` is deployed; the body's
        other fields win over the spec's. A field that is not known is a 400 naming it, in the spec
        by its place (spec.entrypoints.web.restart). A member who is not an administrator gets only
        what the pod's spec policy grants (GET /api/pods/{name}/policy/)."""
        deployment = services.deployment_create(actor=_actor(request), spec=self._spec(request))
        return Response(self.get_serializer(deployment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=schema.DeployRequest, responses={200: dict})
    @action(detail=False, methods=["post"])
    def plan(self, request: Request) -> Response:
        """Dry run: the plan {node: n} the strategy would make now. Changes nothing. Nodes that tie
        (as roomy, as many of the app) are named in name order here; a deploy may take another of
        them (an AUTO deploy breaks such ties at random, as Eru does)."""
        spec = self._spec(request)
        permissions.require_deploy(request.user, spec.pod)
        deploy_plan = services.deployment_plan(spec)
        return Response({"plan": deploy_plan, "total": sum(deploy_plan.values())})

    @extend_schema(request=schema.Placement, responses={200: dict})
    @action(detail=False, methods=["post"])
    def capacity(self, request: Request) -> Response:
        """Dry run (Eru's DUMMY): instances of this request each available node can take now.
        It takes a pod, the resources and optionally a node filter (no app, entrypoint or image)."""
        body = _deploy_body(request)
        spec = services.placement_validate(pod=_pod_of(request, body), data=body)
        permissions.require_deploy(request.user, spec.pod)
        per_node, total = services.deployment_capacity(spec)
        return Response({"capacity": per_node, "total": total, "unlimited": total == scheduling.UNLIMITED})


LAMBDA_DEFAULTS = {
    "app": "lambda",
    "entrypoint": "run",
    "cpu_limit": 0.5,
    "memory_limit": "64M",
    "cpu_bind": False,
}


class LambdaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[LambdaRun]):
    """Lambdas: a one-off command in throw-away containers (Eru's lambda). POST takes a deploy body
    (pod, image, command, count, env, network, resources, nodes…; app and entrypoint default to
    lambda/run, resources to 0.5 cpu and 64M) plus `timeout` (seconds, default 600, at most 3000) and
    `stdin` (text the command reads, then its end; count 1); GET …/output/ streams what they print."""

    serializer_class = s.LambdaRunSerializer

    def get_queryset(self) -> QuerySet[LambdaRun]:
        visible = permissions.visible_deployments(self.request.user)
        return LambdaRun.objects.filter(deployment__in=visible).select_related(
            "deployment__pod", "deployment__created_by"
        )

    @extend_schema(request=schema.DeployRequest, responses={201: s.LambdaRunSerializer})
    @idempotent
    def create(self, request: Request) -> Response:
        body = dict(_deploy_body(request))
        timeout = bounded_int(str(body.pop("timeout", 600)), "timeout", 1, services.lambdas.MAX_TIMEOUT)
        stdin = body.pop("stdin", None)
        if stdin is not None and not isinstance(stdin, str):
            raise invalid("stdin", "stdin: the input as text")
        body = {**LAMBDA_DEFAULTS, **{k: v for k, v in body.items() if v not in (None, "")}}
        spec = services.deployment_validate(pod=_pod_of(request, body), data=body)
        run = services.lambda_create(actor=_actor(request), spec=spec, timeout=timeout, stdin=stdin)
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={202: s.LambdaRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = services.lambda_cancel(actor=_actor(request), run=self.get_object())
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={(200, "application/x-ndjson"): s.LAMBDA_EVENT, 503: None},
        description=(
            "What the run's containers print, as it comes: one JSON object per event (starting, started, "
            "line, exit per workload; end once, with the run's state and exit code), from the first, "
            "until the end; an empty line keeps it alive. After the stream has expired (an hour after "
            "the end), the run's kept output."
        ),
    )
    @action(detail=True, methods=["get"])
    def output(self, request: Request, pk: str) -> StreamingHttpResponse | Response:
        run = self.get_object()
        _require_logs(request, [run.deployment.pod])
        return _ndjson(lambda: lambda_stream.ndjson(run))


class AuditEventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[AuditEvent]):
    """The audit events one may see; ?pod=name: that pod's (by the name rows keep, so a removed
    pod's events are found too). Env values in them are digests, never values."""

    serializer_class = s.AuditEventSerializer
    filterset_class = f.AuditEventFilter

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return permissions.visible_audit_events(self.request.user)


@extend_schema(exclude=True)
@api_view(["GET"])
@authentication_classes([TokenAuthentication])
@permission_classes([AllowAny])
def metrics_view(request: Request) -> HttpResponse:
    """Prometheus' scrape (clusters.metrics): an administrator's API token, or a client address in
    ERU_METRICS_ALLOW. The answer names the process that gave it (X-Eru-Process)."""
    if not metrics.allowed_address(request.META.get("REMOTE_ADDR", ""), settings.ERU_METRICS_ALLOW):
        if not request.user.is_authenticated:
            raise exceptions.NotAuthenticated(
                "/metrics needs an administrator's API token (Authorization: Bearer eru_…) or a client "
                "address in ERU_METRICS_ALLOW"
            )
        if not permissions.can_admin(request.user):
            raise exceptions.PermissionDenied("/metrics: only an administrator's token")
    body = metrics.exposition()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST, headers={"X-Eru-Process": str(os.getpid())})


router = routers.DefaultRouter()
router.register("pods", PodViewSet, basename="pod")
router.register("nodes", NodeViewSet, basename="node")
router.register("teams", TeamViewSet, basename="team")
router.register("workloads", WorkloadViewSet, basename="workload")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("audit", AuditEventViewSet, basename="audit")
router.register("lambdas", LambdaViewSet, basename="lambda")
router.register("auth/tokens", ApiTokenViewSet, basename="apitoken")

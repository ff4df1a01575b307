"""DRF serializers: shapes in, shapes out. No domain logic — services validate the rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter, extend_schema_field, inline_serializer
from rest_framework import serializers

from clusters import permissions, secrets
from clusters.models import ApiToken, AuditEvent, Deployment, LambdaRun, Node, Pod, PodMember, Workload


def sees_secrets(context: Mapping[str, Any], pod: Pod | None) -> bool:
    """Whether the request's user may see env values and logs in `pod` (clusters.permissions), asked
    once per pod for a whole list. No request in the context: no (a secret is never shown by default)."""
    request = context.get("request")
    if request is None:
        return False
    memo: dict[int | None, bool] = context.get("_sees_secrets", {})
    if isinstance(context, dict):  # the root serializer's: shared by a list's rows
        context["_sees_secrets"] = memo
    key = pod.pk if pod is not None else None
    if key not in memo:
        memo[key] = permissions.can_see_secrets(request.user, pod)
    return memo[key]


class PodSerializer(serializers.ModelSerializer[Pod]):
    class Meta:
        model = Pod
        fields = ["name", "desc", "favor", "created_at"]


class PodCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64)
    desc = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    favor = serializers.ChoiceField(choices=Pod.Favor.choices, default=Pod.Favor.CPU)


class NodeSerializer(serializers.ModelSerializer[Node]):
    pod: serializers.SlugRelatedField[Pod] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    available = serializers.SerializerMethodField()
    cpu = serializers.FloatField(source="cpu_capacity", read_only=True)

    class Meta:
        model = Node
        fields = [
            "name",
            "pod",
            "endpoint",
            "labels",
            "bypass",
            "available",
            "share_base",
            "cpu",
            "cpu_map",
            "memory",
            "used_cpu",
            "used_cpu_map",
            "used_memory",
            "info",
            "last_error",
            "observed_at",
            "agent",
            "agent_version",
            "agent_heard_at",
            "agent_conflict",
            "agent_log_dropped",
            "created_at",
        ]

    def get_available(self, node: Node) -> bool:
        return node.is_available(self.context.get("alive", set()))


# One line of a log stream, for the schema only ("data" cannot be a field of a declared serializer).
LOG_LINE = inline_serializer(
    "LogLine",
    {
        "stream": serializers.ChoiceField(choices=["stdout", "stderr"]),
        "time": serializers.CharField(help_text="Docker's time of the line (RFC 3339, nanoseconds)"),
        "data": serializers.CharField(help_text="the line, without its newline"),
    },
)
MERGED_LOG_LINE = inline_serializer(
    "MergedLogLine",
    {
        "workload": serializers.IntegerField(help_text="the workload's id"),
        "name": serializers.CharField(help_text="the workload's name (its container's)"),
        "stream": serializers.ChoiceField(choices=["stdout", "stderr"], required=False),
        "time": serializers.CharField(required=False, help_text="Docker's time of the line"),
        "data": serializers.CharField(required=False, help_text="the line, without its newline"),
        "error": serializers.CharField(required=False, help_text="why no more of its lines come"),
    },
)
MERGED_LOG_PARAMETERS = [
    OpenApiParameter("app", str, description="the app whose workloads' logs to merge (or deployment)"),
    OpenApiParameter("entrypoint", str, description="only this entrypoint's workloads"),
    OpenApiParameter("deployment", int, description="only this deployment's workloads"),
    OpenApiParameter("node", str, description="only the workloads on this node"),
    OpenApiParameter("pod", str, description="only the workloads in this pod"),
    OpenApiParameter("tail", str, description="the last N lines of each workload (0 to 1000, default 100)"),
]
LOG_PARAMETERS = [
    OpenApiParameter("tail", str, description="the last N lines (0 to 10000, default 100), or all"),
    OpenApiParameter("since", str, description="from: unix seconds, an ISO 8601 time or a while ago (10m)"),
    OpenApiParameter("follow", bool, description="keep the stream open for new lines"),
]


class PodPolicySerializer(serializers.Serializer[Any]):
    privileged = serializers.BooleanField(help_text="privileged containers")
    host_network = serializers.BooleanField(help_text="the host's network, or container:…")
    docker_socket = serializers.BooleanField(help_text="a bind of the Docker socket")
    host_paths = serializers.ListField(
        child=serializers.CharField(), help_text="host path prefixes binds may use"
    )
    sysctls = serializers.ListField(child=serializers.CharField(), help_text="sysctls beyond the safe list")
    cap_add = serializers.ListField(child=serializers.CharField(), help_text="capabilities that may be added")


class AgentSecretSerializer(serializers.Serializer[Any]):
    agent_username = serializers.CharField(help_text="the agent's gRPC username (node.<name>)")
    agent_secret = serializers.CharField(help_text="its password: shown this once, only a digest is kept")


class NodeCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64)
    pod = serializers.CharField(max_length=64)
    endpoint = serializers.CharField(max_length=255, help_text="tcp://host:2376 (Docker over mutual TLS)")
    ca = serializers.CharField(help_text="CA certificate (PEM)")
    cert = serializers.CharField(help_text="client certificate (PEM)")
    key = serializers.CharField(help_text="client key (PEM)")
    labels = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=dict
    )
    cpu = serializers.IntegerField(
        required=False, min_value=1, help_text="cores; default: NCPU from docker info"
    )
    memory = serializers.CharField(required=False, help_text="bytes or 512M/4G; default: MemTotal − 1 GiB")
    share = serializers.IntegerField(required=False, min_value=1, max_value=10000)
    over_commit = serializers.BooleanField(
        required=False, default=False, help_text="allow more cores than the engine reports (NCPU)"
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "examples": ["0:100,1:100"]},
            {"type": "object", "additionalProperties": {"type": "integer"}},
        ]
    }
)
class NodeCpuField(serializers.Field[Any, Any, Any, Any]):
    """A number of cores, or a cpu map (pieces per core id) as "0:100,1:200" or an object: passed
    as given; clusters.services.node_set (scheduling.set_capacity) reads it."""

    default_error_messages = {"invalid": "cpu: a number of cores, or a cpu map like 0:100,1:100"}

    def to_internal_value(self, data: Any) -> int | str | dict[str, Any]:
        if isinstance(data, bool) or not isinstance(data, int | str | Mapping):
            self.fail("invalid")
        return dict(data) if isinstance(data, Mapping) else data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "examples": ["10G", "-2G"]}]})
class SizeField(serializers.Field[Any, Any, Any, Any]):
    """Bytes, or a size like 512M; the service parses it (schema.parse_size)."""

    default_error_messages = {"invalid": "{name}: bytes, or a size like 512M or 4G"}

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid", name=self.field_name)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class NodeUpdateSerializer(serializers.Serializer[Any]):
    """PATCH a node (Eru's SetNode): labels replace the whole map; cpu and memory set the capacity,
    or are added to it with delta. A field it does not know is a 400 naming it."""

    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    bypass = serializers.BooleanField(required=False)
    cpu = NodeCpuField(required=False, help_text='cores, or a cpu map "0:100,1:100" (pieces per core)')
    memory = SizeField(required=False, help_text="bytes or 512M/10G (with delta, may be negative)")
    delta = serializers.BooleanField(
        required=False, default=False, help_text="add cpu (per core) and memory to the capacity"
    )
    over_commit = serializers.BooleanField(
        required=False, default=False, help_text="allow cores the engine does not report (NCPU)"
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data if name not in self.fields)
            if unknown:
                known = ", ".join(self.fields)
                raise serializers.ValidationError(
                    {name: [f"{name}: not a field of a node change (known: {known})"] for name in unknown}
                )
        return super().to_internal_value(data)


class NodeUsageSerializer(serializers.Serializer[Any]):
    cpu = serializers.FloatField(help_text="sum of the cpu requests")
    cpu_map = serializers.DictField(child=serializers.IntegerField(), help_text="pieces held per core")
    memory = serializers.IntegerField(help_text="sum of the memory requests, bytes")


class NodeResourceSerializer(serializers.Serializer[Any]):
    """Eru's GetNodeResource: the usage recorded on the node beside the usage counted from its
    workloads, and their differences."""

    node = serializers.CharField()
    ok = serializers.BooleanField(help_text="recorded and counted agree")
    diffs = serializers.ListField(child=serializers.CharField())
    recorded = NodeUsageSerializer()
    counted = NodeUsageSerializer()
    fixed = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="POST: the differences it repaired"
    )


class WorkloadSerializer(serializers.ModelSerializer[Workload]):
    """A workload: its lifecycle `state` (what the portal drives) and its observed `status` (what
    Docker showed at `last_observed`, the last time its node was looked at)."""

    pod: serializers.SlugRelatedField[Pod] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    node: serializers.SlugRelatedField[Node] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    last_observed = serializers.DateTimeField(source="node.observed_at", read_only=True, allow_null=True)
    status_label = serializers.CharField(read_only=True, help_text='as people read it: "exited (5)"')

    class Meta:
        model = Workload
        fields = [
            "id",
            "name",
            "pod",
            "node",
            "deployment",
            "replaces",
            "app",
            "entrypoint",
            "image",
            "command",
            "env",
            "labels",
            "network",
            "cpu_request",
            "cpu_limit",
            "memory_request",
            "memory_limit",
            "cpu_bind",
            "cpu_map",
            "healthcheck",
            "state",
            "status",
            "status_label",
            "exit_code",
            "health",
            "restart_count",
            "status_since",
            "last_observed",
            "container_id",
            "networks",
            "ports",
            "error",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, instance: Workload) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not sees_secrets(self.context, instance.pod):
            data["env"] = secrets.mask_env(data.get("env"))  # a viewer: the keys, no value
        return data


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    pod = serializers.SerializerMethodField(help_text="its pod's name (kept when the pod was removed)")
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    percent = serializers.IntegerField(read_only=True)
    workloads: serializers.PrimaryKeyRelatedField[Workload] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "pod",
            "kind",
            "app",
            "entrypoint",
            "image",
            "strategy",
            "count",
            "nodes_limit",
            "node_names",
            "node_labels",
            "spec",
            "plan",
            "total",
            "succeeded",
            "failed",
            "percent",
            "state",
            "error",
            "batch",
            "timeout",
            "created_by",
            "created_at",
            "finished_at",
            "workloads",
        ]

    def get_pod(self, deployment: Deployment) -> str:
        return deployment.pod.name if deployment.pod is not None else deployment.pod_name

    def to_representation(self, instance: Deployment) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not sees_secrets(self.context, instance.pod):
            data["spec"] = secrets.mask_spec(data.get("spec"))  # env masked, raw spec text left out
        return data


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    """An audit row; env values in it are digests (clusters.secrets), never values."""

    pod = serializers.CharField(source="pod_name", read_only=True, help_text="kept when the pod was removed")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "time",
            "actor_name",
            "via",
            "request_id",
            "action",
            "target_type",
            "target_id",
            "target_name",
            "pod",
            "before",
            "after",
        ]

    def to_representation(self, instance: AuditEvent) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data["before"], data["after"] = (
            secrets.scrub_audit(data["before"]),
            secrets.scrub_audit(data["after"]),
        )
        return data


class TokenRequestSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"})
    name = serializers.CharField(required=False, default="cli")


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]


class MemberRefSerializer(serializers.Serializer[Any]):
    user = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.all())


class MemberSerializer(MemberRefSerializer):
    role = serializers.ChoiceField(choices=PodMember.Role.choices)


MEMBER_USER_PARAMETER = OpenApiParameter("user", str, description="username of the member to remove")
FORCE_PARAMETER = OpenApiParameter(
    "force", bool, description="drop the row and its allocation now, even if the node answers"
)


class LambdaRunSerializer(serializers.ModelSerializer[LambdaRun]):
    pod = serializers.SerializerMethodField(help_text="its pod's name (kept when the pod was removed)")
    app = serializers.CharField(source="deployment.app", read_only=True)
    image = serializers.CharField(source="deployment.image", read_only=True)
    command = serializers.ListField(source="deployment.spec.command", read_only=True)
    count = serializers.IntegerField(source="deployment.total", read_only=True)
    created_by = serializers.CharField(source="deployment.created_by.username", read_only=True, default=None)

    class Meta:
        model = LambdaRun
        fields = [
            "id", "deployment", "pod", "app", "image", "command", "count", "timeout", "state", "exit_code",
            "exit_codes", "ends", "output", "cancel_requested", "created_by", "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_pod(self, run: LambdaRun) -> str:
        d = run.deployment
        return d.pod.name if d.pod is not None else d.pod_name

    def to_representation(self, instance: LambdaRun) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not sees_secrets(self.context, instance.deployment.pod):
            data["output"] = None  # output is a log: not a viewer's (permissions.can_read_logs)
        return data


LAMBDA_EVENT = inline_serializer(
    "LambdaEvent",
    {
        "event": serializers.ChoiceField(choices=["starting", "started", "line", "exit", "end"]),
        "name": serializers.CharField(
            required=False, help_text="the workload (line, starting, started, exit)"
        ),
        "seq": serializers.IntegerField(required=False, help_text="its number in the run, from 0"),
        "stream": serializers.ChoiceField(choices=["stdout", "stderr"], required=False),
        "data": serializers.CharField(required=False, help_text="a line of output"),
        "exit_code": serializers.IntegerField(required=False, allow_null=True),
        "ended": serializers.CharField(required=False, help_text="exit: done, timeout, cancelled, failed"),
        "state": serializers.CharField(required=False, help_text="end: how the run ended"),
    },
)

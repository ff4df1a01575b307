"""The API lists' query filters (django-filter): one FilterSet per list, so the OpenAPI document names
every filter with its type (drf-spectacular's django-filter extension reads them). An empty value is
no filter; a value of the wrong type or out of bounds is a 400 naming the parameter. Pods are named
as rows keep them (`pod_name` on deployments and audit events), so a removed pod's history is found."""

from __future__ import annotations

from typing import Any

import django_filters as df
from django import forms
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field

from clusters import permissions
from clusters.models import AuditEvent, Deployment, Node, Pod, Workload
from clusters.pagination import MAX_BIGINT


class IdField(forms.IntegerField):
    """Digits only: no sign, blank, decimal point or exponent (Django's IntegerField takes " 1")."""

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, str) and value and not (value.isascii() and value.isdigit()):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_BIGINT})
class IdFilter(df.Filter):
    """A row id: an integer from 1 to the largest the databases hold (not a decimal); a 400 that
    names the parameter and the bounds otherwise."""

    field_class = IdField

    def __init__(self, param: str, **kwargs: Any) -> None:
        message = f"{param}: must be an integer from 1 to {MAX_BIGINT}"
        kwargs.update(min_value=1, max_value=MAX_BIGINT)
        kwargs["error_messages"] = dict.fromkeys(("invalid", "min_value", "max_value"), message)
        super().__init__(**kwargs)


class PodFilter(df.FilterSet):
    favor = df.ChoiceFilter(choices=Pod.Favor.choices, help_text="the pod's favor (cpu: bound, memory)")

    class Meta:
        model = Pod
        fields = ["favor"]


class NodeFilter(df.FilterSet):
    pod = df.CharFilter(method="by_pod", help_text="the pod's nodes; a pod one may not see is a 404")
    bypass = df.BooleanFilter(help_text="operator 'down' (true) or up (false)")

    class Meta:
        model = Node
        fields = ["pod", "bypass"]

    def by_pod(self, queryset: QuerySet[Node], name: str, value: str) -> QuerySet[Node]:
        user = getattr(self.request, "user", None)
        return queryset.filter(pod=permissions.get_pod_for_user(user, value))


class WorkloadFilter(df.FilterSet):
    app = df.CharFilter(help_text="the app's name")
    entrypoint = df.CharFilter(help_text="the entrypoint's name")
    state = df.ChoiceFilter(choices=Workload.State.choices, help_text="the lifecycle state")
    status = df.ChoiceFilter(choices=Workload.Status.choices, help_text="what Docker last showed")
    health = df.ChoiceFilter(choices=Workload.Health.choices, help_text="the health check's verdict")
    deployment = IdFilter("deployment", field_name="deployment_id", help_text="the deployment's id")
    pod = df.CharFilter(field_name="pod__name", help_text="the pod's name")
    node = df.CharFilter(field_name="node__name", help_text="the node's name")

    class Meta:
        model = Workload
        fields = ["app", "entrypoint", "state", "status", "health", "deployment", "pod", "node"]


class DeploymentFilter(df.FilterSet):
    pod = df.CharFilter(field_name="pod_name", help_text="the pod's name (kept after it is removed)")
    app = df.CharFilter(help_text="the app's name")
    entrypoint = df.CharFilter(help_text="the entrypoint's name")
    state = df.ChoiceFilter(choices=Deployment.State.choices, help_text="running, done, partial…")
    kind = df.ChoiceFilter(choices=Deployment.Kind.choices, help_text="deploy or replace")

    class Meta:
        model = Deployment
        fields = ["pod", "app", "entrypoint", "state", "kind"]


class AuditEventFilter(df.FilterSet):
    pod = df.CharFilter(field_name="pod_name", help_text="the pod's name (kept after it is removed)")
    action = df.ChoiceFilter(choices=AuditEvent.Action.choices, help_text="`<entity>.<verb>`")
    actor = df.CharFilter(field_name="actor_name", help_text="who did it (user name)")
    via = df.ChoiceFilter(choices=AuditEvent.Via.choices, help_text="ui, api, cli, admin, grpc, system")
    target_type = df.CharFilter(help_text="workload, node, pod, deployment…")
    target_id = df.CharFilter(help_text="the target's id (with target_type)")

    class Meta:
        model = AuditEvent
        fields = ["pod", "action", "actor", "via", "target_type", "target_id"]

"""REST API: a pod's quotas per team (GET /api/pods/{name}/quotas/ for whoever sees the pod; PUT and
DELETE for administrators), as a mixin of clusters.api's PodViewSet. The rules are the services'."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clusters import permissions, services
from clusters.api_common import actor
from clusters.models import Pod, Team

QUOTA_FIELDS = ("team", "cpu", "memory", "workloads")
TEAM_PARAMETER = OpenApiParameter("team", str, description="name of the team whose quota to remove")


class QuotaUseSerializer(serializers.Serializer[Any]):
    cpu = serializers.FloatField(help_text="cpus its workloads request, together")
    memory = serializers.IntegerField(help_text="bytes its workloads request, together")
    workloads = serializers.IntegerField(help_text="its workloads that hold an allocation")


class QuotaSerializer(serializers.Serializer[Any]):
    """A team's quota in the pod (null: no limit on that one) and what its workloads hold now."""

    team = serializers.CharField(source="team.name")
    cpu = serializers.FloatField(source="limits.cpu", allow_null=True, help_text="cpus; null: no limit")
    memory = serializers.IntegerField(
        source="limits.memory", allow_null=True, help_text="bytes; null: no limit"
    )
    workloads = serializers.IntegerField(
        source="limits.workloads", allow_null=True, help_text="null: no limit"
    )
    use = QuotaUseSerializer()


class QuotaRequestSerializer(serializers.Serializer[Any]):
    """PUT: the team's quota, all three (absent or null: no limit on that one)."""

    team = serializers.CharField(help_text="the team's name")
    cpu = serializers.FloatField(required=False, allow_null=True, min_value=0, help_text="cpus")
    memory = serializers.CharField(
        required=False, allow_null=True, help_text="bytes, or a size like 8G (binary multiples)"
    )
    workloads = serializers.IntegerField(required=False, allow_null=True, min_value=0)


def _team(name: object) -> Team:
    team = Team.objects.filter(name=name).first() if isinstance(name, str) and name else None
    if team is None:
        raise exceptions.ValidationError({"team": [f"team: no such team {str(name or '')[:64]!r}"]})
    return team


def _rows(pod: Pod, team: Team | None = None) -> list[services.QuotaRow]:
    return services.quota_rows(pod, None if team is None else [team])


class PodQuotaMixin(viewsets.GenericViewSet[Pod]):
    """The quotas action of PodViewSet."""

    @extend_schema(methods=["GET"], request=None, responses=QuotaSerializer(many=True))
    @extend_schema(methods=["PUT"], request=QuotaRequestSerializer, responses=QuotaSerializer)
    @extend_schema(methods=["DELETE"], request=None, responses={204: None}, parameters=[TEAM_PARAMETER])
    @action(detail=True, methods=["get", "put", "delete"])
    def quotas(self, request: Request, name: str) -> Response:
        """Quotas per team in the pod: what each team's workloads may hold here, all together — cpus
        (the sum of requests), memory (bytes of requests), workloads — with what they hold now.
        Members read their own teams' (as the pod page shows them), administrators every team's and
        set a team's (PUT {team, cpu, memory,
        workloads}: all three, null or absent is no limit; audited) or remove it (DELETE ?team=).
        A quota may be below the use: it then refuses new work and growth, and touches nothing."""
        pod = self.get_object()
        if request.method == "GET":
            return Response(QuotaSerializer(services.visible_quota_rows(request.user, pod), many=True).data)
        if not permissions.can_admin(request.user):
            raise exceptions.PermissionDenied("Only administrators may set or remove quotas.")
        if request.method == "DELETE":
            team = _team(request.query_params.get("team", ""))
            services.quota_remove(actor=actor(request), pod=pod, team=team)
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = request.data
        if not isinstance(body, Mapping):
            raise exceptions.ValidationError({"non_field_errors": ["expected an object of quota fields"]})
        unknown = sorted(set(body) - set(QUOTA_FIELDS))
        if unknown:
            raise exceptions.ValidationError(
                {f: [f"{f}: unknown field (a quota has {', '.join(QUOTA_FIELDS)})"] for f in unknown}
            )
        team = _team(body.get("team"))
        limits = {f: body.get(f) for f in ("cpu", "memory", "workloads")}
        services.quota_set(actor=actor(request), pod=pod, team=team, **limits)
        return Response(QuotaSerializer(_rows(pod, team)[0]).data)

"""REST API: teams (/api/teams/, its members) and the roles teams hold in a pod
(/api/pods/{name}/teams/, a mixin of clusters.api's PodViewSet). Who may do what is
clusters.permissions': staff make and remove teams and change who is in them; anyone sees the teams
they are in; a pod's owners and staff set and take teams' roles in it (the owner rules hold).
Writes call clusters.services, the same path as the portal and the admin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clusters import permissions, services
from clusters.api_common import actor
from clusters.models import Pod, PodMember, PodTeamRole, Team


class TeamRoleSerializer(serializers.Serializer[Any]):
    """A team's role in a pod, as a team lists it."""

    pod = serializers.CharField(source="pod.name", read_only=True)
    role = serializers.ChoiceField(choices=PodMember.Role.choices, read_only=True)


class TeamSerializer(serializers.ModelSerializer[Team]):
    members: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", many=True, read_only=True
    )
    roles = TeamRoleSerializer(source="pod_roles", many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["name", "desc", "members", "roles", "created_at"]
        read_only_fields = ["members", "roles", "created_at"]
        extra_kwargs: dict[str, dict[str, Any]] = {
            "name": {"validators": []}
        }  # services.team_add says when it is taken


class TeamUserSerializer(serializers.Serializer[Any]):
    user = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.all())


class TeamRefSerializer(serializers.Serializer[Any]):
    team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all())


class PodTeamRoleSerializer(TeamRefSerializer):
    role = serializers.ChoiceField(choices=PodMember.Role.choices)


USER_PARAMETER = OpenApiParameter("user", str, description="username of the member to take out")
TEAM_PARAMETER = OpenApiParameter("team", str, description="name of the team whose role to take")


def _valid(serializer_class: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class TeamViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Team],
):
    """Teams: staff see all, others those they are in. Staff make (POST {name, desc}) and remove
    them (DELETE: its memberships and pod roles go too; refused when a pod would lose its last
    owner)."""

    serializer_class = TeamSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Team]:
        teams = permissions.visible_teams(self.request.user).order_by("name")
        return teams.prefetch_related("members", "pod_roles__pod")

    @extend_schema(request=TeamSerializer, responses={201: TeamSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(TeamSerializer, request.data)
        team = services.team_add(actor=actor(request), name=data["name"], desc=data.get("desc", ""))
        return Response(TeamSerializer(team).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Team) -> None:
        services.team_remove(actor=actor(self.request), team=instance)

    @extend_schema(methods=["GET"], request=None, responses=TeamUserSerializer(many=True))
    @extend_schema(methods=["PUT"], request=TeamUserSerializer, responses=TeamUserSerializer)
    @extend_schema(methods=["DELETE"], request=None, responses={204: None}, parameters=[USER_PARAMETER])
    @action(detail=True, methods=["get", "put", "delete"], pagination_class=None)
    def members(self, request: Request, name: str) -> Response:
        """Who is in the team (anyone who sees it); staff put a user in (PUT {user}) or take one out
        (DELETE ?user=name). Others get 403 before any user lookup."""
        team = self.get_object()
        if request.method == "GET":
            rows = team.memberships.select_related("user").order_by("user__username")
            return Response(TeamUserSerializer(rows, many=True).data)
        if not permissions.can_manage_teams(request.user):
            raise exceptions.PermissionDenied("Only administrators may change who is in a team.")
        if request.method == "PUT":
            user = _valid(TeamUserSerializer, request.data)["user"]
            services.team_member_add(actor=actor(request), team=team, user=user)
            return Response({"user": user.username})
        user = _valid(TeamUserSerializer, {"user": request.query_params.get("user", "")})["user"]
        services.team_member_remove(actor=actor(request), team=team, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PodTeamsMixin(viewsets.GenericViewSet[Pod]):
    """/api/pods/{name}/teams/ on clusters.api's PodViewSet."""

    @extend_schema(methods=["GET"], request=None, responses=PodTeamRoleSerializer(many=True))
    @extend_schema(methods=["PUT"], request=PodTeamRoleSerializer, responses=PodTeamRoleSerializer)
    @extend_schema(methods=["DELETE"], request=None, responses={204: None}, parameters=[TEAM_PARAMETER])
    @action(detail=True, methods=["get", "put", "delete"], pagination_class=None)
    def teams(self, request: Request, name: str) -> Response:
        """Staff and the pod's owners: list the teams' roles in the pod, set one (PUT {team, role}),
        or take one away (DELETE ?team=name). Taking a team's owner role is staff's; the pod's last
        owner is never taken. Others who see the pod get 403 before any team lookup."""
        pod = self.get_object()
        if not permissions.can_manage_members(request.user, pod):
            raise exceptions.PermissionDenied(
                f"Only staff or an owner of pod {pod.name} may manage its teams' roles."
            )
        if request.method == "GET":
            rows = PodTeamRole.objects.filter(pod=pod).select_related("team").order_by("team__name")
            return Response(PodTeamRoleSerializer(rows, many=True).data)
        if request.method == "PUT":
            data = _valid(PodTeamRoleSerializer, request.data)
            grant = services.team_role_set(actor=actor(request), pod=pod, **data)
            return Response(PodTeamRoleSerializer(grant).data)
        team = _valid(TeamRefSerializer, {"team": request.query_params.get("team", "")})["team"]
        services.team_role_remove(actor=actor(request), pod=pod, team=team)
        return Response(status=status.HTTP_204_NO_CONTENT)

"""REST API: nodes (Eru's AddNode, SetNode, GetNode(s), RemoveNode, GetNodeResource, up/down and the
agent's credential). Registered by clusters.api's router; writes call clusters.services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clusters import etcd, permissions, selectors, services
from clusters import serializers as s
from clusters.api_common import actor as _actor
from clusters.filters import NodeFilter
from clusters.models import Node


def _valid(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _agent_credential(node: Node, secret: str) -> dict[str, str]:
    return {"agent_username": node.grpc_username, "agent_secret": secret}


class NodeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Node]):
    serializer_class = s.NodeSerializer
    filterset_class = NodeFilter
    lookup_field = "name"
    lookup_value_regex = "[^/]+"  # names may contain dots (node1.example.com)

    def get_queryset(self) -> QuerySet[Node]:
        return permissions.visible_nodes(self.request.user).select_related("pod")

    def get_serializer_context(self) -> dict[str, Any]:
        if getattr(self, "swagger_fake_view", False):  # the schema is being made: no etcd to ask
            return dict(super().get_serializer_context())
        return {**super().get_serializer_context(), "alive": etcd.alive_nodes()}

    @extend_schema(request=s.NodeCreateSerializer, responses={201: s.NodeSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(s.NodeCreateSerializer, request)
        pod = permissions.get_pod_for_user(request.user, data.pop("pod"))
        node = services.node_add(actor=_actor(request), pod=pod, **data)
        secret = services.node_secret_rotate(actor=_actor(request), node=node)
        node.refresh_from_db()
        return Response({**self.get_serializer(node).data, **_agent_credential(node, secret)}, status=201)

    @extend_schema(request=s.NodeUpdateSerializer, responses=s.NodeSerializer)
    def partial_update(self, request: Request, name: str) -> Response:
        """Eru's SetNode: labels (the whole map), bypass, and the capacity — cpu (cores or a cpu map)
        and memory, replaced, or added with delta (a cpu map core by core; values may be negative).
        Refused (400, nothing changed) below what the node's workloads hold, and beyond the cores
        the engine reported unless over_commit. A new capacity is remapped."""
        data = _valid(s.NodeUpdateSerializer, request)
        node = services.node_set(actor=_actor(request), node=self.get_object(), **data)
        return Response(self.get_serializer(node).data)

    def destroy(self, request: Request, name: str) -> Response:
        services.node_remove(actor=_actor(request), node=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.NodeSerializer)
    @action(detail=True, methods=["post"])
    def up(self, request: Request, name: str) -> Response:
        node = services.node_set(actor=_actor(request), node=self.get_object(), bypass=False)
        return Response(self.get_serializer(node).data)

    @extend_schema(request=None, responses=s.NodeSerializer)
    @action(detail=True, methods=["post"])
    def down(self, request: Request, name: str) -> Response:
        node = services.node_set(actor=_actor(request), node=self.get_object(), bypass=True)
        return Response(self.get_serializer(node).data)

    @extend_schema(request=None, responses=s.NodeResourceSerializer)
    @action(detail=True, methods=["get", "post"])
    def resource(self, request: Request, name: str) -> Response:
        """Eru's GetNodeResource: the usage recorded on the node beside the one counted from its
        workloads, with the differences (GET, anyone who sees the node). POST (administrators, Eru's
        fix): store the counted usage, audited; the answer is the check after it, with `fixed`."""
        node = self.get_object()
        if request.method == "POST":
            check = services.node_resource_fix(actor=_actor(request), node=node)
        else:
            check = selectors.node_resource_check(node)
        return Response(s.NodeResourceSerializer(check).data)

    @extend_schema(request=None, responses={201: s.AgentSecretSerializer, 204: None})
    @action(detail=True, methods=["post", "delete"])
    def secret(self, request: Request, name: str) -> Response:
        """POST: a new agent secret for the node (the old one stops working), shown this once.
        DELETE: revoke it."""
        node = self.get_object()
        if request.method == "DELETE":
            services.node_secret_revoke(actor=_actor(request), node=node)
            return Response(status=status.HTTP_204_NO_CONTENT)
        secret = services.node_secret_rotate(actor=_actor(request), node=node)
        return Response(_agent_credential(node, secret), status=201)

    @extend_schema(request=None, responses=s.NodeSerializer)
    @action(detail=True, methods=["post"], url_path="agent-clear")
    def agent_clear(self, request: Request, name: str) -> Response:
        """Hand a node whose agent is gone for good back to the central sweep."""
        node = services.node_agent_clear(actor=_actor(request), node=self.get_object())
        return Response(self.get_serializer(node).data)

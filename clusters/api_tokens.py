"""REST API: one's own API tokens (list, create, revoke) and the password exchange that `erucli login`
uses, throttled per client in a cache every web process shares."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
    throttle_scope,
)
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from clusters import attempts, authentication, services
from clusters.api_common import actor, via
from clusters.authentication import TokenAuthentication
from clusters.models import ApiToken
from clusters.services.tokens import EXCHANGE_EXPIRES_IN, MAX_EXPIRES_IN, MIN_EXPIRES_IN

log = logging.getLogger(__name__)
T = TypeVar("T")
EXPIRES_IN_HELP = (
    f"seconds the token lives, {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} ({MAX_EXPIRES_IN // 86400} days); "
    "null: it never expires"
)


def _scope() -> serializers.BooleanField:
    return serializers.BooleanField(required=False, default=False, help_text="GET only: writes get 403")


class TokenSerializer(serializers.ModelSerializer[ApiToken]):
    expired = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "expired", "read_only"]
        read_only_fields = fields

    def get_expired(self, token: ApiToken) -> bool:
        return authentication.expired(token)


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(help_text="the secret: shown this once, never again")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


class TokenCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64, required=False, default="token")
    expires_in = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text=f"{EXPIRES_IN_HELP} (the default)"
    )
    read_only = _scope()  # type: ignore[assignment]  # a field, not Field.read_only (the metaclass takes it)


class TokenExchangeSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"})
    name = serializers.CharField(max_length=64, required=False, default="cli")
    expires_in = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=EXCHANGE_EXPIRES_IN,
        help_text=f"{EXPIRES_IN_HELP}; default {EXCHANGE_EXPIRES_IN // 86400} days",
    )
    read_only = _scope()  # type: ignore[assignment]  # a field, not Field.read_only (the metaclass takes it)


def _valid(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _created(token: ApiToken, plaintext: str) -> Response:
    body = {**TokenSerializer(token).data, "token": plaintext}
    return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiTokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet[ApiToken]):
    """The caller's own API tokens (never their digests, and only once their secret): POST makes one,
    DELETE revokes one. Staff, too, see only their own here (the admin lists them all)."""

    serializer_class = TokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        user = self.request.user  # authenticated (IsAuthenticated), except for schema generation
        if getattr(self, "swagger_fake_view", False) or not isinstance(user, User):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        if not isinstance(request.user, User):
            raise exceptions.NotAuthenticated()
        data = _valid(TokenCreateSerializer, request)
        token, plaintext = services.token_create(actor=actor(request), user=request.user, **data)
        return _created(token, plaintext)

    def perform_destroy(self, instance: ApiToken) -> None:
        services.token_revoke(actor=actor(self.request), token=instance)


class TokenExchangeThrottle(ScopedRateThrottle):
    """Password guessing on POST /api/auth/token/: at most RATE attempts per client address, counted
    across all web processes (SharedCache). The rate lives here, not in settings; the client is
    REMOTE_ADDR unless NUM_PROXIES says how many proxies to trust (a client-sent X-Forwarded-For must
    not buy fresh attempts)."""

    RATE = "20/min"
    cache = attempts.SHARED

    def get_rate(self) -> str:
        return self.RATE

    def allow_request(self, request: Request, view: Any) -> bool:
        """A counter, not DRF's history list: reading, checking and writing a list back is not atomic,
        so a burst of parallel attempts would all read the same count and pass."""
        self.scope = getattr(view, self.scope_attr, None)
        self.num_requests, self.duration = self.parse_rate(self.get_rate())
        key = self.get_cache_key(request, view)
        if key is None or self.num_requests is None or self.duration is None:
            return True
        return self.cache.count(key, self.duration) <= self.num_requests

    def wait(self) -> float | None:
        return float(self.duration) if self.duration else None

    def get_ident(self, request: Request) -> str:
        if api_settings.NUM_PROXIES is None:
            return str(request.META.get("REMOTE_ADDR", ""))
        return super().get_ident(request)


@extend_schema(request=TokenExchangeSerializer, responses={201: TokenCreatedSerializer})
@api_view(["POST"])
@authentication_classes([TokenAuthentication])  # no session: no CSRF; failures answer 401
@permission_classes([AllowAny])
@throttle_classes([TokenExchangeThrottle])
@throttle_scope("token")
def token_view(request: Request) -> Response:
    """Exchange a username and password for a new API token (shown once); it expires in 30 days
    unless `expires_in` says otherwise."""
    data = _valid(TokenExchangeSerializer, request)
    user = authenticate(request, username=data.pop("username"), password=data.pop("password"))
    if user is None:
        raise exceptions.AuthenticationFailed("Wrong username or password.")
    who = services.Actor(user=user, via=via(request), request_id=getattr(request, "request_id", ""))
    token, plaintext = services.token_create(actor=who, user=user, **data)
    return _created(token, plaintext)

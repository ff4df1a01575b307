"""API tokens: `Authorization: Token eru_…` (or Bearer). Only a SHA-256 digest is stored. An expired
token is refused (401, naming when it expired); a read-only one may only read (GET, HEAD, OPTIONS):
any other method is a 403, whatever the view's own permission classes say."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from clusters.models import ApiToken

TOKEN_PREFIX = "eru_"
READ_ONLY = "this token is read-only"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expires_at is not None and token.expires_at <= (now or timezone.now())


def when(at: datetime | None) -> str:
    return "never" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


class TokenAuthentication(authentication.BaseAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected 'Token <token>'.")
        token = (
            ApiToken.objects.select_related("user")
            .filter(digest=digest(header[1]), user__is_active=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if expired(token, now):
            raise exceptions.AuthenticationFailed(f"token expired on {when(token.expires_at)}")
        if token.read_only and request.method not in SAFE_METHODS:
            raise exceptions.PermissionDenied(f"{READ_ONLY}: {request.method} is a write")
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The schema's word for it: an `Authorization: Token eru_…` header."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "Token eru_… (from POST /api/auth/token/, POST /api/auth/tokens/ or `erucli login`); "
                "Bearer works too. A read-only token may only GET."
            ),
        }

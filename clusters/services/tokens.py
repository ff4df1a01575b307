"""Personal API tokens: created with the plaintext shown once (an expiry and a read-only scope if
asked), revoked."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from clusters import authentication, permissions
from clusters.models import ApiToken, AuditEvent
from clusters.services._common import Actor, audit, invalid

DAY = 24 * 3600
MIN_EXPIRES_IN = 60  # seconds
MAX_EXPIRES_IN = 365 * DAY  # a token with an expiry lives a year at most; None: never expires
EXCHANGE_EXPIRES_IN = 30 * DAY  # the password exchange's default (erucli login)


def token_create(
    *, actor: Actor, user: User, name: str, expires_in: int | None = None, read_only: bool = False
) -> tuple[ApiToken, str]:
    """A new API token for `user`, expiring `expires_in` seconds from now (None: never), for reads
    only if `read_only`; the plaintext is returned once and never stored."""
    if actor.user is not None and actor.user != user and not actor.user.is_staff:
        raise PermissionDenied("You may only create tokens for yourself.")
    if expires_in is not None and not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise invalid(
            "expires_in",
            f"expires_in must be from {MIN_EXPIRES_IN} seconds to {MAX_EXPIRES_IN} seconds "
            f"({MAX_EXPIRES_IN // DAY} days), or empty for a token that never expires; got {expires_in}",
        )
    name = (name or "").strip()[:64] or "token"
    expires_at = None if expires_in is None else timezone.now() + timedelta(seconds=expires_in)
    plaintext = authentication.new_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=plaintext[4:12],
            digest=authentication.digest(plaintext),
            expires_at=expires_at,
            read_only=read_only,
        )
        after = {
            "user": user.username,
            "name": name,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "read_only": read_only,
        }
        audit(actor, AuditEvent.Action.TOKEN_CREATE, token, after=after)
    return token, plaintext


def token_revoke(*, actor: Actor, token: ApiToken) -> None:
    """Revoke (delete) an API token: a user their own, staff any. Requests with it get 401 at once."""
    permissions.require_revoke_token(actor.user, token)
    with transaction.atomic():
        token = ApiToken.objects.select_for_update(of=("self",)).select_related("user").get(pk=token.pk)
        before = {"user": token.user.username, "name": token.name, "prefix": token.prefix}
        audit(actor, AuditEvent.Action.TOKEN_REVOKE, token, before=before)
        token.delete()

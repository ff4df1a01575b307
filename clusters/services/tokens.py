"""Personal API tokens: created with the plaintext shown once, revoked."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction

from clusters import authentication, permissions
from clusters.models import ApiToken, AuditEvent
from clusters.services._common import Actor, audit


def token_create(*, actor: Actor, user: User, name: str) -> tuple[ApiToken, str]:
    """A new API token for `user`; the plaintext is returned once and never stored."""
    if actor.user is not None and actor.user != user and not actor.user.is_staff:
        raise PermissionDenied("You may only create tokens for yourself.")
    name = (name or "").strip()[:64] or "token"
    plaintext = authentication.new_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=plaintext[4:12], digest=authentication.digest(plaintext)
        )
        audit(actor, AuditEvent.Action.TOKEN_CREATE, token, after={"user": user.username, "name": name})
    return token, plaintext


def token_revoke(*, actor: Actor, token: ApiToken) -> None:
    """Revoke (delete) an API token: a user their own, staff any. Requests with it get 401 at once."""
    permissions.require_revoke_token(actor.user, token)
    with transaction.atomic():
        token = ApiToken.objects.select_for_update(of=("self",)).select_related("user").get(pk=token.pk)
        before = {"user": token.user.username, "name": token.name, "prefix": token.prefix}
        audit(actor, AuditEvent.Action.TOKEN_REVOKE, token, before=before)
        token.delete()

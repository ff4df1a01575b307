"""User accounts: added, changed (names, email, and the staff, superuser and active flags), given a
password, removed — by superusers only (clusters.permissions), every change audited with its before
and after (never a password or its hash). Two things are kept whatever the change: an active
superuser, and an owner for every pod that has one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from clusters import permissions
from clusters.models import AuditEvent, PodMember, PodTeamRole
from clusters.services._common import Actor, audit, invalid
from clusters.services.pods import lock_pods, owners_kept

USER_FIELDS = ("username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser")
FLAGS = ("is_active", "is_staff", "is_superuser")


def _state(user: User) -> dict[str, Any]:
    return {f: getattr(user, f) for f in USER_FIELDS}


def _owned_by(user: User) -> list[int]:
    """The pods where the user is an owner, themselves or through a team."""
    own = PodMember.objects.filter(user=user, role=PodMember.Role.OWNER).values_list("pod", flat=True)
    teams = PodTeamRole.objects.filter(team__memberships__user=user, role=PodMember.Role.OWNER).values_list(
        "pod", flat=True
    )
    return [*own, *teams]


def _checked(fields: Mapping[str, Any], user: User | None) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(USER_FIELDS))
    if unknown:
        raise invalid(unknown[0], f"{unknown[0]}: unknown field (users: {', '.join(USER_FIELDS)})")
    clean = dict(fields)
    for flag in FLAGS:
        if flag in clean and not isinstance(clean[flag], bool):
            raise invalid(flag, f"{flag}: true or false")
    for name in ("first_name", "last_name"):
        if name in clean:
            clean[name] = str(clean[name] or "").strip()[:150]
    if clean.get("email"):
        try:
            validate_email(clean["email"])
        except ValidationError:
            raise invalid("email", f"email: {str(clean['email'])[:60]!r} is not an email address") from None
    if "username" in clean:
        name = str(clean["username"] or "").strip()
        try:
            UnicodeUsernameValidator()(name)
        except ValidationError:
            raise invalid("username", "username: letters, digits and @/./+/-/_ only") from None
        if not name or len(name) > 150:
            raise invalid("username", "username: 1 to 150 characters")
        taken = User.objects.filter(username=name)
        if (taken.exclude(pk=user.pk) if user is not None else taken).exists():
            raise invalid("username", f"user {name} already exists")
        clean["username"] = name
    return clean


def _superuser_kept(field: str) -> None:
    if not User.objects.filter(is_superuser=True, is_active=True).exists():
        raise invalid(field, "this would leave no active superuser: make another user superuser first")


def user_add(*, actor: Actor, username: str, password: str | None = None, **fields: Any) -> User:
    """A new user (superusers): `fields` as USER_FIELDS; no password (None) makes an unusable one."""
    permissions.require_manage_users(actor.user)
    clean = _checked({**fields, "username": username}, None)
    with transaction.atomic():
        user = User(**clean)
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save()
        audit(actor, AuditEvent.Action.USER_ADD, user, after=_state(user))
    return user


def user_set(*, actor: Actor, user: User, fields: Mapping[str, Any]) -> User:
    """Change the given fields of a user (superusers); only what differs is changed and audited.
    Refused, with nothing changed, when it leaves no active superuser, or (deactivating) a pod
    without an owner."""
    permissions.require_manage_users(actor.user)
    clean = _checked(fields, user)
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        changed = {f: v for f, v in clean.items() if getattr(user, f) != v}
        if not changed:
            return user
        had_owner = lock_pods(_owned_by(user)) if changed.get("is_active") is False else set()
        was_superuser = user.is_superuser and user.is_active
        before = {f: getattr(user, f) for f in changed}
        for name, value in changed.items():
            setattr(user, name, value)
        user.save(update_fields=list(changed))
        if was_superuser and not (user.is_superuser and user.is_active):
            _superuser_kept("is_superuser" if "is_superuser" in changed else "is_active")
        owners_kept(had_owner, "is_active")
        audit(actor, AuditEvent.Action.USER_SET, user, before=before, after=changed)
    return user


def user_password_set(*, actor: Actor, user: User, password: str | None) -> User:
    """Give a user a new password (superusers; None: an unusable one, no password log-in). Audited as
    a user change that names the password, never its value."""
    permissions.require_manage_users(actor.user)
    with transaction.atomic():
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save(update_fields=["password"])
        after = {"password": "set" if password is not None else "unusable"}
        audit(actor, AuditEvent.Action.USER_SET, user, before=None, after=after)
    return user


def user_remove(*, actor: Actor, user: User) -> None:
    """Delete a user, with their memberships and tokens (superusers); refused when they are the last
    active superuser or a pod's last owner. Their audit rows stay, with their name."""
    permissions.require_manage_users(actor.user)
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        had_owner = lock_pods(_owned_by(user))
        before = {
            **_state(user),
            "roles": dict(user.pod_roles.values_list("pod__name", "role")),
            "teams": sorted(user.team_memberships.values_list("team__name", flat=True)),
            "tokens": user.api_tokens.count(),
        }
        was_superuser = user.is_superuser and user.is_active
        audit(actor, AuditEvent.Action.USER_REMOVE, user, before=before)
        user.delete()
        if was_superuser:
            _superuser_kept("user")
        owners_kept(had_owner, "user")

"""Who calls the gRPC door, Eru's way: one metadata entry whose key is the username and whose value is
the password. Principals are users (their password, or one of their API tokens) and nodes (key
`node.<name>`, value the node's agent secret; it serves that node only). gRPC lowers metadata keys and
refuses any outside [a-z0-9._-], so usernames match case-insensitively; a user whose name cannot be a
key uses the key `token` with one of their API tokens. A verified credential is cached for CACHE_TTL
seconds, so a call costs no password hash — and a revoked or expired one stops working within that time.
A read-only API token makes a read-only principal: the door lets it make only its reads."""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils import timezone

from clusters import attempts, authentication
from clusters.models import ApiToken, Node

CACHE_TTL = 10.0
_CACHE_MAX = 10_000
NODE_PREFIX = "node."
TOKEN_KEY = "token"
_NOT_CREDENTIALS = {"user-agent", "content-type", "te", "authorization"}
_MAX_ENTRIES = 8  # metadata entries tried per call: a client cannot make the door hash a hundred


@dataclass(frozen=True)
class Principal:
    name: str  # node.<name>, or the username
    user: User | None = None
    node_id: int | None = None
    read_only: bool = False  # by a read-only API token: the door refuses its writes

    @property
    def is_node(self) -> bool:
        return self.node_id is not None


_cache: dict[tuple[str, str], tuple[float, Principal | None]] = {}
_lock = threading.Lock()


def authenticate(metadata: Iterable[tuple[str, str | bytes]]) -> Principal | None:
    """The principal a call's metadata names and proves, or None. Node secrets and API tokens are
    tried first (a digest lookup each); a password (a hash) at most once per call."""
    candidates = []
    for key, value in metadata:
        key = key.lower()
        if key.startswith((":", "grpc-")) or key.endswith("-bin") or key in _NOT_CREDENTIALS:
            continue
        secret = value.decode(errors="replace") if isinstance(value, bytes) else value
        cheap = (
            key.startswith(NODE_PREFIX) or key == TOKEN_KEY or secret.startswith(authentication.TOKEN_PREFIX)
        )
        candidates.append((not cheap, key, secret))
    hashed = False
    for costly, key, secret in sorted(candidates[:_MAX_ENTRIES], key=lambda c: c[0]):
        if costly and hashed:
            break
        hashed = hashed or costly
        principal = _cached(key, secret)
        if principal is not None:
            return principal
    return None


def _cached(key: str, secret: str) -> Principal | None:
    now = time.monotonic()
    entry = (key, authentication.digest(secret))
    hit = _cache.get(entry)
    if hit is not None and hit[0] > now:
        return hit[1]
    principal = _verify(key, secret, entry[1])
    with _lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[entry] = (now + CACHE_TTL, principal)  # refusals too: a wrong password costs one hash
    return principal


def forget() -> None:
    """Drop every cached credential (tests; a rotation in this process)."""
    with _lock:
        _cache.clear()


def _verify(key: str, secret: str, digest: str) -> Principal | None:
    if key.startswith(NODE_PREFIX):
        nodes = list(Node.objects.filter(name__iexact=key[len(NODE_PREFIX) :])[:2])
        if len(nodes) == 1 and nodes[0].secret_digest and hmac.compare_digest(nodes[0].secret_digest, digest):
            return Principal(nodes[0].grpc_username, node_id=nodes[0].pk)
        return None
    tokens = ApiToken.objects.exclude(expires_at__lte=timezone.now())  # an expired token is no credential
    if key == TOKEN_KEY:
        token = tokens.select_related("user").filter(digest=digest, user__is_active=True).first()
        return Principal(token.user.username, user=token.user, read_only=token.read_only) if token else None
    users = list(User.objects.filter(username__iexact=key, is_active=True)[:2])
    if len(users) != 1:  # none, or two whose names differ only in case: neither can be told apart
        return None
    user = users[0]
    if secret.startswith(authentication.TOKEN_PREFIX):
        read_only = tokens.filter(user=user, digest=digest).values_list("read_only", flat=True).first()
        return None if read_only is None else Principal(user.username, user=user, read_only=read_only)
    if attempts.blocked("grpc", user.username):  # password guessing, per account, across processes
        return None
    if user.check_password(secret):
        return Principal(user.username, user=user)
    attempts.failed("grpc", user.username)
    return None


_KEY = RegexValidator(
    r"^[A-Za-z0-9._-]+\Z",
    "Use letters, digits, '.', '_' and '-' only: the username is the key of Eru's gRPC credential.",
)
_RESERVED = re.compile(r"^(node\.|grpc-)|^token$", re.IGNORECASE)


def validate_username(value: str) -> None:
    """New usernames must be able to serve as gRPC metadata keys, and not take a node's or the
    token key's form. (Names made before this rule keep working on the web; on gRPC they use
    `token`.)"""
    _KEY(value)
    if _RESERVED.search(value):
        raise ValidationError("Usernames may not be 'token' or start with 'node.' or 'grpc-'.")

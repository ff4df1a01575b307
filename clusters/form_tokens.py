"""One-time tokens for HTML forms that create something (the deploy form): a double click, a reload
that posts again or a second tab with the same page must not make the thing twice. The page carries a
signed token (the user's id and a random nonce, valid for a day); the first POST claims it, the
ones after it find what the first one made and go there instead.

The claim is an atomic add in a cache every web process shares (Redis, the throttle's cache) so that
two POSTs racing on two processes cannot both win; without Redis it falls back to this process's
memory (one process: still atomic), and says so in the log (clusters.attempts.SharedCache)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from clusters import attempts

SALT = "clusters.form_tokens"
MAX_AGE = 24 * 3600  # seconds a rendered form stays usable
PENDING = 0  # the claim's value while the first POST is still being answered
PENDING_TTL = 120  # seconds a claim stays pending: a process that died meanwhile frees the form again
WAIT = 5.0  # seconds a second POST waits for the first one's outcome
POLL = 0.1


@dataclass(frozen=True)
class Claim:
    """`first`: this POST claimed the token and does the work. Otherwise `done` is the pk the first
    POST made (None: it still runs, or it failed and gave the token back)."""

    first: bool
    done: int | None = None


def issue(user_pk: int | None) -> str:
    return signing.dumps({"u": user_pk, "n": secrets.token_urlsafe(12)}, salt=SALT, compress=False)


def valid(token: str, user_pk: int | None) -> bool:
    """The token was made here, for this user, less than MAX_AGE ago."""
    try:
        value = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        return False
    return isinstance(value, dict) and value.get("u") == user_pk


def _key(token: str) -> str:
    return "form-token:" + str(signing.loads(token, salt=SALT)["n"])


class _Claims(attempts.SharedCache):
    """The throttle's shared cache (with its fall-back to this process's), plus the atomic add."""

    def add(
        self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._do(lambda c: c.add(key, value, timeout, version))


CLAIMS = _Claims()


def claim(token: str) -> Claim:
    """Claim a valid token. The first caller gets Claim(first=True); a later one waits up to WAIT
    seconds for the first one's outcome and gets its pk (or None while it is still unknown)."""
    key = _key(token)
    if CLAIMS.add(key, PENDING, PENDING_TTL):
        return Claim(first=True)
    deadline = time.monotonic() + WAIT
    while True:
        value = CLAIMS.get(key)
        if value is None:  # the first POST failed and gave the token back: this one tries
            if CLAIMS.add(key, PENDING, PENDING_TTL):
                return Claim(first=True)
        elif value != PENDING:
            return Claim(first=False, done=int(str(value)))
        if time.monotonic() >= deadline:
            return Claim(first=False)
        time.sleep(POLL)


def record(token: str, pk: int) -> None:
    """The first POST made `pk`: later POSTs of the same form go there."""
    CLAIMS.set(_key(token), pk, MAX_AGE)


def release(token: str) -> None:
    """The first POST made nothing (the input was refused): the same form may be posted again."""
    CLAIMS.delete(_key(token))

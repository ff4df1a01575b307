"""Idempotent creates: a POST that carries `Idempotency-Key: <key>` is done once per caller and key.
The first request claims the key (a row, unique per user and key) before it runs; its successful
answer (2xx status and JSON body) is stored on the row, and a retry with the same key, method, path
and body within 24 hours answers that again (`Idempotent-Replayed: true`) without doing the work
again. The same key with another body (or path) is a 422; while the first is still running, a 409
(a first request left unanswered for 10 minutes, its process gone, frees the key).
An error answer is not kept (it changed nothing, by the services' contract), so a retry runs anew.

A decorator on the create actions rather than a middleware: only the views know which POSTs create,
the caller is known only after DRF's authentication, and the schema hook (clusters.api_schema)
documents the header on exactly the decorated operations. The row is the API's record of a request
(as a session or a throttle's count), not domain state: no service or audit event is involved."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import QueryDict
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from clusters.models import IdempotentRequest

HEADER = "Idempotency-Key"
MAX_KEY = 255
TTL = 24 * 3600  # seconds a key is kept
STALE = 600  # seconds after which a first request still unanswered is taken as dead (its process was)
MARK = "_eru_idempotent"

View = Callable[..., Response]


class KeyReused(exceptions.APIException):
    status_code = 422
    default_detail = f"{HEADER} was already used with another request"
    default_code = "idempotency_key_reused"


class InProgress(exceptions.APIException):
    status_code = 409
    default_detail = f"a request with this {HEADER} is still being answered; retry later"
    default_code = "idempotency_in_progress"


def is_idempotent(view: object) -> bool:
    return bool(getattr(view, MARK, False))


def body_digest(request: Request) -> str:
    data: Any = request.data
    if isinstance(data, QueryDict):
        data = {k: data.getlist(k) for k in sorted(data)}
    canonical = json.dumps(data, sort_keys=True, cls=DjangoJSONEncoder, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def _key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise exceptions.ValidationError({HEADER: [f"{HEADER}: 1 to {MAX_KEY} printable characters"]})
    return key


def _claim(request: Request, user: User, key: str, digest: str) -> IdempotentRequest | Response:
    """The new row for this key, or the answer to give now (the first's, replayed)."""
    now = timezone.now()
    IdempotentRequest.objects.filter(created_at__lt=now - timedelta(seconds=TTL)).delete()
    try:
        with transaction.atomic():
            return IdempotentRequest.objects.create(
                user=user, key=key, method=request.method or "", path=request.path, body_digest=digest
            )
    except IntegrityError:
        pass
    first = IdempotentRequest.objects.filter(user=user, key=key).first()
    if first is None:  # expired and pruned between the two statements: claim it again
        return _claim(request, user, key, digest)
    if not first.status and first.created_at < now - timedelta(seconds=STALE):
        IdempotentRequest.objects.filter(pk=first.pk, status=0).delete()  # its process died mid-way
        return _claim(request, user, key, digest)
    if first.body_digest != digest:
        raise KeyReused(
            f"{HEADER} {key!r} was used for another request ({first.method} {first.path}) "
            f"within {TTL // 3600} h; use a new key"
        )
    if not first.status:
        raise InProgress()
    return Response(first.response, status=first.status, headers={"Idempotent-Replayed": "true"})


def idempotent(view: View) -> View:
    """Make a DRF create action (self, request, …) idempotent under the Idempotency-Key header."""

    @functools.wraps(view)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key, user = _key(request), request.user
        if key is None or not isinstance(user, User):
            return view(self, request, *args, **kwargs)
        claimed = _claim(request, user, key, body_digest(request))
        if isinstance(claimed, Response):
            return claimed
        try:
            response = view(self, request, *args, **kwargs)
        except BaseException:
            claimed.delete()
            raise
        if 200 <= response.status_code < 300:
            claimed.status, claimed.response = response.status_code, response.data
            claimed.save(update_fields=["status", "response"])
        else:
            claimed.delete()
        return response

    setattr(wrapper, MARK, True)
    return wrapper

from __future__ import annotations

import uuid
from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines

from clusters import etcd


class RequestIdMiddleware:
    """Every request gets an id (or keeps the caller's X-Request-ID); audit events carry it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        request.request_id = rid  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = rid
        return response


API_PREFIX = "/api/"
DETAILS = {
    404: "Not found.",
    405: 'Method "{method}" not allowed.',
    500: "A server error occurred.",
}


class ApiJsonErrorsMiddleware:
    """Every error under /api/ answers in DRF's shape, `{"detail": …}` as JSON: Django's own pages
    (an unknown URL's 404, a 405 of a plain view, the 500 of an uncaught exception) are HTML and
    are replaced; DRF's answers, already JSON, pass unchanged. Headers such as Allow are kept.
    An etcd outage that a view lets through (a write that needs etcd) is a 503 with Retry-After,
    everywhere: JSON under /api/, a page naming etcd elsewhere (htmx shows its heading)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not request.path.startswith(API_PREFIX)
            or response.get("Content-Type", "").startswith("application/json")
            or getattr(response, "streaming", False)
        ):
            return response
        code = response.status_code
        detail = DETAILS.get(code) or _phrase(code)
        json = JsonResponse({"detail": detail.format(method=request.method)}, status=code)
        for header in ("Allow", "Retry-After", "WWW-Authenticate", "X-Request-ID"):
            if header in response:
                json[header] = response[header]
        return json

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        down = etcd.outage(exception)
        if down is None:
            return None
        detail = etcd.outage_message(down)
        response: HttpResponse
        if request.path.startswith(API_PREFIX):
            response = JsonResponse({"detail": detail}, status=503)
        else:
            page = engines["django"].from_string(OUTAGE_PAGE).render({"detail": detail}, request)
            response = HttpResponse(page, status=503)
        response["Retry-After"] = str(etcd.OUTAGE_RETRY_AFTER)
        return response


OUTAGE_PAGE = """{% extends "base.html" %}
{% block title %}etcd unreachable{% endblock %}
{% block content %}
<section class="error-page card">
  <p class="code">503</p>
  <h1>The cluster store (etcd) cannot be reached</h1>
  <p class="detail">{{ detail }}</p>
  <p class="muted">Pages still show what the portal knows; writes that need etcd wait until it answers.</p>
</section>
{% endblock %}
"""


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase + "."
    except ValueError:
        return "Error."

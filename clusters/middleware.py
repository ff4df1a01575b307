from __future__ import annotations

import uuid
from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse, JsonResponse


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
    are replaced; DRF's answers, already JSON, pass unchanged. Headers such as Allow are kept."""

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


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase + "."
    except ValueError:
        return "Error."

"""An htmx request of a visitor whose session is gone (logged out in another tab, expired) gets the
login page as a whole page, not swapped into the card that asked: login_required's redirect to the
login page becomes a 401 with `HX-Redirect`, which htmx follows with a full navigation. The `next`
is the page the browser shows (HX-Current-URL), not the partial's URL."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme


class HtmxLoginRedirectMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true" or response.status_code not in (301, 302, 303):
            return response
        login = resolve_url(settings.LOGIN_URL)
        if urlsplit(response.get("Location", "")).path != login:
            return response
        current = request.headers.get("HX-Current-URL", "")
        page = urlsplit(current)
        here = page.path + (f"?{page.query}" if page.query else "")
        safe = url_has_allowed_host_and_scheme(current, allowed_hosts={request.get_host()})
        target = f"{login}?{urlencode({'next': here})}" if current and safe and here else response["Location"]
        answer = HttpResponse("Your session has ended: log in again.", status=401, content_type="text/plain")
        answer["HX-Redirect"] = target
        return answer

"""The login forms, portal and admin, with the password attempts of a client counted (clusters.attempts):
past the rate a POST gets 429 and no password is checked."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from clusters import attempts

TOO_MANY = f"Too many login attempts from this address: at most {attempts.RATE} a minute. Wait a minute."


def _refused(request: HttpRequest) -> HttpResponse | None:
    if request.method == "POST" and not attempts.allowed("login", str(request.META.get("REMOTE_ADDR", ""))):
        return HttpResponse(TOO_MANY, status=429, content_type="text/plain")
    return None


class LoginView(auth_views.LoginView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _refused(request) or super().post(request, *args, **kwargs)


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """The admin site's login (admin.site.login), counted the same."""
    return _refused(request) or admin.site.login(request, extra_context)

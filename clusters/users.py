"""The user types the portal works with: who a request is from, and a request as django-htmx sees it."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

# What request.user holds: a user row, or the anonymous user before login.
AnyUser = User | AnonymousUser


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (every request here does) and ours."""

    htmx: HtmxDetails
    request_id: str
    user: AnyUser

"""What the API's modules share: who acts, and through what (the audit log tells CLI use apart)."""

from __future__ import annotations

from rest_framework.request import Request

from clusters import services


def via(request: Request) -> str:
    """The erucli sends `X-Eru-Client: cli`, so the audit log tells CLI use from other API use."""
    return "cli" if request.headers.get("X-Eru-Client", "").lower() == "cli" else "api"


def actor(request: Request) -> services.Actor:
    return services.actor_from_request(request, via=via(request))

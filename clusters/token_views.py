"""The portal's token page: one's own API tokens (name, prefix, created, last used, expiry, scope), a
form that makes one — its secret shown in the answer to that POST, once, never stored — and revoke.
Everyone sees only their own tokens here, staff too (the admin lists them all)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseLocation

from clusters import services
from clusters.forms import add_service_errors
from clusters.models import ApiToken
from clusters.services.tokens import DAY
from clusters.users import HtmxHttpRequest

PAGE = "clusters/tokens.html"
PANEL = "token-panel"
EXPIRES = {"never": None, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY, "365d": 365 * DAY}
EXPIRES_LABELS = {
    "never": "never",
    "7d": "in 7 days",
    "30d": "in 30 days",
    "90d": "in 90 days",
    "365d": "in a year",
}


class TokenForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="what it is for, e.g. laptop or ci")
    expires = forms.ChoiceField(choices=list(EXPIRES_LABELS.items()), initial="never")
    read_only = forms.BooleanField(
        required=False, label="Read-only", help_text="reads (GET) only: every write with it is refused"
    )


def _user(request: HtmxHttpRequest) -> User:
    if not isinstance(request.user, User):  # login_required let it through: a user row
        raise PermissionDenied("Log in to manage your tokens.")
    return request.user


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HtmxHttpRequest) -> HttpResponse:
    """The page; a POST makes a token and answers with the page (or, to htmx, its panel) showing
    the secret. Not a redirect: the secret would have to be kept somewhere until the next GET."""
    user = _user(request)
    form = TokenForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created, secret = services.token_create(
                actor=services.actor_from_request(request, via="ui"),
                user=user,
                name=data["name"],
                expires_in=EXPIRES[data["expires"]],
                read_only=data["read_only"],
            )
            form = TokenForm()
        except ValidationError as exc:
            add_service_errors(form, exc)
    tokens = ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
    partial = bool(request.htmx) and request.htmx.target == PANEL
    context = {"tokens": tokens, "form": form, "created": created, "secret": secret, "now": timezone.now()}
    response = render(request, f"{PAGE}#{PANEL}" if partial else PAGE, context)
    if secret:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Revoke one of one's own tokens (another's is a 404 here); requests with it get 401 at once."""
    token = get_object_or_404(ApiToken.objects.filter(user=_user(request)), pk=pk)
    services.token_revoke(actor=services.actor_from_request(request, via="ui"), token=token)
    messages.success(request, f"Token {token.name} ({token.prefix}…) revoked: requests with it now get 401.")
    url = reverse("clusters:token-list")
    return HttpResponseLocation(url) if request.htmx else redirect(url)

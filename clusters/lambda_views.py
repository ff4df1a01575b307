"""The portal's lambda pages: the runs one may see, one run with its output live (server-sent events
from the run's stream), cancel, and the form that runs one in a pod."""

from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseLocation

from clusters import lambda_stream, permissions, services, views
from clusters.forms import add_service_errors
from clusters.models import LambdaRun
from clusters.users import HtmxHttpRequest

SHOWN = 100


def _visible(request: HtmxHttpRequest) -> QuerySet[LambdaRun]:
    return LambdaRun.objects.filter(
        deployment__in=permissions.visible_deployments(request.user)
    ).select_related("deployment__pod", "deployment__created_by")


class LambdaForm(forms.Form):
    image = forms.CharField(max_length=255, initial="eru/busybox:latest")
    command = forms.CharField(help_text="a shell-like line, e.g. sh -c 'echo hi; exit 3'")
    count = forms.IntegerField(initial=1, min_value=1, max_value=100)
    timeout = forms.IntegerField(initial=600, min_value=1, help_text="seconds before it is killed")
    cpu = forms.FloatField(initial=0.5, min_value=0, label="CPU", help_text="request and limit")
    memory = forms.CharField(initial="64M", help_text="request and limit, e.g. 64M")
    team = forms.ChoiceField(required=False, help_text="the team whose quota it runs on")

    def __init__(self, *args: Any, teams: list[str] | None = None, **kwargs: Any) -> None:
        """`teams`: the user's; a choice of them only when there are several (one is the default)."""
        super().__init__(*args, **kwargs)
        team = self.fields["team"]
        if teams and len(teams) > 1 and isinstance(team, forms.ChoiceField):
            team.choices = [("", "choose a team"), *((t, t) for t in teams)]
        else:
            del self.fields["team"]

    def request_data(self) -> dict[str, object]:
        d = self.cleaned_data
        try:
            command = shlex.split(d["command"])
        except ValueError as exc:
            raise ValidationError({"command": [f"command: {exc}"]}) from None
        cpu, memory = d["cpu"], d["memory"]
        return {
            "app": "lambda", "entrypoint": "run", "image": d["image"], "command": command,
            "count": d["count"],
            "cpu_request": cpu, "cpu_limit": cpu, "memory_request": memory, "memory_limit": memory,
            "cpu_bind": False, **({"team": d["team"]} if d.get("team") else {}),
        }  # fmt: skip


@login_required
@require_GET
def lambda_list(request: HtmxHttpRequest) -> HttpResponse:
    runs = _visible(request)[:SHOWN]
    return render(request, "clusters/lambda_list.html", {"runs": runs})


@login_required
@require_GET
def lambda_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A run; its output for those who may read logs (a viewer sees no output panel)."""
    run = get_object_or_404(_visible(request), pk=pk)
    pod = run.deployment.pod
    may = (
        permissions.can_deploy(request.user, pod) if pod is not None else permissions.can_admin(request.user)
    )
    context = {
        "run": run,
        "can_cancel": may and not run.is_final,
        "can_read_logs": permissions.can_read_logs(request.user, pod),
    }
    return render(request, "clusters/lambda_detail.html", context)


@login_required
@require_GET
def lambda_output_events(request: HtmxHttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    run = get_object_or_404(_visible(request), pk=pk)
    views.require_logs(request.user, run.deployment.pod)
    return views.sse(lambda: lambda_stream.sse(run))


@login_required
@require_POST
def lambda_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(_visible(request), pk=pk)
    services.lambda_cancel(actor=services.actor_from_request(request, via="ui"), run=run)
    return redirect("clusters:lambda-detail", run.pk)


@login_required
@require_http_methods(["GET", "POST"])
def lambda_run(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Run a lambda in the pod: the form, then the run's page."""
    pod = permissions.get_pod_for_user(request.user, name)
    if not permissions.can_deploy(request.user, pod):
        raise PermissionDenied(f"You may not run lambdas in pod {pod.name}.")
    form = LambdaForm(request.POST or None, teams=[t.name for t in services.teams_of(request.user)])
    if request.method == "POST" and form.is_valid():
        try:
            spec = services.deployment_validate(pod=pod, data=form.request_data())
            run = services.lambda_create(
                actor=services.actor_from_request(request, via="ui"),
                spec=spec,
                timeout=form.cleaned_data["timeout"],
            )
            url = reverse("clusters:lambda-detail", args=[run.pk])
            return HttpResponseLocation(url) if request.htmx else redirect(url)
        except ValidationError as exc:
            add_service_errors(form, exc)
    return render(request, "clusters/lambda_run.html", {"pod": pod, "form": form})

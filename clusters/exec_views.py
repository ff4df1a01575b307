"""The portal's exec in a workload: a form on the workload's page (for the pod's owners and staff),
whose command line is split as a shell would (shlex; it is not run by one), and its output live below
it. The page loads the form from here (htmx), so who sees it is decided by the same permission as who
may run; the form's script posts it and reads the answer as it comes: the API's NDJSON."""

from __future__ import annotations

import shlex

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from clusters import api_exec, logs, permissions, services
from clusters.errors import invalid
from clusters.models import Workload
from clusters.users import HtmxHttpRequest

FORM = "clusters/_exec.html#exec-form"


@login_required
@require_http_methods(["GET", "POST"])
def workload_exec(request: HtmxHttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """GET: the exec form (owners and staff; nothing for others when the page asks, 403 otherwise).
    POST: run it: the output as NDJSON (clusters.api_exec), or a JSON error (400, 403, 503)."""
    workload = permissions.get_workload_for_user(request.user, pk)
    if request.method == "GET":
        try:
            permissions.require_exec(request.user, workload.pod)
        except PermissionDenied:
            if request.htmx:
                return HttpResponse(status=204)  # the page's empty slot stays empty
            raise
        context = {"workload": workload, "max_timeout": settings.ERU_EXEC_TIMEOUT}
        return render(request, FORM, context)
    return _run(request, workload)


def _run(request: HtmxHttpRequest, workload: Workload) -> HttpResponse | StreamingHttpResponse:
    post = request.POST
    try:
        try:
            command = shlex.split(post.get("command", ""))
        except ValueError as exc:
            raise invalid("command", f"command: {exc}") from None
        events = services.workload_exec(
            actor=services.actor_from_request(request, via="ui"),
            workload=workload,
            command=command,
            env=[line.strip() for line in post.get("env", "").splitlines() if line.strip()],
            workdir=post.get("workdir", "").strip(),
            user=post.get("user", "").strip(),
            timeout=post.get("timeout", "").strip() or None,
        )
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return JsonResponse(errors, status=400)
    except PermissionDenied as exc:
        return JsonResponse({"detail": str(exc)}, status=403)
    try:
        return logs.streamed(lambda: api_exec.ndjson(events), "application/x-ndjson")
    except logs.Busy as exc:
        return JsonResponse({"detail": str(exc)}, status=503, headers={"Retry-After": "5"})

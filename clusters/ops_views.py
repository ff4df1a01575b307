"""The portal's day-two operations (Eru's realloc, replace, dissociate and a deployment's cancel), as
partials of the workload and deployment pages. The forms only parse; clusters.services decides, and
its refusals are shown beside the field they name. Without JavaScript a form that needs correcting
lands on a page of its own (clusters/workload_op.html); a write redirects as the page's buttons do."""

from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseLocation

import schema
from clusters import api_ops, permissions, selectors, services
from clusters.forms import add_service_errors
from clusters.models import Workload
from clusters.users import HtmxHttpRequest

PAGE = "clusters/workload_op.html"
REALLOC = "clusters/_realloc.html#resources"
REPLACE = "clusters/_replace.html#replace-form"
CANCEL = "clusters/_cancel.html#cancel-form"
BIND = {"": None, "bind": True, "unbind": False}
CPU_FIELDS = ("cpu_request", "cpu_limit")
MEMORY_FIELDS = ("memory_request", "memory_limit")


class ReallocForm(forms.Form):
    """Deltas by default (Eru's way: -0.5, -64M shrink), the new values with `absolute`."""

    cpu_request = forms.CharField(required=False, max_length=40)
    cpu_limit = forms.CharField(required=False, max_length=40)
    memory_request = forms.CharField(required=False, max_length=40)
    memory_limit = forms.CharField(required=False, max_length=40)
    cpu_bind = forms.ChoiceField(choices=[(k, k) for k in BIND], required=False)
    absolute = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in (*CPU_FIELDS, *MEMORY_FIELDS):
            value = data.get(name, "")
            try:
                if name in CPU_FIELDS:
                    data[name] = api_ops.cpu_amount(value, field=name)
                else:
                    data[name] = api_ops.size_amount(value, field=name)
            except ValueError as exc:
                self.add_error(name, str(exc))
        amounts = (*CPU_FIELDS, *MEMORY_FIELDS)
        if not self.errors and all(data.get(n) is None for n in amounts) and not data.get("cpu_bind"):
            raise ValidationError("Give a change: a cpu or memory value, or bind or unbind.")
        return data

    def change(self) -> services.Change:
        d = self.cleaned_data
        return services.Change(
            cpu_request=d["cpu_request"],
            cpu_limit=d["cpu_limit"],
            memory_request=d["memory_request"],
            memory_limit=d["memory_limit"],
            cpu_bind=BIND[d["cpu_bind"]],
            absolute=d["absolute"],
        )


class ReplaceForm(forms.Form):
    """Eru's replace of the workload's app/entrypoint in its pod: what is left empty each keeps."""

    image = forms.CharField(required=False, max_length=255)
    command = forms.CharField(required=False, max_length=10_000)
    batch = forms.IntegerField(required=False)
    timeout = forms.IntegerField(required=False)
    only_this = forms.BooleanField(required=False)

    def clean_command(self) -> list[str] | None:
        line = self.cleaned_data.get("command", "").strip()
        if not line:
            return None
        try:
            return shlex.split(line)
        except ValueError as exc:
            raise ValidationError(f"command: {exc}") from None

    def replace_data(self, workload: Workload) -> dict[str, Any]:
        d = self.cleaned_data
        data: dict[str, Any] = {"app": workload.app, "entrypoint": workload.entrypoint}
        if d["image"].strip():
            data["image"] = d["image"].strip()
        for name in ("command", "batch", "timeout"):
            if d[name] is not None:
                data[name] = d[name]
        if d["only_this"]:
            data["ids"] = [workload.pk]
        return data


def _actor(request: HtmxHttpRequest) -> services.Actor:
    return services.actor_from_request(request, via="ui")


def _workload(request: HtmxHttpRequest, pk: int) -> Workload:
    """The workload (404 when not visible), for one who may operate it (403 otherwise)."""
    workload = permissions.get_workload_for_user(request.user, pk)
    if not permissions.can_deploy(request.user, workload.pod):
        raise PermissionDenied(f"You may not operate workloads in pod {workload.pod.name}.")
    return workload


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseLocation(url) if request.htmx else redirect(url)


def _form_page(request: HtmxHttpRequest, workload: Workload, partial: str, **context: Any) -> HttpResponse:
    """The form's partial, which htmx swaps in place, or a page of its own without JavaScript."""
    cpu_map = sorted(workload.cpu_map.items(), key=lambda item: selectors.core_order(item[0]))
    context = {"workload": workload, "pod": workload.pod, "can_deploy": True, "cpu_map": cpu_map, **context}
    if request.htmx:
        return render(request, partial, context)
    return render(request, PAGE, {**context, "partial": partial})


@login_required
@require_POST
def workload_realloc(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Change the workload's cpu and memory live; the resources card again, with the new values."""
    workload = _workload(request, pk)
    form = ReallocForm(request.POST, auto_id="realloc_%s")
    note = ""
    if form.is_valid():
        try:
            workload = services.workload_realloc(
                actor=_actor(request), workload=workload, change=form.change()
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            note = (
                f"Resources of {workload.name} changed: cpu request {workload.cpu_request:g}, limit "
                f"{workload.cpu_limit:g}; memory request {schema.format_size(workload.memory_request)}, "
                f"limit {schema.format_size(workload.memory_limit)}."
            )
            if not request.htmx:
                messages.success(request, note)
                return redirect("clusters:workload-detail", workload.pk)
            form = ReallocForm(auto_id="realloc_%s")
    return _form_page(request, workload, REALLOC, realloc_form=form, realloc_note=note)


@login_required
@require_POST
def workload_replace(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Replace the app/entrypoint's workloads in the pod (or only this one): the new deployment's page."""
    workload = _workload(request, pk)
    form = ReplaceForm(request.POST, auto_id="replace_%s")
    if form.is_valid():
        try:
            deployment = services.workload_replace(
                actor=_actor(request), pod=workload.pod, data=form.replace_data(workload)
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return _go(request, reverse("clusters:deployment-detail", args=[deployment.pk]))
    return _form_page(request, workload, REPLACE, replace_form=form)


@login_required
@require_POST
def workload_dissociate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Forget the workload and keep its container: the pod's page after."""
    workload = _workload(request, pk)
    try:
        (kept,) = services.workload_dissociate(actor=_actor(request), workloads=[workload])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _go(request, reverse("clusters:workload-detail", args=[workload.pk]))
    messages.success(
        request,
        f"{kept.name} dissociated: its container {kept.container_id[:12]} keeps running on "
        f"{kept.node.name}, unmanaged; its allocation went back to the node.",
    )
    return _go(request, reverse("clusters:pod-detail", args=[workload.pod.name]))


@login_required
@require_http_methods(["GET", "POST"])
def deployment_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the cancel button, for one who may deploy in the pod while the deployment runs (the page
    loads it, and again once it ends: then nothing). POST: cancel it, and its page again."""
    deployment = permissions.get_deployment_for_user(request.user, pk)
    pod = deployment.pod  # None: its pod was removed (then an administrator's)
    may = permissions.can_deploy(request.user, pod) if pod else permissions.can_admin(request.user)
    if request.method == "GET":
        if not may and not request.htmx:
            raise PermissionDenied(
                f"You may not cancel deployments in pod {pod.name if pod else deployment.pod_name}."
            )
        if not may or deployment.is_final:
            return HttpResponse("")  # the slot (or the button of an ended deployment) goes
        return render(request, CANCEL, {"deployment": deployment})
    if not may:
        raise PermissionDenied(
            f"You may not cancel deployments in pod {pod.name if pod else deployment.pod_name}."
        )
    try:
        services.deployment_cancel(actor=_actor(request), deployment=deployment)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Deployment #{deployment.pk} cancelled.")
    return _go(request, reverse("clusters:deployment-detail", args=[deployment.pk]))

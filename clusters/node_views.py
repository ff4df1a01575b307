"""The portal's node capacity: the form that sets it (Eru's `node set --cpu --memory [--delta]`) and
the usage check with its fix (`node resource [--fix]`), as partials of the node page; without
JavaScript they land on a page of their own (clusters/node_capacity.html)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseLocation

import schema
from clusters import permissions, selectors, services
from clusters.forms import add_service_errors
from clusters.models import Node
from clusters.users import HtmxHttpRequest

TEMPLATE = "clusters/node_capacity.html"


class CapacityForm(forms.Form):
    cpu = forms.CharField(required=False, max_length=20_000, label="CPU")
    memory = forms.CharField(required=False, max_length=40)
    delta = forms.BooleanField(required=False)
    over_commit = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("cpu", "").strip() and not data.get("memory", "").strip():
            raise ValidationError("Give cpu, memory or both.")
        return data


def _node(request: HtmxHttpRequest, name: str) -> Node:
    nodes = permissions.visible_nodes(request.user).select_related("pod")
    return get_object_or_404(nodes.defer("tls_ca", "tls_cert", "tls_key"), name=name)


def _require_admin(request: HtmxHttpRequest, what: str) -> None:
    if not permissions.can_admin(request.user):
        raise PermissionDenied(f"Only administrators may {what}.")


def _back(request: HtmxHttpRequest, node: Node) -> HttpResponse:
    """After a write: the node page again (its capacity table changed)."""
    url = reverse("clusters:node-detail", args=[node.name])
    return HttpResponseLocation(url) if request.htmx else redirect(url)


def _page(request: HtmxHttpRequest, node: Node, partial: str, **context: Any) -> HttpResponse:
    """The partial htmx swaps, or the page of its own without JavaScript."""
    template = f"{TEMPLATE}#{partial}" if request.htmx else TEMPLATE
    return render(request, template, {"node": node, **context})


@login_required
@require_http_methods(["GET", "POST"])
def node_capacity(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Administrators: set the node's capacity; a refusal is shown beside the field it names."""
    node = _node(request, name)
    _require_admin(request, "change a node's capacity")
    form = CapacityForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        d = form.cleaned_data
        try:
            node = services.node_set(
                actor=services.actor_from_request(request, via="ui"),
                node=node,
                cpu=d["cpu"].strip() or None,
                memory=d["memory"].strip() or None,
                delta=d["delta"],
                over_commit=d["over_commit"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                f"Node {node.name}: capacity now {node.cores} cores ({sum(node.cpu_map.values())} pieces) "
                f"and {schema.format_size(node.memory)}.",
            )
            return _back(request, node)
    return _page(request, node, "capacity-form", capacity_form=form)


@login_required
@require_http_methods(["GET", "POST"])
def node_resource(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """GET: the usage check (recorded beside counted from its workloads). POST, administrators:
    the fix, which stores the counted usage."""
    node = _node(request, name)
    if request.method == "GET":
        return _page(request, node, "node-resource", check=selectors.node_resource_check(node))
    _require_admin(request, "fix a node's usage")
    result = services.node_resource_fix(actor=services.actor_from_request(request, via="ui"), node=node)
    if result["fixed"]:
        messages.success(request, f"Node {node.name}: usage fixed ({'; '.join(result['fixed'])}).")
    else:
        messages.info(request, f"Node {node.name}: the recorded usage already matched its workloads.")
    return _back(request, node)

"""The portal's pages: function-based views with htmx partials. Every view looks its object up
through clusters.permissions (404 when not visible, 403 when not allowed) and changes state only
through clusters.services. An htmx request that targets a partial (by element id) gets only that
partial of the page's template; every other request gets the whole page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseLocation, HttpResponseStopPolling, trigger_client_event

from clusters import (
    charts,
    etcd,
    form_tokens,
    logs,
    permissions,
    placement,
    secrets,
    selectors,
    services,
    usage_card,
)
from clusters.forms import DeployForm, PodForm, add_service_errors
from clusters.models import Node, Pod, Workload
from clusters.services.usage import FINE
from clusters.users import AnyUser, HtmxHttpRequest

RECENT_DEPLOYMENTS = 10
WORKLOADS_SHOWN = 100


def _is_htmx(request: HtmxHttpRequest) -> bool:
    return bool(request.htmx)


def _wants(request: HtmxHttpRequest, partial: str) -> bool:
    """htmx asks for this partial: its target is the element the partial renders (same id).
    Other htmx requests (boosted links, HX-Location navigations target the body) get the page."""
    return bool(request.htmx) and request.htmx.target == partial


def _template(request: HtmxHttpRequest, name: str, partial: str) -> str:
    return f"{name}#{partial}" if _wants(request, partial) else name


def _actor(request: HtmxHttpRequest) -> services.Actor:
    return services.actor_from_request(request, via="ui")


def _percent(used: float, capacity: float) -> int:
    return min(100, max(0, round(100 * used / capacity))) if capacity else 0


def _count_by_pod(model: type[Workload] | type[Node], **filters: Any) -> Coalesce:
    """A correlated COUNT per pod (one query for the whole list, no join fan-out)."""
    rows = model.objects.filter(pod=OuterRef("pk"), **filters).order_by().values("pod")
    return Coalesce(Subquery(rows.annotate(c=Count("pk")).values("c")), Value(0), output_field=IntegerField())


# --- pods ---------------------------------------------------------------------------------------
PODS_PER_PAGE = 100


def _pods(user: AnyUser, page: int = 1) -> tuple[list[Pod], bool]:
    """A page of the pods the user sees, with their counts, and whether a next page exists (one row
    more is read instead of counting them all)."""
    start = (page - 1) * PODS_PER_PAGE
    pods: list[Pod] = list(
        permissions.visible_pods(user)
        .annotate(
            node_count=_count_by_pod(Node),
            workload_count=_count_by_pod(Workload),
            running_count=_count_by_pod(Workload, state=Workload.State.RUNNING),
        )
        .order_by("name")[start : start + PODS_PER_PAGE + 1]
    )
    more = len(pods) > PODS_PER_PAGE
    pods = pods[:PODS_PER_PAGE]
    alive = etcd.alive_nodes()
    up: dict[int, int] = {}
    if alive:  # one query for every pod's schedulable nodes, matched against the heartbeats here
        candidates = Node.objects.filter(pod__in=[p.pk for p in pods], bypass=False)
        for pod_id, name in candidates.values_list("pod_id", "name"):
            if name in alive:
                up[pod_id] = up.get(pod_id, 0) + 1
    for pod in pods:
        pod.up_count = up.get(pod.pk, 0)  # type: ignore[attr-defined]
    return pods, more


@login_required
@require_http_methods(["GET", "POST"])
def pod_list(request: HtmxHttpRequest) -> HttpResponse:
    """All pods the user can see; staff add pods here (POST)."""
    is_admin = permissions.can_admin(request.user)
    form = PodForm(request.POST or None) if is_admin else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied("Only administrators may add pods.")
        if form.is_valid():
            try:
                pod = services.pod_add(actor=_actor(request), **form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                if not _wants(request, "pod-form"):
                    messages.success(request, f"Pod {pod.name} added.")
                    return redirect("clusters:pod-list")
                context = {"form": PodForm(), "added": pod}
                response = render(request, "clusters/pod_list.html#pod-form", context)
                return trigger_client_event(response, "pods-changed", {"name": pod.name})
        if _wants(request, "pod-form"):
            return render(request, "clusters/pod_list.html#pod-form", {"form": form})
    page = _page_number(request.GET.get("page"), 10**9)
    pods, more = _pods(request.user, page)
    context = {
        "pods": pods,
        "page": {
            "number": page,
            "previous": page - 1 if page > 1 else None,
            "next": page + 1 if more else None,
        },
        "form": form,
        "is_admin": is_admin,
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, _template(request, "clusters/pod_list.html", "pod-rows"), context)


@dataclass(frozen=True)
class Core:
    """A cell of a node's core map: the pieces bound workloads hold on the core, of its pieces."""

    id: str
    used: int
    total: int

    @property
    def pct(self) -> int:
        return _percent(self.used, self.total)


@dataclass(frozen=True)
class NodeRow:
    """A node with what the page shows about it: availability, its capacity bars and (on a pod's
    page) its CPU over the last hour."""

    node: Node
    up: bool
    spark: charts.Spark | None = None

    @property
    def pieces(self) -> int:
        return sum(self.node.cpu_map.values())

    @property
    def pieces_pct(self) -> int:
        return _percent(self.node.bound_pieces_used, self.pieces)

    @property
    def cpu_pct(self) -> int:
        return _percent(self.node.used_cpu, self.node.cpu_capacity)

    @property
    def memory_pct(self) -> int:
        return _percent(self.node.used_memory, self.node.memory)

    @property
    def labels(self) -> list[str]:
        return [f"{k}={v}" for k, v in sorted(self.node.labels.items())]

    @property
    def cores(self) -> list[Core]:
        """Every core of its cpu map, in core order, with the pieces held on it."""
        used, cpu_map = self.node.used_cpu_map, self.node.cpu_map
        return [
            Core(c, int(used.get(c, 0)), int(cpu_map[c])) for c in sorted(cpu_map, key=selectors.core_order)
        ]

    @property
    def spark_label(self) -> str:
        peak = self.spark.peak if self.spark is not None else None
        if peak is None:
            return "CPU last hour: no usage recorded"
        capacity = charts.cores_label(self.node.cpu_capacity)
        return f"CPU last hour: {charts.cores_label(peak)} of {capacity} cores at most"


def _nodes(pod: Pod) -> QuerySet[Node]:
    """A pod's nodes in name order, each with the number of workloads holding resources on it: a
    correlated COUNT, so that a page of them (LIMIT) counts for its own rows only, not for all."""
    holding = (
        Workload.objects.filter(node=OuterRef("pk"), state__in=Workload.HOLDING, replaces=None)
        .order_by()
        .values("node")
        .annotate(c=Count("pk"))
        .values("c")
    )
    return (
        pod.nodes.defer("tls_ca", "tls_cert", "tls_key", "info")
        .annotate(holding=Coalesce(Subquery(holding), Value(0), output_field=IntegerField()))
        .order_by("name")
    )


def _node_rows(nodes: list[Node], alive: set[str] | None = None) -> list[NodeRow]:
    """The rows of a pod's node table, each with its sparkline (one query for all of them)."""
    alive = etcd.alive_nodes() if alive is None else alive
    if not nodes:
        return []
    end = timezone.now()
    start = end - timedelta(hours=1)
    cpu = selectors.nodes_cpu([n.pk for n in nodes], FINE, start)
    return [
        NodeRow(
            n,
            n.is_available(alive),
            charts.sparkline(cpu[n.pk], start=start, end=end, step=FINE, top=n.cpu_capacity),
        )
        for n in nodes
    ]


NODES_PER_PAGE = 25  # a page of node rows stays far below 100 KB, sparklines included
POLL_SECONDS = 10  # the pod page's and the pod list's live refresh


def _page_number(raw: str | None, pages: int) -> int:
    """`?page=` as a page from 1 to `pages`; anything else is the first (or the last) page."""
    number = int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 10 else 1
    return min(max(number, 1), max(pages, 1))


def _node_page_context(request: HtmxHttpRequest, pod: Pod) -> dict[str, Any]:
    """The nodes card of a pod's page: one page of node rows plus the totals of all of them, in a
    number of queries that does not depend on how many nodes the pod has."""
    alive = etcd.alive_nodes()
    summary = selectors.pod_node_summary(pod, alive)
    pages = max(1, -(-summary["total"] // NODES_PER_PAGE))
    number = _page_number(request.GET.get("page"), pages)
    start = (number - 1) * NODES_PER_PAGE
    nodes = list(_nodes(pod)[start : start + NODES_PER_PAGE]) if summary["total"] else []
    return {
        "rows": _node_rows(nodes, alive),
        "summary": summary,
        "memory_pct": _percent(summary["used_memory"], summary["memory"]),
        "page": {
            "number": number,
            "pages": pages,
            "first": start + 1 if nodes else 0,
            "last": start + len(nodes),
            "previous": number - 1 if number > 1 else None,
            "next": number + 1 if number < pages else None,
        },
        "poll_seconds": POLL_SECONDS,
    }


@login_required
@require_GET
def pod_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """A pod: its nodes (a page of them, with totals over all; the card refreshes itself every
    POLL_SECONDS while the tab is visible), quotas, recent deployments and its latest workloads."""
    pod = permissions.get_pod_for_user(request.user, name)
    is_admin = permissions.can_admin(request.user)
    if _wants(request, "nodes"):
        context = {"pod": pod, "is_admin": is_admin, **_node_page_context(request, pod)}
        return render(request, "clusters/pod_detail.html#nodes", context)
    workloads = pod.workloads.select_related("node").order_by("-created_at", "-id")
    shown = list(workloads[:WORKLOADS_SHOWN])
    context = {
        "busy": pod.workloads.filter(Q(state__in=Workload.BUSY) | ~Q(action="")).exists(),
        "pod": pod,
        "counts": selectors.status_counts(pod.workloads.filter(state__in=Workload.OBSERVED)),
        "deployments": pod.deployments.select_related("created_by")[:RECENT_DEPLOYMENTS],
        "workloads": shown,
        # Fewer than a page shown: that is all of them, no need to count (the sparklines' query instead).
        "workload_total": len(shown) if len(shown) < WORKLOADS_SHOWN else workloads.count(),
        "is_admin": is_admin,
        "can_deploy": permissions.can_deploy(request.user, pod),
        "quotas": [] if _wants(request, "workloads") else services.visible_quota_rows(request.user, pod),
    }
    if not _wants(request, "workloads"):
        context.update(_node_page_context(request, pod))
    return render(request, _template(request, "clusters/pod_detail.html", "workloads"), context)


@login_required
@require_GET
def node_detail(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """A node: its capacity and usage (and how much of it workloads without a running container
    hold), whether its agent reports and when the core last heard from it, and its workloads with
    their observed status."""
    return _node_page(request, name)


def _node_page(request: HtmxHttpRequest, name: str, new_secret: str = "") -> HttpResponse:
    """`new_secret`: an agent secret just made, shown this once."""
    nodes = permissions.visible_nodes(request.user).select_related("pod")
    node = get_object_or_404(nodes.defer("tls_ca", "tls_cert", "tls_key"), name=name)
    usage = usage_card.usage_card(
        request,
        reverse("clusters:node-detail", args=[node.name]),
        lambda step, since: selectors.node_usage(node, step, since),
        cpu=node.cpu_capacity,
        memory=node.memory,
        line="capacity",
        empty_note=usage_card.empty_note(node),
    )
    if _wants(request, "usage"):
        return render(request, "clusters/node_detail.html#usage", {"node": node, "usage": usage})
    workloads = node.workloads.select_related("pod").order_by("-created_at", "-id")
    context = {
        "usage": usage,
        "node": node,
        "pod": node.pod,
        "row": NodeRow(node, node.is_available(etcd.alive_nodes())),
        "workloads": list(workloads[:WORKLOADS_SHOWN]),
        "workload_total": workloads.count(),
        "counts": selectors.status_counts(workloads.filter(state__in=Workload.OBSERVED)),
        "held": selectors.held_without_container(node.workloads.all()),
        "is_admin": permissions.can_admin(request.user),
        "new_secret": new_secret,
        "sweep_interval": settings.ERU_SWEEP_INTERVAL,
    }
    return render(request, "clusters/node_detail.html", context)


@login_required
@require_GET
def workload_log_events(request: HtmxHttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """The workload's log as server-sent events, followed (the log panel of its page); a browser that
    reconnects goes on from the last line it had (Last-Event-ID)."""
    w = permissions.get_workload_for_user(request.user, pk)
    require_logs(request.user, w.pod)
    resume = logs.resume_of(request.headers.get("Last-Event-ID"))
    tail = logs.tail_of(request.GET.get("tail"))
    return _stream(lambda: logs.lines(w, tail=tail, since=None, follow=True, after=resume))


@login_required
@require_POST
def node_agent(request: HtmxHttpRequest, name: str, action: str) -> HttpResponse:
    """Staff: make a new agent secret (shown once, on the page this answers), revoke it, or hand a
    node whose agent is gone back to the central sweep."""
    node = get_object_or_404(permissions.visible_nodes(request.user).select_related("pod"), name=name)
    actor = _actor(request)
    if action == "secret":
        secret = services.node_secret_rotate(actor=actor, node=node)
        return _node_page(request, name, new_secret=secret)
    if action == "revoke":
        services.node_secret_revoke(actor=actor, node=node)
        messages.success(request, f"The agent secret of {node.name} is revoked.")
    elif action == "clear":
        services.node_agent_clear(actor=actor, node=node)
        messages.success(request, f"{node.name} is handed back to the sweep.")
    else:
        raise Http404(f"no such agent action: {action}")
    return redirect("clusters:node-detail", node.name)


@login_required
@require_POST
def node_set_bypass(request: HtmxHttpRequest, name: str, *, bypass: bool) -> HttpResponse:
    """Staff mark a node down (bypass: no new workloads) or up again."""
    node = get_object_or_404(permissions.visible_nodes(request.user).select_related("pod"), name=name)
    if not permissions.can_admin(request.user):
        raise PermissionDenied("Only administrators may mark nodes down or up.")
    services.node_set(actor=_actor(request), node=node, bypass=bypass)
    if not _is_htmx(request):
        messages.success(request, f"Node {node.name} marked {'down' if bypass else 'up'}.")
        return redirect("clusters:pod-detail", node.pod.name)
    [row] = _node_rows([_nodes(node.pod).get(pk=node.pk)])
    return render(
        request, "clusters/pod_detail.html#node-row", {"row": row, "pod": node.pod, "is_admin": True}
    )


# --- deploy -------------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def deploy(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """The deploy form. "preview" shows the plan (a dry run); "deploy" creates the deployment."""
    pod = permissions.get_pod_for_user(request.user, name)
    if not permissions.can_deploy(request.user, pod):
        raise PermissionDenied(f"You may not deploy to pod {pod.name}.")
    node_names = list(pod.nodes.order_by("name").values_list("name", flat=True))
    teams = [t.name for t in services.teams_of(request.user)]
    form = DeployForm(request.POST or None, node_names=node_names, teams=teams)
    plan: dict[str, int] | None = None
    summary: placement.Summary | None = None
    posted = request.POST.get("form_token", "")
    token = posted if form_tokens.valid(posted, request.user.pk) else ""
    if request.method == "POST" and form.is_valid():
        spec = None
        try:
            spec = services.deployment_validate(pod=pod, data=form.request_data())
            if request.POST.get("action") == "preview":
                plan = services.deployment_plan(spec)
                summary = _placement(spec)
            else:
                return _deploy_once(request, spec, token, form)
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {}
            if spec is not None and "placement" in errors:  # why each node was left out: its own table
                summary = _placement(spec)
                exc = ValidationError({k: v for k, v in errors.items() if k != "placement"})
            add_service_errors(form, exc)
    context = {
        "pod": pod,
        "form": form,
        "form_token": token or form_tokens.issue(request.user.pk),
        "plan_rows": None if plan is None else sorted(plan.items()),
        "planned": sum(plan.values()) if plan else 0,
        "placement": summary,
    }
    return render(request, _template(request, "clusters/deploy.html", "deploy-form"), context)


def _placement(spec: Any) -> placement.Summary:
    """The capacity preview: per node, how many instances fit, or why it was left out."""
    r = spec.request
    return placement.summarize(
        spec.pod,
        node_names=r.node_names,
        node_labels=r.node_labels,
        resources=spec.resources,
        nodes_limit=r.nodes_limit,
    )


def _to_deployment(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    url = reverse("clusters:deployment-detail", args=[pk])
    return HttpResponseLocation(url) if _is_htmx(request) else redirect(url)


def _deploy_once(request: HtmxHttpRequest, spec: Any, token: str, form: DeployForm) -> HttpResponse:
    """Create the deployment, once per rendered form: the form's one-time token is claimed first; a
    second POST of the same form (a double click, a reload, another tab) goes to the deployment
    the first one made. A form without a (valid) token is deployed as before (no protection)."""
    if token:
        claim = form_tokens.claim(token)
        if not claim.first:
            if claim.done is not None:
                messages.info(request, "This form was already deployed: here is its deployment.")
                return _to_deployment(request, claim.done)
            raise ValidationError("This form is already being deployed; see the pod's recent deployments.")
    try:
        deployment = services.deployment_create(actor=_actor(request), spec=spec)
    except BaseException:
        if token:
            form_tokens.release(token)  # nothing was made: the same form may be posted again
        raise
    if token:
        form_tokens.record(token, deployment.pk)
    return _to_deployment(request, deployment.pk)


@login_required
@require_GET
def deployment_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A deployment's spec, plan and progress. The progress partial polls until the state is final;
    the poll that sees it final answers 286 so htmx stops. A viewer sees the env's keys, no value,
    and no log panel (clusters.permissions: secrets and logs)."""
    deployment = permissions.get_deployment_for_user(request.user, pk)
    sees = permissions.can_see_secrets(request.user, deployment.pod)
    context = {
        "deployment": deployment,
        "pod": deployment.pod,
        "pod_name": deployment.pod.name if deployment.pod else deployment.pod_name,
        "env": deployment.spec.get("env", []) if sees else secrets.mask_env(deployment.spec.get("env")),
        "sees_secrets": sees,
        "can_read_logs": sees,
        "ok_pct": _percent(deployment.succeeded, deployment.total),
        "failed_pct": _percent(deployment.failed, deployment.total),
        "workloads": deployment.workloads.select_related("node", "replaces").order_by("seq", "id"),
        "plan_rows": sorted(deployment.plan.items()),
        "node_labels": sorted(deployment.node_labels.items()),
        "labels": sorted(deployment.spec.get("labels", {}).items()),
        # While it runs, the log panel waits for containers: it opens again once the deployment is final.
        "has_logs": sees
        and (not deployment.is_final or deployment.workloads.exclude(container_id="").exists()),
    }
    if _wants(request, "progress"):
        response = render(request, "clusters/deployment_detail.html#progress", context)
        if deployment.is_final:
            return trigger_client_event(HttpResponseStopPolling(response.content), "eru-logs-reopen")
        return response
    return render(request, "clusters/deployment_detail.html", context)


DOWN_SHOWN = 20  # workloads of a deployment whose last lines its page shows
DOWN_TAIL = 50


def _logged(workloads: QuerySet[Workload]) -> list[Workload]:
    return list(
        workloads.exclude(container_id="").select_related("node").order_by("seq", "pk")[: logs.MAX_MERGED]
    )


def require_logs(user: AnyUser, pod: Pod | None) -> None:
    """Logs (and a lambda's output) may carry secrets: not a viewer's (permissions.can_read_logs)."""
    if not permissions.can_read_logs(user, pod):
        where = f"pod {pod.name}" if pod is not None else "a removed pod"
        raise PermissionDenied(f"Logs may carry secrets: only those who may deploy to {where} read its logs.")


def _stream(source: Any) -> HttpResponse | StreamingHttpResponse:
    """Server-sent events from a log source, holding one of this process's stream slots."""
    return sse(lambda: logs.events(source()))


def sse(body: Any) -> HttpResponse | StreamingHttpResponse:
    """Server-sent events on one of this process's stream slots, or a plain 503 when none is free."""
    try:
        return logs.streamed(body, "text/event-stream")
    except logs.Busy as exc:
        return HttpResponse(str(exc), status=503, headers={"Retry-After": "5"}, content_type="text/plain")


@login_required
@require_GET
def deployment_log_events(request: HtmxHttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """The deployment's workloads' logs merged (each line after its workload's name), followed: the
    log panel of its page."""
    deployment = permissions.get_deployment_for_user(request.user, pk)
    require_logs(request.user, deployment.pod)
    tail = logs.merged_tail_of(request.GET.get("tail"))
    chosen = _logged(deployment.workloads.all())
    return _stream(lambda: logs.merged(chosen, tail=tail, since=None, follow=True))


@login_required
@require_GET
def deployment_down(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The deployment's workloads that did not come up (their creation failed, or their container
    exited, was OOM-killed or restarts) with why and, where a container is left, its last lines
    (for those who may read logs: a viewer gets why only)."""
    deployment = permissions.get_deployment_for_user(request.user, pk)
    reads_logs = permissions.can_read_logs(request.user, deployment.pod)
    down = list(
        deployment.workloads.filter(
            Q(state=Workload.State.FAILED) | Q(state=Workload.State.RUNNING, status__in=Workload.DOWN)
        )
        .select_related("node")
        .order_by("seq", "pk")[:DOWN_SHOWN]
    )
    tails: dict[int, list[logs.Tagged]] = {w.pk: [] for w in down}
    with_container = [w for w in down if w.container_id] if reads_logs else []
    for item in logs.merged(with_container, tail=DOWN_TAIL, since=None, follow=False):
        if item is not None:
            tails[item.workload.pk].append(item)
    context = {
        "deployment": deployment,
        "down": [(w, tails[w.pk]) for w in down],
        "down_tail": DOWN_TAIL,
        "can_read_logs": reads_logs,
    }
    return render(request, "clusters/deployment_detail.html#down", context)


# --- workloads ----------------------------------------------------------------------------------
def _workload_for_deployer(request: HtmxHttpRequest, pk: int) -> Workload:
    workload = permissions.get_workload_for_user(request.user, pk)
    if not permissions.can_deploy(request.user, workload.pod):
        raise PermissionDenied(f"You may not operate workloads in pod {workload.pod.name}.")
    return workload


# What the workload page offers in each state (the service refuses the rest, whatever is posted).
_ACTIONS_BY_STATE: dict[str, tuple[str, ...]] = {
    Workload.State.RUNNING: ("stop", "restart"),
    Workload.State.STOPPED: ("start",),
}
_NOT_REMOVABLE = (Workload.State.PENDING, Workload.State.CREATING, Workload.State.REMOVING)


def _allowed_actions(workload: Workload) -> tuple[str, ...]:
    """The control buttons a workload's state allows: none while an action is under way."""
    if workload.action:
        return ()
    return tuple(a for a in _ACTIONS_BY_STATE.get(workload.state, ()) if a in services.CONTROL_ACTIONS)


@login_required
@require_GET
def workload_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A workload's state and resources; the state partial polls while a worker is busy with it."""
    try:
        workload = permissions.get_workload_for_user(request.user, pk)
    except Http404:
        if _wants(request, "workload-state") or _wants(request, "usage"):  # removed while the page polled
            return HttpResponseStopPolling('<p class="muted">This workload no longer exists.</p>')
        raise
    usage = usage_card.usage_card(
        request,
        reverse("clusters:workload-detail", args=[workload.pk]),
        lambda step, since: selectors.workload_usage(workload, step, since),
        cpu=workload.cpu_limit,
        memory=workload.memory_limit,
        line="limit",
        empty_note=usage_card.empty_note(workload.node),
    )
    if _wants(request, "usage"):
        return render(request, "clusters/workload_detail.html#usage", {"workload": workload, "usage": usage})
    sees = permissions.can_see_secrets(request.user, workload.pod)
    context: dict[str, Any] = {
        "usage": usage,
        "workload": workload,
        "pod": workload.pod,
        "can_deploy": permissions.can_deploy(request.user, workload.pod),
        # A viewer: the env's keys, no value, and no log panel (clusters.permissions).
        "env": workload.env if sees else secrets.mask_env(workload.env),
        "sees_secrets": sees,
        "can_read_logs": sees,
        "transient": workload.is_busy,
        "actions": _allowed_actions(workload),
        "can_remove": workload.state not in _NOT_REMOVABLE,
        "networks": sorted(workload.networks.items()),
        "labels": sorted(workload.labels.items()),
        "health_flips": selectors.health_transitions(workload) if workload.healthcheck else [],
        "cpu_map": sorted(workload.cpu_map.items(), key=lambda item: selectors.core_order(item[0])),
    }
    response = render(request, _template(request, "clusters/workload_detail.html", "workload-state"), context)
    if _wants(request, "workload-state") and not context["transient"]:
        return HttpResponseStopPolling(response.content)
    return response


@login_required
@require_POST
def workload_control(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    workload = _workload_for_deployer(request, pk)
    action = request.POST.get("action", "")
    try:
        services.workload_control(actor=_actor(request), workload=workload, action=action)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{action.capitalize()} of {workload.name} requested.")
    url = reverse("clusters:workload-detail", args=[workload.pk])
    return HttpResponseLocation(url) if _is_htmx(request) else redirect(url)


@login_required
@require_POST
def workload_remove(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    workload = _workload_for_deployer(request, pk)
    url = reverse("clusters:workload-detail", args=[workload.pk])
    try:
        services.workload_remove(actor=_actor(request), workload=workload)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Removal of {workload.name} requested.")
        if not Workload.objects.filter(pk=workload.pk).exists():  # a failed one is deleted at once
            url = reverse("clusters:pod-detail", args=[workload.pod.name])
    return HttpResponseLocation(url) if _is_htmx(request) else redirect(url)

"""The audit pages: the log filtered (GET parameters, paginated, newest first), one event with its
before/after diff, and the filtered log exported as CSV or JSON (streamed). Rows come from
clusters.permissions.visible_audit_events (staff all; others their pods' events), and every
before/after goes through clusters.secrets.scrub_audit on the way out, on the page and in exports.

Filters: actor (the name a row keeps: a username, or a node agent's principal), team (events whose
actor is in the team now, and the events about the team itself), action (one, or every action of an
entity: `workload.`), target type and target (its id or name), pod (the name a row keeps, so a
removed pod's events are found), via, a time range (from ≤ time < to, ISO 8601 or a browser's
datetime-local, in the server's time zone unless an offset is given) and free text: a substring,
case-insensitive, of the target's name, the actor's name, the action, the pod's name and the request
id, and of the stored before/after JSON (digests, never env values) in the pods whose secrets the
reader may see (staff: every row)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import CharField, F, Model, Q, QuerySet, Value
from django.db.models.functions import Cast
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from clusters import permissions, secrets, views
from clusters.models import AuditEvent, Deployment, LambdaRun, Node, Pod, Team, TeamMember, Workload
from clusters.users import AnyUser, HtmxHttpRequest

PAGE_SIZE = 50
EXPORT_MAX = 100_000
EXPORT_COLUMNS = (
    "id", "time", "actor", "via", "request_id", "action", "target_type", "target_id", "target_name",
    "pod", "before", "after",
)  # fmt: skip

# target_type -> (model, url name, the field its url takes)
LINKED: dict[str, tuple[type[Model], str, str]] = {
    "pod": (Pod, "pod-detail", "name"),
    "node": (Node, "node-detail", "name"),
    "team": (Team, "team-detail", "name"),
    "workload": (Workload, "workload-detail", "pk"),
    "deployment": (Deployment, "deployment-detail", "pk"),
    "lambdarun": (LambdaRun, "lambda-detail", "pk"),
}


def _action_choices() -> list[Any]:
    values = [str(v) for v in AuditEvent.Action.values]
    entities = sorted({v.split(".", 1)[0] + "." for v in values})
    return [
        ("", "any"),
        ("every action of", [(e, f"{e}*") for e in entities]),
        ("one action", [(v, v) for v in sorted(values)]),
    ]


def _text_field(max_length: int, placeholder: str, label: str | None = None) -> forms.CharField:
    widget = forms.TextInput(attrs={"placeholder": placeholder})
    return forms.CharField(required=False, max_length=max_length, widget=widget, label=label)


def _datetime_field() -> forms.DateTimeField:
    """ISO 8601 (an offset taken) or a browser's datetime-local (the server's time zone)."""
    return forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))


class AuditFilter(forms.Form):
    actor = _text_field(150, "a username")
    team = _text_field(64, "a team")
    action = forms.ChoiceField(required=False, choices=_action_choices)
    target_type = _text_field(32, "workload, node…")
    target = _text_field(200, "id or name")
    pod = _text_field(64, "all pods")
    via = forms.ChoiceField(required=False, choices=[("", "any"), *AuditEvent.Via.choices])
    q = _text_field(200, "free text", label="Text")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from"] = _datetime_field()  # not Python names: added here
        self.fields["to"] = _datetime_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("from"), data.get("to")
        if start and end and end <= start:
            self.add_error("to", "must be later than from")
        return data


def filtered(user: AnyUser | None, data: Mapping[str, Any]) -> QuerySet[AuditEvent]:
    """The events the user may see that pass the filter (AuditFilter's cleaned data), newest first."""
    events = permissions.visible_audit_events(user)
    if actor := data.get("actor"):
        events = events.filter(actor_name=actor)
    if team := data.get("team"):
        members = TeamMember.objects.filter(team__name=team).values("user")
        events = events.filter(Q(actor__in=members) | Q(target_type="team", target_name=team))
    if action := data.get("action"):
        events = (
            events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
        )
    if target_type := data.get("target_type"):
        events = events.filter(target_type=target_type.lower())
    if target := data.get("target"):
        events = events.filter(Q(target_id=target) | Q(target_name__iexact=target))
    if pod := data.get("pod"):
        events = events.filter(pod_name=pod)
    if via := data.get("via"):
        events = events.filter(via=via)
    if start := data.get("from"):
        events = events.filter(time__gte=start)
    if end := data.get("to"):
        events = events.filter(time__lt=end)
    if text := data.get("q"):
        events = events.filter(_text(user, text))
    return events.order_by("-time", "-id")


def _text(user: AnyUser | None, text: str) -> Q:
    fields = ("target_name", "actor_name", "action", "pod_name", "request_id")
    found = Q()
    for name in fields:
        found |= Q(**{f"{name}__icontains": text})
    in_json = Q(before__icontains=text) | Q(after__icontains=text)
    if not permissions.can_admin(user):  # a viewer's search must not probe what she may not read
        in_json &= Q(pod__in=permissions.pods_with_role(user, permissions.Role.DEPLOYER))
    return found | in_json


def _scrubbed(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    shown = list(events)
    for e in shown:  # a row written before digests (none should be left): digested on the way out
        e.before, e.after = secrets.scrub_audit(e.before), secrets.scrub_audit(e.after)
    return shown


def link_targets(events: list[AuditEvent]) -> None:
    """Set `link` on each event: the page of its target while that still exists, else "". One
    query for all of them (a UNION of one SELECT per kind of target present)."""
    wanted: dict[str, set[int]] = {}
    for e in events:
        e.link = ""  # type: ignore[attr-defined]
        if e.target_type in LINKED and e.target_id.isdigit():
            wanted.setdefault(e.target_type, set()).add(int(e.target_id))
    parts: list[QuerySet[Any, Any]] = []
    for kind, ids in wanted.items():
        model, _, arg = LINKED[kind]
        parts.append(
            model._default_manager.filter(pk__in=ids)
            .order_by()
            .annotate(
                audit_kind=Value(kind, output_field=CharField()),
                audit_arg=F("name") if arg == "name" else Cast("pk", CharField()),
            )
            .values_list("audit_kind", "pk", "audit_arg")
        )
    if not parts:
        return
    rows = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    urls = {(kind, str(pk)): reverse(f"clusters:{LINKED[kind][1]}", args=[arg]) for kind, pk, arg in rows}
    for e in events:
        e.link = urls.get((e.target_type, e.target_id), "")  # type: ignore[attr-defined]


def _form(request: HtmxHttpRequest) -> AuditFilter:
    form = AuditFilter(request.GET)
    form.is_valid()
    return form


@login_required
@require_GET
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    """The audit log, filtered and paginated; an invalid filter shows its errors and no rows."""
    form = _form(request)
    context: dict[str, Any] = {"form": form, "page": None, "events": [], "export_max": EXPORT_MAX}
    if not form.errors:
        rows = filtered(request.user, form.cleaned_data).select_related("pod")
        page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
        events = _scrubbed(page.object_list)
        link_targets(events)
        context.update(page=page, events=events)
    return render(request, views._template(request, "clusters/audit_list.html", "events"), context)


@dataclass(frozen=True)
class DiffRow:
    path: str  # dotted; "(value)" for a before/after that is no mapping
    kind: str  # added | removed | changed | same
    before: str
    after: str


_MISSING = object()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as {dotted.path: leaf}; a list, a scalar or an empty mapping is a leaf."""
    if data is None and not prefix:
        return {}
    if isinstance(data, Mapping) and (data or not prefix):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _shown(value: Any) -> str:
    if value is _MISSING:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, cls=DjangoJSONEncoder)


def diff(before: Any, after: Any) -> list[DiffRow]:
    """Every path of before and after: added, removed, changed or the same, sorted by path."""
    old, new = flatten(before), flatten(after)
    rows = []
    for path in sorted(old.keys() | new.keys()):
        was, now = old.get(path, _MISSING), new.get(path, _MISSING)
        if was is _MISSING:
            kind = "added"
        elif now is _MISSING:
            kind = "removed"
        else:
            kind = "changed" if was != now else "same"
        rows.append(DiffRow(path or "(value)", kind, _shown(was), _shown(now)))
    return rows


@login_required
@require_GET
def audit_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One event: who, what, through what, and its before/after as a diff."""
    event = get_object_or_404(permissions.visible_audit_events(request.user).select_related("pod"), pk=pk)
    (event,) = _scrubbed([event])
    link_targets([event])
    rows = diff(event.before, event.after)
    changes = [r for r in rows if r.kind != "same"]
    context = {"event": event, "changes": changes, "same": [r for r in rows if r.kind == "same"]}
    return render(request, "clusters/audit_detail.html", context)


# --- export -------------------------------------------------------------------------------------
class _Echo:
    """A file whose write returns what it was given (csv.writer into a stream)."""

    def write(self, value: str) -> str:
        return value


def _export_rows(events: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    fields = ("id", "time", "actor_name", "via", "request_id", "action", "target_type", "target_id")
    values = events.values(*fields, "target_name", "pod_name", "before", "after")[:EXPORT_MAX]
    for r in values.iterator(chunk_size=2000):
        yield {
            "id": r["id"], "time": r["time"].isoformat(), "actor": r["actor_name"], "via": r["via"],
            "request_id": r["request_id"], "action": r["action"], "target_type": r["target_type"],
            "target_id": r["target_id"], "target_name": r["target_name"], "pod": r["pod_name"],
            "before": secrets.scrub_audit(r["before"]), "after": secrets.scrub_audit(r["after"]),
        }  # fmt: skip


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        for key in ("before", "after"):
            r[key] = "" if r[key] is None else json.dumps(r[key], sort_keys=True, cls=DjangoJSONEncoder)
        yield writer.writerow([r[c] for c in EXPORT_COLUMNS])


def _json(rows: Iterator[dict[str, Any]], count: int) -> Iterator[str]:
    head = {"count": count, "limit": EXPORT_MAX, "truncated": count > EXPORT_MAX}
    yield json.dumps(head)[:-1] + ', "results": ['
    for i, r in enumerate(rows):
        yield ("," if i else "") + "\n" + json.dumps(r, cls=DjangoJSONEncoder)
    yield "\n]}\n"


@login_required
@require_GET
def audit_export(request: HtmxHttpRequest, fmt: str) -> HttpResponseBase:
    """The filtered log (every page, newest first, at most EXPORT_MAX rows; the headers and the JSON
    say when there were more) as CSV or JSON, streamed."""
    if fmt not in ("csv", "json"):
        raise Http404("export as csv or json")
    form = _form(request)
    if form.errors:
        text = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items())
        return HttpResponseBadRequest(text, content_type="text/plain; charset=utf-8")
    events = filtered(request.user, form.cleaned_data)
    count = events.count()
    rows = _export_rows(events)
    if fmt == "csv":
        response = StreamingHttpResponse(_csv(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(_json(rows, count), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    response["X-Eru-Export-Count"] = str(min(count, EXPORT_MAX))
    response["X-Eru-Export-Truncated"] = "true" if count > EXPORT_MAX else "false"
    return response

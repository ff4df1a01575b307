"""HTML forms: parsing and presentation only. The rules live in clusters.services; a form turns
the posted strings into the keyword arguments a service takes, and shows the service's errors."""

from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

import schema
from clusters.models import Pod

CPU_BIND_CHOICES = [("", "pod default"), ("bind", "bind (cpuset)"), ("unbind", "unbind (CFS quota)")]


def parse_pairs(text: str, *, field: str) -> dict[str, str]:
    """`key=value` lines (blank lines skipped) to a dict; a bad line names the field."""
    pairs: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"{field}: line {number} {line!r} must look like key=value")
        pairs[key.strip()] = value.strip()
    return pairs


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Show a service's ValidationError next to the field it names (else above the form)."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for path, messages in exc.message_dict.items():
        field = path.split(".")[0]  # `labels.zone`, `command.2`: shown beside labels, command
        if field == "spec":  # spec.entrypoints.web.restart: beside the spec, with its place in it
            messages = [m if m.startswith(path) else f"{path}: {m}" for m in messages]
        form.add_error(field if field in form.fields else None, messages)


class PodForm(forms.Form):
    name = forms.CharField(max_length=64)
    desc = forms.CharField(max_length=255, required=False, label="Description")
    favor = forms.ChoiceField(choices=Pod.Favor.choices, initial=Pod.Favor.CPU)


def _help(name: str) -> str:
    return schema.help_of(schema.DeployRequest, name)


def _initial(name: str) -> Any:
    value = schema.default_of(schema.DeployRequest, name)
    if name.startswith("memory_"):  # sizes as people write them; 0 (the request: = the limit) as empty
        return schema.format_size(value) if value else ""
    return value


def _text(name: str, rows: int, **kwargs: Any) -> forms.CharField:
    widget = forms.Textarea(attrs={"rows": rows})
    return forms.CharField(required=False, widget=widget, help_text=_help(name), **kwargs)


def _number(field: type[forms.Field], name: str, label: str | None = None, **attrs: Any) -> Any:
    widget = forms.NumberInput(attrs=attrs)
    return field(required=False, initial=_initial(name), help_text=_help(name), label=label, widget=widget)


class DeployForm(forms.Form):
    """The deploy request's fields (schema.DeployRequest) as HTML inputs: help and defaults come from
    the schema; this form only turns the posted strings into the schema's shapes."""

    app = forms.CharField(
        max_length=64, required=False, help_text=f"{_help('app')} (with a spec: its appname)"
    )
    entrypoint = forms.CharField(max_length=64, help_text=_help("entrypoint"))
    image = forms.CharField(max_length=255, initial="eru/busybox:latest", help_text=_help("image"))
    command = forms.CharField(
        required=False,
        help_text="a shell-like string, e.g. sh -c 'sleep 3600'",
        widget=forms.TextInput(attrs={"placeholder": "sleep 3600"}),
    )
    count = forms.IntegerField(
        initial=_initial("count"), help_text=_help("count"), widget=forms.NumberInput(attrs={"min": 1})
    )
    cpu_request = _number(forms.FloatField, "cpu_request", label="CPU request", step=0.01, min=0)
    cpu_limit = _number(forms.FloatField, "cpu_limit", label="CPU limit", step=0.01, min=0)
    memory_request = forms.CharField(
        required=False, initial=_initial("memory_request"), help_text=_help("memory_request")
    )
    memory_limit = forms.CharField(
        required=False, initial=_initial("memory_limit"), help_text=_help("memory_limit")
    )
    cpu_bind = forms.ChoiceField(choices=CPU_BIND_CHOICES, required=False, label="CPU bind")
    strategy = forms.ChoiceField(
        choices=[(s, s) for s in schema.STRATEGIES], initial=_initial("strategy"), help_text=_help("strategy")
    )
    nodes_limit = _number(forms.IntegerField, "nodes_limit", min=0)
    node_names = forms.MultipleChoiceField(
        required=False, label="Nodes", help_text="none selected = any available node"
    )
    node_labels = _text("node_labels", 2, label="Node labels")
    env = _text("env", 3)
    labels = _text("labels", 2)
    spec = forms.CharField(
        required=False,
        max_length=schema.spec.MAX_SPEC_TEXT,
        label="Eru spec file",
        help_text="optional: Eru's spec (YAML: appname, entrypoints with cmd, publish, healthcheck, hook, "
        "restart, …; volumes, labels, dns, extra_hosts). Its entrypoint named above is deployed; the "
        "fields above that you fill in win over the spec's.",
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
    )

    team = forms.ChoiceField(required=False, help_text=_help("team"))

    def __init__(
        self, *args: Any, node_names: list[str], teams: list[str] | None = None, **kwargs: Any
    ) -> None:
        """`teams`: the deployer's; a choice of them only when there are several (one is the default)."""
        super().__init__(*args, **kwargs)
        field = self.fields["node_names"]
        assert isinstance(field, forms.MultipleChoiceField)  # declared so above
        field.choices = [(n, n) for n in node_names]
        if teams and len(teams) > 1:
            team = self.fields["team"]
            assert isinstance(team, forms.ChoiceField)
            team.choices = [("", "choose a team"), *((t, t) for t in teams)]
        else:
            del self.fields["team"]

    def clean_command(self) -> list[str]:
        try:
            return shlex.split(self.cleaned_data["command"])
        except ValueError as exc:
            raise ValidationError(f"command: {exc}") from exc

    def clean_cpu_bind(self) -> bool | None:
        return {"bind": True, "unbind": False}.get(self.cleaned_data["cpu_bind"])

    def clean_env(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["env"].splitlines() if line.strip()]

    def clean_labels(self) -> dict[str, str]:
        return parse_pairs(self.cleaned_data["labels"], field="labels")

    def clean_node_labels(self) -> dict[str, str]:
        return parse_pairs(self.cleaned_data["node_labels"], field="node labels")

    def request_data(self) -> dict[str, Any]:
        """The deploy request's fields for services.deployment_validate (the view adds the pod). An
        emptied number means 0, as the help says (a cleared cpu limit is unlimited, not the default)."""
        data = dict(self.cleaned_data)
        for name in ("cpu_request", "cpu_limit", "nodes_limit"):
            data[name] = data[name] or 0
        if not data.get("spec", "").strip():
            data.pop("spec", None)
        if not data.get("team"):
            data.pop("team", None)
        return data

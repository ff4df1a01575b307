"""HTML forms: parsing and presentation only. The rules live in clusters.services; a form turns
the posted strings into the keyword arguments a service takes, and shows the service's errors."""

from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from clusters.models import Deployment, Pod

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
    for field, messages in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


class PodForm(forms.Form):
    name = forms.CharField(max_length=64)
    desc = forms.CharField(max_length=255, required=False, label="Description")
    favor = forms.ChoiceField(choices=Pod.Favor.choices, initial=Pod.Favor.CPU)


def _text(rows: int, help_text: str, **kwargs: Any) -> forms.CharField:
    return forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": rows}), help_text=help_text, **kwargs
    )


def _number(
    field: type[forms.Field], initial: float, help_text: str, label: str | None = None, **attrs: Any
) -> Any:
    widget = forms.NumberInput(attrs=attrs)
    return field(required=False, initial=initial, help_text=help_text, label=label, widget=widget)


class DeployForm(forms.Form):
    app = forms.CharField(max_length=64)
    entrypoint = forms.CharField(max_length=64)
    image = forms.CharField(max_length=255, initial="eru/busybox:latest")
    command = forms.CharField(
        required=False,
        help_text="a shell-like string, e.g. sh -c 'sleep 3600'",
        widget=forms.TextInput(attrs={"placeholder": "sleep 3600"}),
    )
    count = forms.IntegerField(initial=1, widget=forms.NumberInput(attrs={"min": 1}))
    cpu_request = _number(forms.FloatField, 0.0, "0 = the limit", step=0.01, min=0, label="CPU request")
    cpu_limit = _number(forms.FloatField, 1.0, "0 = unlimited", step=0.01, min=0, label="CPU limit")
    memory_request = forms.CharField(required=False, help_text="e.g. 256M; empty = the limit")
    memory_limit = forms.CharField(required=False, initial="512M", help_text="e.g. 512M, 1G; at least 4M")
    cpu_bind = forms.ChoiceField(choices=CPU_BIND_CHOICES, required=False, label="CPU bind")
    strategy = forms.ChoiceField(choices=Deployment.Strategy.choices, initial=Deployment.Strategy.AUTO)
    nodes_limit = _number(forms.IntegerField, 0, "0 = no limit", min=0)
    node_names = forms.MultipleChoiceField(
        required=False, label="Nodes", help_text="none selected = any available node"
    )
    node_labels = _text(2, "key=value lines; a node must match all", label="Node labels")
    env = _text(3, "KEY=value lines")
    labels = _text(2, "key=value lines")

    def __init__(self, *args: Any, node_names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["node_names"].choices = [(n, n) for n in node_names]

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

    def service_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for services.validate_deploy (the pod is the view's to add)."""
        data = self.cleaned_data
        return {
            "app": data["app"],
            "entrypoint": data["entrypoint"],
            "image": data["image"],
            "count": data["count"],
            "command": data["command"],
            "env": data["env"],
            "labels": data["labels"],
            "cpu_request": data["cpu_request"] or 0.0,
            "cpu_limit": data["cpu_limit"] or 0.0,
            "memory_request": data["memory_request"],
            "memory_limit": data["memory_limit"],
            "cpu_bind": data["cpu_bind"],
            "strategy": data["strategy"],
            "nodes_limit": data["nodes_limit"] or 0,
            "node_names": data["node_names"],
            "node_labels": data["node_labels"],
        }

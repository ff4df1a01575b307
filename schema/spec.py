"""Eru's spec file (reference/eru.md §1.6), as Eru's erucli reads it: an app and its entrypoints, each
with its command and container options, and the app's volumes, labels, dns and extra hosts. One of
its entrypoints plus the caller's own fields (pod, image, count, resources, env, …) make a deploy
request (schema.DeployRequest).

Everything in a spec is used or refused with its path (spec.entrypoints.web.restart): an unknown
key, a wrong type, a build section (images are built elsewhere here) or an AUTO volume is an error,
never dropped."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from schema.container import Hook, LogConfig
from schema.deploy import HealthCheck, Labels
from schema.errors import SchemaError, errors_of

MAX_SPEC_TEXT = 64 << 10
_BUILD = ("stages", "builds", "base")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecEntrypoint(_Strict):
    cmd: str = ""  # Eru's legacy string, split as a shell would
    commands: list[str] = Field(default_factory=list)  # argv; wins over cmd
    privileged: bool = False
    dir: str = ""
    log: LogConfig | None = None
    publish: list[str] = Field(default_factory=list)
    healthcheck: HealthCheck | None = None
    hook: Hook | None = None
    restart: str = ""
    sysctls: Labels = Field(default_factory=dict)


class SpecFile(_Strict):
    appname: str
    entrypoints: dict[str, SpecEntrypoint] = Field(min_length=1)
    volumes: list[str] = Field(default_factory=list)
    volumes_request: list[str] = Field(default_factory=list)  # Eru's storage request: the same binds
    labels: Labels = Field(default_factory=dict)
    meta: Labels = Field(default_factory=dict)  # older specs' name for labels
    dns: list[str] = Field(default_factory=list)
    extra_hosts: list[str] = Field(default_factory=list)


def load(spec: Any) -> SpecFile:
    """A spec from its YAML (or JSON) text or an already parsed mapping; SchemaError by path."""
    if isinstance(spec, str):
        if len(spec) > MAX_SPEC_TEXT:
            raise SchemaError({"spec": [f"spec: above the limit of {MAX_SPEC_TEXT >> 10} KiB"]})
        try:
            spec = yaml.safe_load(spec)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise SchemaError({"spec": [f"spec: not YAML{at}: {getattr(exc, 'problem', exc)}"]}) from None
    if not isinstance(spec, Mapping):
        raise SchemaError({"spec": ["spec: expected a mapping with appname and entrypoints"]})
    build = [k for k in _BUILD if k in spec]
    if build:
        raise SchemaError(
            {f"spec.{build[0]}": [f"spec.{build[0]}: image builds are not done here; give --image"]}
        )
    try:
        return SpecFile.model_validate(spec)
    except Exception as exc:
        errors = errors_of(exc)
        if errors is None:
            raise
        raise SchemaError(
            {f"spec.{path}": [f"spec.{m}" for m in msgs] for path, msgs in errors.items()}
        ) from exc


def deploy_fields(spec: Any, entrypoint: str) -> dict[str, Any]:
    """The deploy request's fields one entrypoint of the spec gives (app, command, options, …)."""
    parsed = load(spec)
    entry = parsed.entrypoints.get(entrypoint)
    if entry is None:
        known = ", ".join(sorted(parsed.entrypoints))
        raise SchemaError(
            {"entrypoint": [f"entry {entrypoint or '(none)'} not found in specs (it has: {known})"]}
        )
    try:
        command = entry.commands or (shlex.split(entry.cmd) if entry.cmd else [])
    except ValueError as exc:
        raise SchemaError({f"spec.entrypoints.{entrypoint}.cmd": [f"cmd: {exc}"]}) from None
    fields: dict[str, Any] = {
        "app": parsed.appname,
        "entrypoint": entrypoint,
        "command": command,
        "privileged": entry.privileged,
        "dir": entry.dir,
        "log": entry.log.model_dump() if entry.log else None,
        "publish": entry.publish,
        "healthcheck": entry.healthcheck.model_dump() if entry.healthcheck else None,
        "hook": entry.hook.model_dump() if entry.hook else None,
        "restart": entry.restart,
        "sysctls": entry.sysctls,
        "labels": {**parsed.meta, **parsed.labels},
        "dns": parsed.dns,
        "extra_hosts": parsed.extra_hosts,
        "volumes": list(dict.fromkeys([*parsed.volumes, *parsed.volumes_request])),
    }
    return {
        k: v for k, v in fields.items() if v not in (None, "", [], {}, False) or k in ("app", "entrypoint")
    }


_APP_LEVEL = {
    "app": "appname",
    "labels": "labels",
    "dns": "dns",
    "extra_hosts": "extra_hosts",
    "volumes": "volumes",
}


def merged(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A deploy body with a `spec` (text or mapping): the spec's fields for its `entrypoint`, then the
    body's own on top (given in both, the body's win; an app that is not the spec's is an error).
    Also where in the spec each field came from, so that an error can name the spec's line."""
    if "spec" not in data:
        return dict(data), {}
    body = {k: v for k, v in data.items() if k != "spec"}
    entrypoint = str(body.get("entrypoint") or "")
    fields = deploy_fields(data["spec"], entrypoint)
    if body.get("app") not in (None, "", fields["app"]):
        raise SchemaError({"app": [f"app: {body['app']!r} is not the spec's appname {fields['app']!r}"]})
    given = {k: v for k, v in body.items() if v not in (None, "", [], {})}
    origins = {
        k: f"spec.{_APP_LEVEL[k]}" if k in _APP_LEVEL else f"spec.entrypoints.{entrypoint}.{k}"
        for k in fields
        if k not in given and k != "entrypoint"
    }
    return {**fields, **given}, origins

"""Eru's DeployOptions and ReplaceOptions as this project's deploy fields (schema.DeployRequest), with
no database: what the deploy service validates next, or a refusal naming Eru's field.

What erucli sends, and how it is taken (runtime-notes §7):
- resources: JSON per plugin with dashed keys. `cpumem` (cpu-request, cpu-limit, memory-request,
  memory-limit in bytes, cpu-bind) becomes our resource fields; `storage` is always sent: zero or
  absent asks nothing, volumes-limit are binds (our `volumes`), a storage request is refused (this
  project has no storage plugin), as is any other plugin;
- erucli's own defaults are taken quietly: user root, debug false, ignore_hook false, no files, no
  after_create, no raw_args, one network without an IP (host: the pod's spec policy decides);
- every other field this project cannot honour is refused by its Eru name (INVALID_ARGUMENT)."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.core.exceptions import ValidationError

from protocol import core_pb2 as pb

Call = Literal["CreateWorkload", "CalculateCapacity", "RunAndWait", "ReplaceWorkload"]
CPUMEM = {
    "cpu-request": "cpu_request",
    "cpu-limit": "cpu_limit",
    "memory-request": "memory_request",
    "memory-limit": "memory_limit",
    "cpu-bind": "cpu_bind",
}
STORAGE = ("storage-request", "storage-limit", "volumes-request", "volumes-limit")
USERS = ("", "root")  # erucli's default is root: the containers run as their image says
NO_STORAGE = (
    "this project has no storage plugin (no disk quotas): leave --storage and --storage-request unset"
)
HOST_HINT = "erucli deploys on the host network by default: pass --network bridge"


@dataclass(frozen=True)
class Deploy:
    """A deploy as the services take it: the pod's name, the fields for deployment_validate (no pod),
    and the nodes to leave out (node_filter.excludes: resolved against the pod's nodes by the caller)."""

    pod: str
    data: dict[str, Any]
    excludes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Replace:
    """A replace: the pod's name (may be empty: the caller finds it), the body for workload_replace
    (selection by app, entrypoint, nodes and filter_labels; the fields given), and Eru's container ids."""

    pod: str
    data: dict[str, Any]
    ids: list[str]


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, name: str, text: str) -> None:
        self.by_field.setdefault(name, []).append(f"{name}: {text}")

    def raise_any(self) -> None:
        if self.by_field:
            raise ValidationError(self.by_field)


def _command(ep: pb.EntrypointOptions, extra_args: str, errors: _Errors) -> list[str]:
    """Eru's: entrypoint.commands as given, else `command` and extra_args split as a shell would."""
    if ep.commands:
        if extra_args:
            errors.add(
                "extra_args",
                "given with entrypoint.commands, which Eru takes as they are; add the arguments to the "
                "commands instead",
            )
        return list(ep.commands)
    line = f"{ep.command} {extra_args}".strip()
    try:
        return shlex.split(line)
    except ValueError as exc:
        errors.add("entrypoint.command", f"cannot be split into arguments ({exc})")
        return []


def _json(raw: bytes, name: str, errors: _Errors) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        errors.add(name, "not JSON")
        return {}
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add(name, "a JSON object of parameters")
        return {}
    return value


def _number(value: Any, name: str, errors: _Errors, *, whole: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(name, f"{value!r} is not a number")
        return None
    if whole and value != int(value):
        errors.add(name, f"{value!r} is not a whole number of bytes")
        return None
    if value < 0:
        errors.add(name, f"{value!r} is negative")
        return None
    return int(value) if whole else float(value)


def resources_fields(resources: Mapping[str, bytes]) -> dict[str, Any]:
    """Eru's per-plugin resources (dashed keys) as our fields: cpu_request, cpu_limit,
    memory_request, memory_limit, cpu_bind and volumes. Raises ValidationError by Eru's names."""
    errors = _Errors()
    out = _resources(resources, errors)
    errors.raise_any()
    return out


def _resources(resources: Mapping[str, bytes], errors: _Errors, *, capacity: bool = False) -> dict[str, Any]:
    """capacity: erucli's `pod capacity`, which sends `cpu` and `memory` (each both request and limit)
    and a storage entry {"storage": 0}."""
    out: dict[str, Any] = {}
    for plugin in sorted(resources):
        if plugin not in ("cpumem", "storage"):
            errors.add(
                f"resources.{plugin}",
                f"this project has no {plugin} resource plugin (only cpumem; storage zero)",
            )
    cpumem = _json(resources.get("cpumem", b""), "resources.cpumem", errors)
    for key, value in cpumem.items():
        name = f"resources.cpumem.{key}"
        if capacity and key in ("cpu", "memory"):
            if (number := _number(value, name, errors, whole=key == "memory")) is not None:
                out[f"{key}_request"] = out[f"{key}_limit"] = number
        elif key not in CPUMEM:
            errors.add(name, f"unknown parameter (cpumem takes {', '.join(CPUMEM)})")
        elif key == "cpu-bind":
            if not isinstance(value, bool):
                errors.add(name, "true or false")
            else:
                out["cpu_bind"] = value
        elif (number := _number(value, name, errors, whole=key.startswith("memory"))) is not None:
            out[CPUMEM[key]] = number
    if cpumem:  # erucli sends cpu-bind only when set: absent is Eru's unbound, not the pod's favor
        out.setdefault("cpu_bind", False)
    storage = _json(resources.get("storage", b""), "resources.storage", errors)
    for key, value in storage.items():
        name = f"resources.storage.{key}"
        if key not in STORAGE and not (capacity and key == "storage"):
            errors.add(name, f"unknown parameter; {NO_STORAGE}")
        elif key in ("storage-request", "storage-limit", "storage"):
            if value not in (None, 0, "", "0"):
                errors.add(name, f"{value!r}: {NO_STORAGE}")
        elif value not in (None, []) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            errors.add(name, "a list of volumes such as /host/path:/in/container[:ro]")
    limits = [str(v) for v in storage.get("volumes-limit") or []]
    requests = [str(v) for v in storage.get("volumes-request") or []]
    if requests and requests != limits:
        errors.add(
            "resources.storage.volumes-request",
            "volumes are bound as volumes-limit gives them; a separate request needs Eru's storage plugin",
        )
    if limits:
        out["volumes"] = limits
    return out


def _network(networks: Mapping[str, str], errors: _Errors) -> str:
    if len(networks) > 1:
        errors.add("networks", f"one network per workload here, not {len(networks)} ({', '.join(networks)})")
        return ""
    for name, ip in networks.items():
        if ip:
            errors.add("networks", f"a fixed IP ({name}={ip}) is not supported: give the network name only")
        return name
    return ""


def _refusals(opts: pb.DeployOptions, call: Call, errors: _Errors) -> None:
    """Fields this project cannot honour, unless at erucli's defaults (which are ignored)."""
    if opts.user not in USERS:
        errors.add("user", f"{opts.user[:40]!r}: containers run as their image's user; leave --user at root")
    if opts.debug:
        errors.add("debug", "Eru's debug mode (its debug log driver) is not supported; leave --debug off")
    if opts.open_stdin and call != "RunAndWait":
        errors.add("open_stdin", "stdin is taken by RunAndWait (erucli lambda --stdin) only")
    for name in ("data", "modes", "owners"):
        if len(getattr(opts, name)):
            errors.add(name, "sending files into the container (erucli --file) is not supported")
    if opts.after_create:
        errors.add("after_create", "commands after create are not supported; use the entrypoint's hook")
    if opts.raw_args:
        errors.add("raw_args", "raw engine arguments are not supported (use the spec's fields)")
    if opts.HasField("node_filter") and opts.node_filter.all:
        errors.add("node_filter.all", "a deploy goes to available nodes only")
    if opts.deploy_strategy == pb.DeployOptions.DUMMY and call != "CalculateCapacity":
        errors.add("deploy_strategy", "DUMMY is Eru's dry run: use --dry-run (CalculateCapacity)")
    if opts.ignore_hook and (call == "ReplaceWorkload" or (opts.entrypoint.hook.after_start)):
        errors.add("ignore_hook", "hooks always run here; take them out of the spec instead")


def _entrypoint(ep: pb.EntrypointOptions, data: dict[str, Any], errors: _Errors) -> None:
    if ep.privileged:
        data["privileged"] = True
    for name in ("dir", "restart"):
        if value := getattr(ep, name):
            data[name] = value
    if ep.publish:
        data["publish"] = list(ep.publish)
    if ep.sysctls:
        data["sysctls"] = dict(ep.sysctls)
    if ep.HasField("log") and ep.log.type:
        data["log"] = {"type": ep.log.type, "config": dict(ep.log.config)}
    if ep.HasField("healthcheck"):
        h = ep.healthcheck
        check: dict[str, Any] = {"tcp_ports": list(h.tcp_ports), "http_port": h.http_port, "code": h.code}
        if h.url:
            check["url"] = h.url
        data["healthcheck"] = check
    if ep.HasField("hook") and (ep.hook.after_start or ep.hook.before_stop):
        data["hook"] = {
            "after_start": list(ep.hook.after_start),
            "before_stop": list(ep.hook.before_stop),
            "force": ep.hook.force,
        }


def _fields(opts: pb.DeployOptions, call: Call, errors: _Errors) -> dict[str, Any]:
    """The fields of a deploy (every one; a replace keeps only those given: see replace_fields)."""
    _refusals(opts, call, errors)
    data: dict[str, Any] = {"count": opts.count}
    if opts.name:
        data["app"] = opts.name
    if not opts.HasField("entrypoint") or not opts.entrypoint.name:
        if call == "RunAndWait":
            data["entrypoint"] = "run"  # erucli lambda's --name has no default; the REST lambda's
        else:
            errors.add("entrypoint.name", "the entrypoint to deploy is required")
    else:
        data["entrypoint"] = opts.entrypoint.name
    command = _command(opts.entrypoint, opts.extra_args, errors)
    if command:
        data["command"] = command
    _entrypoint(opts.entrypoint, data, errors)
    if opts.image:
        data["image"] = opts.image
    for name in ("env", "dns", "extra_hosts"):
        if value := list(getattr(opts, name)):
            data[name] = value
    if opts.labels:
        data["labels"] = dict(opts.labels)
    network = _network(opts.networks, errors)
    if network:
        data["network"] = network
    nf = opts.node_filter
    names = sorted({*opts.nodenames, *nf.includes})
    if names:
        data["node_names"] = names
    labels = {**opts.nodelabels, **nf.labels}
    if labels:
        data["node_labels"] = labels
    if opts.deploy_strategy not in pb.DeployOptions.Strategy.values():
        errors.add("deploy_strategy", f"{opts.deploy_strategy} is none of Eru's strategies")
    elif opts.deploy_strategy != pb.DeployOptions.DUMMY:
        data["strategy"] = pb.DeployOptions.Strategy.Name(opts.deploy_strategy)
    if opts.nodes_limit:
        data["nodes_limit"] = opts.nodes_limit
    resources = _resources(opts.resources, errors, capacity=call == "CalculateCapacity")
    if "volumes" in resources:
        data["volumes"] = resources.pop("volumes")
    data.update(resources)
    return data


def deploy_fields(opts: pb.DeployOptions, call: Call = "CreateWorkload") -> Deploy:
    """A DeployOptions (CreateWorkload, CalculateCapacity, RunAndWait) as a Deploy; ValidationError
    naming Eru's fields for what cannot be honoured (all of them at once)."""
    errors = _Errors()
    if not opts.podname:
        errors.add("podname", "the pod to deploy into is required (erucli --pod)")
    data = _fields(opts, call, errors)
    errors.raise_any()
    return Deploy(pod=opts.podname, data=data, excludes=sorted(set(opts.node_filter.excludes)))


# What a replace takes from Eru's DeployOptions when given (non-empty): the others stay as each
# workload had them (resources always: a replace keeps them; see realloc).
REPLACE_FIELDS = ("command", "env", "labels", "network", "image", "privileged", "dir", "log", "publish",
                  "restart", "sysctls", "dns", "extra_hosts", "volumes", "healthcheck", "hook")  # fmt: skip


def replace_fields(opts: pb.ReplaceOptions) -> Replace:
    """A ReplaceOptions as a Replace: workloads by deployOpt.name/entrypoint (and podname, nodes,
    filter_labels, IDs); Eru's networkinherit is what a replace does here when no network is given."""
    errors = _Errors()
    d = opts.deployOpt
    if not opts.HasField("deployOpt"):
        errors.add("deployOpt", "the deploy options of the replacement are required")
    if opts.copy:
        errors.add("copy", "copying files from the old container is not supported")
    if opts.networkinherit and d.networks:
        errors.add("networkinherit", "given with networks: inherit the old network, or name one, not both")
    if not d.name:
        errors.add("deployOpt.name", "the app whose workloads are replaced is required")
    fields = _fields(d, "ReplaceWorkload", errors)
    if d.node_filter.excludes:
        errors.add("deployOpt.node_filter.excludes", "a replace selects by node names (includes) only")
    if d.nodelabels or d.node_filter.labels:
        errors.add("deployOpt.nodelabels", "a replace selects by node names and filter_labels only")
    errors.raise_any()
    data: dict[str, Any] = {"app": fields["app"], "entrypoint": fields["entrypoint"], "batch": 0}
    data.update({k: v for k, v in fields.items() if k in REPLACE_FIELDS})
    if "node_names" in fields:
        data["nodes"] = fields["node_names"]
    if opts.filter_labels:
        data["filter_labels"] = dict(opts.filter_labels)
    return Replace(pod=d.podname, data=data, ids=list(dict.fromkeys(opts.IDs)))

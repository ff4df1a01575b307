"""A deploy request, described once: its fields, their types, limits and defaults.

Pydantic models, read by everything that takes a deploy: the REST API (which also documents them in
OpenAPI), the portal's form (defaults and help), this project's erucli (flags' defaults and help) and,
later, the spec-file parser and the gRPC mapping. Rules that need the pod or the server's settings
(Eru's resource rules, the network allow-list) belong to the deploy service, not here.

`Resources` ⊂ `Placement` (the capacity dry run: pod, node filter, resources) ⊂ `DeployRequest`.
To extend a deploy (the spec file's entrypoint options, say), add fields to `DeployRequest`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, TypeVar, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schema import container
from schema.container import Hook, LogConfig
from schema.errors import SchemaError, errors_of
from schema.reference import is_image_reference
from schema.units import parse_size

T = TypeVar("T")
MiB = 1 << 20
MAX_DEPLOY_COUNT = 1000  # instances one deploy may make (what the plan makes, EACH × nodes included)
MAX_DEPLOY_TIMEOUT = 86_400  # s: a deployment's timeout, at most a day
MAX_NODES_LIMIT = 10000
MAX_SPEC_BYTES = 64 << 10  # command, env and labels, each: copied into every workload row and container
MAX_CPU = 1024.0  # cpus in one request: far above any host, low enough for Docker's quota maths
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")  # pods, nodes, entrypoints
APP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
STRATEGIES = ("AUTO", "FILL", "EACH", "GLOBAL", "DRAINED")
RESOURCE_FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "cpu_bind")
CONTAINER_FIELDS = ("privileged", "dir", "log", "publish", "restart", "sysctls", "dns", "extra_hosts",
                    "volumes", "cap_add", "hook")  # fmt: skip

Entry = Literal["portal", "grpc"]
# The defaults each way in: the field defaults below are the portal's (REST, the form and this
# project's erucli, which take Eru's erucli defaults: cpu limit 1.0 and 512M); the gRPC mapping, like
# Eru's core, reads an absent resource as 0 = unlimited.
ENTRY_DEFAULTS: dict[Entry, dict[str, Any]] = {"portal": {}, "grpc": {"cpu_limit": 0.0, "memory_limit": 0}}


def _not_bool(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{info.field_name}: expected a number, not true/false")
    return value


def _size(value: Any, info: ValidationInfo) -> int:
    return parse_size(value, field=str(info.field_name))


def _number_as_text(value: Any) -> Any:
    """Numbers are taken as their text, as the API took them before (a node named 1, an argv 3600)."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _trimmed(value: Any) -> Any:
    value = _number_as_text(value)
    return value.strip() if isinstance(value, str) else value


Cpus = Annotated[float, BeforeValidator(_not_bool)]
Text = Annotated[str, BeforeValidator(_trimmed)]  # names and such: surrounding blanks dropped
Arg = Annotated[str, BeforeValidator(_number_as_text)]  # argv: kept as given
Size = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "examples": ["512M"]}]}),
]
Count = Annotated[int, BeforeValidator(_not_bool)]
Labels = dict[str, Annotated[str, BeforeValidator(_number_as_text)]]


def clean_labels(labels: Mapping[str, Any]) -> dict[str, str]:
    """Keys trimmed, non-empty and without '='; values as strings. Raises ValueError (the caller
    names the field: the schema by its path, the node services as `labels`)."""
    result: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key.strip() or "=" in key:
            raise ValueError(f"label key {key!r} must be a non-empty string without '='")
        result[key.strip()] = str(value)
    return result


def _json_size(value: T, field: str) -> T:
    size = len(json.dumps(value, default=str))
    if size > MAX_SPEC_BYTES:
        raise ValueError(f"{field}: {size} bytes is above the limit of {MAX_SPEC_BYTES // 1024} KiB")
    return value


class _Model(BaseModel):
    # Unknown fields are ignored, as the API always did (the spec-file issue makes them an error).
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, entry: Entry = "portal") -> Self:
        """Validate `data` with the defaults of `entry`; every bad field at once as a SchemaError."""
        if not isinstance(data, Mapping):
            raise SchemaError({"non_field_errors": ["expected an object of deploy fields"]})
        merged = {**{k: v for k, v in ENTRY_DEFAULTS[entry].items() if k in cls.model_fields}, **data}
        try:
            return cls.model_validate(merged)
        except Exception as exc:  # pydantic's ValidationError; anything else is a bug and re-raised
            errors = errors_of(exc)
            if errors is None:
                raise
            raise SchemaError(errors) from exc


def help_of(model: type[BaseModel], name: str) -> str:
    """A field's description, for help texts (form, erucli)."""
    return model.model_fields[name].description or ""


def default_of(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].get_default(call_default_factory=True)


def container_fields(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    """The model's list fields and map fields (a form-encoded body spells them differently)."""
    origins = {name: get_origin(info.annotation) for name, info in model.model_fields.items()}
    return {n for n, o in origins.items() if o is list}, {n for n, o in origins.items() if o is dict}


class Resources(_Model):
    """What a workload asks for: requests are deducted from a node, limits enforced by Docker."""

    cpu_request: Cpus = Field(0.0, description="cpus deducted from the node; 0 = the limit")
    cpu_limit: Cpus = Field(1.0, description="cpus Docker enforces; 0 = unlimited")
    memory_request: Size = Field(0, description="bytes or a size like 256M deducted; 0 = the limit")
    memory_limit: Size = Field(
        512 * MiB, description="bytes or a size like 512M; 0 = unlimited, else at least 6M (Docker's minimum)"
    )
    cpu_bind: bool | None = Field(
        None, description="pin to cores (cpuset); default: the pod's favor (cpu pods bind)"
    )

    @field_validator("cpu_request", "cpu_limit")
    @classmethod
    def _cpus(cls, value: float, info: ValidationInfo) -> float:
        if not math.isfinite(value):
            raise ValueError(f"{info.field_name}: must be a number of cpus")
        if value > MAX_CPU:
            raise ValueError(f"{info.field_name}: {value} is above the limit of {MAX_CPU:g} cpus")
        return value


class HealthCheck(_Model):
    """Eru's health check: every TCP port connects, and the HTTP check (if a port is given) answers
    GET {url} with `code` (0: any status from 200 to 499), against the container's address."""

    tcp_ports: list[str] = Field(
        default_factory=list, description="container ports that must accept a connection"
    )
    http_port: str = Field("", description="container port of the HTTP check; empty: none")
    url: str = Field("/", description="path of the HTTP check")
    code: int = Field(0, description="the status the HTTP check expects; 0: any from 200 to 499")

    @field_validator("tcp_ports", mode="before")
    @classmethod
    def _tcp_ports(cls, value: Any) -> Any:
        return [_port(p, "healthcheck.tcp_ports") for p in value] if isinstance(value, list) else value

    @field_validator("http_port", mode="before")
    @classmethod
    def _http_port(cls, value: Any) -> Any:
        if isinstance(value, int | str) and not isinstance(value, bool):
            return _port(value, "healthcheck.http_port") if str(value).strip() else ""
        return value

    @model_validator(mode="after")
    def _something_to_check(self) -> Self:
        if not self.tcp_ports and not self.http_port:
            raise ValueError("healthcheck: give tcp_ports, an http_port, or both")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip() or "/"
        if not value.startswith("/") or len(value) > 1024 or not all(33 <= ord(c) < 127 for c in value):
            raise ValueError(
                "healthcheck.url: a path such as /healthz (printable ASCII, at most 1024 characters)"
            )
        return value

    @field_validator("code")
    @classmethod
    def _code(cls, value: int) -> int:
        if value != 0 and not 100 <= value <= 599:
            raise ValueError("healthcheck.code: an HTTP status from 100 to 599, or 0 for any from 200 to 499")
        return value

    def eru_json(self) -> dict[str, Any]:
        """As Eru's core writes it into the ERU_META label (Go's field names), for Eru's agent too."""
        return {
            "TCPPorts": self.tcp_ports,
            "HTTPPort": self.http_port,
            "HTTPURL": self.url,
            "HTTPCode": self.code,
        }


def _port(value: Any, field: str) -> str:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{field}: {text[:20]!r} is not a port from 1 to 65535")
    return str(int(text))


class Placement(Resources):
    """Where: a pod and, optionally, which of its nodes. The capacity dry run takes only this."""

    pod: Text = Field(min_length=1, max_length=64, description="the pod to deploy into")
    node_names: list[Text] = Field(
        default_factory=list, description="only these nodes (they must be up); none = any"
    )
    node_labels: Labels = Field(default_factory=dict, description="only nodes with all of these labels")

    @field_validator("node_names")
    @classmethod
    def _node_names(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @field_validator("node_labels")
    @classmethod
    def _node_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return clean_labels(value)


class DeployRequest(Placement):
    """One deploy: `count` workloads of app/entrypoint from an image, placed by a strategy, with
    Eru's container options (schema.container). A field it does not know is an error, not dropped."""

    model_config = ConfigDict(extra="forbid")

    app: Text = Field(max_length=64, description="app name: letters, digits, '_', '.' and '-'")
    entrypoint: Text = Field(
        max_length=64, description="entrypoint name: letters, digits, '.' and '-' (no '_')"
    )
    image: Text = Field(max_length=255, description="image reference, e.g. eru/busybox:latest (never pulled)")
    count: Count = Field(1, description="how many; its meaning depends on the strategy")
    command: list[Arg] = Field(default_factory=list, description='argv, e.g. ["sleep", "3600"]')
    env: list[Text] = Field(default_factory=list, description="KEY=value entries")
    labels: Labels = Field(default_factory=dict, description="workload labels")
    network: Text = Field("", max_length=64, description="docker network; empty = the node's default bridge")
    strategy: str = Field(
        "AUTO",
        description="AUTO: balance counts; FILL: top up to count per node; EACH: count per node; "
        "GLOBAL: by usage; DRAINED: emptiest first (any case)",
    )
    nodes_limit: Count = Field(0, description="at most this many nodes (AUTO: per node); 0 = no limit")
    healthcheck: HealthCheck | None = Field(
        None, description="Eru's health check (tcp_ports, http_port, url, code); none: health is 'none'"
    )
    # Eru's container options (reference/eru.md §1.5); a non-admin needs the pod's policy for some.
    privileged: bool = Field(False, description="privileged container (root, every capability)")
    dir: Text = Field("", max_length=1024, description="working directory in the container (absolute)")
    log: LogConfig | None = Field(None, description="Docker log driver {type, config}; none: the node's")
    publish: list[Text] = Field(
        default_factory=list,
        description='ports published on the node: "80" (the node\'s 80, as Eru), "8080:80", "53/udp"',
    )
    restart: Text = Field("", description="restart policy: no, always, unless-stopped, on-failure[:N]")
    sysctls: Labels = Field(default_factory=dict, description="sysctls, e.g. net.core.somaxconn: 1024")
    dns: list[Text] = Field(default_factory=list, description="DNS servers (IP addresses)")
    extra_hosts: list[Text] = Field(default_factory=list, description="name:IP entries for /etc/hosts")
    volumes: list[Text] = Field(
        default_factory=list, description="/host/path:/in/container[:ro|rw] binds or name:/path volumes"
    )
    cap_add: list[Text] = Field(default_factory=list, description="capabilities added, e.g. NET_ADMIN")
    hook: Hook | None = Field(None, description="Eru's hooks: after_start, before_stop, force")
    timeout: int | None = Field(
        None,
        description=f"seconds before the deployment is cancelled (1 to {MAX_DEPLOY_TIMEOUT}); none: never",
    )
    team: Text | None = Field(
        None,
        max_length=64,
        description="the team on whose quota it runs (you must be in it); none: your only team, if one",
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_DEPLOY_TIMEOUT:
            raise ValueError(f"timeout: {value} s is outside 1 to {MAX_DEPLOY_TIMEOUT} s")
        return value

    @field_validator("app")
    @classmethod
    def _app(cls, value: str) -> str:
        if not value:
            raise ValueError("app name is empty")
        if not APP_RE.match(value):
            raise ValueError("app name: use letters, digits, '_', '.' and '-' (at most 63 characters)")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not value:
            raise ValueError("entrypoint name is empty")
        if "_" in value:
            raise ValueError("entrypoint name has '_' character")
        if not NAME_RE.match(value):
            raise ValueError("entrypoint name: use letters, digits, '.' and '-' (at most 63 characters)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value:
            raise ValueError("image is empty")
        if not is_image_reference(value):
            raise ValueError(
                f"image {value[:80]!r} is not a valid image reference: [host[:port]/]name[:tag][@digest], "
                "the name in lower case"
            )
        return value

    @field_validator("count")
    @classmethod
    def _count(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"count: {value}: invalid deploy count, must be at least 1")
        if value > MAX_DEPLOY_COUNT:
            raise ValueError(f"count: {value} is above the limit of {MAX_DEPLOY_COUNT} per deploy")
        return value

    @field_validator("nodes_limit")
    @classmethod
    def _nodes_limit(cls, value: int) -> int:
        if value < 0:
            raise ValueError("nodes_limit must be 0 (no limit) or more")
        if value > MAX_NODES_LIMIT:
            raise ValueError(f"nodes_limit: {value} is above the limit of {MAX_NODES_LIMIT}")
        return value

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        strategy = value.strip().upper() if isinstance(value, str) else value
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
        return strategy

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[str]) -> list[str]:
        bad = [item for item in value if "=" not in item or item.startswith("=")]
        if bad:
            raise ValueError(f"env entry {bad[0][:80]!r} must look like KEY=value")
        return _json_size(value, "env")

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        return _json_size(value, "command")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _json_size(clean_labels(value), "labels")

    @field_validator("dir", "publish", "restart", "sysctls", "dns", "extra_hosts", "volumes", "cap_add")
    @classmethod
    def _container(cls, value: Any, info: ValidationInfo) -> Any:
        return _json_size(getattr(container, f"check_{info.field_name}")(value), str(info.field_name))

    def container_options(self) -> dict[str, Any]:
        """The options a workload keeps for its container (Workload.options): only those given."""
        return {
            f: v
            for f, v in self.model_dump(include=set(CONTAINER_FIELDS)).items()
            if v not in (None, "", [], {}, False)
        }

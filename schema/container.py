"""A workload's container options beyond its command and resources, as Eru's entrypoint and deploy
options have them (reference/eru.md §1.5): privileged, working dir, log driver, published ports,
restart policy, sysctls, dns, extra hosts, volumes, added capabilities and hooks. Each value is
checked here for its shape; who may ask for what (the pod's spec policy) is the deploy service's."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:\d{1,4})?)$")
PORT_RE = re.compile(r"^(?:(\d{1,5}):)?(\d{1,5})(?:/(tcp|udp))?$")
SYSCTL_RE = re.compile(r"^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$")
CAP_RE = re.compile(r"^(CAP_)?[A-Z_]{2,32}$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_HOOK_COMMANDS = 20


def _as_text(value: Any) -> Any:
    """Numbers as their text (Eru's specs write max-file: 3)."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogConfig(_Strict):
    """Docker's log driver of the container (Eru's `log`); none given: the node's default."""

    type: str = Field("json-file", max_length=32, description="the log driver, e.g. json-file, local, none")
    config: dict[str, Annotated[str, BeforeValidator(_as_text)]] = Field(
        default_factory=dict, description="its options, e.g. max-size: 10m, max-file: 3"
    )

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", value):
            raise ValueError(f"log.type: {value[:40]!r} is not a log driver name")
        return value


class Hook(_Strict):
    """Eru's hooks: commands run in the container after it starts and before it stops (never on a
    remove); with force, a failing after_start fails the workload (and a failing before_stop the stop)."""

    after_start: list[str] = Field(default_factory=list, description="commands run after a start")
    before_stop: list[str] = Field(default_factory=list, description="commands run before a stop")
    force: bool = Field(False, description="a failing hook fails what it hooks")

    @field_validator("after_start", "before_stop")
    @classmethod
    def _commands(cls, value: list[str], info: Any) -> list[str]:
        if len(value) > MAX_HOOK_COMMANDS:
            raise ValueError(f"hook.{info.field_name}: at most {MAX_HOOK_COMMANDS} commands")
        if any(not c.strip() or len(c) > 4096 for c in value):
            raise ValueError(
                f"hook.{info.field_name}: each command a non-empty line of at most 4096 characters"
            )
        return value


def check_dir(value: str) -> str:
    if value and (not value.startswith("/") or "\0" in value):
        raise ValueError("dir: an absolute path in the container, such as /app")
    return value


def check_publish(value: list[str]) -> list[str]:
    """Ports as Eru takes them ("80": the node's port 80 to the container's) or host:container,
    each with /tcp (the default) or /udp."""
    for item in value:
        match = PORT_RE.match(item)
        ports = [p for p in (match.group(1), match.group(2)) if p] if match else []
        if not match or not all(1 <= int(p) <= 65535 for p in ports):
            raise ValueError(f'publish: {item[:40]!r} is not a port such as "80", "8080:80" or "53/udp"')
    return value


def check_restart(value: str) -> str:
    if value and not RESTART_RE.match(value):
        raise ValueError("restart: no, always, unless-stopped or on-failure[:N]")
    return value


def check_sysctls(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not SYSCTL_RE.match(key):
            raise ValueError(f"sysctls: {key[:60]!r} is not a sysctl name such as net.core.somaxconn")
    return value


def check_dns(value: list[str]) -> list[str]:
    for item in value:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(f"dns: {item[:40]!r} is not an IP address") from None
    return value


def check_extra_hosts(value: list[str]) -> list[str]:
    for item in value:
        host, _, address = item.partition(":")
        try:
            ipaddress.ip_address(address)
            ok = bool(HOST_RE.match(host))
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"extra_hosts: {item[:60]!r} should look like name:10.0.0.5")
    return value


def check_volumes(value: list[str]) -> list[str]:
    """Binds of a host path ("/var/log:/var/log[:ro]") or named volumes ("data:/data"), their paths
    normalised as the kernel reads them (/var/./run//x is /var/run/x): what the spec policy checks
    is what Docker binds. Eru's AUTO volumes are its storage plugin's, which this core has not:
    refused, not dropped."""
    out = []
    for item in value:
        parts = item.split(":")
        if parts[0] == "AUTO":
            raise ValueError(f"volumes: {item[:60]!r}: AUTO volumes need Eru's storage plugin, not here")
        mode_ok = len(parts) == 2 or (len(parts) == 3 and parts[2] in ("ro", "rw"))
        source_ok = parts[0].startswith("/") or bool(VOLUME_NAME_RE.match(parts[0]))
        if not (mode_ok and source_ok and parts[1].startswith("/")) or ".." in item.replace(":", "/").split(
            "/"
        ):
            raise ValueError(
                f"volumes: {item[:60]!r} should look like /host/path:/in/container[:ro|rw] or name:/path"
            )
        source = clean_path(parts[0]) if parts[0].startswith("/") else parts[0]
        out.append(":".join([source, clean_path(parts[1]), *parts[2:]]))
    return out


def clean_path(path: str) -> str:
    """An absolute path as the kernel resolves its spelling (no //, /./ or trailing /)."""
    return "/" + posixpath.normpath(path).lstrip("/")


def check_cap_add(value: list[str]) -> list[str]:
    caps = [v.upper() for v in value]
    for cap in caps:
        if not CAP_RE.match(cap):
            raise ValueError(f"cap_add: {cap[:40]!r} is not a capability such as NET_ADMIN")
    return [c.removeprefix("CAP_") for c in caps]


def docker_options(options: dict[str, Any], *, host_network: bool = False) -> dict[str, Any]:
    """The docker SDK's create arguments for stored container options (Workload.options)."""
    out: dict[str, Any] = {}
    if options.get("privileged"):
        out["privileged"] = True
    if options.get("dir"):
        out["working_dir"] = options["dir"]
    if options.get("log"):
        out["log_config"] = {"Type": options["log"]["type"], "Config": options["log"].get("config", {})}
    if options.get("publish"):
        out["ports"] = dict(_binding(p) for p in options["publish"])
    if options.get("restart"):
        name, _, count = options["restart"].partition(":")
        out["restart_policy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    for key, arg in (
        ("sysctls", "sysctls"),
        ("dns", "dns"),
        ("extra_hosts", "extra_hosts"),
        ("cap_add", "cap_add"),
    ):
        if key == "sysctls" and host_network:  # as Eru: the host's own namespace has none to set
            continue
        if options.get(key):
            out[arg] = (
                dict(item.split(":", 1) for item in options[key]) if key == "extra_hosts" else options[key]
            )
    if options.get("volumes"):
        out["volumes"] = list(options["volumes"])
    return out


def _binding(item: str) -> tuple[str, int]:
    match = PORT_RE.match(item)
    assert match is not None  # checked at validation
    host, container, proto = match.group(1), match.group(2), match.group(3) or "tcp"
    return f"{int(container)}/{proto}", int(host or container)

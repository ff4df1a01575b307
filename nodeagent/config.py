"""The agent's configuration, as Eru's agent takes it: a YAML file (/etc/eru/agent.yaml), then
environment variables ERU_AGENT_*, then command-line flags, each overriding the one before."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = "/etc/eru/agent.yaml"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    core: list[str] = field(default_factory=list)  # core gRPC addresses, host:port
    username: str = ""  # default node.<hostname>
    password: str = ""
    hostname: str = ""  # the Eru node name
    heartbeat_interval: int = 60  # s; the lease sent is 3×; ≤ 0: no heartbeat
    docker_endpoint: str = "unix:///var/run/docker.sock"
    healthcheck_interval: float = 60.0
    healthcheck_timeout: float = 10.0
    healthcheck_cache_ttl: float = 300.0
    run_dir: str = "/run/eru-agent"  # the lock (one agent per node per host), the log cursors
    log_forwards: list[str] = field(default_factory=list)  # tcp://, udp://, journal://, file:///
    connection_timeout: float = 5.0
    metrics_step: float = 10.0  # s between two samples of every container
    metrics_transfers: list[str] = field(default_factory=list)  # statsd host:port (UDP)
    api_addr: str = ""  # host:port of /metrics and /version/; "": off

    @property
    def principal(self) -> str:
        return self.username or f"node.{self.hostname}"


# (dotted YAML key, env var, flag, type)
_KEYS: list[tuple[str, str, str, type]] = [
    ("core", "ERU_AGENT_CORE", "--core", list),
    ("auth.username", "ERU_AGENT_USERNAME", "--username", str),
    ("auth.password", "ERU_AGENT_PASSWORD", "--password", str),
    ("hostname", "ERU_HOSTNAME", "--hostname", str),
    ("heartbeat_interval", "ERU_AGENT_HEARTBEAT_INTERVAL", "--heartbeat-interval", int),
    ("docker.endpoint", "ERU_AGENT_DOCKER_ENDPOINT", "--docker-endpoint", str),
    ("healthcheck.interval", "ERU_AGENT_HEALTHCHECK_INTERVAL", "--healthcheck-interval", float),
    ("healthcheck.timeout", "ERU_AGENT_HEALTHCHECK_TIMEOUT", "--healthcheck-timeout", float),
    ("healthcheck.cache_ttl", "ERU_AGENT_HEALTHCHECK_CACHE_TTL", "--healthcheck-cache-ttl", float),
    ("run_dir", "ERU_AGENT_RUN_DIR", "--run-dir", str),
    ("log.forwards", "ERU_AGENT_LOG_FORWARDS", "--log-forwards", list),
    ("global_connection_timeout", "ERU_AGENT_CONNECTION_TIMEOUT", "--connection-timeout", float),
    ("metrics.step", "ERU_AGENT_METRICS_STEP", "--metrics-step", float),
    ("metrics.transfers", "ERU_AGENT_METRICS_TRANSFERS", "--metrics-transfers", list),
    ("api.addr", "ERU_AGENT_API_ADDR", "--api-addr", str),
]
_FIELDS = {
    "core": "core",
    "auth.username": "username",
    "auth.password": "password",
    "hostname": "hostname",
    "heartbeat_interval": "heartbeat_interval",
    "docker.endpoint": "docker_endpoint",
    "healthcheck.interval": "healthcheck_interval",
    "healthcheck.timeout": "healthcheck_timeout",
    "healthcheck.cache_ttl": "healthcheck_cache_ttl",
    "run_dir": "run_dir",
    "log.forwards": "log_forwards",
    "global_connection_timeout": "connection_timeout",
    "metrics.step": "metrics_step",
    "metrics.transfers": "metrics_transfers",
    "api.addr": "api_addr",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nodeagent",
        description="The Eru node agent: heartbeats, container status and health, reported to the core "
        "over Eru's gRPC protocol. Run one per node, on the node.",
    )
    p.add_argument("--config", help=f"YAML file (default {DEFAULT_FILE} when it exists)")
    p.add_argument("--password-file", help="read auth.password from this file (e.g. mode 0600)")
    for key, env, flag, _ in _KEYS:
        p.add_argument(flag, dest=key.replace(".", "_"), help=f"{key} (env {env})")
    return p


def _typed(key: str, kind: type, value: Any) -> Any:
    try:
        if kind is list:
            items = value if isinstance(value, list) else str(value).split(",")
            return [str(v).strip() for v in items if str(v).strip()]
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}") from exc


def _dig(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    args = parser().parse_args(argv)
    env = os.environ if env is None else env
    path = args.config or (DEFAULT_FILE if Path(DEFAULT_FILE).is_file() else None)
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config {path}: expected a mapping of keys")
    values: dict[str, Any] = {}
    for key, env_name, _, kind in _KEYS:
        for found in (_dig(data, key), env.get(env_name), getattr(args, key.replace(".", "_"))):
            if found not in (None, ""):
                values[_FIELDS[key]] = _typed(key, kind, found)
    password_file = args.password_file or env.get("ERU_AGENT_PASSWORD_FILE")
    if password_file:
        try:
            values["password"] = Path(password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--password-file: {exc}") from exc
    config = Config(**values)
    if not config.core:
        raise ConfigError("core: give the core's gRPC address (host:port), e.g. --core 127.0.0.1:5001")
    if not config.hostname:
        raise ConfigError("hostname: give the Eru node name this agent reports for (--hostname)")
    if not config.password:
        raise ConfigError("auth.password: give the node's agent secret (--password-file)")
    if config.metrics_step < 0.1:
        raise ConfigError("metrics.step must be at least 0.1 seconds")
    for address in (*config.metrics_transfers, *([config.api_addr] if config.api_addr else [])):
        if not address.rpartition(":")[2].isdigit():
            raise ConfigError(f"{address!r}: give host:port (metrics.transfers, api.addr)")
    if config.healthcheck_timeout <= 0 or config.healthcheck_interval <= 0:
        raise ConfigError("healthcheck.interval and healthcheck.timeout must be more than 0 seconds")
    return config

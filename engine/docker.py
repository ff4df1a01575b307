"""A thin typed adapter over the docker SDK: mutual-TLS clients per node and the few calls Eru needs.

Imports nothing from the project. Every failure surfaces as DockerError, whose `permanent` flag tells
callers whether retrying can help (a refused connection can; a missing image cannot)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import ssl
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import docker.tls
import requests.adapters
import requests.exceptions
from docker.types import CancellableStream

API_VERSION = "1.41"
POOL = 64  # connections a node's TLS client keeps
_clients: dict[str, docker.DockerClient] = {}
_clients_lock = threading.Lock()
_tls_dir = tempfile.mkdtemp(prefix="eru-tls-")


# What the SDK and its transport raise. Anything else (a Celery time limit, a bug) is not a Docker
# error and passes through untouched.
_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, ssl.SSLError, OSError)


class DockerError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class TLSMaterial:
    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class EngineInfo:
    id: str
    name: str
    ncpu: int
    mem_total: int
    server_version: str
    labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ContainerInfo:
    """A container as Docker shows it. `status` is Docker's state (created, running, paused,
    restarting, removing, exited, dead). From a list call: `status_text` ("Exited (5) 3 seconds
    ago") and the exit code read from it; oom_killed and restart_count need an inspect."""

    id: str
    name: str
    status: str
    networks: dict[str, str]
    labels: dict[str, str]
    exit_code: int = 0
    created: float = 0.0  # unix time
    ports: list[dict[str, Any]] = field(default_factory=list)  # [{"ip", "private", "public", "type"}]
    status_text: str = ""
    oom_killed: bool = False
    restart_count: int = 0
    started: float = 0.0  # unix time of the last (re)start, from an inspect; 0: never started
    cpus: float = 0.0  # its CPU limit in cores, from an inspect; 0: none
    memory_limit: int = 0  # bytes: the larger of its limit and its reservation, from an inspect; 0: none


_EXITED = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")  # the last exit code
_UP_SECONDS = re.compile(r"^Up (Less than a second|(\d+) seconds?)\b")


def up_seconds(info: ContainerInfo) -> float | None:
    """How long ago a running container (re)started, from a list call's status ("Up 3 seconds"); None
    beyond a minute, where Docker says "Up About a minute" or more. A restart since the last look
    shows here, though only an inspect can count restarts."""
    match = _UP_SECONDS.match(info.status_text)
    if match is None:
        return None
    return 0.0 if match.group(2) is None else float(match.group(2))


def _published(ports: Any) -> list[dict[str, Any]]:
    """Published ports from a list summary (a list) or an inspect (a map "80/tcp" -> bindings), in one
    order whatever order Docker gave them in (it walks a map)."""
    if isinstance(ports, list):
        pairs = [
            (p.get("IP", ""), p["PrivatePort"], p["PublicPort"], p["Type"])
            for p in ports
            if p.get("PublicPort")
        ]
    else:
        pairs = [
            (b.get("HostIp", ""), int(key.partition("/")[0]), int(b["HostPort"]), key.partition("/")[2])
            for key, bindings in (ports or {}).items()
            for b in bindings or []
        ]
    return [
        {"ip": ip, "private": private, "public": public, "type": kind}
        for ip, private, public, kind in sorted(pairs, key=lambda p: (p[1], p[3], p[0], p[2]))
    ]


def _classify(exc: Exception, what: str) -> DockerError:
    """Turn an SDK/transport exception into DockerError(permanent=…)."""
    if isinstance(exc, DockerError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound):
        return DockerError(f"{what}: image not found on the node ({exc.explanation})", permanent=True)
    if isinstance(exc, docker.errors.NotFound):
        return DockerError(f"{what}: not found ({exc.explanation})", permanent=True)
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 500
        return DockerError(f"{what}: {exc.explanation or exc}", permanent=400 <= status < 500)
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return DockerError(f"{what}: TLS handshake failed ({_short(exc)})", permanent=True)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return DockerError(f"{what}: cannot reach the Docker endpoint ({_short(exc)})", permanent=False)
    if isinstance(exc, docker.errors.DockerException):
        return DockerError(f"{what}: {exc}", permanent=True)
    return DockerError(f"{what}: {exc.__class__.__name__}: {exc}", permanent=False)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def _write_tls(material: TLSMaterial) -> tuple[str, str, str]:
    digest = hashlib.sha256(f"{material.ca}\0{material.cert}\0{material.key}".encode()).hexdigest()[:16]
    paths = []
    for part, content in (("ca", material.ca), ("cert", material.cert), ("key", material.key)):
        path = os.path.join(_tls_dir, f"{digest}-{part}.pem")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(content)
        paths.append(path)
    return paths[0], paths[1], paths[2]


def check_endpoint(endpoint: str) -> None:
    """A Docker-over-TLS address: tcp:// (or https://) with a host and a port from 1 to 65535."""
    shown = endpoint[:100]
    if not endpoint.startswith(("tcp://", "https://")):
        raise DockerError(f"endpoint {shown!r} must be tcp://host:port (Docker over TLS)", permanent=True)
    try:
        url = urllib.parse.urlsplit(endpoint)
        port = url.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is no number
        raise DockerError(
            f"endpoint {shown!r} is not a valid tcp://host:port address: {exc}", permanent=True
        ) from exc
    if not url.hostname:
        raise DockerError(f"endpoint {shown!r} has no host: use tcp://host:port", permanent=True)
    if port is None or not 1 <= port <= 65535:
        raise DockerError(
            f"endpoint {shown!r} needs a port from 1 to 65535, e.g. tcp://{url.hostname}:2376", permanent=True
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise DockerError(f"endpoint {shown!r}: only tcp://host:port, with no path", permanent=True)


def connect(endpoint: str, tls: TLSMaterial, *, timeout: int = 30) -> docker.DockerClient:
    """A cached mutual-TLS client for a tcp:// endpoint. Plain (non-TLS) endpoints are refused."""
    check_endpoint(endpoint)
    if not (tls.ca and tls.cert and tls.key):
        raise DockerError(
            "mutual TLS needs a CA certificate, a client certificate and its key", permanent=True
        )
    ca, cert, key = _write_tls(tls)
    cache_key = f"{endpoint}|{ca}|{timeout}"
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            try:
                config = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
                client = docker.DockerClient(
                    base_url=endpoint, tls=config, version=API_VERSION, timeout=timeout
                )
            except _ERRORS as exc:
                raise _classify(exc, "connect") from exc
            # The machine may set REQUESTS_CA_BUNDLE; requests would then ignore our CA.
            client.api.trust_env = False
            # The SDK leaves a TLS client requests' default pool (10 connections; its max_pool_size
            # is not used for https): calls beyond 10 at once (stats in parallel, log follows) would
            # each open, handshake and drop a connection of their own.
            client.api.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=POOL))
            _clients[cache_key] = client
    return client


def connect_local(
    endpoint: str = "unix:///var/run/docker.sock", *, timeout: int = 10, pool: int = 10
) -> docker.DockerClient:
    """A client on the node's own dockerd, over its unix socket (the node agent's; no TLS); `pool`:
    how many connections it keeps (one per log followed at once)."""
    if not endpoint.startswith("unix://"):
        raise DockerError(
            f"endpoint {endpoint[:100]!r}: the agent's dockerd is a unix:// socket", permanent=True
        )
    try:
        client = docker.DockerClient(
            base_url=endpoint, version=API_VERSION, timeout=timeout, max_pool_size=pool
        )
    except _ERRORS as exc:
        raise _classify(exc, "connect") from exc
    client.api.trust_env = False
    return client


def forget(endpoint: str) -> None:
    with _clients_lock:
        for key in [k for k in _clients if k.startswith(f"{endpoint}|")]:
            _clients.pop(key).close()


def engine_info(client: docker.DockerClient) -> EngineInfo:
    try:
        info = client.info()
    except _ERRORS as exc:
        raise _classify(exc, "docker info") from exc
    return EngineInfo(
        id=info.get("ID", ""),
        name=info.get("Name", ""),
        ncpu=int(info.get("NCPU", 0)),
        mem_total=int(info.get("MemTotal", 0)),
        server_version=info.get("ServerVersion", ""),
        labels=list(info.get("Labels") or []),
    )


def ping(client: docker.DockerClient) -> None:
    try:
        client.api.ping()
    except _ERRORS as exc:
        raise _classify(exc, "ping") from exc


def _info(container: Any) -> ContainerInfo:
    attrs = container.attrs
    settings = attrs.get("NetworkSettings") or {}
    state = attrs.get("State") or {}
    host = attrs.get("HostConfig") or {}
    return ContainerInfo(
        id=container.id,
        name=container.name,
        status=state.get("Status", container.status),
        networks={name: net.get("IPAddress", "") for name, net in (settings.get("Networks") or {}).items()},
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        exit_code=int(state.get("ExitCode") or 0),
        ports=_published(settings.get("Ports")),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(attrs.get("RestartCount") or 0),
        started=_unix_time(state.get("StartedAt") or ""),
        cpus=_cpus(host),
        memory_limit=max(int(host.get("Memory") or 0), int(host.get("MemoryReservation") or 0)),
    )


def _cpus(host: dict[str, Any]) -> float:
    if host.get("NanoCpus"):
        return int(host["NanoCpus"]) / 1e9
    quota, period = int(host.get("CpuQuota") or 0), int(host.get("CpuPeriod") or 0)
    return quota / period if quota > 0 and period > 0 else 0.0


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def time_cursor(stamp: str) -> tuple[int, int]:
    """(unix seconds, nanoseconds) of Docker's RFC 3339 time ("2026-12-01T12:00:00.123456789Z"):
    ordered, unlike its text (Docker drops trailing zeros). (0, 0) for anything unreadable."""
    match = _TIME.match(stamp)
    if match is None:
        return (0, 0)
    seconds = int(datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC).timestamp())
    return (seconds, int((match.group(2) or "0").ljust(9, "0")))


def _unix_time(stamp: str) -> float:
    """Docker's time as unix time; 0 for Docker's zero time ("0001-01-01T00:00:00Z") or anything
    unreadable."""
    seconds, nanos = time_cursor(stamp)
    return seconds + nanos / 1e9 if seconds > 0 else 0.0


def inspect(client: docker.DockerClient, name_or_id: str) -> ContainerInfo | None:
    try:
        return _info(client.containers.get(name_or_id))
    except docker.errors.NotFound:
        return None
    except _ERRORS as exc:
        raise _classify(exc, "inspect") from exc


def create_and_start(
    client: docker.DockerClient,
    *,
    name: str,
    image: str,
    command: list[str],
    env: list[str],
    labels: dict[str, str],
    resources: dict[str, Any],
    network: str = "",
    options: dict[str, Any] | None = None,
    stdin: bytes | None = None,
) -> ContainerInfo:
    """Create (or find, by name) the container and start it. Never pulls. Idempotent by name:
    a second call for the same name finds the first container instead of making another.
    If the start fails, the container this call created is removed again. With `stdin`, the
    container's standard input is these bytes and then its end (attached before the start, so none
    is lost)."""
    if stdin is not None:  # not detached: the SDK sets StdinOnce only so (the input ends with its client)
        options = {**(options or {}), "stdin_open": True, "detach": False}
    created_here = False
    try:
        try:
            container = client.containers.create(
                image,
                command or None,
                name=name,
                environment=env,
                labels=labels,
                network=network or None,
                **{"detach": True, **resources, **(options or {})},  # schema.container.docker_options
            )
            created_here = True
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container of that name exists (a re-run)
                raise
            container = client.containers.get(name)
        if container.status != "running":
            if stdin is not None and created_here:
                _start_with_input(client, container, stdin)
            else:
                container.start()
        container.reload()
        return _info(container)
    except _ERRORS as exc:
        error = _classify(exc, "create" if not created_here else "start")
        if created_here:
            _remove_quietly(client, name)
        raise error from exc


def _start_with_input(client: docker.DockerClient, container: Any, data: bytes) -> None:
    """Attach to its stdin, start it, write the data and close: Docker ends the input when the one
    attached client goes (stdin_once: set at create, with stdin_open)."""
    sock = client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)
    try:
        container.start()
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)  # the input's end (closing the wrapper alone keeps it open)
    finally:
        sock.close()
        raw.close()


def _remove_quietly(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(*_ERRORS):  # best effort after a failure already reported
        client.api.remove_container(name, force=True, v=True)


def execute(client: docker.DockerClient, name_or_id: str, argv: list[str]) -> tuple[int, str]:
    """Run argv in the running container (no tty, no shell): its exit code and its output (stdout and
    stderr together, the last 4 KiB)."""
    try:
        result = client.containers.get(name_or_id).exec_run(argv, stdout=True, stderr=True)
    except _ERRORS as exc:
        raise _classify(exc, "exec") from exc
    raw = result.output if isinstance(result.output, bytes) else b""
    output = raw[-4096:].decode(errors="replace")
    return int(result.exit_code if result.exit_code is not None else -1), output


def kill(client: docker.DockerClient, name_or_id: str) -> None:
    """SIGKILL; a container that already stopped is no error."""
    try:
        client.api.kill(name_or_id)
    except docker.errors.APIError as exc:
        if exc.status_code not in (404, 409):
            raise _classify(exc, "kill") from exc
    except _ERRORS as exc:
        raise _classify(exc, "kill") from exc


def update(client: docker.DockerClient, name_or_id: str, settings: dict[str, object]) -> None:
    """Change a container's cpu and memory settings live (``docker update``), running or not."""
    try:
        client.api.update_container(name_or_id, **settings)  # type: ignore[arg-type]
    except _ERRORS as exc:
        raise _classify(exc, "update") from exc


def start(client: docker.DockerClient, name_or_id: str) -> ContainerInfo:
    return _act(client, name_or_id, "start", lambda c: c.start())


def stop(client: docker.DockerClient, name_or_id: str, *, timeout: int = 10) -> ContainerInfo:
    return _act(client, name_or_id, "stop", lambda c: c.stop(timeout=timeout))


def restart(client: docker.DockerClient, name_or_id: str, *, timeout: int = 10) -> ContainerInfo:
    return _act(client, name_or_id, "restart", lambda c: c.restart(timeout=timeout))


def _act(client: docker.DockerClient, name_or_id: str, what: str, fn: Any) -> ContainerInfo:
    try:
        container = client.containers.get(name_or_id)
        fn(container)
        container.reload()
        return _info(container)
    except _ERRORS as exc:
        raise _classify(exc, what) from exc


def remove(client: docker.DockerClient, name_or_id: str) -> bool:
    """Force-remove; returns False when there was nothing to remove."""
    try:
        client.api.remove_container(name_or_id, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except _ERRORS as exc:
        raise _classify(exc, "remove") from exc
    return True


def list_eru(client: docker.DockerClient) -> list[ContainerInfo]:
    """All containers labelled ERU=1 on the node, running or not (one list call, no inspects)."""
    return [summary(c) for c in list_eru_summaries(client)]


def list_eru_summaries(client: docker.DockerClient) -> list[dict[str, Any]]:
    """The same list as Docker answers it (for a caller that keeps the last answer, to convert only
    what changed); `summary` makes a ContainerInfo of one."""
    try:
        return list(client.api.containers(all=True, filters={"label": "ERU=1"}))
    except _ERRORS as exc:
        raise _classify(exc, "list") from exc


def events(client: docker.DockerClient, *, since: float | None = None) -> CancellableStream[dict[str, Any]]:
    """Docker's container events of ERU containers, as they come (from `since`, unix time, when given);
    close() it to stop. The stream ends quietly when dockerd stops: the caller lists again."""
    try:
        return client.api.events(
            since=int(since) if since is not None else None,
            decode=True,
            filters={"type": "container", "label": "ERU=1"},
        )
    except _ERRORS as exc:
        raise _classify(exc, "events") from exc


def summary(c: dict[str, Any]) -> ContainerInfo:
    """A ContainerInfo from one entry of Docker's container list."""
    text = c.get("Status") or ""
    exited = _EXITED.match(text)
    return ContainerInfo(
        id=c["Id"],
        name=(c.get("Names") or ["/"])[0].lstrip("/"),
        status=c.get("State", ""),
        networks={
            name: net.get("IPAddress", "")
            for name, net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).items()
        },
        labels=dict(c.get("Labels") or {}),
        created=float(c.get("Created") or 0),
        ports=_published(c.get("Ports") or []),
        status_text=text,
        exit_code=int(exited.group(1)) if exited else 0,
    )

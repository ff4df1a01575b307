"""A command run in a running container, non-interactively (Eru's ExecuteWorkload without its tty and
stdin): its output as it comes, stdout and stderr told apart, and then its exit code, within a time limit.

The exec is made with the low-level API (`exec_create`, no tty, no stdin) and started with
`exec_start(socket=True)`; its multiplexed stream (an 8-byte header per frame: the stream, three zero
bytes, a big-endian length) is read here, not by the SDK. The SDK's own reader
(`exec_start(stream=True, demux=True)`) waits for each frame in `poll()` without a timeout, so a
command that prints nothing would hold its reader past the time limit, and past a client who left:
reading the socket with a timeout of our own keeps both in hand, on one thread, with no buffer larger
than one read (CHUNK bytes) — a frame's data goes out in parts as it comes.

Docker has no call that stops an exec'd process, and the Pid that `exec_inspect` gives is the host's
(the node's), not the container's: a `kill` run by another exec would look in the container's PID
namespace, where that number is another process or none. So a command past its time is not killed:
its output is no longer read, the caller is told so, and the process may run on until it ends or its
container stops (the message names its pid on the node, for an operator)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import docker

from engine.docker import _ERRORS, DockerError, _classify

CHUNK = 64 << 10  # bytes read from the exec's stream at once
_HEADER = struct.Struct(">BxxxL")
_STREAMS = {1: "stdout", 2: "stderr"}
_EXIT_WAIT = 5.0  # seconds to wait, after the output ended, for Docker to say the process exited


@dataclass(frozen=True, slots=True)
class Output:
    """A part of what the command wrote to one of its streams, as it came (not split into lines)."""

    stream: str  # stdout, stderr
    data: bytes


@dataclass(frozen=True, slots=True)
class Exited:
    """How it ended: its exit code, or None when it is not known (timed out, or Docker did not say)."""

    exit_code: int | None
    timed_out: bool = False
    message: str = ""


def run(
    client: docker.DockerClient,
    container_id: str,
    argv: Sequence[str],
    *,
    env: Sequence[str] = (),
    workdir: str = "",
    user: str = "",
    timeout: float = 600.0,
    idle: float = 15.0,
) -> Iterator[Output | Exited | None]:
    """Run argv (no shell, no tty, no stdin) in the running container: Output parts as they come, a
    None after every `idle` seconds without any (the caller keeps its client's connection alive, or
    learns it is gone), and last an Exited. After `timeout` seconds the output is no longer read and
    the Exited says it timed out (the process is not stopped: see the module's doc). A DockerError
    when the exec cannot be made (the container does not run, say) or its stream breaks."""
    deadline = time.monotonic() + timeout
    api = client.api
    try:
        exec_id = api.exec_create(
            container_id,
            list(argv),
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
            environment=list(env) or None,
            workdir=workdir or None,
            user=user,
        )["Id"]
        sock = api.exec_start(exec_id, socket=True)
    except _ERRORS as exc:
        raise _classify(exc, "exec") from exc
    raw = getattr(sock, "_sock", sock)  # TLS: the SSL socket under the SDK's wrapper
    try:
        ended = yield from _frames(raw, deadline, idle)
    except _ERRORS as exc:
        raise _classify(exc, "exec output") from exc
    finally:
        _close(sock, raw)
    yield _exited(api, exec_id, deadline) if ended else _timed_out(api, exec_id, timeout)


def _frames(raw: Any, deadline: float, idle: float) -> Generator[Output | None, None, bool]:
    """Docker's frames as Output parts, a None after a quiet `idle`; True once the output ended,
    False when the deadline came first."""
    pending = b""  # bytes read and not handed out yet: at most a header and one read
    kind, left = 1, 0  # the current frame's stream, and how much of its data is still to come
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        raw.settimeout(min(idle, remaining))
        try:
            chunk = raw.recv(CHUNK)
        except TimeoutError:
            if time.monotonic() < deadline:
                yield None
            continue
        if not chunk:
            return True
        pending += chunk
        while pending:
            if left == 0:
                if len(pending) < _HEADER.size:
                    break
                kind, left = _HEADER.unpack_from(pending)
                pending = pending[_HEADER.size :]
                continue
            data, pending = pending[:left], pending[left:]
            left -= len(data)
            yield Output(_STREAMS.get(kind, "stdout"), data)


def _exited(api: Any, exec_id: str, deadline: float) -> Exited:
    """The exit code, once Docker says the process ended (it may say so a moment after the output)."""
    until = min(deadline, time.monotonic() + _EXIT_WAIT)
    while True:
        info = _inspect(api, exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return Exited(int(info["ExitCode"]))
        if time.monotonic() >= until:
            return Exited(None, message="its output ended, but Docker does not say that it exited")
        time.sleep(0.05)


def _timed_out(api: Any, exec_id: str, timeout: float) -> Exited:
    pid = ""
    with contextlib.suppress(DockerError):
        info = _inspect(api, exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return Exited(int(info["ExitCode"]))  # it ended just now
        pid = f" (pid {info['Pid']} on the node)" if info.get("Pid") else ""
    return Exited(
        None,
        timed_out=True,
        message=(
            f"timed out after {timeout:g} s: its output is no longer read; Docker cannot stop a "
            f"process started by exec, so it may run on{pid} until it ends or its container stops"
        ),
    )


def _inspect(api: Any, exec_id: str) -> dict[str, Any]:
    try:
        return dict(api.exec_inspect(exec_id))
    except _ERRORS as exc:
        raise _classify(exc, "exec inspect") from exc


def _close(sock: Any, raw: Any) -> None:
    """Close the exec's connection (taken over from HTTP: never reused)."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    for s in {id(sock): sock, id(raw): raw}.values():
        with contextlib.suppress(OSError):
            s.close()

"""A command run in a workload's running container (Eru's ExecuteWorkload, non-interactive: no tty, no
stdin), for the pod's owners and administrators: validate → permission → the workload runs → a stream
that writes the audit row, runs the command and tells how it ended.

The audit row is written when the stream is first read, in its own transaction committed before the
command starts; so a request refused for want of a stream slot (a 503) leaves no row, and a row always
means the command was started. It holds the command, the env's keys (never their values: secrets),
workdir, user and timeout; once the stream ends, one update adds to the same row how it ended
(exit_code, timed_out, or error). A second row per exec would double the log for one act; leaving the
outcome to the stream alone would lose it as soon as the client has read it, and an audit trail of
commands run as a workload should answer "and what came of it"."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction

from clusters import permissions, selectors
from clusters.errors import state_refused
from clusters.models import AuditEvent, Workload
from clusters.services._common import Actor, audit, invalid
from engine import docker
from engine import exec as engine_exec

MAX_ARGS = 256  # arguments of a command, and entries of its env
MAX_ARG = 4096  # characters of one argument, one env entry, the workdir
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}(:[A-Za-z0-9._-]{1,64})?$")  # name or uid, then :group or :gid

_COMMAND = 'command: a non-empty list of arguments (argv, no shell), e.g. ["ls", "-l"]'
Event = engine_exec.Output | engine_exec.Exited | None


def workload_exec(
    *,
    actor: Actor,
    workload: Workload,
    command: Sequence[str],
    env: Sequence[str] = (),
    workdir: str = "",
    user: str = "",
    timeout: int | str | None = None,
) -> Iterator[Event]:
    """Check an exec of `command` (argv, no shell) in the workload's container and give its stream:
    engine.exec's Output parts as they come, a None after each quiet ERU_STREAM_IDLE (a keep-alive),
    and last an Exited (its exit code, or timed out after `timeout` seconds, digits from a form
    taken: at most, and by default, ERU_EXEC_TIMEOUT). Nothing is written and nothing runs until the
    stream is read (see the module's doc); a DockerError from the stream when the node refuses the
    exec or stops answering. Field errors (400) name the field; PermissionDenied for all but staff
    and the pod's owners; a workload that does not run is an error on `workload`."""
    argv = _strings(command, "command", _COMMAND)
    if not argv:
        raise invalid("command", _COMMAND)
    if not argv[0]:
        raise invalid("command", "command[0]: the program to run cannot be empty")
    entries = _strings(env, "env", "env: a list of KEY=value entries")
    for i, entry in enumerate(entries):
        if "=" not in entry or entry.startswith("="):
            raise invalid("env", f"env[{i}]: {entry[:80]!r} must look like KEY=value")
    workdir = _text(workdir, "workdir", MAX_ARG)
    if workdir and not workdir.startswith("/"):
        raise invalid("workdir", f"workdir: {workdir[:80]!r} must be an absolute path, e.g. /tmp")
    user = _text(user, "user", 129)
    if user and not _USER.match(user):
        raise invalid("user", f"user: {user[:80]!r} must be a name or uid, optionally :group or :gid")
    seconds = _timeout(timeout)
    permissions.require_exec(actor.user, workload.pod)
    if (
        workload.state != Workload.State.RUNNING
        or workload.status not in (Workload.Status.RUNNING, Workload.Status.UNOBSERVED)
        or not workload.container_id
    ):
        what = workload.state if workload.state != Workload.State.RUNNING else workload.get_status_display()
        raise state_refused("workload", f"workload {workload.name} is {what}; exec needs a running container")
    asked = {
        "command": argv,
        "env": [entry.partition("=")[0] for entry in entries],  # keys only: values may be secrets
        "workdir": workdir,
        "user": user,
        "timeout": seconds,
    }
    return _stream(actor, workload, asked, entries, seconds)


def _stream(
    actor: Actor, w: Workload, asked: dict[str, Any], env: list[str], timeout: int
) -> Iterator[Event]:
    with transaction.atomic():
        event = audit(actor, AuditEvent.Action.WORKLOAD_EXEC, w, pod=w.pod, after=asked)
    outcome: dict[str, Any] = {"error": "the stream ended before the command did (its client left)"}
    try:
        client = selectors.node_client(w.node)
        for item in engine_exec.run(
            client,
            w.container_id,
            asked["command"],
            env=env,
            workdir=asked["workdir"],
            user=asked["user"],
            timeout=timeout,
            idle=settings.ERU_STREAM_IDLE,
        ):
            if isinstance(item, engine_exec.Exited):
                outcome = {"exit_code": item.exit_code}
                if item.timed_out:
                    outcome["timed_out"] = True
                if item.message:
                    outcome["message"] = item.message
            yield item
    except docker.DockerError as exc:
        outcome = {"error": str(exc)[:2000]}
        raise
    finally:
        AuditEvent.objects.filter(pk=event.pk).update(after={**asked, **outcome})


def _strings(value: Any, field: str, shape: str) -> list[str]:
    """A list of at most MAX_ARGS strings of at most MAX_ARG characters each, without NUL."""
    if not isinstance(value, list | tuple):
        raise invalid(field, shape)
    if len(value) > MAX_ARGS:
        raise invalid(field, f"{field}: {len(value)} entries is above the limit of {MAX_ARGS}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(field, f"{field}[{i}]: must be a string, not {type(item).__name__}")
        if len(item) > MAX_ARG:
            raise invalid(field, f"{field}[{i}]: {len(item)} characters is above the limit of {MAX_ARG}")
        if "\0" in item:
            raise invalid(field, f"{field}[{i}]: must not hold a NUL character")
    return list(value)


def _text(value: Any, field: str, most: int) -> str:
    if not isinstance(value, str):
        raise invalid(field, f"{field}: must be a string")
    if len(value) > most:
        raise invalid(field, f"{field}: {len(value)} characters is above the limit of {most}")
    if "\0" in value:
        raise invalid(field, f"{field}: must not hold a NUL character")
    return value


def _timeout(value: Any) -> int:
    """Seconds from 1 to ERU_EXEC_TIMEOUT (None: that)."""
    most = int(settings.ERU_EXEC_TIMEOUT)
    if value is None:
        return most
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise invalid("timeout", f"timeout: seconds, an integer from 1 to {most}")
    return value

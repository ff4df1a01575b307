"""Eru's hooks, run by the worker in the container: after_start after a create's or a control's start,
before_stop before a stop (and the stop of a restart); never on a remove. Each command is split as a
shell would split it and run without one, as Eru runs them; they run in order and stop at the first
that fails. With `force`, a failing hook fails what it hooks; without, it is logged and that is all."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from typing import Any

import docker as docker_sdk

from engine import docker

log = logging.getLogger(__name__)


HOOK_TIMEOUT = 300  # s one hook command may run (the node client's own timeout is for quick calls)


def run(
    client: docker_sdk.DockerClient,
    container: str,
    commands: list[str],
    between: Callable[[], object] = lambda: None,
) -> str | None:
    """None when every command exits 0; else what failed and how (its exit code). Its output goes to
    the worker's log only: it may carry the workload's secrets, and the message is shown to every
    member of the pod (viewers read no logs). `between` is called before each command (the caller
    renews its claim: hooks take their time)."""
    for command in commands:
        between()
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            return f"{command[:80]!r}: {exc}"
        code, output = docker.execute(client, container, argv)
        if code != 0:
            log.warning(
                "hook %r in %s exited %s: %s", command[:80], container[:12], code, output.strip()[-500:]
            )
            return f"{command[:80]!r} exited {code} (its output is in the worker's log)"
    return None


def hooked(
    client: docker_sdk.DockerClient,
    container: str,
    options: dict[str, Any],
    which: str,
    name: str,
    between: Callable[[], object] = lambda: None,
) -> str | None:
    """Run the workload's `which` hook (after_start or before_stop): an error only when it failed (or
    could not run: the container stopped, its node went) and its hook has force."""
    hook = options.get("hook") or {}
    commands = hook.get(which) or []
    if not commands:
        return None
    try:
        failed = run(client, container, commands, between)
    except docker.DockerError as exc:
        failed = f"could not run: {exc}"
    if failed is None:
        return None
    if hook.get("force"):
        return f"{which} hook failed (force): {failed}"
    log.warning("%s: %s hook failed (not forced, ignored): %s", name, which, failed)
    return None

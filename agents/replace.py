"""The worker's side of Eru's replace (clusters/services/replace.py): for one replacement row, stop
the old container (its before_stop hook first), create and start the new one on the same node with
the same resources (its after_start hook), wait for it — healthy where it has a health check and its
health can be known, else running — then remove the old container. When the new one fails at any
step, its container goes and the old one is started again; the deployment stops there."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import docker as docker_sdk
from django.conf import settings

from agents import hooks
from clusters import selectors, services
from clusters.models import Workload
from engine import docker, health

log = logging.getLogger(__name__)
POLL = 0.5


class Failed(Exception):
    """The replacement cannot go on; its message says why."""


def replace(w: Workload, renew: Callable[[], object]) -> None:
    """Carry out the claimed replacement `w` (state creating, `replaces` set)."""
    old = Workload.objects.select_related("node", "pod").filter(pk=w.replaces_id or 0).first()
    if old is None or old.state not in Workload.OBSERVED or not old.container_id:
        why = "the workload it replaces is gone" if old is None else f"{old.name} is {old.state}"
        services.workload_replace_failed(workload_id=w.pk, error=f"not replaced: {why}", restored=False)
        return
    try:
        client = selectors.node_client(w.node)
        hook_client = selectors.node_client(w.node, timeout=hooks.HOOK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 — TLS material that does not decrypt, say: nothing done yet
        services.workload_replace_failed(workload_id=w.pk, error=f"node {w.node.name}: {exc}", restored=True)
        return
    was_running = services.was_running(old)  # a worker taking over finds the old one stopped by us
    if was_running and old.state == Workload.State.RUNNING:
        refused = hooks.hooked(hook_client, old.container_id, old.options, "before_stop", old.name, renew)
        if refused:  # a forced before_stop failed: the old one was not stopped, nothing else happens
            services.workload_replace_failed(workload_id=w.pk, error=refused, restored=True)
            return
        try:
            stopped = docker.stop(client, old.container_id)
        except docker.DockerError as exc:
            services.workload_replace_failed(
                workload_id=w.pk, error=f"stop of {old.name}: {exc}", restored=True
            )
            return
        services.workload_record_state(workload_id=old.pk, running=False, exit_code=stopped.exit_code)
    try:
        note = _start_new(w, client, hook_client, renew)
    except (Failed, docker.DockerError) as exc:
        _remove_quietly(client, w.name)
        restored = _restore(old, client, hook_client) if was_running else True
        services.workload_replace_failed(workload_id=w.pk, error=str(exc), restored=restored)
        return
    finish(w, old, client, note)


def finish(w: Workload, old: Workload, client: docker_sdk.DockerClient, note: str = "") -> None:
    """The new one runs: the old container goes, then the old row (the new one holds from then on)."""
    try:
        docker.remove(client, old.container_id)
    except docker.DockerError as exc:  # the new one runs; reconcile removes the old as an orphan
        log.warning("replace: could not remove %s (%s); reconcile will", old.name, exc)
    for pk in services.workload_replaced(workload_id=w.pk, note=note):
        log.info("replace: next %s", pk)


def _start_new(
    w: Workload,
    client: docker_sdk.DockerClient,
    hook_client: docker_sdk.DockerClient,
    renew: Callable[[], object],
) -> str:
    """The new container made, started, its hook run and waited for; what could not be known."""
    try:
        info = docker.create_and_start(client, **selectors.container_spec(w))
    except docker.DockerError as exc:
        raise Failed(f"creating {w.name}: {exc}") from exc
    failed = hooks.hooked(hook_client, info.id, w.options, "after_start", w.name, renew)
    if failed:
        raise Failed(failed)
    started = services.workload_started(
        workload_id=w.pk, container_id=info.id, networks=info.networks, ports=info.ports
    )
    if started is None:
        raise Failed(f"{w.name} was no longer being created")
    if info.status != "running":
        raise Failed(f"{w.name} did not keep running ({info.status})")
    return _wait(started, client, info)


def _wait(w: Workload, client: docker_sdk.DockerClient, info: docker.ContainerInfo) -> str:
    """Wait for the new container: healthy when it has a health check the workers can make (or its
    agent reports), else running. Fails when it stops, or is not healthy in time."""
    deadline = time.monotonic() + settings.ERU_REPLACE_HEALTH_TIMEOUT
    address = next((ip for ip in info.networks.values() if ip), "")
    checked_here = bool(w.healthcheck) and settings.ERU_SWEEP_HEALTHCHECKS and bool(address)
    if w.healthcheck and not checked_here and not w.node.agent:
        return "health unknown (no agent, and the workers do not check its address): waited for running only"
    while True:
        seen = docker.inspect(client, info.id)
        if seen is None or seen.status != "running":
            how = f"{seen.status}, exit {seen.exit_code}" if seen else "gone"
            raise Failed(f"{w.name} stopped ({how})")
        if not w.healthcheck:
            return ""
        if checked_here:
            if health.check(address, w.healthcheck, settings.ERU_HEALTHCHECK_TIMEOUT):
                return ""
        elif Workload.objects.filter(pk=w.pk, health=Workload.Health.HEALTHY).exists():  # its agent said
            return ""
        if time.monotonic() >= deadline:
            raise Failed(f"{w.name} not healthy after {settings.ERU_REPLACE_HEALTH_TIMEOUT} s")
        time.sleep(POLL)


def _restore(old: Workload, client: docker_sdk.DockerClient, hook_client: docker_sdk.DockerClient) -> bool:
    """Start the old container again (its after_start hook too); whether it runs."""
    try:
        info = docker.start(client, old.container_id)
    except docker.DockerError as exc:
        log.warning("replace: could not start %s again: %s", old.name, exc)
        return False
    error = hooks.hooked(hook_client, old.container_id, old.options, "after_start", old.name) or ""
    running = info.status == "running"
    services.workload_record_state(workload_id=old.pk, running=running, exit_code=info.exit_code, error=error)
    return running


def _remove_quietly(client: docker_sdk.DockerClient, name: str) -> None:
    try:
        docker.remove(client, name)
    except docker.DockerError as exc:  # reconcile removes what is left
        log.warning("replace: could not remove %s: %s", name, exc)


def finish_stuck(older_than: float) -> list[str]:
    """Replacements whose worker was lost after the new container ran: swapped in now (reconcile)."""
    done = []
    for w in services.replacements_stuck(older_than=int(older_than)):
        old = Workload.objects.filter(pk=w.replaces_id or 0).first()
        if old is None:
            continue
        try:
            finish(w, old, selectors.node_client(w.node), "swapped in by reconcile: its worker was lost")
            done.append(w.name)
        except Exception as exc:  # noqa: BLE001 — the next run tries again
            log.warning("replace: could not finish %s: %s", w.name, exc)
    return done

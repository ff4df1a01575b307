"""A lambda workload's run, in the worker that claimed it: create and start its container, follow its
output into the run's Redis stream (clusters.lambda_output) until the command ends, is timed out or
cancelled, then remove the container and record how it ended. Whatever the end, no container stays.

A container of the workload's name that is already there was made by an earlier attempt whose worker
was lost (its claim went stale and reconcile sent the work again): it is removed, not run again, and
the workload ends as failed, audited with the run's end."""

from __future__ import annotations

import logging
import time
from collections import deque

import docker as docker_sdk

from clusters import lambda_output, selectors, services
from clusters.models import LambdaRun, Workload
from engine import docker, logs

log = logging.getLogger(__name__)
S = LambdaRun.State
CHECK_EVERY = 1.0  # s between two looks at the run's cancel flag
RENEW_EVERY = 30.0  # s between two renewals of the creation claim (a long run is not a dead worker)
STALE = 3600  # only this task's own claim is renewed: the age given does not matter


def run(w: Workload, task_id: str) -> None:
    client = selectors.node_client(w.node)
    assert w.lambda_run_id is not None
    stdin, timeout = LambdaRun.objects.values_list("stdin", "timeout").get(pk=w.lambda_run_id)
    try:
        if docker.inspect(client, w.name) is not None:
            docker.remove(client, w.name)
            _done(w, None, S.FAILED, note="its worker was lost mid-run; its container is removed")
            return
        lambda_output.publish(w.lambda_run_id, "starting", name=w.name, seq=w.seq)
        info = docker.create_and_start(
            client, **selectors.container_spec(w), stdin=stdin.encode() if stdin else None
        )
    except docker.DockerError as exc:  # nothing runs: if a container was left, reconcile removes it
        _done(w, None, S.FAILED, note=str(exc))
        return
    lambda_output.publish(w.lambda_run_id, "started", name=w.name, seq=w.seq)
    ended: str = S.DONE
    output, note, code = "", "", None
    try:
        ended, output, after = _follow(w, task_id, info.id, client, time.monotonic() + timeout)
        if after is None:  # removed under it (a re-sent task took it for a lost worker's, or by hand)
            ended, note = S.FAILED, "its container went away before it ended"
        elif ended == S.DONE:
            code = after.exit_code
    except docker.DockerError as exc:  # the node went away mid-run
        ended, note = S.FAILED, str(exc)
    try:
        docker.remove(client, info.id)
    except docker.DockerError as exc:  # reconcile removes it: no live row claims it any more
        log.warning("lambda %s: could not remove its container: %s", w.name, exc)
    _done(w, code, ended, output, note=note)


def _follow(
    w: Workload, task_id: str, container: str, client: docker_sdk.DockerClient, deadline: float
) -> tuple[str, str, docker.ContainerInfo | None]:
    """Its output into the stream until the container stops (or is killed: timeout, cancel): how it
    ended, its last output, and the container as it stopped (None: gone). A log that ends while the
    container still runs (dockerd restarted) is followed again from its last line."""
    assert w.lambda_run_id is not None
    kept: deque[str] = deque()
    size, ended, last = 0, S.DONE, ""
    checked = renewed = time.monotonic()
    while True:
        for line in logs.read(client, container, follow=True, idle=CHECK_EVERY, after=last):
            if line is not None:
                last = line.time
                lambda_output.publish(w.lambda_run_id, "line", name=w.name, seq=w.seq, stream=line.stream,
                                      data=line.text)  # fmt: skip
                kept.append(lambda_output.kept_line(w.seq, line.text))
                size += len(kept[-1])
                while size > LambdaRun.OUTPUT_KEPT and kept:
                    size -= len(kept.popleft())
            now = time.monotonic()
            if ended == S.DONE and now > deadline:
                ended = S.TIMEOUT
                docker.kill(client, container)
            elif ended == S.DONE and now - checked >= CHECK_EVERY:
                checked = now
                if LambdaRun.objects.filter(pk=w.lambda_run_id, cancel_requested=True).exists():
                    ended = S.CANCELLED
                    docker.kill(client, container)
            if now - renewed >= RENEW_EVERY:
                renewed = now
                services.workload_claim(
                    workload_id=w.pk, task_id=task_id, stale_after=STALE, worker=w.claimed_by
                )
        after = docker.inspect(client, container)
        if after is None or after.status not in ("running", "restarting", "paused"):
            return ended, "".join(kept), after


def _done(w: Workload, code: int | None, ended: str, output: str = "", *, note: str = "") -> None:
    """Record the end (the row and its allocation go), and say so in the stream."""
    assert w.lambda_run_id is not None
    if note:
        lambda_output.publish(w.lambda_run_id, "line", name=w.name, seq=w.seq, stream="stderr", data=note)
        output += lambda_output.kept_line(w.seq, note)
    after = services.lambda_workload_done(workload_id=w.pk, exit_code=code, ended=ended, output=output)
    lambda_output.publish(w.lambda_run_id, "exit", name=w.name, seq=w.seq, exit_code=code, ended=ended)
    if after is not None and after.is_final:
        lambda_output.publish(after.pk, "end", state=after.state, exit_code=after.exit_code)

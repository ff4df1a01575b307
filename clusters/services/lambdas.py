"""Lambdas (Eru's RunAndWait): a deployment whose workloads run their command to its end and go. Placed
and allocated like any deploy; each workload's container is the worker's from creation to removal
(agents/lambdas.py), and the row goes with its allocation when the container has gone, whatever the
end: exited, timed out, cancelled, failed to start, or its worker lost."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from clusters import permissions
from clusters.errors import invalid
from clusters.models import AuditEvent, LambdaRun, Workload
from clusters.services._common import SYSTEM, Actor, audit
from clusters.services.deploy import DeploySpec, deployment_create
from clusters.services.workloads import _drop, _locked, deployment_progress

# Below the Redis transport's visibility timeout (an hour): a message unacknowledged longer is
# delivered again, and a second run of a lambda's task would take its container for a lost worker's.
MAX_TIMEOUT = 3000
MAX_STDIN = 1 << 20
S = LambdaRun.State
_WORST = [S.DONE, S.FAILED, S.TIMEOUT, S.CANCELLED]  # how a run ended: the worst of its workloads'


def lambda_create(*, actor: Actor, spec: DeploySpec, timeout: int, stdin: str | None = None) -> LambdaRun:
    """Run the deploy request's command once per planned workload; each is killed after `timeout`.
    With `stdin` (one workload only, as Eru's open_stdin), the command reads it, then its end."""
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise invalid("timeout", f"timeout: from 1 to {MAX_TIMEOUT} seconds")
    if stdin is not None:
        if spec.request.count != 1 or spec.request.strategy != "AUTO":
            raise invalid("stdin", "count must be 1 if OpenStdin is true (and the strategy AUTO)")
        if len(stdin.encode()) > MAX_STDIN:
            raise invalid("stdin", f"stdin: above the limit of {MAX_STDIN >> 20} MiB")
    with transaction.atomic():
        deployment = deployment_create(actor=actor, spec=spec, lambda_timeout=timeout)
        run = LambdaRun.objects.select_related("deployment").get(deployment=deployment)
        if stdin is not None:
            run.stdin = stdin
            run.save(update_fields=["stdin"])
    return run


def lambda_cancel(*, actor: Actor, run: LambdaRun) -> LambdaRun:
    """Ask the run's workers to kill its containers (each is then removed, as after any end)."""
    pod = run.deployment.pod
    if pod is None:  # its pod was removed: an administrator's
        permissions.require_admin(actor.user)
    else:
        permissions.require_deploy(actor.user, pod)
    with transaction.atomic():
        changed = LambdaRun.objects.filter(pk=run.pk, state=S.RUNNING, cancel_requested=False).update(
            cancel_requested=True
        )
        if changed:
            audit(actor, AuditEvent.Action.LAMBDA_CANCEL, run, pod=pod)
    run.refresh_from_db()
    return run


def lambda_workload_done(
    *, workload_id: int, exit_code: int | None, ended: str, output: str
) -> LambdaRun | None:
    """A lambda workload's container has gone: how it ended (a LambdaRun.State; DONE: it exited with
    `exit_code`), its last output. Its row and allocation go; the run ends with its last workload."""
    with transaction.atomic():
        w = _locked(workload_id)
        if w is None or w.lambda_run_id is None:
            return None
        run = (
            LambdaRun.objects.select_for_update(of=("self",))
            .select_related("deployment__pod")
            .get(pk=w.lambda_run_id)
        )
        run.exit_codes[w.name] = exit_code
        run.ends[w.name] = ended
        run.output = (run.output + output)[-LambdaRun.OUTPUT_KEPT :]
        deployment_progress(w.deployment_id, ok=ended == S.DONE)
        _drop(w)
        left = Workload.objects.filter(lambda_run=run).exists()
        if not left:
            run.state = max(run.ends.values(), key=_WORST.index, default=S.DONE)
            codes = [c for c in run.exit_codes.values() if c]
            run.exit_code = codes[0] if codes else (0 if run.state == S.DONE else 1)
            run.finished_at = timezone.now()
            after = {"state": run.state, "exit_code": run.exit_code, "exit_codes": run.exit_codes}
            audit(SYSTEM, AuditEvent.Action.LAMBDA_ENDED, run, pod=run.deployment.pod, after=after)
        run.save(update_fields=["exit_codes", "ends", "output", "state", "exit_code", "finished_at"])
    return run

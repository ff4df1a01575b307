"""Following a deployment (a deploy or a replace) to its end: GET /api/deployments/{id}/ every half
second, a progress bar on a terminal, else a plain line whenever the counts change."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from erucli import output as o
from erucli.client import Client
from erucli.output import Printer
from erucli.progress import Bar

POLL_INTERVAL = 0.5
FINAL_STATES = ("done", "partial", "failed", "cancelled")
Deployment = dict[str, Any]


def plan_text(plan: Mapping[str, int] | None) -> str:
    return " ".join(f"{node}={n}" for node, n in sorted((plan or {}).items())) or "(nothing)"


def _percent(d: Mapping[str, Any]) -> int:
    if d.get("percent") is not None:
        return int(d["percent"])
    return 100 * (d["succeeded"] + d["failed"]) // d["total"] if d["total"] else 100


def progress_line(d: Mapping[str, Any]) -> str:
    return (
        f"  {d['succeeded'] + d['failed']}/{d['total']} ({_percent(d)}%): "
        f"{d['succeeded']} running, {d['failed']} failed [{d['state']}]"
    )


def follow(
    api: Client, p: Printer, d: Deployment, *, on_poll: Callable[[Deployment], object] | None = None
) -> Deployment:
    """Poll until the deployment is in a final state; `on_poll(d)` after each answer."""
    kind = d.get("kind") or "deployment"
    with Bar(f"{kind} {d['id']}", d["total"] or None, err=p.err) as bar:
        seen = None
        while True:
            if on_poll is not None:
                on_poll(d)
            state = (d["succeeded"], d["failed"], d["state"])
            if state != seen:
                seen = state
                if bar.active:
                    status = f"{d['succeeded']} running, {d['failed']} failed [{d['state']}]"
                    done = d["succeeded"] + d["failed"]
                    bar.update(completed=done, total=d["total"] or None, status=status)
                else:
                    p.progress(progress_line(d))
            if d["state"] in FINAL_STATES:
                return d
            time.sleep(POLL_INTERVAL)
            d = api.get(f"/api/deployments/{d['id']}/")


def failure(d: Mapping[str, Any]) -> str | None:
    """Why a finished deployment is not a success, or None when it is."""
    if d["state"] == "cancelled":
        return f"deployment {d['id']} cancelled" + (f": {d['error']}" if d.get("error") else "")
    if d["state"] in ("partial", "failed"):
        return f"deployment {d['id']} {d['state']}: {d['failed']} of {d['total']} workloads failed"
    return None


def result(api: Client, p: Printer, d: Mapping[str, Any]) -> int:
    """The deployment's workloads; exit 1 unless every planned workload runs."""
    workloads = sorted(api.list_all("/api/workloads/", deployment=d["id"]), key=lambda w: w["id"])
    p.rows(workloads, o.WORKLOAD_COLUMNS, data={"deployment": d, "workloads": workloads})
    why = failure(d)
    if why:
        p.error([why])
        return 1
    return 0

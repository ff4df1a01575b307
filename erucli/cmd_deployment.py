"""erucli deployment get|list|cancel: a deploy (or replace) request and its progress."""

from __future__ import annotations

import click

from erucli import follow
from erucli import output as o
from erucli.cli import argument, command
from erucli.client import Client
from erucli.output import Printer


@command("get", "show a deployment and its workloads (exit 1 if it failed)")
@argument("did", type=int, metavar="ID", help="deployment id")
def deployment_get(api: Client, p: Printer, did: int) -> int:
    d = api.get(f"/api/deployments/{did}/")
    if p.json:
        return follow.result(api, p, d)
    keys = ("id", "kind", "pod", "app", "entrypoint", "image", "strategy", "count", "state")
    pairs = [(k, d.get(k)) for k in keys if k != "kind" or "kind" in d]
    pairs += [
        ("plan", follow.plan_text(d.get("plan"))),
        ("progress", f"{d['succeeded']} ok, {d['failed']} failed of {d['total']} ({d['percent']}%)"),
    ]
    if d.get("error"):
        pairs.append(("error", d["error"]))
    pairs += [
        ("created", f"{o.when(d['created_at'])} by {d.get('created_by') or '-'}"),
        ("finished", o.when(d.get("finished_at"))),
    ]
    p.record(pairs, d)
    p.message("")
    return follow.result(api, p, d)


@command("list", "list the latest deployments")
@click.option("--limit", type=int, default=20, help="how many (default: 20)")
def deployment_list(api: Client, p: Printer, limit: int) -> int:
    p.rows(api.get("/api/deployments/", limit=limit)["results"], o.DEPLOYMENT_COLUMNS)
    return 0


@command("cancel", "cancel a deployment (or a replace): what has not started yet will not")
@argument("did", type=int, metavar="ID", help="deployment id")
def deployment_cancel(api: Client, p: Printer, did: int) -> int:
    d = api.post(f"/api/deployments/{did}/cancel/", {})
    p.message(
        f"deployment {d['id']}: {d['state']} ({d['succeeded']} ok, {d['failed']} failed of {d['total']})", d
    )
    return 0


COMMANDS = [deployment_get, deployment_list, deployment_cancel]

"""erucli pod add|list|remove|nodes|capacity."""

from __future__ import annotations

from typing import Any

import click

from erucli import output as o
from erucli.cli import argument, command, path, resource_options, resources
from erucli.client import Client
from erucli.output import Printer

UNLIMITED = 2**63 - 1  # the API's capacity when nothing is requested


@command("add", "add a pod (admins)")
@argument("name", metavar="POD", help="pod name")
@click.option("--desc", default="", help="description")
@click.option(
    "--favor",
    type=click.Choice(["cpu", "memory"]),
    default="cpu",
    help="cpu: workloads are pinned to cores by default; memory: CFS quota (default: cpu)",
)
def pod_add(api: Client, p: Printer, name: str, desc: str, favor: str) -> int:
    pod = api.post("/api/pods/", {"name": name, "desc": desc, "favor": favor})
    p.message(f"pod {pod['name']} added (favor {pod['favor']})", pod)
    return 0


@command("list", "list pods")
def pod_list(api: Client, p: Printer) -> int:
    cols: list[o.Column] = [("NAME", "name"), ("FAVOR", "favor"), ("DESC", "desc")]
    p.rows(api.list_all("/api/pods/"), [*cols, ("CREATED", lambda r: o.when(r["created_at"]))])
    return 0


@command("remove", "remove an empty pod (admins)")
@argument("name", metavar="POD", help="pod name")
def pod_remove(api: Client, p: Printer, name: str) -> int:
    api.delete(f"/api/pods/{path(name)}/")
    p.message(f"pod {name} removed", {"removed": name})
    return 0


@command("nodes", "list the nodes of a pod")
@argument("name", metavar="POD", help="pod name")
@click.option(
    "--filter",
    "which",
    type=click.Choice(["up", "down", "all"]),
    default="up",
    help="up: available (not down, heartbeat alive); down: the others (default: up)",
)
def pod_nodes(api: Client, p: Printer, name: str, which: str) -> int:
    api.get(f"/api/pods/{path(name)}/")  # an unknown pod is an error, not an empty list
    nodes = api.list_all("/api/nodes/", pod=name)
    if which != "all":
        nodes = [n for n in nodes if bool(n["available"]) == (which == "up")]
    p.rows(nodes, o.NODE_COLUMNS)
    return 0


@command("capacity", "how many workloads of a size each available node of a pod can take now")
@argument("name", metavar="POD", help="pod name")
@resource_options
def pod_capacity(api: Client, p: Printer, name: str, **res: Any) -> int:
    result = api.post("/api/deployments/capacity/", {"pod": name, **resources(res)})
    rows = [
        {"node": k, "capacity": "unlimited" if v >= UNLIMITED else v}
        for k, v in sorted(result["capacity"].items())
    ]
    p.rows(rows, [("NODE", "node"), ("CAPACITY", "capacity")], data=result)
    if not p.json:
        p.message(f"total: {'unlimited' if result.get('unlimited') else result['total']}")
    return 0


COMMANDS = [pod_add, pod_list, pod_remove, pod_nodes, pod_capacity]

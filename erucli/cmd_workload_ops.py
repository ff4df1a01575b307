"""erucli workload replace|realloc|dissociate|exec: Eru's day-two verbs."""

from __future__ import annotations

import json
from typing import Any

import click

from erucli import follow
from erucli import output as o
from erucli.cli import KV, SIZE, CliError, argument, bind_option, command
from erucli.client import ApiError, Client
from erucli.cmd_workload import SPEC_AND_COMMAND, spec_and_command
from erucli.output import Printer

REPLACE_COLUMNS: list[o.Column] = [
    ("OLD", lambda w: w.get("old") or "-"),
    ("NEW", "id"),
    ("NAME", "name"),
    ("NODE", "node"),
    ("STATE", "state"),
    ("CONTAINER", lambda w: (w.get("container_id") or "")[:12]),
    ("ERROR", "error"),
]


@command(
    "replace",
    "replace workloads' containers with new ones (a new image, command, env or spec), on the same "
    "nodes with the same resources, --batch at a time; each old one is removed once its replacement "
    "runs, or restarted if it fails. Follows it to its end and prints which new workload replaced "
    "which; exit 1 unless every one was replaced",
    http_timeout=False,
)
@argument(
    "command",
    nargs=-1,
    metavar=SPEC_AND_COMMAND,
    help="Eru's spec file (its --entry entrypoint), and/or the new command (default: each one's own)",
)
@click.option("--pod", required=True, help="the pod of the workloads")
@click.option("--entry", required=True, help="their entrypoint")
@click.option("--name", help="their app (default: the entrypoint name; with a spec: its appname)")
@click.option("--image", help="the new image (default: each workload's own)")
@click.option(
    "--label", "filter_labels", multiple=True, type=KV, help="only workloads with this label (repeatable)"
)
@click.option(
    "--node", "nodes", multiple=True, metavar="NODE", help="only workloads on this node (repeatable)"
)
@click.option("--id", "ids", multiple=True, type=int, metavar="ID", help="only this workload (repeatable)")
@click.option(
    "--batch", type=click.IntRange(min=0), default=1, metavar="N", help="at a time (default 1; 0: all)"
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="cancel what is left after this long (the HTTP timeout goes before the command here: "
    "erucli --timeout S workload replace ...)",
)
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="environment (default: each one's own)")
@click.option("--no-wait", is_flag=True, help="return once started; do not follow it")
def workload_replace(
    api: Client,
    p: Printer,
    command: tuple[str, ...],
    pod: str,
    entry: str,
    name: str | None,
    image: str | None,
    filter_labels: tuple[tuple[str, str], ...],
    nodes: tuple[str, ...],
    ids: tuple[int, ...],
    batch: int,
    timeout: int | None,
    env: tuple[str, ...],
    no_wait: bool,
) -> int:
    spec, words = spec_and_command(command)
    body: dict[str, Any] = {"pod": pod, "app": name or ("" if spec else entry), "entrypoint": entry}
    optional = {"image": image, "spec": spec, "command": words or None, "env": list(env) or None}
    body.update({k: v for k, v in optional.items() if v is not None})
    body.update(
        {"filter_labels": dict(filter_labels), "nodes": list(nodes), "ids": list(ids), "batch": batch}
    )
    if timeout is not None:
        body["timeout"] = timeout
    d = api.post("/api/workloads/replace/", body)
    at_a_time = "all at once" if not batch else f"{batch} at a time"
    p.progress(
        f"replace {d['id']}: {d['app']}/{d['entrypoint']} on pod {pod}, {d['total']} workloads, {at_a_time}"
    )
    if no_wait:
        p.message(f"replace {d['id']} started; follow it with: erucli deployment get {d['id']}", d)
        return 0
    olds: dict[int, int] = {}  # new workload id -> the old one's, noted while the old one is there

    def note(d: follow.Deployment) -> list[dict[str, Any]]:
        rows = api.list_all("/api/workloads/", deployment=d["id"])
        olds.update({w["id"]: w["replaces"] for w in rows if w.get("replaces") is not None})
        return rows

    try:
        d = follow.follow(api, p, d, on_poll=note)
    except KeyboardInterrupt:
        p.progress(
            f"\nstopped waiting; the replace goes on: erucli deployment get {d['id']} "
            f"(to stop it: erucli deployment cancel {d['id']})"
        )
        return 130
    workloads = sorted(note(d), key=lambda w: w["id"])
    pairs = [{"old": olds.get(w["id"]), "new": w["id"]} for w in workloads]
    rows = [{**w, "old": olds.get(w["id"])} for w in workloads]
    p.rows(rows, REPLACE_COLUMNS, data={"deployment": d, "workloads": workloads, "replaced": pairs})
    if d["state"] != "done":
        p.error([follow.failure(d) or f"replace {d['id']} {d['state']}"])
        return 1
    return 0


@command(
    "realloc",
    "change workloads' resources while they run, by DELTAS as Eru does (--cpu-limit 1 adds a cpu, "
    "--memory-limit -256M takes 256M off); the node must have room for what is added",
)
@argument("ids", nargs=-1, required=True, type=int, metavar="ID...")
@click.option("--cpu-request", type=float, default=0.0, metavar="CPUS", help="added to the cpu request")
@click.option("--cpu-limit", type=float, default=0.0, metavar="CPUS", help="added to the cpu limit")
@click.option("--memory-request", type=SIZE, default=0, help="added to the memory request, e.g. 512M, -1G")
@click.option("--memory-limit", type=SIZE, default=0, help="added to the memory limit, e.g. 512M, -1G")
@bind_option(help="pin to cores (--cpu-bind) or not, a CFS quota only (--cpu-unbind); neither: as it is")
def workload_realloc(
    api: Client,
    p: Printer,
    ids: tuple[int, ...],
    cpu_request: float,
    cpu_limit: float,
    memory_request: int,
    memory_limit: int,
    cpu_bind: bool | None,
) -> int:
    body: dict[str, Any] = {
        "cpu_request": cpu_request,
        "cpu_limit": cpu_limit,
        "memory_request": memory_request,
    }
    body.update({"memory_limit": memory_limit, "cpu_bind": cpu_bind})
    if not any(body.values()) and cpu_bind is None:
        raise CliError(
            "nothing to change: give --cpu-request, --cpu-limit, --memory-request, --memory-limit, "
            "--cpu-bind or --cpu-unbind"
        )
    rc, items = 0, []
    for wid in ids:
        try:
            items.append(api.post(f"/api/workloads/{wid}/realloc/", body))
        except ApiError as exc:
            p.error([f"workload {wid}: {line}" for line in exc.lines])
            rc = 1
    if items or p.json:
        o.records(p, items)
    return rc


@command(
    "dissociate",
    "forget workloads and keep their containers running, unmanaged; their allocations go back to "
    "their nodes (IDs, or every workload of --node)",
)
@argument("ids", nargs=-1, type=int, metavar="[ID...]")
@click.option("--node", metavar="NODE", help="every workload of this node")
def workload_dissociate(api: Client, p: Printer, ids: tuple[int, ...], node: str | None) -> int:
    if bool(ids) == bool(node):
        raise CliError("give workload IDs or --node NODE (one of them)")
    result = api.post("/api/workloads/dissociate/", {"ids": list(ids)} if ids else {"node": node})
    rows = result.get("dissociated") or []
    cols: list[o.Column] = [("ID", "id")] if any("id" in row for row in rows) else []
    cols += [
        ("NAME", "name"),
        ("NODE", "node"),
        ("CONTAINER", lambda w: (w.get("container_id") or "")[:12]),
    ]
    p.rows(rows, cols, data=result)
    if not p.json:
        p.message(f"{len(rows)} dissociated: their containers keep running, unmanaged")
    return 0


@command(
    "exec",
    "run a command in a workload's running container (no shell, no tty, no stdin): its stdout to "
    "stdout and its stderr to stderr as they come; the exit code is the command's",
)
@argument("wid", type=int, metavar="ID")
@argument("command", nargs=-1, required=True, metavar="-- CMD ARGS", help="the command (argv)")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="environment variable, repeatable")
@click.option("--workdir", default="", metavar="DIR", help="working directory (default: the image's)")
@click.option("--user", default="", metavar="USER", help="name or uid[:gid] (default: the container's)")
@click.option(
    "--run-timeout", type=click.IntRange(min=1), metavar="SECONDS", help="stop reading after this long"
)
def workload_exec(
    api: Client,
    p: Printer,
    wid: int,
    command: tuple[str, ...],
    env: tuple[str, ...],
    workdir: str,
    user: str,
    run_timeout: int | None,
) -> int:
    body: dict[str, Any] = {"command": list(command), "env": list(env), "workdir": workdir, "user": user}
    if run_timeout is not None:
        body["timeout"] = run_timeout
    for event in api.stream(f"/api/workloads/{wid}/exec/", method="POST", body=body):
        if p.json:
            p.line(json.dumps(event, sort_keys=True))
        elif "data" in event:  # a part of what it wrote, newlines included
            p.write(str(event["data"]), stderr=event.get("stream") == "stderr")
        if "error" in event:
            raise ApiError([f"workload {wid}: {event['error']}"])
        if "exit_code" in event:
            if event.get("message") and not p.json:
                p.error([f"workload {wid}: {event['message']}"])
            code = event["exit_code"]
            return int(code) if code is not None else 1
    raise ApiError([f"workload {wid}: the exec ended without an exit code"])


COMMANDS = [workload_replace, workload_realloc, workload_dissociate, workload_exec]

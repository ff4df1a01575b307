"""erucli workload deploy|list|get|status|logs|start|stop|restart|remove (the day-two verbs, replace,
realloc, dissociate and exec, are in cmd_workload_ops.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import schema
from erucli import follow
from erucli import output as o
from erucli.cli import KV, CliError, argument, command, resource_options, resources
from erucli.client import ApiError, Client
from erucli.output import Printer
from erucli.progress import Bar

TARGET = {"start": "running", "stop": "stopped"}  # the state a control action ends in
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
STRATEGIES = [s.lower() for s in schema.STRATEGIES]
SPEC_AND_COMMAND = "[SPEC.yaml] [-- CMD ARGS]"


def _help(name: str) -> str:
    return schema.help_of(schema.DeployRequest, name)


def _default(name: str) -> Any:
    return schema.default_of(schema.DeployRequest, name)


def spec_and_command(words: tuple[str, ...] | list[str]) -> tuple[str | None, list[str]]:
    """Eru's erucli takes the spec file as its argument: a first word naming a .yaml/.yml/.json file
    is the spec (sent as it is, the core reads it); the rest is the command."""
    words = list(words)
    if words and words[0].endswith(SPEC_SUFFIXES):
        try:
            return Path(words[0]).read_text(), words[1:]
        except OSError as exc:
            raise CliError(f"spec {words[0]}: {exc.strerror or exc}") from None
    return None, words


def deploy_body(
    *,
    command: tuple[str, ...] | list[str],
    pod: str,
    entry: str,
    image: str,
    name: str | None = None,
    count: int = 1,
    env: tuple[str, ...] = (),
    labels: tuple[tuple[str, str], ...] = (),
    nodes: tuple[str, ...] = (),
    nodelabels: tuple[tuple[str, str], ...] = (),
    deploy_strategy: str = "auto",
    nodes_limit: int = 0,
    network: str | None = None,
    deploy_timeout: int | None = None,
    team: str | None = None,
    **res: Any,
) -> dict[str, Any]:
    """The POST /api/deployments/ body of `workload deploy`'s flags."""
    spec, words = spec_and_command(command)
    body: dict[str, Any] = {
        "pod": pod,
        "app": name or ("" if spec else entry),  # with a spec: its appname
        "entrypoint": entry,
        "image": image,
        "count": count,
        "command": words,
        "env": list(env),
        "labels": dict(labels),
        "network": network or "",
        "strategy": deploy_strategy.upper(),
        "nodes_limit": nodes_limit,
        "node_names": list(nodes),
        "node_labels": dict(nodelabels),
    }
    if spec is not None:
        body["spec"] = spec
    if deploy_timeout is not None:
        body["timeout"] = deploy_timeout
    if team:
        body["team"] = team
    return {**body, **resources(res)}


@command(
    "deploy",
    "deploy workloads and wait until they run; from Eru's spec file (SPEC.yaml: the --entry "
    "entrypoint of it) or from a command",
)
@argument(
    "command",
    nargs=-1,
    metavar=SPEC_AND_COMMAND,
    help="Eru's spec file (a .yaml, .yml or .json file: appname, entrypoints, volumes, labels, dns, "
    "extra_hosts), and/or the command to run in the container",
)
@click.option("--pod", required=True, help="pod to deploy into")
@click.option("--entry", required=True, help=_help("entrypoint"))
@click.option("--image", required=True, help=_help("image"))
@click.option("--name", help=f"{_help('app')} (default: the entrypoint name)")
@click.option(
    "--count", type=int, default=_default("count"), help=f"{_help('count')} (default {_default('count')})"
)
@resource_options
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="environment variable, repeatable")
@click.option("--label", "labels", multiple=True, type=KV, help="workload label, repeatable")
@click.option(
    "--node", "nodes", multiple=True, metavar="NODE", help="only these nodes (repeatable; must be up)"
)
@click.option(
    "--nodelabel", "nodelabels", multiple=True, type=KV, help="only nodes with this label (repeatable)"
)
@click.option(
    "--deploy-strategy",
    type=click.Choice(STRATEGIES, case_sensitive=False),
    default=_default("strategy").lower(),
    help=f"{_help('strategy')} (default: {_default('strategy').lower()})",
)
@click.option(
    "--nodes-limit", type=int, default=_default("nodes_limit"), metavar="N", help=_help("nodes_limit")
)
@click.option("--network", help="docker network (default: the cluster's network mode)")
@click.option(
    "--deploy-timeout", type=click.IntRange(min=1), metavar="SECONDS", help="cancel it if not done by then"
)
@click.option("--team", help="the team whose quota it runs on (default: your only team)")
@click.option("--dry-run", is_flag=True, help="print the plan {node: count} and deploy nothing")
@click.option("--no-wait", is_flag=True, help="return once planned; do not follow progress")
def workload_deploy(api: Client, p: Printer, dry_run: bool, no_wait: bool, **flags: Any) -> int:
    body = deploy_body(**flags)
    if dry_run:
        result = api.post("/api/deployments/plan/", body)
        rows = [{"node": k, "count": v} for k, v in sorted(result["plan"].items())]
        p.rows(rows, [("NODE", "node"), ("COUNT", "count")], data=result)
        p.message(f"total: {result['total']} (dry run: nothing deployed)")
        return 0
    d = api.post("/api/deployments/", body)
    where = f"{d['app']}/{d['entrypoint']} on pod {d['pod']}"
    p.progress(f"deployment {d['id']}: {where}, plan {follow.plan_text(d['plan'])}")
    if no_wait:
        p.message(f"deployment {d['id']} started; follow it with: erucli deployment get {d['id']}", d)
        return 0
    try:
        d = follow.follow(api, p, d)
    except KeyboardInterrupt:
        p.progress(f"\nstopped waiting; the deployment goes on: erucli deployment get {d['id']}")
        return 130
    return follow.result(api, p, d)


@command("list", "list workloads")
@argument("appname", required=False, metavar="APP", help="same as --app")
@click.option("--app")
@click.option("--entry")
@click.option("--node")
@click.option("--pod")
@click.option(
    "--state", type=click.Choice(["pending", "creating", "running", "stopped", "removing", "failed"])
)
@click.option(
    "--status",
    type=click.Choice(["running", "exited", "oom_killed", "restarting", "paused", "missing", "unknown"]),
    help="observed status (what Docker showed)",
)
def workload_list(
    api: Client, p: Printer, appname: str | None, app: str | None, entry: str | None, **filters: Any
) -> int:
    filters = {"app": app or appname, "entrypoint": entry, **filters}
    observed: list[o.Column] = [("STATUS", o.observed), ("HEALTH", "health")]
    cols = [*o.WORKLOAD_COLUMNS[:4], *observed, ("POD", "pod"), ("IMAGE", "image"), *o.WORKLOAD_COLUMNS[4:]]
    p.rows(api.list_all("/api/workloads/", **filters), cols)
    return 0


@command("get", "show workloads")
@argument("ids", nargs=-1, required=True, type=int, metavar="ID...")
def workload_get(api: Client, p: Printer, ids: tuple[int, ...]) -> int:
    o.records(p, [api.get(f"/api/workloads/{wid}/") for wid in ids])
    return 0


@command("status", "observed status of workloads: state, exit code, health")
@argument("ids", nargs=-1, required=True, type=int, metavar="ID...")
def workload_status(api: Client, p: Printer, ids: tuple[int, ...]) -> int:
    """What Docker showed of each workload's container when its node was last looked at."""
    p.rows([api.get(f"/api/workloads/{wid}/") for wid in ids], o.STATUS_COLUMNS)
    return 0


@command(
    "logs",
    "a workload's log (stdout and stderr); -f follows it. Without ID, --app merges the logs of an "
    "app's workloads (--entry, --node, --pod, --deployment narrow it), each line after its "
    "workload's name",
)
@argument("wid", required=False, type=int, metavar="ID")
@click.option("--app", help="merge the logs of this app's workloads")
@click.option("--entry", "entrypoint", help="with --app: only this entrypoint's")
@click.option("--node", help="with --app: only those on this node")
@click.option("--pod", help="with --app: only those in this pod")
@click.option("--deployment", type=int, metavar="ID", help="merge the logs of this deployment's")
@click.option("-f", "--follow", "follow_", is_flag=True, help="keep printing new lines until interrupted")
@click.option(
    "--tail", default="100", metavar="N", help="the last N lines (default 100; merged: of each), or all"
)
@click.option("--since", metavar="T", help="from: unix seconds, an ISO 8601 time or a while ago (10m)")
def workload_logs(
    api: Client, p: Printer, wid: int | None, follow_: bool, tail: str, since: str | None, **chosen: Any
) -> int:
    """A workload's log, as Eru's `workload logs`: stdout lines to stdout, stderr lines to stderr
    (with --json, the objects as the API sends them); -f follows until interrupted. Without an ID,
    the merged log of the workloads --app (or --deployment) and the filters choose, each line after
    its workload's name."""
    params: dict[str, Any] = {"tail": tail, "since": since, "follow": "true" if follow_ else None}
    if wid is not None and any(v is not None for v in chosen.values()):
        raise CliError("give a workload ID, or --app/--deployment to merge several logs; not both")
    if wid is None and chosen["app"] is None and chosen["deployment"] is None:
        raise CliError("give a workload ID, or --app (or --deployment) to merge its workloads' logs")
    if wid is not None:
        stream = api.stream(f"/api/workloads/{wid}/logs/", **params)
    else:
        stream = api.stream("/api/workloads/logs/", **params, **chosen)
    for line in stream:
        if p.json:
            p.line(json.dumps(line, sort_keys=True))
            continue
        prefix = f"{line['name']} | " if "name" in line else ""
        if "error" in line:
            if not prefix:
                raise ApiError([str(line["error"])])
            p.line(f"{prefix}{line['error']}", stderr=True)
        else:
            p.line(prefix + str(line.get("data", "")), stderr=line.get("stream") == "stderr")
    return 0


def _wait(api: Client, wid: int, done: Callable[[Any], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(api.request("GET", f"/api/workloads/{wid}/", ok_404=True)):
            return True
        time.sleep(follow.POLL_INTERVAL)
    return False


def _act(
    api: Client,
    p: Printer,
    verb: str,
    ids: tuple[int, ...],
    *,
    force: bool = False,
    wait: bool = False,
    wait_timeout: float = 120.0,
) -> int:
    """start|stop|restart|remove each ID; one failure does not stop the others (exit 1 at the end).
    remove shows a progress bar on a terminal."""
    rc, results = 0, []
    target = TARGET.get(verb, "removed")  # what --wait waits for (start/stop/remove only)
    with Bar("removing", len(ids), err=p.err, enabled=verb == "remove") as bar:
        for wid in ids:
            try:
                if verb == "remove":
                    api.delete(f"/api/workloads/{wid}/" + ("?force=true" if force else ""))
                else:
                    api.post(f"/api/workloads/{wid}/{verb}/")
                status = f"{verb} requested"
                if wait:
                    done = (
                        (lambda w: w is None) if verb == "remove" else (lambda w: w and w["state"] == target)
                    )
                    if _wait(api, wid, done, wait_timeout):
                        status = target
                    else:
                        p.error([f"workload {wid}: not {target} after {wait_timeout:g}s"])
                        rc, status = 1, "still in progress"
            except ApiError as exc:
                p.error([f"workload {wid}: {line}" for line in exc.lines])
                rc, status = 1, "error"
            results.append({"id": wid, "result": status})
            if status != "error" and not p.json:
                p.message(f"workload {wid}: {status}")
            bar.update(advance=1, status=f"workload {wid}: {status}")
    if p.json:
        p.dump(results)
    return rc


IDS = argument("ids", nargs=-1, required=True, type=int, metavar="ID...")
WAIT_TIMEOUT = click.option(
    "--wait-timeout", type=float, default=120.0, metavar="SECONDS", help="default: 120"
)


def _control(verb: str, text: str) -> click.Command:
    if verb == "restart":

        @command(verb, f"{text} workloads")
        @IDS
        def restart(api: Client, p: Printer, ids: tuple[int, ...]) -> int:
            return _act(api, p, verb, ids)

        return restart

    @command(verb, f"{text} workloads")
    @IDS
    @click.option("--wait", is_flag=True, help=f"wait until each is {TARGET[verb]}")
    @WAIT_TIMEOUT
    def run(api: Client, p: Printer, ids: tuple[int, ...], wait: bool, wait_timeout: float) -> int:
        return _act(api, p, verb, ids, wait=wait, wait_timeout=wait_timeout)

    return run


@command("remove", "remove workloads (their containers are force-removed)")
@IDS
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="drop the workload at once, even if its node answers (a container left behind is removed "
    "by reconcile); the container is always removed forcibly. On a node that does not answer, "
    "removal is at once anyway.",
)
@click.option("--wait", is_flag=True, help="wait until each is gone")
@WAIT_TIMEOUT
def workload_remove(
    api: Client, p: Printer, ids: tuple[int, ...], force: bool, wait: bool, wait_timeout: float
) -> int:
    return _act(api, p, "remove", ids, force=force, wait=wait, wait_timeout=wait_timeout)


COMMANDS = [
    workload_deploy,
    workload_list,
    workload_get,
    workload_status,
    workload_logs,
    _control("start", "start stopped"),
    _control("stop", "stop running"),
    _control("restart", "restart"),
    workload_remove,
]

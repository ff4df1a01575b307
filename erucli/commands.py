"""The erucli commands: each handler(api, printer, args) -> exit code. The parser is in main.py."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from erucli import output as o
from erucli.client import ApiError, Client, save_token
from erucli.output import Printer

POLL_INTERVAL = 0.5
UNLIMITED = 2**63 - 1  # the API's capacity when nothing is requested
TARGET = {"start": "running", "stop": "stopped"}  # the state a control action ends in
FINAL_STATES = ("done", "partial", "failed")
WORKLOAD_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "pod",
    "node",
    "app",
    "entrypoint",
    "image",
    "command",
    "env",
)
WORKLOAD_FIELDS += ("labels", "network", "state", "status", "exit_code", "health", "restart_count")
WORKLOAD_FIELDS += ("last_observed", "container_id", "networks", "ports", "cpu_bind", "cpu_map")
WORKLOAD_FIELDS += ("deployment", "error")
TLS_DEFAULTS = {
    k: f"/etc/docker/tls/{f}" for k, f in (("ca", "ca.crt"), ("cert", "client.crt"), ("key", "client.key"))
}
TLS_DIR_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}


class CliError(Exception):
    """A mistake found before calling the API (unreadable file, nothing to do, ...)."""


Args = argparse.Namespace
Handler = Callable[[Client, Printer, Args], int]


def kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _path(name: str) -> str:
    return quote(str(name), safe="")


# --- pods ---------------------------------------------------------------------------------------
def pod_add(api: Client, p: Printer, a: Args) -> int:
    pod = api.post("/api/pods/", {"name": a.name, "desc": a.desc, "favor": a.favor})
    p.message(f"pod {pod['name']} added (favor {pod['favor']})", pod)
    return 0


def pod_list(api: Client, p: Printer, a: Args) -> int:
    cols: list[o.Column] = [("NAME", "name"), ("FAVOR", "favor"), ("DESC", "desc")]
    p.rows(api.list_all("/api/pods/"), [*cols, ("CREATED", lambda r: o.when(r["created_at"]))])
    return 0


def pod_remove(api: Client, p: Printer, a: Args) -> int:
    api.delete(f"/api/pods/{_path(a.name)}/")
    p.message(f"pod {a.name} removed", {"removed": a.name})
    return 0


def pod_nodes(api: Client, p: Printer, a: Args) -> int:
    api.get(f"/api/pods/{_path(a.name)}/")  # an unknown pod is an error, not an empty list
    nodes = api.list_all("/api/nodes/", pod=a.name)
    if a.filter != "all":
        nodes = [n for n in nodes if bool(n["available"]) == (a.filter == "up")]
    p.rows(nodes, o.NODE_COLUMNS)
    return 0


def pod_capacity(api: Client, p: Printer, a: Args) -> int:
    body = {"pod": a.name, **_resources(a)}
    result = api.post("/api/deployments/capacity/", body)
    rows = [
        {"node": k, "capacity": "unlimited" if v >= UNLIMITED else v}
        for k, v in sorted(result["capacity"].items())
    ]
    p.rows(rows, [("NODE", "node"), ("CAPACITY", "capacity")], data=result)
    if not p.json:
        p.message(f"total: {'unlimited' if result.get('unlimited') else result['total']}")
    return 0


# --- nodes --------------------------------------------------------------------------------------
def _tls(a: Args) -> dict[str, str]:
    pem: dict[str, str] = {}
    for part, default in TLS_DEFAULTS.items():
        path = getattr(a, part) or (Path(a.tls_dir) / TLS_DIR_FILES[part] if a.tls_dir else default)
        try:
            pem[part] = Path(path).read_text()
        except OSError as exc:
            raise CliError(f"--{part}: cannot read {path}: {exc.strerror or exc}") from exc
    return pem


def _cores(cpu_map: Mapping[str, int]) -> str:
    """{"0": 100, "1": 50} as "0:100 1:50", in core order."""
    return " ".join(f"{k}:{v}" for k, v in sorted(cpu_map.items(), key=lambda i: (len(i[0]), i[0])))


def _node_record(p: Printer, node: Mapping[str, Any]) -> None:
    cores = len(node.get("cpu_map") or {})
    engine = node.get("info") or {}
    pairs = [
        ("name", node["name"]),
        ("pod", node["pod"]),
        ("endpoint", node["endpoint"]),
        ("status", o.node_status(node)),
        ("bypass", node["bypass"]),
        (
            "cpu",
            f"{o.cpu(node['used_cpu'])} used of {o.cpu(node['cpu'])} ({cores} cores x {node['share_base']})",
        ),
        ("cpu_map", _cores(node["cpu_map"])),
        ("used_cpu_map", _cores(node["used_cpu_map"])),
        ("memory", f"{o.size(node['used_memory'])} used of {o.size(node['memory'])}"),
        ("labels", node["labels"]),
        (
            "engine",
            f"docker {engine.get('ServerVersion', '?')}, {engine.get('NCPU', '?')} cpus" if engine else "",
        ),
        ("last_error", node.get("last_error")),
        ("created", o.when(node.get("created_at"))),
    ]
    p.record(pairs, node)


def node_add(api: Client, p: Printer, a: Args) -> int:
    body: dict[str, Any] = {"name": a.nodename, "pod": a.pod, "endpoint": a.endpoint, **_tls(a)}
    body["labels"] = dict(a.label or [])
    body.update(
        {k: v for k, v in (("cpu", a.cpu), ("memory", a.memory), ("share", a.share)) if v is not None}
    )
    _node_record(p, api.post("/api/nodes/", body))
    return 0


def node_get(api: Client, p: Printer, a: Args) -> int:
    _node_record(p, api.get(f"/api/nodes/{_path(a.name)}/"))
    return 0


def node_list(api: Client, p: Printer, a: Args) -> int:
    p.rows(api.list_all("/api/nodes/", pod=a.pod), o.NODE_COLUMNS)
    return 0


def node_updown(api: Client, p: Printer, a: Args) -> int:
    node = api.post(f"/api/nodes/{_path(a.name)}/{a.verb}/")
    note = "" if a.verb == "down" or node["available"] else " (bypass off, but no heartbeat yet)"
    p.message(f"node {node['name']} is {a.verb}{note}", node)
    return 0


def node_set(api: Client, p: Printer, a: Args) -> int:
    if a.label is None and not a.clear_labels:
        raise CliError("nothing to set: give --label k=v (repeatable) or --clear-labels")
    node = api.patch(f"/api/nodes/{_path(a.name)}/", {"labels": dict(a.label or [])})
    p.message(f"node {node['name']} labels: {o.labels(node['labels']) or '(none)'}", node)
    return 0


def node_remove(api: Client, p: Printer, a: Args) -> int:
    api.delete(f"/api/nodes/{_path(a.name)}/")
    p.message(f"node {a.name} removed", {"removed": a.name})
    return 0


# --- workloads and deployments ------------------------------------------------------------------
def _resources(a: Args) -> dict[str, Any]:
    """--cpu / --memory set request and limit; the specific flags win; unset flags use API defaults."""
    body: dict[str, Any] = {}
    for kind in ("cpu", "memory"):
        if getattr(a, kind) is not None:
            body[f"{kind}_request"] = body[f"{kind}_limit"] = getattr(a, kind)
        for part in ("request", "limit"):
            if getattr(a, f"{kind}_{part}") is not None:
                body[f"{kind}_{part}"] = getattr(a, f"{kind}_{part}")
    if a.cpu_bind is not None:
        body["cpu_bind"] = a.cpu_bind
    return body


SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def _spec_and_command(words: list[str]) -> tuple[str | None, list[str]]:
    """Eru's erucli takes the spec file as its argument: a first word naming a .yaml/.yml/.json file
    is the spec (sent as it is, the core reads it); the rest is the command."""
    if words and words[0].endswith(SPEC_SUFFIXES):
        try:
            return Path(words[0]).read_text(), words[1:]
        except OSError as exc:
            raise CliError(f"spec {words[0]}: {exc.strerror or exc}") from None
    return None, words


def _deploy_body(a: Args) -> dict[str, Any]:
    spec, command = _spec_and_command(a.command)
    body = {
        "pod": a.pod,
        "app": a.name or ("" if spec else a.entry),  # with a spec: its appname
        "entrypoint": a.entry,
        "image": a.image,
        "count": a.count,
        "command": command,
        "env": a.env or [],
        "labels": dict(a.label or []),
        "network": a.network or "",
        "strategy": a.deploy_strategy.upper(),
        "nodes_limit": a.nodes_limit,
        "node_names": a.node or [],
        "node_labels": dict(a.nodelabel or []),
    }
    if spec is not None:
        body["spec"] = spec
    return {**body, **_resources(a)}


def _plan(plan: Mapping[str, int]) -> str:
    return " ".join(f"{node}={n}" for node, n in sorted(plan.items())) or "(nothing)"


def workload_deploy(api: Client, p: Printer, a: Args) -> int:
    body = _deploy_body(a)
    if a.dry_run:
        result = api.post("/api/deployments/plan/", body)
        rows = [{"node": k, "count": v} for k, v in sorted(result["plan"].items())]
        p.rows(rows, [("NODE", "node"), ("COUNT", "count")], data=result)
        p.message(f"total: {result['total']} (dry run: nothing deployed)")
        return 0
    d = api.post("/api/deployments/", body)
    p.progress(
        f"deployment {d['id']}: {d['app']}/{d['entrypoint']} on pod {d['pod']}, plan {_plan(d['plan'])}"
    )
    if a.no_wait:
        p.message(f"deployment {d['id']} started; follow it with: erucli deployment get {d['id']}", d)
        return 0
    try:
        d = _follow(api, p, d)
    except KeyboardInterrupt:
        p.progress(f"\nstopped waiting; the deployment goes on: erucli deployment get {d['id']}")
        return 130
    return _deployment_result(api, p, d)


def _follow(api: Client, p: Printer, d: dict[str, Any]) -> dict[str, Any]:
    seen = None
    while True:
        state = (d["succeeded"], d["failed"], d["state"])
        if state != seen:
            seen = state
            p.progress(
                f"  {d['succeeded'] + d['failed']}/{d['total']} ({d['percent']}%): "
                f"{d['succeeded']} running, {d['failed']} failed [{d['state']}]"
            )
        if d["state"] in FINAL_STATES:
            return d
        time.sleep(POLL_INTERVAL)
        d = api.get(f"/api/deployments/{d['id']}/")


def _deployment_result(api: Client, p: Printer, d: Mapping[str, Any]) -> int:
    """The deployment's workloads; exit 1 unless every planned workload runs."""
    workloads = sorted(api.list_all("/api/workloads/", deployment=d["id"]), key=lambda w: w["id"])
    p.rows(workloads, o.WORKLOAD_COLUMNS, data={"deployment": d, "workloads": workloads})
    if d["state"] in ("partial", "failed"):
        p.error([f"deployment {d['id']} {d['state']}: {d['failed']} of {d['total']} workloads failed"])
        return 1
    return 0


def deployment_get(api: Client, p: Printer, a: Args) -> int:
    d = api.get(f"/api/deployments/{a.id}/")
    if p.json:
        return _deployment_result(api, p, d)
    pairs = [(k, d.get(k)) for k in ("id", "pod", "app", "entrypoint", "image", "strategy", "count", "state")]
    pairs += [
        ("plan", _plan(d["plan"])),
        ("progress", f"{d['succeeded']} ok, {d['failed']} failed of {d['total']} ({d['percent']}%)"),
    ]
    pairs += [
        ("created", f"{o.when(d['created_at'])} by {d.get('created_by') or '-'}"),
        ("finished", o.when(d.get("finished_at"))),
    ]
    p.record(pairs, d)
    p.message("")
    return _deployment_result(api, p, d)


def deployment_list(api: Client, p: Printer, a: Args) -> int:
    p.rows(api.get("/api/deployments/", limit=a.limit)["results"], o.DEPLOYMENT_COLUMNS)
    return 0


def workload_list(api: Client, p: Printer, a: Args) -> int:
    filters = dict(app=a.app or a.appname, entrypoint=a.entry, node=a.node, pod=a.pod, state=a.state)
    filters["status"] = a.status
    observed: list[o.Column] = [("STATUS", o.observed), ("HEALTH", "health")]
    cols = [*o.WORKLOAD_COLUMNS[:4], *observed, ("POD", "pod"), ("IMAGE", "image"), *o.WORKLOAD_COLUMNS[4:]]
    p.rows(api.list_all("/api/workloads/", **filters), cols)
    return 0


def workload_status(api: Client, p: Printer, a: Args) -> int:
    """What Docker showed of each workload's container when its node was last looked at."""
    p.rows([api.get(f"/api/workloads/{wid}/") for wid in a.ids], o.STATUS_COLUMNS)
    return 0


def workload_logs(api: Client, p: Printer, a: Args) -> int:
    """A workload's log, as Eru's `workload logs`: stdout lines to stdout, stderr lines to stderr
    (with --json, the objects as the API sends them); -f follows until interrupted. Without an ID,
    the merged log of the workloads --app (or --deployment) and the filters choose, each line after
    its workload's name."""
    params = {"tail": a.tail, "since": a.since, "follow": "true" if a.follow else None}
    chosen = {"app": a.app, "entrypoint": a.entry, "node": a.node, "pod": a.pod, "deployment": a.deployment}
    if a.id is not None and any(v is not None for v in chosen.values()):
        raise CliError("give a workload ID, or --app/--deployment to merge several logs; not both")
    if a.id is None and a.app is None and a.deployment is None:
        raise CliError("give a workload ID, or --app (or --deployment) to merge its workloads' logs")
    if a.id is not None:
        stream = api.stream(f"/api/workloads/{a.id}/logs/", **params)
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


def workload_get(api: Client, p: Printer, a: Args) -> int:
    items = [api.get(f"/api/workloads/{wid}/") for wid in a.ids]
    if p.json:
        p.dump(items[0] if len(items) == 1 else items)
        return 0
    for i, w in enumerate(items):
        pairs = [(k, w.get(k)) for k in WORKLOAD_FIELDS]
        pairs += [
            ("cpu", f"request {o.cpu(w['cpu_request'])}, limit {o.cpu(w['cpu_limit'])}"),
            ("memory", f"request {o.size(w['memory_request'])}, limit {o.size(w['memory_limit'])}"),
            ("created", o.when(w["created_at"])),
            ("updated", o.when(w["updated_at"])),
        ]
        if i:
            p.message("")
        p.record(pairs, w)
    return 0


def _wait(api: Client, wid: int, done: Callable[[Any], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(api.request("GET", f"/api/workloads/{wid}/", ok_404=True)):
            return True
        time.sleep(POLL_INTERVAL)
    return False


def workload_act(api: Client, p: Printer, a: Args) -> int:
    """start|stop|restart|remove each ID; one failure does not stop the others (exit 1 at the end)."""
    rc, results = 0, []
    target = TARGET.get(a.verb, "removed")  # what --wait waits for (start/stop/remove only)
    for wid in a.ids:
        try:
            if a.verb == "remove":
                api.delete(f"/api/workloads/{wid}/" + ("?force=true" if a.force else ""))
            else:
                api.post(f"/api/workloads/{wid}/{a.verb}/")
            status = f"{a.verb} requested"
            if getattr(a, "wait", False):
                done = (lambda w: w is None) if a.verb == "remove" else (lambda w: w and w["state"] == target)
                if _wait(api, wid, done, a.wait_timeout):
                    status = target
                else:
                    p.error([f"workload {wid}: not {target} after {a.wait_timeout:g}s"])
                    rc, status = 1, "still in progress"
        except ApiError as exc:
            p.error([f"workload {wid}: {line}" for line in exc.lines])
            rc, status = 1, "error"
        results.append({"id": wid, "result": status})
        if status != "error" and not p.json:
            p.message(f"workload {wid}: {status}")
    if p.json:
        p.dump(results)
    return rc


def audit(api: Client, p: Printer, a: Args) -> int:
    p.rows(api.get("/api/audit/", limit=a.limit)["results"], o.AUDIT_COLUMNS)
    return 0


def login(api: Client, p: Printer, a: Args) -> int:
    try:
        username = a.username or os.environ.get("ERU_USERNAME") or input("Username: ").strip()
    except EOFError:
        raise CliError("no username: give --username") from None
    if a.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username}: ")
    anonymous = Client(api.base_url, timeout=api.timeout)  # an old, revoked token would be refused
    name = a.name or f"erucli@{socket.gethostname()}"
    token = anonymous.post("/api/auth/token/", {"username": username, "password": password, "name": name})
    path = save_token(token["token"])
    p.message(f"logged in to {api.base_url} as {username}; token saved to {path}", {"token_file": str(path)})
    return 0


def lambda_run(api: Client, p: Printer, a: Args) -> int:
    """Eru's lambda: stdout lines to stdout, stderr lines to stderr (each after its number when
    --count > 1), "starting" while a container starts; the exit code is the command's (the first
    non-zero of several). Ctrl-C cancels the run and waits for its end."""
    try:
        command = shlex.split(a.command_line) if a.command_line else list(a.command)
    except ValueError as exc:
        raise CliError(f"--command: {exc}") from None
    if not command:
        raise CliError("give the command: --command 'CMD ARGS' or -- CMD ARGS")
    body = {
        "pod": a.pod, "image": a.image, "command": command, "count": a.count, "timeout": a.run_timeout,
        "env": a.env or [], "network": a.network or "", "node_names": a.node or [], "app": a.name or "",
        **_resources(a),
    }  # fmt: skip
    if a.stdin:
        body["stdin"] = sys.stdin.read()
    run = api.post("/api/lambdas/", body)
    seen = [0]  # events printed: after a Ctrl-C the stream is read again from its start
    try:
        return _lambda_output(api, p, run["id"], a.count > 1, seen)
    except KeyboardInterrupt:
        p.progress(f"cancelling lambda {run['id']}…")
        api.post(f"/api/lambdas/{run['id']}/cancel/", {})
        printed, seen[0] = seen[0], 0
        _lambda_output(api, p, run["id"], a.count > 1, seen, skip=printed)
        return 130


def _lambda_output(
    api: Client, p: Printer, run_id: int, several: bool, seen: list[int], *, skip: int = 0
) -> int:
    for event in api.stream(f"/api/lambdas/{run_id}/output/"):
        seen[0] += 1
        kind = event.get("event")
        if seen[0] <= skip and kind != "end":
            continue
        prefix = f"#{event.get('seq', 0)} | " if several else ""
        if p.json:
            p.line(json.dumps(event, sort_keys=True))
        elif kind == "line":
            p.line(prefix + str(event.get("data", "")), stderr=event.get("stream") == "stderr")
        elif kind == "starting":
            p.progress(f"{prefix}starting…")
        elif kind == "exit" and event.get("ended") != "done":
            p.progress(f"{prefix}{event.get('ended')}")
        if kind == "end":
            code = event.get("exit_code")
            return int(code) if code is not None else 1
    return 1

"""erucli lambda: a one-off command in throw-away containers (Eru's lambda)."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click

import schema
from erucli.cli import CliError, argument, command, resource_options, resources
from erucli.client import Client
from erucli.output import Printer
from erucli.progress import Bar


@command(
    "lambda",
    "run a one-off command in throw-away containers, print what it prints as it comes, and exit "
    "with its exit code (Eru's lambda); Ctrl-C cancels it",
)
@argument("command", nargs=-1, metavar="-- CMD ARGS", help="the command (or --command)")
@click.option("--command", "command_line", metavar="CMD", help="the command as one line (Eru's)")
@click.option("--pod", required=True, help="pod to run in")
@click.option("--image", required=True, help=schema.help_of(schema.DeployRequest, "image"))
@click.option("--name", help="app name (default: lambda)")
@click.option("--count", type=int, default=1, help="how many at once; each line after its number")
@click.option(
    "--run-timeout", type=int, default=600, metavar="SECONDS", help="killed after this (default 600)"
)
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="environment variable, repeatable")
@click.option("--network", help="docker network (default: the node's bridge)")
@click.option("--node", "nodes", multiple=True, metavar="NODE", help="only these nodes (repeatable)")
@click.option("--stdin", "send_stdin", is_flag=True, help="send this command's input to it (text; count 1)")
@click.option("--team", help="the team whose quota it runs on (default: your only team)")
@resource_options
def lambda_run(
    api: Client,
    p: Printer,
    command: tuple[str, ...],
    command_line: str | None,
    pod: str,
    image: str,
    name: str | None,
    count: int,
    run_timeout: int,
    env: tuple[str, ...],
    network: str | None,
    nodes: tuple[str, ...],
    send_stdin: bool,
    team: str | None,
    **res: Any,
) -> int:
    """Eru's lambda: stdout lines to stdout, stderr lines to stderr (each after its number when
    --count > 1), "starting" while a container starts; the exit code is the command's (the first
    non-zero of several). Ctrl-C cancels the run and waits for its end."""
    try:
        words = shlex.split(command_line) if command_line else list(command)
    except ValueError as exc:
        raise CliError(f"--command: {exc}") from None
    if not words:
        raise CliError("give the command: --command 'CMD ARGS' or -- CMD ARGS")
    body = {
        "pod": pod, "image": image, "command": words, "count": count, "timeout": run_timeout,
        "env": list(env), "network": network or "", "node_names": list(nodes), "app": name or "",
        **resources(res),
    }  # fmt: skip
    if send_stdin:
        body["stdin"] = sys.stdin.read()
    if team:
        body["team"] = team
    run = api.post("/api/lambdas/", body)
    seen = [0]  # events printed: after a Ctrl-C the stream is read again from its start
    try:
        with Bar(f"lambda {run['id']}", count, err=p.err) as bar:
            return _output(api, p, run["id"], count > 1, seen, bar=bar)
    except KeyboardInterrupt:
        p.progress(f"cancelling lambda {run['id']}…")
        api.post(f"/api/lambdas/{run['id']}/cancel/", {})
        printed, seen[0] = seen[0], 0
        _output(api, p, run["id"], count > 1, seen, skip=printed)
        return 130


def _output(
    api: Client,
    p: Printer,
    run_id: int,
    several: bool,
    seen: list[int],
    *,
    skip: int = 0,
    bar: Bar | None = None,
) -> int:
    """The run's events as they come; on a terminal the bar counts the containers that ended and
    says which one is starting, instead of the "starting…" lines."""
    live = bar is not None and bar.active
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
        elif kind == "starting" and not live:
            p.progress(f"{prefix}starting…")
        elif kind == "exit" and event.get("ended") != "done":
            p.progress(f"{prefix}{event.get('ended')}")
        if bar is not None and kind in ("starting", "exit"):
            ended = f"ended: {event.get('ended')}" if kind == "exit" else "starting…"
            bar.update(advance=1 if kind == "exit" else None, status=f"{prefix}{ended}".replace(" | ", " "))
        if kind == "end":
            code = event.get("exit_code")
            return int(code) if code is not None else 1
    return 1

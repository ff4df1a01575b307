"""erucli: Eru's command-line verbs and flags over the Eru portal REST API (argparse front end)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import schema
from erucli import commands as c
from erucli.client import DEFAULT_URL, ApiError, Client, read_token
from erucli.output import Printer

EPILOG = """\
quickstart:
  erucli login --username admin
  erucli pod add testpod --desc "my pod"
  erucli node add testpod --nodename node1 --endpoint tcp://10.0.0.1:2376 --tls-dir ./tls
  erucli pod nodes testpod
  erucli workload deploy --pod testpod --entry web --image busybox --count 2 --cpu 0.1 --memory 64M \\
      -- sleep 600
  erucli workload list --app web
  erucli audit --limit 10

environment:
  ERU        API base URL (like --eru)          ERU_TOKEN  API token (like --token)
  `erucli login` saves a token to $XDG_CONFIG_HOME/eru/token (default ~/.config/eru/token, mode 0600).
  Global options may also follow the command: erucli pod list -o json"""

FORMATTER = argparse.RawDescriptionHelpFormatter
STRATEGIES = tuple(s.lower() for s in schema.STRATEGIES)


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """On the top parser with real defaults; on every command with SUPPRESS, so that an option
    given after the command sets the value and an absent one keeps the top parser's."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("global options")
    g.add_argument(
        "-e",
        "--eru",
        metavar="URL",
        default=default(None),
        help=f"API base URL (default: $ERU, else {DEFAULT_URL})",
    )
    g.add_argument(
        "--token",
        default=default(None),
        help="API token (default: $ERU_TOKEN, else the token saved by `erucli login`)",
    )
    g.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default("table"),
        help="output format (default: table)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default(30.0),
        help="timeout of each HTTP request (default: 30)",
    )


def _help(name: str) -> str:
    return schema.help_of(schema.DeployRequest, name)


def _default(name: str) -> Any:
    return schema.default_of(schema.DeployRequest, name)


def _resource_flags(p: argparse.ArgumentParser) -> None:
    cpu, memory = _default("cpu_limit"), schema.format_size(_default("memory_limit"))
    g = p.add_argument_group(
        f"resources (unset: the API's defaults, cpu limit {cpu:g} and memory limit {memory})"
    )
    g.add_argument("--cpu", type=float, metavar="CPUS", help="cpu request and limit, e.g. 0.5 (shortcut)")
    g.add_argument("--cpu-request", type=float, metavar="CPUS", help=_help("cpu_request"))
    g.add_argument("--cpu-limit", type=float, metavar="CPUS", help=_help("cpu_limit"))
    g.add_argument("--memory", metavar="SIZE", help="memory request and limit, e.g. 512M, 1G (shortcut)")
    g.add_argument("--memory-request", metavar="SIZE", help=_help("memory_request"))
    g.add_argument("--memory-limit", metavar="SIZE", help=_help("memory_limit"))
    bind = g.add_mutually_exclusive_group()
    bind.add_argument(
        "--cpu-bind", dest="cpu_bind", action="store_const", const=True, default=None, help=_help("cpu_bind")
    )
    bind.add_argument(
        "--cpu-unbind",
        dest="cpu_bind",
        action="store_const",
        const=False,
        help="do not pin: a CFS quota only",
    )


def build_parser() -> argparse.ArgumentParser:
    leaves: list[argparse.ArgumentParser] = []
    parser = argparse.ArgumentParser(
        prog="erucli",
        description="Eru's command-line client for the Eru portal: pods, nodes, workloads, deployments.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    _global_options(parser, suppress=False)
    top = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def group(name: str, help: str, **kw: Any) -> Any:
        g = top.add_parser(name, help=help, description=help, formatter_class=FORMATTER, **kw)
        return g.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        sub: Any, name: str, handler: c.Handler, help: str, **defaults: Any
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help, description=help, formatter_class=FORMATTER
        )
        p.set_defaults(func=handler, **defaults)
        leaves.append(p)
        return p

    p = command(top, "login", c.login, "get an API token with a username and password, and save it")
    p.add_argument("--username", "-u", help="default: $ERU_USERNAME, else asked")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    p.add_argument("--name", help="a name for the token (default: erucli@HOSTNAME)")

    # pod
    pod = group("pod", "pods: groups of nodes")
    p = command(pod, "add", c.pod_add, "add a pod (admins)")
    p.add_argument("name", metavar="POD", help="pod name")
    p.add_argument("--desc", default="", help="description")
    p.add_argument(
        "--favor",
        choices=("cpu", "memory"),
        default="cpu",
        help="cpu: workloads are pinned to cores by default; memory: CFS quota (default: cpu)",
    )
    command(pod, "list", c.pod_list, "list pods")
    p = command(pod, "remove", c.pod_remove, "remove an empty pod (admins)")
    p.add_argument("name", metavar="POD", help="pod name")
    p = command(pod, "nodes", c.pod_nodes, "list the nodes of a pod")
    p.add_argument("name", metavar="POD", help="pod name")
    p.add_argument(
        "--filter",
        choices=("up", "down", "all"),
        default="up",
        help="up: available (not down, heartbeat alive); down: the others (default: up)",
    )
    p = command(
        pod,
        "capacity",
        c.pod_capacity,
        "how many workloads of a size each available node of a pod can take now",
    )
    p.add_argument("name", metavar="POD", help="pod name")
    _resource_flags(p)

    # node
    node = group("node", "nodes: Docker hosts reached over mutual TLS")
    p = command(node, "add", c.node_add, "register a Docker host in a pod; capacity is detected unless given")
    p.add_argument("pod", metavar="POD", help="the pod to add the node to")
    p.add_argument("--nodename", required=True, help="node name")
    p.add_argument("--endpoint", required=True, help="dockerd address, tcp://host:2376")
    tls = p.add_argument_group("TLS client material (PEM files)")
    tls.add_argument("--tls-dir", metavar="DIR", help="a directory holding ca.pem, cert.pem and key.pem")
    tls.add_argument("--ca", metavar="PATH", help=f"CA certificate (default: {c.TLS_DEFAULTS['ca']})")
    tls.add_argument("--cert", metavar="PATH", help=f"client certificate (default: {c.TLS_DEFAULTS['cert']})")
    tls.add_argument("--key", metavar="PATH", help=f"client key (default: {c.TLS_DEFAULTS['key']})")
    p.add_argument("--cpu", type=int, help="cores (default: NCPU from docker info)")
    p.add_argument("--memory", metavar="SIZE", help="memory, e.g. 4G (default: MemTotal - 1G)")
    p.add_argument("--share", type=int, help="pieces per core (default: 100)")
    p.add_argument("--label", action="append", type=c.kv, metavar="KEY=VALUE", help="repeatable")
    p = command(node, "get", c.node_get, "show a node: status, capacity and usage")
    p.add_argument("name", metavar="NODE", help="node name")
    p = command(node, "list", c.node_list, "list nodes")
    p.add_argument("--pod", help="only the nodes of this pod")
    p = command(node, "up", c.node_updown, "let a node take new workloads again", verb="up")
    p.add_argument("name", metavar="NODE", help="node name")
    p = command(node, "down", c.node_updown, "stop placing new workloads on a node (bypass)", verb="down")
    p.add_argument("name", metavar="NODE", help="node name")
    p = command(node, "set", c.node_set, "replace a node's labels (the whole map)")
    p.add_argument("name", metavar="NODE", help="node name")
    p.add_argument("--label", action="append", type=c.kv, metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--clear-labels", action="store_true", help="remove every label")
    p = command(node, "remove", c.node_remove, "remove a node that holds no workloads")
    p.add_argument("name", metavar="NODE", help="node name")

    # workload
    wl = group("workload", "workloads: containers", aliases=["container"])
    p = command(
        wl,
        "deploy",
        c.workload_deploy,
        "deploy workloads and wait until they run; from Eru's spec file (SPEC.yaml: the --entry "
        "entrypoint of it) or from a command",
    )
    p.add_argument(
        "command",
        nargs="*",
        metavar="[SPEC.yaml] [-- CMD ARGS]",
        help="Eru's spec file (a .yaml, .yml or .json file: appname, entrypoints, volumes, labels, dns, "
        "extra_hosts), and/or the command to run in the container",
    )
    p.add_argument("--pod", required=True, help="pod to deploy into")
    p.add_argument("--entry", required=True, help=_help("entrypoint"))
    p.add_argument("--image", required=True, help=_help("image"))
    p.add_argument("--name", help=f"{_help('app')} (default: the entrypoint name)")
    count = _default("count")
    p.add_argument("--count", type=int, default=count, help=f"{_help('count')} (default {count})")
    _resource_flags(p)
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable, repeatable")
    p.add_argument(
        "--label", action="append", type=c.kv, metavar="KEY=VALUE", help="workload label, repeatable"
    )
    p.add_argument(
        "--node", action="append", metavar="NODE", help="only these nodes (repeatable; must be up)"
    )
    p.add_argument(
        "--nodelabel",
        action="append",
        type=c.kv,
        metavar="KEY=VALUE",
        help="only nodes with this label (repeatable)",
    )
    strategy, nodes_limit = _default("strategy").lower(), _default("nodes_limit")
    p.add_argument(
        "--deploy-strategy",
        choices=STRATEGIES,
        default=strategy,
        type=str.lower,
        help=f"{_help('strategy')} (default: {strategy})",
    )
    p.add_argument(
        "--nodes-limit", type=int, default=nodes_limit, metavar="N", help=f"{_help('nodes_limit')}"
    )
    p.add_argument("--network", help="docker network (default: the cluster's network mode)")
    p.add_argument("--dry-run", action="store_true", help="print the plan {node: count} and deploy nothing")
    p.add_argument("--no-wait", action="store_true", help="return once planned; do not follow progress")
    p = command(wl, "list", c.workload_list, "list workloads")
    p.add_argument("appname", nargs="?", metavar="APP", help="same as --app")
    p.add_argument("--app")
    p.add_argument("--entry")
    p.add_argument("--node")
    p.add_argument("--pod")
    p.add_argument("--state", choices=("pending", "creating", "running", "stopped", "removing", "failed"))
    p.add_argument(
        "--status",
        choices=("running", "exited", "oom_killed", "restarting", "paused", "missing", "unknown"),
        help="observed status (what Docker showed)",
    )
    p = command(wl, "get", c.workload_get, "show workloads")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p = command(wl, "status", c.workload_status, "observed status of workloads: state, exit code, health")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p = command(
        wl,
        "logs",
        c.workload_logs,
        "a workload's log (stdout and stderr); -f follows it. Without ID, --app merges the logs of an "
        "app's workloads (--entry, --node, --pod, --deployment narrow it), each line after its "
        "workload's name",
    )
    p.add_argument("id", type=int, nargs="?", metavar="ID")
    p.add_argument("--app", help="merge the logs of this app's workloads")
    p.add_argument("--entry", help="with --app: only this entrypoint's")
    p.add_argument("--node", help="with --app: only those on this node")
    p.add_argument("--pod", help="with --app: only those in this pod")
    p.add_argument("--deployment", type=int, metavar="ID", help="merge the logs of this deployment's")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until interrupted")
    p.add_argument(
        "--tail", default="100", metavar="N", help="the last N lines (default 100; merged: of each), or all"
    )
    p.add_argument("--since", metavar="T", help="from: unix seconds, an ISO 8601 time or a while ago (10m)")
    for verb, text in (("start", "start stopped"), ("stop", "stop running"), ("restart", "restart")):
        p = command(wl, verb, c.workload_act, f"{text} workloads", verb=verb)
        p.add_argument("ids", nargs="+", type=int, metavar="ID")
        if verb != "restart":
            p.add_argument("--wait", action="store_true", help=f"wait until each is {c.TARGET[verb]}")
            p.add_argument(
                "--wait-timeout", type=float, default=120.0, metavar="SECONDS", help="default: 120"
            )
    p = command(
        wl, "remove", c.workload_act, "remove workloads (their containers are force-removed)", verb="remove"
    )
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="drop the workload at once, even if its node answers (a container left behind is removed "
        "by reconcile); the container is always removed forcibly. On a node that does not answer, "
        "removal is at once anyway.",
    )
    p.add_argument("--wait", action="store_true", help="wait until each is gone")
    p.add_argument("--wait-timeout", type=float, default=120.0, metavar="SECONDS", help="default: 120")

    # lambda
    p = command(
        top,
        "lambda",
        c.lambda_run,
        "run a one-off command in throw-away containers, print what it prints as it comes, and exit "
        "with its exit code (Eru's lambda); Ctrl-C cancels it",
    )
    p.add_argument("command", nargs="*", metavar="-- CMD ARGS", help="the command (or --command)")
    p.add_argument("--command", dest="command_line", metavar="CMD", help="the command as one line (Eru's)")
    p.add_argument("--pod", required=True, help="pod to run in")
    p.add_argument("--image", required=True, help=_help("image"))
    p.add_argument("--name", help="app name (default: lambda)")
    p.add_argument("--count", type=int, default=1, help="how many at once; each line after its number")
    p.add_argument(
        "--run-timeout", type=int, default=600, metavar="SECONDS", help="killed after this (default 600)"
    )
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable, repeatable")
    p.add_argument("--network", help="docker network (default: the node's bridge)")
    p.add_argument("--node", action="append", metavar="NODE", help="only these nodes (repeatable)")
    p.add_argument("--stdin", action="store_true", help="send this command's input to it (text; count 1)")
    _resource_flags(p)

    # deployment, audit
    dep = group("deployment", "deployments: one deploy request and its progress")
    p = command(dep, "get", c.deployment_get, "show a deployment and its workloads (exit 1 if it failed)")
    p.add_argument("id", type=int, metavar="ID", help="deployment id")
    p = command(dep, "list", c.deployment_list, "list the latest deployments")
    p.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    p = command(top, "audit", c.audit, "the audit log, newest first")
    p.add_argument("--limit", type=int, default=20, help="how many events (default: 20)")
    for leaf in leaves:  # last, so that they come last in each command's help
        _global_options(leaf, suppress=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    printer = Printer(args.output)
    url = args.eru or os.environ.get("ERU") or DEFAULT_URL
    token = args.token or os.environ.get("ERU_TOKEN") or read_token()
    try:
        return int(args.func(Client(url, token, timeout=args.timeout), printer, args))
    except ApiError as exc:
        printer.error(exc.lines)
    except c.CliError as exc:
        printer.error([str(exc)])
    except KeyboardInterrupt:
        return 130
    return 1

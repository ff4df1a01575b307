"""erucli: Eru's command-line verbs and flags over the Eru portal REST API (a click front end).

The commands live in erucli/cmd_*.py, one module per group; erucli/cli.py holds the plumbing (the
global options on every command, help sections, parameter types). `main()` runs one command and
returns its exit code: 0, 1 on an error (printed as `error: ...`), 2 on a usage error, 130 on Ctrl-C,
or the command's own (lambda, exec)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import click

from erucli import cmd_deployment, cmd_lambda, cmd_misc, cmd_node, cmd_pod, cmd_workload, cmd_workload_ops
from erucli.cli import CONTEXT, CliError, Group, global_options
from erucli.client import ApiError
from erucli.output import Printer

EPILOG = """\
\b
quickstart:
  erucli login --username admin
  erucli pod add testpod --desc "my pod"
  erucli node add testpod --nodename node1 --endpoint tcp://10.0.0.1:2376 --tls-dir ./tls
  erucli pod nodes testpod
  erucli workload deploy --pod testpod --entry web --image busybox --count 2 --cpu 0.1 --memory 64M \\
      -- sleep 600
  erucli workload list --app web
  erucli audit --limit 10

\b
day two:
  erucli workload replace --pod testpod --entry web --image busybox:2 --batch 2 -- sleep 900
  erucli workload realloc --cpu-limit 0.5 --memory-limit 64M ID      # deltas: -64M shrinks
  erucli workload exec ID -- ls /
  erucli node set node1 --memory -2G --delta ; erucli node resource node1 --fix

\b
environment:
  ERU        API base URL (like --eru)          ERU_TOKEN  API token (like --token)
  `erucli login` saves a token to $XDG_CONFIG_HOME/eru/token (default ~/.config/eru/token, mode 0600).
  Global options may also follow the command: erucli pod list -o json"""


def build_cli() -> Group:
    root = Group(
        "erucli",
        help="Eru's command-line client for the Eru portal: pods, nodes, workloads, deployments.",
        epilog=EPILOG,
        context_settings=CONTEXT,
        params=global_options(top=True),
        aliases={"container": "workload"},
    )

    def group(name: str, help: str, *modules_commands: Iterable[click.Command]) -> None:
        g = Group(name, help=help)
        for commands in modules_commands:
            for cmd in commands:
                g.add_command(cmd)
        root.add_command(g)

    root.add_command(cmd_misc.login)
    group("pod", "pods: groups of nodes", cmd_pod.COMMANDS)
    group("node", "nodes: Docker hosts reached over mutual TLS", cmd_node.COMMANDS)
    group(
        "workload",
        "workloads: containers (alias: container)",
        cmd_workload.COMMANDS,
        cmd_workload_ops.COMMANDS,
    )
    root.add_command(cmd_lambda.lambda_run)
    group(
        "deployment", "deployments: one deploy (or replace) request and its progress", cmd_deployment.COMMANDS
    )
    root.add_command(cmd_misc.audit)
    return root


CLI = build_cli()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (2 on a usage error, after click's message)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(CLI.main(args=args, prog_name="erucli", standalone_mode=False) or 0)
    except click.ClickException as exc:  # usage errors (2), and --help when nothing is given
        exc.show()
        return exc.exit_code
    except click.Abort as exc:  # click's word for Ctrl-C (or an EOF at a prompt)
        return 130 if isinstance(exc.__cause__, KeyboardInterrupt) else 1
    except KeyboardInterrupt:
        return 130
    except ApiError as exc:
        Printer().error(exc.lines)
    except CliError as exc:
        Printer().error([str(exc)])
    return 1

"""erucli node add|get|list|up|down|set|resource|remove."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from erucli import output as o
from erucli.cli import KV, SIZE, CliError, argument, command, option, path
from erucli.client import Client
from erucli.output import Printer

TLS_DEFAULTS = {
    k: f"/etc/docker/tls/{f}" for k, f in (("ca", "ca.crt"), ("cert", "client.crt"), ("key", "client.key"))
}
TLS_DIR_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
TLS = "TLS client material (PEM files)"


def _cores(cpu_map: Mapping[str, int] | None) -> str:
    """{"0": 100, "1": 50} as "0:100 1:50", in core order."""
    items = sorted((cpu_map or {}).items(), key=lambda i: (len(i[0]), i[0]))
    return " ".join(f"{k}:{v}" for k, v in items)


def _node_record(p: Printer, node: Mapping[str, Any]) -> None:
    cores = len(node.get("cpu_map") or {})
    engine = node.get("info") or {}
    used_cpu = (
        f"{o.cpu(node['used_cpu'])} used of {o.cpu(node['cpu'])} ({cores} cores x {node['share_base']})"
    )
    pairs = [
        ("name", node["name"]),
        ("pod", node["pod"]),
        ("endpoint", node["endpoint"]),
        ("status", o.node_status(node)),
        ("bypass", node["bypass"]),
        ("cpu", used_cpu),
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


def _tls(tls_dir: str | None, given: Mapping[str, str | None]) -> dict[str, str]:
    pem: dict[str, str] = {}
    for part, default in TLS_DEFAULTS.items():
        file = given[part] or (Path(tls_dir) / TLS_DIR_FILES[part] if tls_dir else default)
        try:
            pem[part] = Path(file).read_text()
        except OSError as exc:
            raise CliError(f"--{part}: cannot read {file}: {exc.strerror or exc}") from exc
    return pem


@command("add", "register a Docker host in a pod; capacity is detected unless given")
@argument("pod", metavar="POD", help="the pod to add the node to")
@click.option("--nodename", required=True, help="node name")
@click.option("--endpoint", required=True, help="dockerd address, tcp://host:2376")
@option("--tls-dir", metavar="DIR", section=TLS, help="a directory holding ca.pem, cert.pem and key.pem")
@option("--ca", metavar="PATH", section=TLS, help=f"CA certificate (default: {TLS_DEFAULTS['ca']})")
@option("--cert", metavar="PATH", section=TLS, help=f"client certificate (default: {TLS_DEFAULTS['cert']})")
@option("--key", metavar="PATH", section=TLS, help=f"client key (default: {TLS_DEFAULTS['key']})")
@click.option("--cpu", type=int, help="cores (default: NCPU from docker info)")
@click.option("--memory", metavar="SIZE", help="memory, e.g. 4G (default: MemTotal - 1G)")
@click.option("--share", type=int, help="pieces per core (default: 100)")
@click.option("--label", "labels", multiple=True, type=KV, help="repeatable")
def node_add(
    api: Client,
    p: Printer,
    pod: str,
    nodename: str,
    endpoint: str,
    tls_dir: str | None,
    cpu: int | None,
    memory: str | None,
    share: int | None,
    labels: tuple[tuple[str, str], ...],
    **pem: str | None,
) -> int:
    body: dict[str, Any] = {"name": nodename, "pod": pod, "endpoint": endpoint, **_tls(tls_dir, pem)}
    body["labels"] = dict(labels)
    body.update({k: v for k, v in (("cpu", cpu), ("memory", memory), ("share", share)) if v is not None})
    _node_record(p, api.post("/api/nodes/", body))
    return 0


@command("get", "show a node: status, capacity and usage")
@argument("name", metavar="NODE", help="node name")
def node_get(api: Client, p: Printer, name: str) -> int:
    _node_record(p, api.get(f"/api/nodes/{path(name)}/"))
    return 0


@command("list", "list nodes")
@click.option("--pod", help="only the nodes of this pod")
def node_list(api: Client, p: Printer, pod: str | None) -> int:
    p.rows(api.list_all("/api/nodes/", pod=pod), o.NODE_COLUMNS)
    return 0


def _updown(verb: str, help: str) -> click.Command:
    @command(verb, help)
    @argument("name", metavar="NODE", help="node name")
    def run(api: Client, p: Printer, name: str) -> int:
        node = api.post(f"/api/nodes/{path(name)}/{verb}/")
        note = "" if verb == "down" or node["available"] else " (bypass off, but no heartbeat yet)"
        p.message(f"node {node['name']} is {verb}{note}", node)
        return 0

    return run


def _cpu(text: str) -> int | str:
    """--cpu 8 (cores, an int) or --cpu 0:100,1:100 (Eru's core map, sent as it is)."""
    try:
        return int(text)
    except ValueError:
        return text.strip()


@command(
    "set",
    "change a node: its labels (replacing the whole map), its capacity (absolute, or with --delta "
    "added to it)",
)
@argument("name", metavar="NODE", help="node name")
@click.option("--label", "labels", multiple=True, type=KV, help="repeatable; replaces every label")
@click.option("--clear-labels", is_flag=True, help="remove every label")
@click.option(
    "--cpu",
    metavar="N|MAP",
    help='cores (8: cores 0-7 of a full share each) or a core map in pieces ("0:100,1:100"); with '
    "--delta added core by core",
)
@click.option("--memory", type=SIZE, help="memory, e.g. 10G (with --delta: may be negative, -2G)")
@click.option("--delta", is_flag=True, help="--cpu and --memory are added to the capacity (may shrink it)")
@click.option("--over-commit", is_flag=True, help="allow more cores than the engine reports (NCPU)")
def node_set(
    api: Client,
    p: Printer,
    name: str,
    labels: tuple[tuple[str, str], ...],
    clear_labels: bool,
    cpu: str | None,
    memory: int | None,
    delta: bool,
    over_commit: bool,
) -> int:
    body: dict[str, Any] = {}
    if labels or clear_labels:
        body["labels"] = dict(labels)
    if cpu is not None:
        body["cpu"] = _cpu(cpu)
    if memory is not None:
        body["memory"] = memory
    if not body:
        raise CliError("nothing to set: give --label k=v (repeatable), --clear-labels, --cpu or --memory")
    node = api.patch(f"/api/nodes/{path(name)}/", {**body, "delta": delta, "over_commit": over_commit})
    lines = []
    if "labels" in body:
        lines.append(f"node {node['name']} labels: {o.labels(node['labels']) or '(none)'}")
    if "cpu" in body or "memory" in body:
        cores = len(node.get("cpu_map") or {})
        lines.append(
            f"node {node['name']} capacity: cpu {o.cpu(node['cpu'])} ({cores} cores: "
            f"{_cores(node.get('cpu_map'))}), memory {o.size(node['memory'])}"
        )
    p.message("\n".join(lines), node)
    return 0


def _usage(usage: Any) -> str:
    if not isinstance(usage, Mapping):
        return o.cell(usage)
    cores = _cores(usage.get("cpu_map")) or "-"
    return f"cpu {o.cpu(usage.get('cpu'))}, cores {cores}, memory {o.size(usage.get('memory'))}"


@command(
    "resource",
    "check a node's recorded usage against the allocations of its workloads (exit 1 when they differ); "
    "--fix stores the counted usage (administrators)",
)
@argument("name", metavar="NODE", help="node name")
@click.option("--fix", is_flag=True, help="store the usage counted from the node's workloads")
def node_resource(api: Client, p: Printer, name: str, fix: bool) -> int:
    url = f"/api/nodes/{path(name)}/resource/"
    r = api.post(url, {}) if fix else api.get(url)
    diffs, fixed = [str(d) for d in r.get("diffs") or []], [str(d) for d in r.get("fixed") or []]
    ok = bool(r.get("ok")) or (fix and set(diffs) <= set(fixed))  # the answer is the check after a fix
    node = r.get("node", name)
    if p.json:
        p.dump(r)
        return 0 if ok else 1
    for line in fixed:
        p.message(f"fixed: {line}")
    if r.get("ok"):
        p.message(f"node {node}: its recorded usage is the sum of its workloads' allocations")
    else:
        p.message(f"node {node}: {len(diffs)} difference(s) between the recorded and the counted usage")
        for line in diffs:
            p.message(f"  {line}")
    p.record([("recorded", _usage(r.get("recorded"))), ("counted", _usage(r.get("counted")))], r)
    return 0 if ok else 1


@command("remove", "remove a node that holds no workloads")
@argument("name", metavar="NODE", help="node name")
def node_remove(api: Client, p: Printer, name: str) -> int:
    api.delete(f"/api/nodes/{path(name)}/")
    p.message(f"node {name} removed", {"removed": name})
    return 0


COMMANDS = [
    node_add,
    node_get,
    node_list,
    _updown("up", "let a node take new workloads again"),
    _updown("down", "stop placing new workloads on a node (bypass)"),
    node_set,
    node_resource,
    node_remove,
]

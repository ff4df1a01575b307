"""Reconcile: every row against its container, node by node. What it finds, it reports; with `repair`
it fixes what it safely can and says what it left:

- orphans: ERU containers made under the node's name that no live row claims → removed, audited
  (not the dissociated ones: forgotten on purpose, they run on unmanaged);
- rogues: ERU containers without `eru.nodename` that no row of any node claims by name → removed,
  audited;
- adoptable: rows still `creating` whose container already runs, or was made more than `grace`
  seconds ago and not started (a worker died after making it) → started if need be and adopted at
  once, instead of waiting for their claim to go stale;
- changed: rows whose recorded status is not what Docker shows (the sweep missed it) → recorded;
- missing: rows whose container is gone → left: their allocation is held (as in Eru) until an operator
  removes the workload;
- usage: the node's recorded usage is not what its rows hold (an allocation no workload holds, or one
  not counted) → recounted from the rows, audited (services.node_resource_fix).
Creations and control requests whose message was lost are sent again by agents.tasks; a lambda whose
worker was lost is ended, its container removed, by the re-sent task (agents/lambdas.py).
Containers younger than `grace` seconds may belong to a row committed a moment ago and are left alone.
Docker is listed before the rows are read, and rows commit before their containers exist, so a
container created meanwhile is always claimed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

import docker as docker_sdk
from django.db import transaction
from django.utils import timezone

from agents import sweep
from clusters import selectors, services
from clusters.models import Dissociated, Node, Workload
from engine import docker

ORPHAN_GRACE = 60
HOOKED_CLAIM = 600  # s: a creation with hooks under a claim younger than this may be in its hooks


@dataclass
class Report:
    node: str
    error: str = ""  # the node did not answer: nothing could be checked
    orphans: list[str] = field(default_factory=list)
    rogues: list[str] = field(default_factory=list)
    adoptable: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "name: before -> after"
    missing: list[str] = field(default_factory=list)
    usage: list[str] = field(default_factory=list)  # how the recorded usage differs from the rows'
    repaired: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    @property
    def drift(self) -> int:
        found = (self.orphans, self.rogues, self.adoptable, self.changed, self.missing)
        return sum(map(len, found)) + (1 if self.usage else 0) + (1 if self.error else 0)

    def lines(self) -> list[str]:
        if self.error:
            done = [f"{self.node}:   repaired: {r}" for r in self.repaired]  # before it went away
            return [f"{self.node}: unreachable ({self.error})", *done]
        found = [
            f"{len(items)} {what}" + (f" {' '.join(items)}" if items else "")
            for what, items in (
                ("orphan container(s)", self.orphans),
                ("container(s) without eru.nodename", self.rogues),
                ("creation(s) to adopt", self.adoptable),
                ("status(es) not as Docker shows", self.changed),
                ("workload(s) whose container is missing", self.missing),
            )
        ]
        if self.usage:
            found.append(f"usage not as its workloads hold ({'; '.join(self.usage)})")
        lines = [f"{self.node}: " + "; ".join(found)]
        lines += [f"{self.node}:   repaired: {r}" for r in self.repaired]
        lines += [f"{self.node}:   left: {r}" for r in self.left]
        return lines


def reconcile_node(node: Node, *, repair: bool, grace: float = ORPHAN_GRACE) -> Report:
    report = Report(node.name)
    looked_at = timezone.now()
    try:
        client = selectors.node_client(node)
        containers = docker.list_eru(client)
    except docker.DockerError as exc:
        report.error = str(exc)
        return report
    settled = time.time() - grace
    mine = sweep.mine(node, containers)
    holding = set(
        Workload.objects.filter(node=node, state__in=Workload.HOLDING).values_list("name", flat=True)
    )
    kept = set(Dissociated.objects.filter(node=node).values_list("container_id", flat=True))
    report.orphans = [
        c.name for c in mine if c.name not in holding and c.id not in kept and c.created < settled
    ]
    if repair:  # a dissociated container that is gone is forgotten (listed before, so never a new one)
        Dissociated.objects.filter(node=node).exclude(container_id__in=[c.id for c in containers]).delete()
    unlabelled = [c for c in containers if "eru.nodename" not in c.labels and c.created < settled]
    claimed = set(
        Workload.objects.filter(name__in=[c.name for c in unlabelled]).values_list("name", flat=True)
    )
    report.rogues = [c.name for c in unlabelled if c.name not in claimed]
    # Not adopted: a lambda's container (its worker's to end, or the re-sent task's), a replacement's
    # (its worker waits for it, and may yet remove it), nor one whose
    # after_start hook may still be running under a live claim (its worker decides how it ends).
    hooked_after = timezone.now() - timedelta(seconds=HOOKED_CLAIM)
    creating = {
        name: pk
        for name, pk, options, claimed_at in Workload.objects.filter(
            node=node, state=Workload.State.CREATING, lambda_run__isnull=True, replaces__isnull=True
        ).values_list("name", "pk", "options", "claimed_at")
        if not (options or {}).get("hook") or claimed_at is None or claimed_at < hooked_after
    }
    made = [c for c in mine if c.name in creating and (c.status == "running" or c.created < settled)]
    report.adoptable = [c.name for c in made]
    try:
        if repair:
            gone = set(report.orphans) | set(report.rogues)
            orphans = [c for c in containers if c.name in gone]
            _repair(client, node, report, orphans, made, creating)
        rows = selectors.observations([node.pk], before=looked_at)[node.pk]
        seen = sweep.seen_of(client, mine, rows, looked_at)
    except docker.DockerError as exc:  # the node went away meanwhile: what was done is reported
        report.error = str(exc)
        return report
    # An agent-managed node's statuses are its agent's to report: reconcile says where Docker
    # disagrees and records nothing (nor the node's contact: a dead agent's node stays down).
    observed = services.node_observe(
        node=node, seen=seen, looked_at=looked_at, rows=rows, dry_run=not repair or node.agent
    )
    changes = observed.changes.items()
    report.changed = [
        f"{name}: {before or 'unobserved'} -> {after}"
        for name, (before, after) in changes
        if after != Workload.Status.MISSING
    ]
    if repair and not node.agent:
        report.repaired += [f"recorded {change}" for change in report.changed]
    elif repair:
        report.left += [f"{change} (its agent reports statuses)" for change in report.changed]
    missing = Workload.objects.filter(node=node, state__in=Workload.OBSERVED, status=Workload.Status.MISSING)
    names = set(missing.values_list("name", flat=True))
    names |= {name for name, (_, after) in changes if after == Workload.Status.MISSING}
    report.missing = sorted(names)
    report.left += [
        f"{name}: its container is missing; remove the workload to free what it holds"
        for name in report.missing
    ]
    report.usage = _usage(node, repair=repair)
    if repair and report.usage:
        report.repaired.append("recounted its usage from its workloads")
    return report


def _usage(node: Node, *, repair: bool) -> list[str]:
    """How the node's recorded usage differs from what its rows hold, read under the node's lock (a
    deploy commits its rows and the usage together); with `repair`, recounted and audited."""
    if repair:
        return list(services.node_resource_fix(actor=services.SYSTEM, node=node)["fixed"])
    with transaction.atomic():
        locked = Node.objects.select_for_update(of=("self",)).get(pk=node.pk)
        return list(selectors.node_resource_check(locked)["diffs"])


def _repair(
    client: docker_sdk.DockerClient,
    node: Node,
    report: Report,
    orphans: list[docker.ContainerInfo],
    made: list[docker.ContainerInfo],
    creating: dict[str, int],
) -> None:
    for c in orphans:
        docker.remove(client, c.name)
        why = "no workload holds it" if c.name in report.orphans else "no eru.nodename, no workload holds it"
        services.container_orphan_removed(node=node, name=c.name, container_id=c.id, why=why)
        report.repaired.append(f"removed {c.name}")
    for c in made:
        info = c if c.status == "running" else docker.start(client, c.id)
        services.workload_started(
            workload_id=creating[c.name],
            container_id=info.id,
            networks=info.networks,
            ports=info.ports,
            adopted=True,
        )
        report.repaired.append(f"adopted {c.name}" + ("" if info is c else " (started it)"))

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.tasks import reconcile_node
from clusters import sync
from clusters.models import Node
from engine import docker


class Command(BaseCommand):
    help = "Report drift between the DB, etcd and Docker (orphan containers); with --repair, fix it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true")
        parser.add_argument(
            "--grace", type=float, default=60, help="ignore containers younger than this (seconds)"
        )

    def handle(self, *args: Any, repair: bool, grace: float, **options: Any) -> None:
        drift = sync.repair() if repair else sync.check()
        self.stdout.write(f"etcd: {drift.summary()}")
        for node in Node.objects.all():
            try:
                orphans = reconcile_node(node, remove=repair, grace=grace)
            except docker.DockerError as exc:
                self.stdout.write(f"{node.name}: unreachable ({exc})")
                continue
            verb = "removed" if repair else "found"
            self.stdout.write(
                f"{node.name}: {len(orphans)} orphan container(s) {verb} {' '.join(orphans)}".rstrip()
            )

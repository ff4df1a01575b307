from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.reconcile import ORPHAN_GRACE, reconcile_node
from clusters import sync
from clusters.models import Node


class Command(BaseCommand):
    help = (
        "Compare every workload row with its container and etcd with the DB, and print the drift; with "
        "--repair, fix what can safely be fixed and say what was left. Exits 1 when drift was found (with "
        "--repair: when some was left), so that cron and monitoring can use it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true")
        parser.add_argument(
            "--grace", type=float, default=ORPHAN_GRACE, help="ignore containers younger than this (seconds)"
        )

    def handle(self, *args: Any, repair: bool, grace: float, **options: Any) -> None:
        drift = sync.repair() if repair else sync.check()
        self.stdout.write(f"etcd: {drift.summary()}" + (" (repaired)" if repair and drift.count else ""))
        found, left = drift.count, 0
        for node in Node.objects.all():
            report = reconcile_node(node, repair=repair, grace=grace)
            for line in report.lines():
                self.stdout.write(line)
            found += report.drift
            left += len(report.left) + (1 if report.error else 0)
        if found and (not repair or left):
            what = f"{left} left after --repair" if repair else f"{found} found; --repair fixes what it can"
            raise CommandError(f"drift: {what}", returncode=1)

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clusters import sync


class Command(BaseCommand):
    help = (
        "Compare etcd's Eru keys with the DB and print the drift; with --repair, rewrite etcd from the DB. "
        "Exits 1 when drift was found and not repaired."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true", help="fix the drift (DB wins)")
        parser.add_argument("-v2", "--verbose-keys", action="store_true", help="list every drifted key")

    def handle(self, *args: Any, repair: bool, verbose_keys: bool, **options: Any) -> None:
        drift = sync.repair() if repair else sync.check()
        if verbose_keys or drift.count <= 50:
            for k in sorted(drift.missing):
                self.stdout.write(f"missing  {k}")
            for k in sorted(drift.changed):
                self.stdout.write(f"changed  {k}")
            for k in drift.extra:
                self.stdout.write(f"extra    {k}")
        verb = "repaired" if repair and drift.count else "found"
        self.stdout.write(f"drift {verb}: {drift.summary()} ({drift.count} keys)")
        if drift.count and not repair:
            raise CommandError(
                f"etcd drifted from the DB by {drift.count} keys; --repair rewrites them", returncode=1
            )

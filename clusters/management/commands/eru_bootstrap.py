from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from clusters import services
from clusters.models import Node, Pod


class Command(BaseCommand):
    help = (
        "Embedded set-up, idempotent: an admin user, pod `eru` (cpu favor) and every node in ERU_NODES "
        "('name=tcp://host:port …') registered with the TLS files in ERU_TLS_DIR."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", default=os.environ.get("ERU_ADMIN_USER", "admin"))
        parser.add_argument("--pod", default="eru")

    def handle(self, *args: Any, admin: str, pod: str, **options: Any) -> None:
        self._admin(admin)
        pod_row = Pod.objects.filter(name=pod).first() or services.pod_add(
            actor=services.SYSTEM, name=pod, desc="embedded pod", favor=Pod.Favor.CPU
        )
        tls_dir = Path(os.environ.get("ERU_TLS_DIR", "var/cluster/tls"))
        for item in os.environ.get("ERU_NODES", "").split():
            name, _, endpoint = item.partition("=")
            if Node.objects.filter(name=name).exists():
                self.stdout.write(f"node {name}: already registered")
                continue
            try:
                node = services.node_add(
                    actor=services.SYSTEM,
                    pod=pod_row,
                    name=name,
                    endpoint=endpoint,
                    ca=(tls_dir / "ca.pem").read_text(),
                    cert=(tls_dir / "cert.pem").read_text(),
                    key=(tls_dir / "key.pem").read_text(),
                )
            except ValidationError as exc:
                self.stderr.write(f"node {name}: {'; '.join(exc.messages)}")
                continue
            self.stdout.write(
                f"node {name}: registered, {len(node.cpu_map)} cores × {node.share_base} pieces, "
                f"{node.memory / (1 << 30):.1f} GiB"
            )

    def _admin(self, username: str) -> None:
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self.stdout.write(f"admin user {username}: exists")
            return
        password = os.environ.get("ERU_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        shown = "(from ERU_ADMIN_PASSWORD)" if os.environ.get("ERU_ADMIN_PASSWORD") else password
        self.stdout.write(f"admin user {username} created; password: {shown}")

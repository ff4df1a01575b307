from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from clusters import authentication, services
from clusters.models import Node, Pod


class Command(BaseCommand):
    help = (
        "Embedded set-up, idempotent: an admin user, pod `eru` (cpu favor) and every node in ERU_NODES "
        "('name=tcp://host:port …') registered with the TLS files in ERU_TLS_DIR; with --agent-secrets DIR, "
        "each node's agent secret in DIR/agent-<node>.secret (made anew when the file is missing or stale)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", default=os.environ.get("ERU_ADMIN_USER", "admin"))
        parser.add_argument("--pod", default="eru")
        parser.add_argument("--agent-secrets", default="", help="directory for the nodes' agent secrets")

    def handle(self, *args: Any, admin: str, pod: str, agent_secrets: str, **options: Any) -> None:
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
        if agent_secrets:
            names = [item.partition("=")[0] for item in os.environ.get("ERU_NODES", "").split()]
            for node in Node.objects.filter(name__in=names).select_related("pod"):
                self._agent_secret(node, Path(agent_secrets) / f"agent-{node.name}.secret")

    def _agent_secret(self, node: Node, path: Path) -> None:
        """The node's agent secret in a file only its owner reads; a new one unless the file holds it."""
        if path.is_file() and authentication.digest(path.read_text().strip()) == node.secret_digest:
            return
        secret = services.node_secret_rotate(actor=services.SYSTEM, node=node)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(secret + "\n")
        self.stdout.write(f"node {node.name}: agent secret written to {path} (user {node.grpc_username})")

    def _admin(self, username: str) -> None:
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self.stdout.write(f"admin user {username}: exists")
            return
        password = os.environ.get("ERU_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        shown = "(from ERU_ADMIN_PASSWORD)" if os.environ.get("ERU_ADMIN_PASSWORD") else password
        self.stdout.write(f"admin user {username} created; password: {shown}")

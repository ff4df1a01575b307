from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from agents import grpc_server
from agents.selfmon import Selfmon


class Command(BaseCommand):
    help = (
        "Serve Eru's gRPC protocol (pb.CoreRPC: what Eru's agent calls) on ERU_GRPC_ADDRESS (default "
        "127.0.0.1:5001), with selfmon (one leader among the cores, elected through etcd) watching the "
        "agent-managed nodes' heartbeats. Runs until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--address", default=settings.ERU_GRPC_ADDRESS)
        parser.add_argument("--no-selfmon", action="store_true", help="serve only; another core watches")

    def handle(self, *args: Any, address: str, no_selfmon: bool, **options: Any) -> None:
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        server, port = grpc_server.serve(address)
        selfmon = None if no_selfmon else Selfmon()
        if selfmon is not None:
            selfmon.start()
        self.stdout.write(f"eru gRPC core listening on {address.rpartition(':')[0]}:{port}", ending="\n")
        self.stdout.flush()
        done.wait()
        if selfmon is not None:
            selfmon.stop()
        server.stop(grace=2).wait()

"""Celery beat, exactly once at a time among any number of these launchers: each campaigns for the etcd
key /beat/active (clusters.etcd.campaign, the election selfmon uses) on a lease of --ttl seconds; the
holder runs `celery beat` as its child and keeps the lease alive every third of it. A holder that
cannot keep its lease (etcd away, the lease expired) stops its beat at once, before another launcher
can win the key; a launcher that dies takes its beat with it (the child gets SIGKILL when its parent
dies), and the lease runs out after at most --ttl seconds for the next launcher to win.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clusters import etcd

log = logging.getLogger(__name__)
KEY = "/beat/active"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec (without setpriv only)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Command(BaseCommand):
    help = (
        "Run Celery beat while this process holds the etcd key /beat/active (one launcher of many "
        "leads; the others wait). Runs until SIGTERM or SIGINT, then stops beat and resigns."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schedule", required=True, help="celery beat's schedule file")
        parser.add_argument("--ttl", type=int, default=10, help="the lease, in seconds (default 10)")
        parser.add_argument("--ident", default="", help="who leads, as written in the key")

    def handle(self, *args: Any, schedule: str, ttl: int, ident: str, **options: Any) -> None:
        launcher = Launcher(schedule=schedule, ttl=ttl, ident=ident)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: launcher.halt.set())
        launcher.run()


class Launcher:
    def __init__(self, *, schedule: str, ttl: int, ident: str = "") -> None:
        self.schedule = schedule
        self.ttl = max(3, ttl)
        self.me = ident or f"{socket.gethostname()}:{os.getpid()}"
        self.halt = threading.Event()
        self.lease: int | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self.kept = 0.0  # monotonic time of the last campaign won or lease refreshed

    def argv(self) -> list[str]:
        beat = [sys.executable, "-m", "celery", "-A", "eru_site", "beat", "--schedule", self.schedule]
        # setpriv (util-linux) sets the parent-death signal, then runs beat: no preexec_fn in a process
        # with threads (the etcd client's).
        die = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        return [*die, *beat, "--pidfile="]

    def spawn(self) -> subprocess.Popen[bytes]:
        argv = self.argv()
        if argv[0] == "setpriv":
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def say(self, message: str) -> None:
        print(f"eru_beat {self.me}: {message}", file=sys.stderr, flush=True)

    def deadline(self) -> float:
        """When the lease may run out, as seen here (the last refresh asked, less a margin): a beat
        still running then is killed, whatever the launcher's own thread is blocked on."""
        return self.kept + self.ttl - max(1.0, self.ttl / 5)

    def watchdog(self) -> None:
        """A refresh can hang in etcd's client past the lease (a member down, its timeout, failover):
        beat must not outlive the lease it runs under, or two could run."""
        while not self.halt.wait(0.2):
            beat = self.beat
            if beat is not None and beat.poll() is None and time.monotonic() > self.deadline():
                self.say("the lease may have run out (no refresh in time): killing beat")
                with contextlib.suppress(OSError):
                    beat.kill()

    def run(self) -> None:
        """Until halt is set: campaign; while leading, run beat and keep the lease; then resign."""
        self.say(f"campaigning for {KEY} (lease {self.ttl} s)")
        threading.Thread(target=self.watchdog, daemon=True, name="beat-watchdog").start()
        while not self.halt.is_set():
            try:
                self.round()
            except etcd.EtcdError as exc:
                if self.lease is not None:
                    # Not sure we still lead: stop beat before the lease can run out under us.
                    self.say(f"etcd: {exc}; stopping beat")
                    self.stop_beat()
                    self.lease = None
                self.halt.wait(1.0)
        self.stop_beat()
        if self.lease is not None:
            with contextlib.suppress(etcd.EtcdError):
                etcd.resign(KEY, self.lease)
            self.say("resigned")

    def round(self) -> None:
        if self.lease is None:
            self.lease = etcd.campaign(KEY, self.me, self.ttl)
            if self.lease is None:
                self.halt.wait(1.0)
                return
            self.say("leads: starting beat")
            self.kept = time.monotonic()
        if self.beat is None or self.beat.poll() is not None:
            if self.beat is not None:
                self.say(f"beat exited ({self.beat.returncode}); starting it again")
            self.beat = self.spawn()
        # Refresh every third of the lease; the wait ends early on SIGTERM.
        while not self.halt.wait(0.5):
            if self.beat.poll() is not None:
                return
            if time.monotonic() - self.kept >= self.ttl / 3:
                started = time.monotonic()
                if not etcd.refresh_lease(self.lease):
                    self.say("lost the lease: stopping beat")
                    self.stop_beat()
                    self.lease = None
                    return
                self.kept = started

    def stop_beat(self) -> None:
        beat, self.beat = self.beat, None
        if beat is None or beat.poll() is not None:
            return
        beat.terminate()
        try:
            beat.wait(5)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.wait(5)

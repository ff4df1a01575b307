"""Log forwarding, Eru's agent's first duty: every ERU container's stdout and stderr, line by line, one
JSON object per line with Eru's metadata, to one of the `log.forwards` targets (tcp://, udp://,
journal://, file:///path, or __discard__), chosen per container by the FNV-1a hash of its id, as Eru.

Each container is followed from a cursor — the Docker time of the last line its target took, kept in
run_dir/log-cursors.json — so an agent that restarts goes on where it stopped. A target that is down
does not hold anyone up: its lines wait in a bounded queue while a thread of its own connects again
every second; a line that finds the queue full is dropped and counted (the count goes to the core
with the heartbeat and shows on the node page)."""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import docker as docker_sdk

from engine import docker, logs

log = logging.getLogger("nodeagent.forward")
QUEUE = 10_000  # lines waiting per target
JOURNAL = "/run/systemd/journal/socket"
UDP_MAX = 60_000  # bytes: a longer line is cut (UDP, as Eru warns, is for short lines)


class TargetError(Exception):
    pass


def fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def check_targets(targets: Sequence[str]) -> None:
    """A clear error for a target this host cannot serve, before anything starts."""
    for target in targets:
        scheme = urllib.parse.urlsplit(target).scheme
        if target == "__discard__" or scheme == "file":
            continue
        if scheme == "journal":
            if not os.path.exists(JOURNAL):
                raise TargetError(
                    f"log target {target}: no systemd-journal on this host ({JOURNAL} is missing)"
                )
            continue
        if scheme not in ("tcp", "udp"):
            raise TargetError(
                f"log target {target}: use tcp://host:port, udp://host:port, journal:// or file:///path"
            )
        url = urllib.parse.urlsplit(target)
        if not url.hostname or not url.port:
            raise TargetError(f"log target {target}: needs a host and a port")


class Target(threading.Thread):
    """One target: a queue of (container id, Docker time, encoded line) and the thread that sends it."""

    def __init__(self, url: str, cursors: Cursors) -> None:
        super().__init__(name=f"log {url}", daemon=True)
        self.url = url
        self.cursors = cursors
        self.lines: queue.Queue[tuple[str, str, bytes]] = queue.Queue(QUEUE)
        self.dropped = 0
        self.sent = 0
        self.stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._file: IO[bytes] | None = None

    def offer(self, cid: str, stamp: str, line: bytes) -> None:
        try:
            self.lines.put_nowait((cid, stamp, line))
        except queue.Full:
            self.dropped += 1

    def run(self) -> None:
        held: tuple[str, str, bytes] | None = None
        while not (self.stopping.is_set() and self.lines.empty() and held is None):
            if held is None:
                try:
                    held = self.lines.get(timeout=0.5)
                except queue.Empty:
                    continue
            try:
                self._send(held[2])
            except OSError as exc:
                if self.stopping.is_set():
                    break  # stopping with the target down: the cursor keeps what was not sent
                log.warning("log target %s: %s; again in 1 s", self.url, exc)
                self._close()
                self.stopping.wait(1.0)
                continue
            self.sent += 1
            self.cursors.advance(held[0], held[1])
            held = None
        self._close()

    def _send(self, line: bytes) -> None:
        url = urllib.parse.urlsplit(self.url)
        if self.url == "__discard__":
            return
        if url.scheme == "file":
            if self._file is None:
                self._file = Path(url.path).open("ab")  # noqa: SIM115 — kept open across lines
            self._file.write(line)
            self._file.flush()
            return
        if self._sock is not None and url.scheme == "tcp" and _closed(self._sock):
            self._close()  # the other end went away: a line sent now would vanish in the kernel
        if self._sock is None:
            self._sock = self._connect(url)
        if url.scheme == "tcp":
            self._sock.sendall(line)
        else:
            self._sock.send(line[:UDP_MAX])

    def _connect(self, url: urllib.parse.SplitResult) -> socket.socket:
        if url.scheme == "journal":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect(JOURNAL)
            return sock
        kind = socket.SOCK_STREAM if url.scheme == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.settimeout(5)
        sock.connect((url.hostname or "", url.port or 0))
        return sock

    def _close(self) -> None:
        for handle in (self._sock, self._file):
            if handle is not None:
                handle.close()
        self._sock, self._file = None, None


def _closed(sock: socket.socket) -> bool:
    """The peer of a TCP connection we only write to has closed it (it is readable, at its end)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Cursors:
    """Per container, the Docker time of the last line a target took; saved to a file now and then."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dirty = False
        try:
            self._times: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._times = {}

    def get(self, cid: str) -> str:
        with self._lock:
            return self._times.get(cid, "")

    def advance(self, cid: str, stamp: str) -> None:
        with self._lock:
            if logs.cursor(stamp) > logs.cursor(self._times.get(cid, "")):
                self._times[cid], self._dirty = stamp, True

    def forget(self, keep: set[str]) -> None:
        with self._lock:
            for cid in [c for c in self._times if c not in keep]:
                del self._times[cid]
                self._dirty = True

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            data, self._dirty = json.dumps(self._times), False
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data)
        tmp.replace(self.path)


def record(info: docker.ContainerInfo, line: logs.LogLine, hostname: str, journal: bool) -> bytes:
    """One line as Eru's agent forwards it."""
    app, _, rest = info.name.rpartition("_")
    app, _, entry = app.rpartition("_")
    extra = {"podname": info.labels.get("eru.podname", ""), "nodename": hostname}
    extra["coreid"] = info.labels.get("eru.coreid", "")
    extra.update({f"networks_{net}": ip for net, ip in info.networks.items() if ip})
    when = _datetime(line.time)
    if journal:
        fields = {
            "MESSAGE": line.text, "SYSLOG_IDENTIFIER": app, "ID": info.id, "TYPE": line.stream,
            "ENTRY_POINT": entry, "IDENT": rest, "DATE_TIME": when, "EXTRA": json.dumps(extra),
        }  # fmt: skip
        return "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in fields.items()).encode()
    data = {
        "id": info.id, "name": app, "type": line.stream, "entrypoint": entry, "ident": rest,
        "data": line.text, "datetime": when, "extra": extra,
    }  # fmt: skip
    return json.dumps(data).encode() + b"\n"


def _datetime(stamp: str) -> str:
    """Eru's "2006-01-02 15:04:05.999999" (local time of the node, as Go's time.Now().Format)."""
    seconds, nanos = logs.cursor(stamp)
    when = datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC).astimezone()
    return when.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".")


class Forwarder:
    """A follower thread per running container, feeding the target its id hashes to."""

    def __init__(
        self, targets: Sequence[str], run_dir: Path, hostname: str, client: docker_sdk.DockerClient
    ) -> None:
        self.cursors = Cursors(run_dir / "log-cursors.json")
        self.targets = [Target(url, self.cursors) for url in targets]
        self.hostname = hostname
        self.client = client
        self._following: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        for target in self.targets:
            target.start()
        threading.Thread(target=self._saver, name="log cursors", daemon=True).start()

    @property
    def dropped(self) -> int:
        return sum(t.dropped for t in self.targets)

    def follow(self, info: docker.ContainerInfo) -> None:
        """Follow a running container's log, unless it is followed already."""
        if not self.targets:
            return
        with self._lock:
            current = self._following.get(info.id)
            if current is not None and current.is_alive():
                return
            thread = threading.Thread(
                target=self._follow, args=(info,), name=f"log {info.id[:12]}", daemon=True
            )
            self._following[info.id] = thread
        thread.start()

    def _follow(self, info: docker.ContainerInfo) -> None:
        target = self.targets[fnv32a(info.id) % len(self.targets)]
        journal = target.url.startswith("journal:")
        start = self.cursors.get(info.id)
        seconds, nanos = logs.cursor(start)
        since = float(f"{seconds}.{nanos:09d}") if seconds else None
        try:
            for line in logs.read(self.client, info.id, since=since, follow=True, idle=5.0):
                if self.stopping.is_set():
                    return
                if line is None or (start and line.cursor <= logs.cursor(start)):
                    continue
                target.offer(info.id, line.time, record(info, line, self.hostname, journal))
        except docker.DockerError as exc:
            log.info("log of %s ends: %s", info.id[:12], exc)

    def keep(self, ids: set[str]) -> None:
        """Forget the cursors of containers that are gone."""
        self.cursors.forget(ids)

    def _saver(self) -> None:
        while not self.stopping.wait(1.0):
            self.cursors.save()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop following; let the targets send what they hold (up to `timeout`), save the cursors."""
        self.stopping.set()
        for target in self.targets:
            target.stopping.set()
        deadline = time.monotonic() + timeout
        for target in self.targets:
            target.join(max(0.0, deadline - time.monotonic()))
        self.cursors.save()

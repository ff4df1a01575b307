"""Log forwarding, Eru's agent's first duty: every ERU container's stdout and stderr, line by line, one
JSON object per line with Eru's metadata, to one of the `log.forwards` targets (tcp://, udp://,
journal://, file:///path, or __discard__), chosen per container by the FNV-1a hash of its id, as Eru.

Each container is followed from a cursor — the Docker time of the last line its target took, kept in
run_dir/log-cursors.json — so an agent that restarts goes on where it stopped. A target that is down
does not hold anyone up: its lines wait in a bounded queue while a thread of its own connects again
every second; a line that finds the queue full is dropped and counted (the count goes to the core
with the heartbeat and shows on the node page)."""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import docker as docker_sdk

from engine import docker, logs

log = logging.getLogger("nodeagent.forward")
QUEUE = 10_000  # lines waiting per target
BATCH = 500  # lines per write
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
    """One target: the lines waiting for it, (container id, Docker time, encoded line) in a bounded
    deque, and the thread that sends them, all that waits in one write."""

    def __init__(self, url: str, cursors: Cursors) -> None:
        super().__init__(name=f"log {url}", daemon=True)
        self.url = url
        self._parsed = urllib.parse.urlsplit(url)
        self.cursors = cursors
        self.lines: collections.deque[tuple[str, str, bytes]] = collections.deque()
        self._ready = threading.Condition()
        self._idle = False  # the sender waits for lines: wake it
        self.dropped = 0
        self.up = True  # its last write went
        self.stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._file: IO[bytes] | None = None

    def offer(self, cid: str, stamp: str, line: bytes) -> None:
        """Queue a line. While the target takes lines, a full queue makes the follower wait (the
        container's own log holds the rest); while it is down, a line that finds no room is dropped
        and counted."""
        with self._ready:
            if len(self.lines) >= QUEUE and self.up:
                self._ready.wait_for(lambda: len(self.lines) < QUEUE or not self.up, timeout=5.0)
            if len(self.lines) >= QUEUE:
                self.dropped += 1
                return
            self.lines.append((cid, stamp, line))
            if self._idle:
                self._ready.notify_all()

    def _take(self) -> list[tuple[str, str, bytes]]:
        with self._ready:
            if not self.lines:
                self._idle = True
                self._ready.wait(timeout=0.5)
                self._idle = False
            taken = [self.lines.popleft() for _ in range(min(len(self.lines), BATCH))]
            self._ready.notify_all()  # a follower may wait for room
            return taken

    def run(self) -> None:
        held: list[tuple[str, str, bytes]] = []
        while not (self.stopping.is_set() and not self.lines and not held):
            held = held or self._take()
            if not held:
                continue
            try:
                self._send([line for _, _, line in held])
            except OSError as exc:
                self.up = False
                if self.stopping.is_set():
                    break  # stopping with the target down: the cursors keep what was not sent
                log.warning("log target %s: %s; again in 1 s", self.url, exc)
                self._close()
                self.stopping.wait(1.0)
                continue
            self.up = True
            for cid, stamp in {cid: stamp for cid, stamp, _ in held}.items():  # each one's last line
                self.cursors.advance(cid, stamp)
            held = []
        self._close()

    def _send(self, lines: list[bytes]) -> None:
        url = self._parsed
        if self.url == "__discard__":
            return
        if url.scheme == "file":
            if self._file is None:
                self._file = Path(url.path).open("ab")  # noqa: SIM115 — kept open across lines
            self._file.write(b"".join(lines))
            self._file.flush()
            return
        if self._sock is not None and url.scheme == "tcp" and _closed(self._sock):
            self._close()  # the other end went away: a line sent now would vanish in the kernel
        if self._sock is None:
            self._sock = self._connect(url)
        if url.scheme == "tcp":
            self._sock.sendall(b"".join(lines))
        else:
            for line in lines:  # a datagram each
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


class Record:
    """The encoder of one container's lines: its metadata made once, per line only what changes."""

    def __init__(self, info: docker.ContainerInfo, hostname: str, journal: bool) -> None:
        app, _, ident = info.name.rpartition("_")
        app, _, entry = app.rpartition("_")
        extra = {"podname": info.labels.get("eru.podname", ""), "nodename": hostname}
        extra["coreid"] = info.labels.get("eru.coreid", "")
        extra.update({f"networks_{net}": ip for net, ip in info.networks.items() if ip})
        self.journal = journal
        self.head = {"SYSLOG_IDENTIFIER": app, "ID": info.id, "ENTRY_POINT": entry, "IDENT": ident}
        self.head["EXTRA"] = json.dumps(extra)
        meta = {"id": info.id, "name": app, "entrypoint": entry, "ident": ident, "extra": extra}
        self.prefix = json.dumps(meta)[:-1].encode() + b', "type": "'  # the object, still open

    def __call__(self, line: logs.LogLine) -> bytes:
        when = _datetime(line.time)
        if self.journal:
            fields = {"MESSAGE": line.text, **self.head, "TYPE": line.stream, "DATE_TIME": when}
            return "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in fields.items()).encode()
        tail = f'{line.stream}", "datetime": "{when}", "data": {json.dumps(line.text)}}}\n'
        return self.prefix + tail.encode()


def _datetime(stamp: str) -> str:
    """Eru's "2006-01-02 15:04:05.999999", from Docker's time (UTC, cut to microseconds)."""
    return stamp[:10] + " " + stamp[11:26].rstrip("Z")


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
        encode = Record(info, self.hostname, target.url.startswith("journal:"))
        try:  # from the cursor: the lines after the last one its target took
            for line in logs.read(
                self.client, info.id, after=self.cursors.get(info.id), follow=True, idle=5.0
            ):
                if self.stopping.is_set():
                    return
                if line is not None:
                    target.offer(info.id, line.time, encode(line))
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

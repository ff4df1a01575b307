"""Processes we start and stop by pid: pidfiles, the ours-check, spawning detached, stopping, strays,
ports in use, and Daemon (one named process of ours).

A pid counts as ours only while it is alive, not a zombie, and its command line contains a needle: an
argument naming our directory (or exec-root, or data dir). A reused pid or a neighbour cluster (another
--dir or --port-base) never matches, so nothing of anyone else is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import psutil

LOG_ROTATE_BYTES = 20 * 1024 * 1024  # keep one old log, at most about this big
POLL = 0.1

_log_lock = threading.Lock()
# Popen objects of what we spawned: held so that they are not collected (and warned about) while the
# child runs; the ones that ended are reaped at the next spawn.
_children: list[subprocess.Popen[bytes]] = []
_children_lock = threading.Lock()  # `up` spawns its services from several threads at once


class ServiceError(Exception):
    """A service could not be checked, started or stopped; the message is for the operator."""


def log(message: str) -> None:
    """One line on stderr (jobs run in threads: whole lines only)."""
    with _log_lock:
        print(message, file=sys.stderr, flush=True)


# --- the ours-check ------------------------------------------------------------------------------


def _line(proc: psutil.Process) -> str | None:
    """The command line as `tr '\\0' ' ' </proc/PID/cmdline` shows it (each argument followed by a
    space); None for a zombie or a kernel thread."""
    if proc.status() == psutil.STATUS_ZOMBIE:
        return None
    return "".join(arg + " " for arg in proc.cmdline()) or None


def holds(proc: psutil.Process, needle: str) -> bool:
    """Whether this very process object's command line holds the needle (False once it is gone)."""
    try:
        line = _line(proc)
    except psutil.Error:
        return False
    return line is not None and needle in line


def is_ours(pid: int | None, needle: str) -> bool:
    return ours(pid, needle) is not None


def ours(pid: int | None, needle: str) -> psutil.Process | None:
    """The process, if pid is ours. Signals later go through this object, which psutil checks against
    the process' start time, so a pid reused in between is never hit."""
    if pid is None or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)  # first: the command line checked is then this process' own
    except psutil.Error:
        return None
    return proc if holds(proc, needle) else None


def read_pid(path: Path) -> int | None:
    """The digits of a pidfile (like `tr -dc 0-9`); None if missing or empty."""
    try:
        digits = "".join(ch for ch in path.read_text(errors="replace") if ch.isdigit())
    except OSError:
        return None
    return int(digits) if digits else None


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def running(pidfile: Path, needle: str) -> psutil.Process | None:
    """The process a pidfile names, if it runs and is ours."""
    return ours(read_pid(pidfile), needle)


def strays(needle: str, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Every process of ours by needle alone (no pidfile), e.g. the shims of one node's exec-root or
    gunicorn workers whose master was killed."""
    skip = {os.getpid(), *exclude}
    found = []
    for proc in psutil.process_iter():
        if proc.pid not in skip and holds(proc, needle):
            found.append(proc)
    return found


# --- waiting and stopping ------------------------------------------------------------------------


def _gone(proc: psutil.Process) -> bool:
    """Exited, or a zombie (reaped here if it is our child). psutil.wait_procs would wait on a zombie
    whose parent does not reap it, so this polls instead."""
    try:
        if not proc.is_running():
            return True
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)
    return True


def wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Waits up to timeout seconds for procs to exit; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL)
        alive = [p for p in alive if not _gone(p)]
    return alive


def send(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        # Gone, or reused: psutil refuses to signal a process that is not the same one.
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def stop(procs: Sequence[psutil.Process], timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """sig (SIGTERM), up to timeout seconds, then SIGKILL to the ones still running."""
    if not procs:
        return
    send(procs, sig)
    alive = wait_gone(procs, timeout)
    if alive:
        pids = " ".join(str(p.pid) for p in alive)
        log(f"  pid {pids} did not stop after {signal.Signals(sig).name}; sending SIGKILL")
        send(alive, signal.SIGKILL)
        wait_gone(alive, 2.0)


def wait_until(timeout: float, check: Callable[[], bool], while_alive: psutil.Process | None = None) -> bool:
    """Polls check every 0.1 s for up to timeout seconds; gives up early if while_alive exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline or (while_alive is not None and _gone(while_alive)):
            return False
        time.sleep(POLL)


# --- spawning ------------------------------------------------------------------------------------


def rotate_log(path: Path) -> None:
    try:
        if path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def spawn(
    argv: Sequence[str],
    pidfile: Path,
    logfile: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Starts argv detached (own session, stdin /dev/null, output appended to logfile, no inherited
    descriptors) and writes its pid. Nothing watches it afterwards: no restart behind anyone's back."""
    with _children_lock:
        _children[:] = [child for child in _children if child.poll() is None]
    rotate_log(logfile)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        try:
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=None if env is None else dict(env),
                cwd=cwd,
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {argv[0]}: {exc}") from exc
    with _children_lock:
        _children.append(child)
    write_pid(pidfile, child.pid)
    return child.pid


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    cwd: Path | None = None,
    timeout: float | None = 60.0,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Runs a short command (stdin /dev/null) and captures its output; with check, a failure is a
    ServiceError. new_session: whatever it leaves running is detached from us."""
    try:
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            cwd=cwd,
            timeout=timeout,
            start_new_session=new_session,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"cannot run {argv[0]}: {exc}") from exc
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise ServiceError(f"{' '.join(argv)} failed (exit {result.returncode}): {output}")
    return result


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- ports ---------------------------------------------------------------------------------------


def listeners() -> dict[int, list[str]]:
    """Every listening TCP port (IPv4 and IPv6, any address) and who holds it, like `ss -ltnp`."""
    found: dict[int, list[str]] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        owner = "unknown process"
        if conn.pid:
            try:
                owner = f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except psutil.Error:
                owner = f"pid {conn.pid}"
        found.setdefault(conn.laddr.port, []).append(owner)
    return found


def require_free_port(ports: Mapping[int, list[str]], port: int, what: str) -> None:
    if port in ports:
        owner = ", ".join(sorted(set(ports[port])))
        raise ServiceError(
            f"port {port} ({what}) is already in use by someone else: {owner}; "
            "stop it or pick another --port-base"
        )


# --- one process of ours -------------------------------------------------------------------------


class Supervised:
    """A named process of ours, found by `process()` (None: not running, or not ours)."""

    name: str

    def process(self) -> psutil.Process | None:
        raise NotImplementedError

    def pid(self) -> int | None:
        proc = self.process()
        return proc.pid if proc else None

    def is_running(self) -> bool:
        return self.process() is not None

    def kill(self) -> None:
        """SIGKILL the process alone, like a crash: no cleanup, its pidfile and children stay."""
        proc = self.process()
        if proc is not None:
            send([proc], signal.SIGKILL)
            wait_gone([proc], 5.0)


class Daemon(Supervised):
    """One long-running process of ours: its command, its needle, its pidfile and log, and how to tell
    it is ready. Subclasses add what happens before the start (prepare) and after the stop (cleanup).
    A new kind of process (e.g. an agent per node) is one more instance or subclass."""

    ready_timeout = 10.0
    stop_timeout = 10.0

    def __init__(
        self,
        name: str,
        *,
        argv: Sequence[str],
        needle: str,
        pidfile: Path,
        logfile: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ports: Sequence[tuple[int, str]] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.needle = needle
        self.pidfile = pidfile
        self.logfile = logfile
        self.env = env
        self.cwd = cwd
        self.ports = list(ports)  # (port, what) pairs that must be free before a start

    def say(self, message: str) -> None:
        log(f"{self.name}: {message}")

    def process(self) -> psutil.Process | None:
        return running(self.pidfile, self.needle)

    def detail(self) -> str:
        return str(self.logfile)

    def preflight(self, ports: Mapping[int, list[str]]) -> None:
        """Checks, before anything starts, what would make the start fail (ports taken)."""
        if self.is_running():
            return
        for port, what in self.ports:
            require_free_port(ports, port, what)

    def ready(self) -> bool:
        return True

    def not_ready_message(self) -> str:
        return f"{self.name}: did not become ready (log: {self.logfile})"

    def started_message(self, pid: int) -> str:
        return f"started (pid {pid}, log {self.logfile})"

    def prepare(self) -> None:
        """Runs before a start, when no process of ours runs: clean up after an earlier one."""

    def cleanup(self) -> None:
        """Runs after a stop, whether anything was running or not."""

    def after_start(self) -> None:
        """Runs after a start, or when the process already ran."""

    def start(self) -> None:
        """Starts the process unless it runs; waits until it is ready."""
        proc = self.process()
        if proc is None:
            self.pidfile.unlink(missing_ok=True)
            self.prepare()
            pid = spawn(self.argv, self.pidfile, self.logfile, env=self.env, cwd=self.cwd)
            child = psutil.Process(pid)  # our own child: no ours-check needed to know it is the one
            if not wait_until(self.ready_timeout, self.ready, while_alive=child):
                output = tail(self.logfile)
                if output:
                    log(output)
                raise ServiceError(self.not_ready_message())
            self.say(self.started_message(pid))
        else:
            self.say(f"already up (pid {proc.pid})")
        self.after_start()

    def stop(self) -> None:
        """SIGTERM, up to stop_timeout seconds, then SIGKILL; then cleanup."""
        proc = self.process()
        if proc is not None:
            stop([proc], self.stop_timeout)
            self.say(f"stopped (pid {proc.pid})")
        self.pidfile.unlink(missing_ok=True)
        self.cleanup()

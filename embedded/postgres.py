"""A throw-away PostgreSQL server on 127.0.0.1:P+32 for tests and development: cluster in
/var/tmp/eru-pg-P/data, run as the postgres user through pg_ctl, socket in /var/tmp/eru-pg-P/run,
trust auth, no durability."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psutil

from embedded.config import SOCKET_PATH_MAX, Config
from embedded.procs import (
    ServiceError,
    Supervised,
    log,
    ours,
    require_free_port,
    rotate_log,
    run,
    send,
    tail,
    wait_gone,
    wait_until,
    write_pid,
)

# initdb refuses to run as root; --reset-env gives the postgres user its own HOME and PATH.
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--reset-env", "--"]


def pg_bin() -> Path:
    """The newest PostgreSQL installed by Debian's packages (/usr/lib/postgresql/<major>/bin)."""
    found = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if all(os.access(d / tool, os.X_OK) for tool in ("postgres", "initdb", "pg_ctl")):
            version = tuple(int(x) for x in re.findall(r"[0-9]+", d.parent.name))
            found.append((version, d))
    if not found:
        raise ServiceError("PostgreSQL is not installed (run bin/setup)")
    return max(found)[1]


class Postgres(Supervised):
    """The postmaster of one port base. It writes its own pidfile (data/postmaster.pid), which is
    what we read; our postgres.pid beside the data directory is a copy for people.

    The directory is named after the port base alone, so two cluster directories given the same
    --port-base would share it: the file `owner` names the cluster directory that made it, and
    another directory never stops, reaps or deletes it."""

    name = "postgres"

    def __init__(self, config: Config) -> None:
        self.dir = config.pg_dir
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.port = config.pg_port
        self.needle = f" -D {self.data} "
        self.logfile = self.dir / "postgres.log"
        self.pidfile = self.dir / "postgres.pid"
        self.owner_file = self.dir / "owner"
        self.cluster_dir = config.dir

    def _postmaster(self) -> psutil.Process | None:
        return ours(read_pid_first_line(self.data / "postmaster.pid"), self.needle)

    def owner(self) -> str | None:
        """The cluster directory that made this PostgreSQL directory; None if unknown (made by an
        older bin/services), which counts as ours."""
        try:
            return self.owner_file.read_text().strip() or None
        except OSError:
            return None

    def owned(self) -> bool:
        owner = self.owner()
        return owner is None or owner == str(self.cluster_dir)

    def process(self) -> psutil.Process | None:
        return self._postmaster() if self.owned() else None

    def detail(self) -> str:
        return f"127.0.0.1:{self.port} data {self.data}"

    def preflight(self, ports: Mapping[int, list[str]]) -> None:
        if self.is_running():
            return
        pg_bin()
        require_free_port(ports, self.port, "postgres")
        lock = self.run_dir / f".s.PGSQL.{self.port}.lock"
        if len(str(lock).encode()) >= SOCKET_PATH_MAX:
            raise ServiceError(f"socket path too long: {self.run_dir}")

    def _ready(self, bindir: Path) -> bool:
        argv = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return run([*argv, "-U", "postgres", "-d", "postgres", "-t", "1"], check=False).returncode == 0

    def _psql(self, bindir: Path, sql: str) -> str:
        argv = [str(bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        return run(
            [*argv, "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql]
        ).stdout.strip()

    def _pg_ctl(self, bindir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        argv = [*AS_POSTGRES, str(bindir / "pg_ctl"), *args, "-D", str(self.data), "-s"]
        return run(argv, check=False, cwd=self.dir, timeout=timeout, new_session=True)

    def start(self) -> None:
        bindir = pg_bin()
        proc = self._postmaster()
        if proc is not None and not self.owned():
            raise ServiceError(
                f"postgres: {self.dir} is in use by the cluster of {self.owner()} (pid {proc.pid})"
            )
        if proc is not None:
            if not wait_until(10, lambda: self._ready(bindir)):
                raise ServiceError(
                    f"postgres: runs but is not ready on 127.0.0.1:{self.port} (log: {self.logfile})"
                )
            log(f"postgres: already up (pid {proc.pid})")
            return
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceError("no postgres user (run bin/setup)") from None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.dir, self.run_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.dir.chmod(0o700)
        if not self.owned():
            log(f"postgres: {self.dir} was made for {self.owner()}, which is not running it; taking it over")
        self.owner_file.write_text(f"{self.cluster_dir}\n")
        if run([*AS_POSTGRES, "test", "-w", str(self.dir)], check=False).returncode != 0:
            raise ServiceError(
                f"postgres: the postgres user cannot write {self.dir} (permissions of its parents?)"
            )
        self.reap()
        self._ensure_cluster(bindir)
        self._write_conf()
        rotate_log(self.logfile)
        self.logfile.touch()
        os.chown(self.logfile, user.pw_uid, user.pw_gid)  # pg_ctl opens it as the postgres user
        # pg_ctl starts the postmaster in its own session with stdin /dev/null and output appended
        # to the log, and waits until it accepts connections.
        result = self._pg_ctl(bindir, "start", "-l", str(self.logfile), "-w", "-t", "30", timeout=60)
        started = self.process()
        if result.returncode != 0 or started is None or not self._ready(bindir):
            log(tail(self.logfile) or (result.stderr + result.stdout).strip())
            raise ServiceError(f"postgres: not ready on 127.0.0.1:{self.port} (log: {self.logfile})")
        write_pid(self.pidfile, started.pid)
        if not self._psql(bindir, "SELECT 1 FROM pg_database WHERE datname = 'eru'"):
            self._psql(bindir, "CREATE DATABASE eru")
        log(f"postgres: up on 127.0.0.1:{self.port} (pid {started.pid})")

    def _ensure_cluster(self, bindir: Path) -> None:
        """A cluster of our own, made once: initdb into a temporary directory, then renamed, so a killed
        initdb never leaves half a cluster. Made again if the installed major version changed."""
        match = re.search(r"\(PostgreSQL\) ([0-9]+)", run([str(bindir / "postgres"), "-V"]).stdout)
        major = match.group(1) if match else ""
        version_file = self.data / "PG_VERSION"
        if version_file.is_file() and version_file.read_text().strip() != major:
            old = version_file.read_text().strip()
            log(f"postgres: {self.data} is from PostgreSQL {old}, not {major}; making a new one")
            shutil.rmtree(self.data)
        if version_file.is_file():
            return
        tmp = self.dir / "data.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        initdb_log = self.dir / "initdb.log"
        argv = [*AS_POSTGRES, str(bindir / "initdb"), "-D", str(tmp), "-U", "postgres", "-A", "trust"]
        with initdb_log.open("wb") as out:
            code = subprocess.run(
                [*argv, "-E", "UTF8", "--locale=C", "--no-sync"],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        if code != 0:
            log(tail(initdb_log))
            raise ServiceError(f"postgres: initdb failed (log: {initdb_log})")
        with (tmp / "postgresql.conf").open("a") as conf:
            conf.write("\n# Added by bin/services: this directory's settings.\ninclude 'eru.conf'\n")
        tmp.rename(self.data)
        log(f"postgres: made a cluster in {self.data}")

    def _write_conf(self) -> None:
        """Written at every start (the port follows --port-base). No durability: tests and development."""
        (self.data / "eru.conf").write_text(
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.run_dir}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 64MB\n"
        )

    def stop(self) -> None:
        """pg_ctl's fast shutdown (roll back, disconnect clients, checkpoint), then immediate, then
        SIGKILL. Only when the postmaster.pid's pid is ours: pg_ctl itself would signal a reused pid."""
        if not self.owned():
            log(f"postgres: {self.dir} belongs to the cluster of {self.owner()}; left alone")
            return
        proc = self.process()
        if proc is not None:
            bindir = pg_bin()
            self._pg_ctl(bindir, "stop", "-m", "fast", "-w", "-t", "10", timeout=30)
            if wait_gone([proc], 0.5):
                log(
                    f"  postgres (pid {proc.pid}) did not stop after a fast shutdown; trying an immediate one"
                )
                if self.process() is not None:
                    self._pg_ctl(bindir, "stop", "-m", "immediate", "-w", "-t", "3", timeout=20)
                if wait_gone([proc], 0.5):
                    send([proc], signal.SIGKILL)
                    wait_gone([proc], 2.0)
            log(f"postgres: stopped (pid {proc.pid})")
        if self.data.is_dir():
            self.reap()
        self.pidfile.unlink(missing_ok=True)

    def reap(self) -> None:
        """What a killed postmaster left behind: server processes still attached to its shared memory
        (run as postgres, working directory our data directory) and lockfiles naming a pid that is
        gone or reused. Call only when no postmaster of ours runs."""
        try:
            uid: int | None = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            uid = None
        data = str(self.data)
        for proc in psutil.process_iter():
            try:
                if proc.uids().real == uid and proc.cwd() == data:
                    proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for sock in self.run_dir.glob(".s.PGSQL.*"):
            sock.unlink(missing_ok=True)


def read_pid_first_line(path: Path) -> int | None:
    """postmaster.pid's first line is the pid; the others hold a data dir, a port, a socket dir..."""
    try:
        first = path.read_text(errors="replace").split("\n", 1)[0]
    except OSError:
        return None
    digits = "".join(ch for ch in first if ch.isdigit())
    return int(digits) if digits else None

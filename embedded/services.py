"""The Eru stack's infrastructure on loopback, all state under one directory: Cluster (the Python API)
and the `bin/services` command line.

    from embedded.services import Cluster
    c = Cluster.load(Path("var/test"))          # reads DIR/services.conf
    c.stop("redis"); c.start("redis")           # "etcd", "redis", "postgres", "node1", ...
    c.kill("node1")                             # SIGKILL dockerd alone (a crash)
    c.is_running("node1"); c.pid("etcd")
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from embedded import clients, tls
from embedded.config import DEFAULT_DIR, Config
from embedded.nodes import Node, ensure_busybox_tar, mounts_under, umount_under
from embedded.postgres import Postgres
from embedded.procs import ServiceError, listeners, log
from embedded.stores import Etcd, Redis

USAGE = """\
bin/services — the Eru stack's infrastructure on loopback, all state under one directory.

  bin/services up     [--dir DIR] [--nodes N] [--port-base P] [--postgres | --no-postgres]
  bin/services down   [--dir DIR] [--purge]
  bin/services status [--dir DIR]
  bin/services reset  [--dir DIR]     # remove all containers, etcd keys and redis data (tests)

DIR defaults to var/cluster (a relative DIR is taken from the repository root), N to 1, P to 23700.
Ports: etcd P+90 (peer P+91), redis P+79, dockerd node i (mutual TLS) P+60+i. Node i has bridge
eb<P>n<i> on 10.<X>.<i>.1/24 (X = P/100 mod 256), exec-root /run/eru-<P>-<i>, cgroup parent
/eru-<P>-n<i>. Writes DIR/env for the app and the tests.
--postgres adds a PostgreSQL server on 127.0.0.1:P+32 (cluster in /var/tmp/eru-pg-P/data, run as the
postgres user, socket in /var/tmp/eru-pg-P/run, trust auth, no durability: tests and development
only); DIR/env then has ERU_PG_URL (point ERU_DATABASE at it to use it; pytest-django makes and
drops its test DB).
`down` and `status` read N, P and --postgres back from DIR/services.conf, so only --dir is needed.
"""

TOOLS = ("etcd", "redis-server", "dockerd", "ip", "umount", "setpriv", "dpkg")


class Service(Protocol):
    """What the cluster needs of each named process (procs.Daemon is one; Postgres another)."""

    name: str

    def pid(self) -> int | None: ...
    def is_running(self) -> bool: ...
    def detail(self) -> str: ...
    def preflight(self, ports: Mapping[int, list[str]]) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


@dataclass(frozen=True)
class Status:
    name: str
    pid: int | None
    detail: str

    def line(self) -> str:
        if self.pid is not None:
            return f"{self.name:<11} up    pid {self.pid:<8} {self.detail}"
        return f"{self.name:<11} down  {'':<12} {self.detail}"


def run_parallel(jobs: Sequence[tuple[str, Callable[[], None]]]) -> None:
    """Runs each job in a thread; fails, naming them, if any failed (each says why on its own)."""
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [(name, pool.submit(job)) for name, job in jobs]
        for name, future in futures:
            try:
                future.result()
            except ServiceError as exc:
                log(f"services: error: {exc}")
                failed.append(name)
            except Exception as exc:  # a bug or an OS error in one job must not hide the others
                log(f"services: error: {name}: {type(exc).__name__}: {exc}")
                failed.append(name)
    if failed:
        raise ServiceError("failed: " + " ".join(failed))


class Cluster:
    """One directory's services, by name: etcd, redis, postgres (with --postgres), node1..nodeN. Each
    is started detached and stopped by pid; nothing restarts anything on its own."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.services: dict[str, Service] = {"etcd": Etcd(config), "redis": Redis(config)}
        if config.postgres:
            self.services["postgres"] = Postgres(config)
        for i in config.node_indices():
            node = Node(config, i)
            self.services[node.name] = node

    @classmethod
    def load(cls, directory: str | Path) -> Cluster:
        """The cluster an earlier `up` made in directory (read back from DIR/services.conf)."""
        config = Config.load(directory)
        if not config.conf_file.is_file():
            raise ServiceError(f"{config.conf_file} is missing: no `bin/services up` there")
        return cls(config)

    @property
    def dir(self) -> Path:
        return self.config.dir

    def get(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ServiceError(f"no process named {name!r} (known: {', '.join(self.services)})") from None

    # --- one process ---------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Starts one process if it is not running (recovering what a dead one left) and waits for it."""
        service = self.get(name)
        self._prepare_files()
        service.preflight(listeners())
        service.start()

    def stop(self, name: str) -> None:
        self.get(name).stop()

    def kill(self, name: str) -> None:
        """SIGKILL the process alone, like a crash (a node's containerd and shims stay)."""
        self.get(name).kill()

    def is_running(self, name: str) -> bool:
        return self.get(name).is_running()

    def pid(self, name: str) -> int | None:
        return self.get(name).pid()

    # --- the whole cluster ---------------------------------------------------------------------

    def _prepare_files(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tls.ensure_tls(self.config.tls_dir)
        ensure_busybox_tar(self.dir)

    def preflight(self) -> None:
        for tool in TOOLS:
            if shutil.which(tool) is None:
                raise ServiceError(f"{tool} not found (run bin/setup)")
        ports = listeners()
        for service in self.services.values():
            service.preflight(ports)

    def up(self) -> None:
        """Starts what is not running, leaving alone what is; then writes DIR/env."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.preflight()
        self.config.save()
        self._prepare_files()
        run_parallel([(name, s.start) for name, s in self.services.items()])
        self.config.write_env()
        log(f"services: all up; source {self.config.env_file}")

    def down(self, purge: bool = False) -> None:
        """Stops every process of this directory, including what an earlier, bigger `up` left, and
        cleans up after them; with purge, deletes the directory and the PostgreSQL cluster."""
        if not self.dir.is_dir():
            log(f"services: nothing under {self.dir}")
            return
        services: dict[str, Service] = dict(self.services)
        services.pop("postgres", None)
        pg = Postgres(self.config)
        pg_ours = pg.dir.is_dir() and pg.owned()
        if pg.dir.is_dir():  # whether configured or not: what an earlier up left (stop() checks the owner)
            services["postgres"] = pg
        for i in self.config.leftover_node_indices():
            services.setdefault(f"node{i}", Node(self.config, i))
        run_parallel([(name, s.stop) for name, s in services.items()])
        umount_under(self.dir)
        if purge:
            if mounts_under(self.dir):
                raise ServiceError(f"mounts remain under {self.dir}; not deleting it")
            shutil.rmtree(self.dir)
            if pg_ours:
                shutil.rmtree(pg.dir, ignore_errors=True)
                log(f"services: down; deleted {self.dir} and {pg.dir}")
            else:
                log(f"services: down; deleted {self.dir}")
        else:
            log("services: down")

    def status(self) -> list[Status]:
        return [Status(name, s.pid(), s.detail()) for name, s in self.services.items()]

    def all_up(self) -> bool:
        return all(s.pid is not None for s in self.status())

    def reset(self) -> None:
        """Removes all containers of every node, all etcd keys and all Redis data."""
        if not self.all_up():
            raise ServiceError(f"not all services are up under {self.dir}")
        for i in self.config.node_indices():
            clients.docker_remove_all(self.config.node(i).socket)
        clients.etcd_delete_all(self.config.etcd_port)
        clients.redis_flushall(self.config.redis_port)
        log("services: reset (containers, etcd keys, redis data removed)")


# --- command line ------------------------------------------------------------------------------


@dataclass
class Args:
    command: str
    dir: str = DEFAULT_DIR
    nodes: str | None = None
    port_base: str | None = None
    postgres: bool | None = None
    purge: bool = False


class UsageError(Exception):
    """Print the usage, exit 2."""


def parse_args(argv: Sequence[str]) -> Args:
    if not argv:
        raise UsageError
    args = Args(argv[0])
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg in ("--dir", "--nodes", "--port-base"):
            if not rest or not rest[0]:
                raise ServiceError(f"{arg} needs a value")
            value = rest.pop(0)
            if arg == "--dir":
                args.dir = value
            elif arg == "--nodes":
                args.nodes = value
            else:
                args.port_base = value
        elif arg == "--purge":
            args.purge = True
        elif arg in ("--postgres", "--no-postgres"):
            args.postgres = arg == "--postgres"
        elif arg in ("-h", "--help"):
            raise UsageError
        else:
            raise ServiceError(f"unknown argument: {arg}")
    return args


def require_root() -> None:
    if os.geteuid() != 0:
        raise ServiceError("must run as root (dockerd, bridges, mounts)")


def print_status(cluster: Cluster) -> bool:
    """One line per process on stdout; True if all are up."""
    rows = cluster.status()
    for row in rows:
        print(row.line(), flush=True)
    return all(row.pid is not None for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0] in ("-h", "--help"):
            raise UsageError
        require_root()
        args = parse_args(argv)
        config = Config.load(args.dir, nodes=args.nodes, port_base=args.port_base, postgres=args.postgres)
        cluster = Cluster(config)
        if args.command == "up":
            cluster.up()
        elif args.command == "down":
            cluster.down(purge=args.purge)
        elif args.command == "status":
            return 0 if print_status(cluster) else 1
        elif args.command == "reset":
            cluster.reset()
        else:
            raise UsageError
    except UsageError:
        sys.stderr.write(USAGE)
        return 2
    except ServiceError as exc:
        log(f"services: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`bin/eru --ha …`: the whole stack doubled on this machine, loopback only, all state under var/ha-cluster
(PostgreSQL's cluster in /var/tmp/eru-pg-26000, as bin/services keeps it; the nodes' exec-roots in
/run/eru-26000-N), ports 26000-26299:

    26000           haproxy: the load balancer in front of the two web instances (what users call)
    26001, 26002    gunicorn web1, web2
    26011, 26012    gRPC cores grpc1, grpc2 (Eru's pb.CoreRPC; selfmon elects one leader through etcd)
    26032           PostgreSQL (single)
    26061..         dockerd node i (mutual TLS), bridge eb26000n<i>
    26079           Redis (single, append-only file, fsync every second)
    26090/26091, 26092/26093, 26094/26095   etcd members etcd1..etcd3 (client/peer)
    26101..         node i's agent /metrics

plus two Celery workers (worker1, worker2: the default and lambda queues), two heartbeat workers
(liveness1, liveness2), two beat launchers (beat1, beat2: `manage.py eru_beat`, of which the one
holding the etcd key /beat/active runs Celery beat) and one agent per node that knows both cores.

The restart policy: a supervisor (`python -m embedded.ha supervise`, started by `up`, stopped first by
`down`) starts again any of these processes that has been down for ERU_HA_RESTART_DELAY seconds
(default 5; `off`: no supervisor, and then `bin/eru --ha up` again starts what is not running). Nothing
restarts the supervisor itself but another `up`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from embedded import clients
from embedded.config import ROOT, Config, apply_env_file, resolve_dir
from embedded.procs import Daemon, ServiceError, listeners, log, stop, strays, wait_until
from embedded.services import Cluster, Service, Status, require_root
from embedded.stores import Redis

HA_DIR = "var/ha-cluster"
PORT_BASE = 26000
LB_PORT = PORT_BASE
WEB_PORTS = (PORT_BASE + 1, PORT_BASE + 2)
GRPC_PORTS = (PORT_BASE + 11, PORT_BASE + 12)
AGENT_API_BASE = PORT_BASE + 100
ETCD_MEMBERS = 3
VENV_BIN = ROOT / ".venv" / "bin"
PY = VENV_BIN / "python"
# Every Django process of this mode runs as `python -u …`: the default mode's needles
# (.venv/bin/gunicorn, .venv/bin/celery, python manage.py eru_grpc) never match them, nor ours its.
PYU = [str(PY), "-u"]
AGENT_HEARTBEAT = 10
BEAT_TTL = 10

USAGE = """\
bin/eru --ha up | down | status | logs [NAME] | token [USER]   (or ERU_HA=1 bin/eru …)

High availability on this machine, loopback only, all state under var/ha-cluster, ports 26000-26299:
haproxy on 127.0.0.1:26000 in front of web1/web2 (26001/26002), gRPC cores grpc1/grpc2 (26011/26012),
a 3-member etcd cluster (26090, 26092, 26094), PostgreSQL (26032), Redis with an append-only file
(26079), workers worker1/worker2 and liveness1/liveness2, beat launchers beat1/beat2 (one runs beat:
the holder of etcd's /beat/active), and an agent per node reporting to both cores.
ERU_NODES_COUNT (default 2) local dockerd nodes on 26061...

  up       start what is not running, then the supervisor, which starts again whatever goes down
           for ERU_HA_RESTART_DELAY seconds (default 5; off: no supervisor)
  down [--purge]   stop everything this mode started, by pid (--purge: then delete var/ha-cluster
           and its PostgreSQL cluster)
  status   every process, up or down (exit 0 iff all are up)
  logs     follow the logs (default all of them)
  token    print a new API token for USER (default: the admin user)
"""


def say(message: str) -> None:
    log(f"eru-ha: {message}")


@dataclass(frozen=True)
class HAConfig(Config):
    """The cluster of var/ha-cluster: three etcd members, PostgreSQL as the app's database."""

    def etcd_ports(self) -> list[tuple[int, int]]:
        """(client, peer) of each member."""
        return [(self.port_base + 90 + 2 * k, self.port_base + 91 + 2 * k) for k in range(ETCD_MEMBERS)]

    def etcd_endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{client}" for client, _ in self.etcd_ports())

    def env_text(self) -> str:
        lines = []
        for line in super().env_text().splitlines():
            if line.startswith("export ERU_ETCD_ENDPOINTS="):
                line = f"export ERU_ETCD_ENDPOINTS={self.etcd_endpoints()}"
            lines.append(line)
        lines.insert(-2, f"export ERU_DATABASE=postgres://postgres@127.0.0.1:{self.pg_port}/eru")
        return "\n".join(lines) + "\n"


class EtcdMember(Daemon):
    """Member i (1..3) of the etcd cluster; data in DIR/etcd<i>, kept across restarts (a restarted
    member rejoins with its own data)."""

    def __init__(self, config: HAConfig, index: int) -> None:
        ports = config.etcd_ports()
        client, peer = ports[index - 1]
        token = f"eru-ha-{config.port_base}"
        members = ",".join(f"{token}-{k + 1}=http://127.0.0.1:{p}" for k, (_, p) in enumerate(ports))
        self.port = client
        self.data = data = config.dir / f"etcd{index}"
        argv = [
            "etcd", "--name", f"{token}-{index}", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", members, "--initial-cluster-token", token, "--initial-cluster-state", "new",
        ]  # fmt: skip
        super().__init__(
            f"etcd{index}",
            argv=argv,
            needle=f"--data-dir {data} ",
            pidfile=config.dir / f"etcd{index}.pid",
            logfile=config.dir / f"etcd{index}.log",
            ports=[(client, "etcd client"), (peer, "etcd peer")],
        )
        self.ready_timeout = 30.0  # the first start waits for the other members (a quorum)

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        return clients.etcd_healthy(self.port)

    def detail(self) -> str:
        return f"127.0.0.1:{self.port}"

    def started_message(self, pid: int) -> str:
        return f"up on 127.0.0.1:{self.port} (pid {pid})"


class AofRedis(Redis):
    """Redis with an append-only file (fsync every second; a SIGKILL of Redis alone loses nothing
    it answered, since each write reaches the kernel before the reply)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        i = self.argv.index("--appendonly")
        self.argv[i + 1] = "yes"
        self.argv[i + 2 : i + 2] = ["--appendfsync", "everysec"]


class HACluster(Cluster):
    """etcd1..3, redis (AOF), postgres, node1..N."""

    def __init__(self, config: HAConfig) -> None:
        super().__init__(config)
        services: dict[str, Service] = {}
        for i in range(1, ETCD_MEMBERS + 1):
            services[f"etcd{i}"] = EtcdMember(config, i)
        services["redis"] = AofRedis(config)
        for name, service in self.services.items():
            if name not in ("etcd", "redis"):
                services[name] = service
        self.services = services


def ha_config(nodes: str | None = None) -> HAConfig:
    saved = Config.load(HA_DIR, nodes=nodes, port_base=PORT_BASE, postgres=True)
    return HAConfig(resolve_dir(HA_DIR), saved.nodes, PORT_BASE, True)


def run_dir() -> Path:
    return resolve_dir(HA_DIR) / "run"


# --- the Django processes ----------------------------------------------------------------------


def app_argv(name: str) -> list[str]:
    """name: web1, web2, grpc1, grpc2, worker1, worker2, liveness1, liveness2, beat1, beat2."""
    run = run_dir()
    role, index = name.rstrip("0123456789"), int(name[-1])
    celery = [*PYU, "-m", "celery", "-A", "eru_site"]
    quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if role == "web":
        return [
            *PYU, "-m", "gunicorn", "eru_site.wsgi", "--bind", f"127.0.0.1:{WEB_PORTS[index - 1]}",
            "--workers", "2", "--worker-class", "gthread", "--threads", "40", "--graceful-timeout", "5",
            "--access-logfile", "-", "-c", str(run / f"{name}.gunicorn.conf.py"),
        ]  # fmt: skip
    if role == "grpc":
        return [*PYU, str(ROOT / "manage.py"), "eru_grpc", "--address", f"127.0.0.1:{GRPC_PORTS[index - 1]}"]
    if role == "worker":
        return [
            *celery, "worker", "-Q", "celery,lambda", "--pool=threads", "-c", "8", *quiet,
            "-n", f"{name}@ha-{PORT_BASE}", "--loglevel", "INFO",
        ]  # fmt: skip
    if role == "liveness":
        return [
            *celery, "worker", "-Q", "heartbeat", "--pool=solo", *quiet,
            "-n", f"{name}@ha-{PORT_BASE}", "--loglevel", "INFO",
        ]  # fmt: skip
    if role == "beat":
        schedule = str(run / f"{name}-schedule")
        return [
            *PYU, str(ROOT / "manage.py"), "eru_beat", "--schedule", schedule,
            "--ttl", str(BEAT_TTL), "--ident", f"{name}@ha-{PORT_BASE}",
        ]  # fmt: skip
    raise ServiceError(f"unknown process: {name}")


def app_needle(name: str) -> str:
    role, index = name.rstrip("0123456789"), int(name[-1])
    pyu = " ".join(PYU)
    if role == "web":
        return f"{pyu} -m gunicorn eru_site.wsgi --bind 127.0.0.1:{WEB_PORTS[index - 1]} "
    if role == "grpc":
        return f"{pyu} {ROOT / 'manage.py'} eru_grpc --address 127.0.0.1:{GRPC_PORTS[index - 1]} "
    if role == "beat":
        return f"{pyu} {ROOT / 'manage.py'} eru_beat --schedule {run_dir() / f'{name}-schedule'} "
    return f" -n {name}@ha-{PORT_BASE} "


APP_NAMES = (
    "web1",
    "web2",
    "grpc1",
    "grpc2",
    "worker1",
    "worker2",
    "liveness1",
    "liveness2",
    "beat1",
    "beat2",
)


class HAApp(Daemon):
    """One Django process of this mode. Leftovers of ours (gunicorn workers whose master was killed,
    a beat whose launcher was killed) are stopped before a start and after a stop."""

    def __init__(self, name: str, env: Mapping[str, str] | None = None) -> None:
        run = run_dir()
        role = name.rstrip("0123456789")
        ports: list[tuple[int, str]] = []
        if role == "web":
            ports = [(WEB_PORTS[int(name[-1]) - 1], name)]
        elif role == "grpc":
            ports = [(GRPC_PORTS[int(name[-1]) - 1], name)]
        super().__init__(
            name,
            argv=app_argv(name),
            needle=app_needle(name),
            pidfile=run / f"{name}.pid",
            logfile=run / f"{name}.log",
            env=env,
            cwd=ROOT,
            ports=ports,
        )
        self.role = role
        self.ready_timeout = 30.0

    def reap_strays(self) -> None:
        found = strays(self.needle)
        if self.role == "beat":  # its beat child: named by the schedule file
            found += strays(f"beat --schedule {run_dir() / f'{self.name}-schedule'} ")
        if found:
            self.say(f"stopping leftover processes {' '.join(str(p.pid) for p in found)}")
            stop(found, self.stop_timeout)

    def prepare(self) -> None:
        self.reap_strays()
        if self.role == "web":
            conf = run_dir() / f"{self.name}.gunicorn.conf.py"
            conf.write_text(f'control_socket = "{run_dir()}/{self.name}.gunicorn.ctl"\n')
        for port, what in self.ports:
            if port in listeners():
                raise ServiceError(f"port {port} ({what}) is already in use by someone else")

    def ready(self) -> bool:
        if self.ports:
            return self.ports[0][0] in listeners()
        return True

    def cleanup(self) -> None:
        self.reap_strays()


class Haproxy(Daemon):
    """haproxy (Debian's) on 127.0.0.1:26000 in front of web1 and web2: health checks every second,
    a request whose connection failed is sent to the other server."""

    def __init__(self) -> None:
        run = run_dir()
        self.cfg = run / "haproxy.cfg"
        super().__init__(
            "lb",
            argv=["haproxy", "-f", str(self.cfg), "-db"],
            needle=f"haproxy -f {self.cfg} ",
            pidfile=run / "lb.pid",
            logfile=run / "lb.log",
            cwd=ROOT,
            ports=[(LB_PORT, "haproxy")],
        )

    def config_text(self) -> str:
        servers = "\n".join(
            f"    server web{i} 127.0.0.1:{port} check inter 1s fall 2 rise 1"
            for i, port in enumerate(WEB_PORTS, start=1)
        )
        return f"""\
# Written by bin/eru --ha up.
global
    maxconn 2000
    log stdout format raw local0 warning
defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 3
    retry-on conn-failure empty-response response-timeout
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    timeout tunnel 1h
frontend web
    bind 127.0.0.1:{LB_PORT}
    default_backend webs
backend webs
    balance roundrobin
    option httpchk GET /login/
    http-check expect status 200
{servers}
"""

    def prepare(self) -> None:
        if shutil.which("haproxy") is None:
            raise ServiceError("haproxy not found (run bin/setup)")
        self.cfg.write_text(self.config_text())
        stop(strays(self.needle), 5.0)

    def ready(self) -> bool:
        return LB_PORT in listeners()

    def detail(self) -> str:
        return f"http://127.0.0.1:{LB_PORT}/ -> {', '.join(f'127.0.0.1:{p}' for p in WEB_PORTS)}"


class HAAgent(Daemon):
    """The agent of one local node, reporting to both cores (it moves to the next on a failure)."""

    def __init__(self, node: str, socket: str, index: int, env: Mapping[str, str] | None = None) -> None:
        run = run_dir()
        cores = ",".join(f"127.0.0.1:{p}" for p in GRPC_PORTS)
        super().__init__(
            f"agent-{node}",
            argv=[
                *PYU,
                "-m",
                "nodeagent",
                "--core",
                cores,
                "--hostname",
                node,
                "--password-file",
                str(run / f"agent-{node}.secret"),
                "--docker-endpoint",
                socket,
                "--run-dir",
                str(run),
                "--heartbeat-interval",
                str(AGENT_HEARTBEAT),
                "--api-addr",
                f"127.0.0.1:{AGENT_API_BASE + index}",
            ],  # fmt: skip
            needle=f"-m nodeagent --core {cores} --hostname {node} ",
            pidfile=run / f"agent-{node}.pid",
            logfile=run / f"agent-{node}.log",
            env=env,
            cwd=ROOT,
        )


def local_nodes(env: Mapping[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in env.get("ERU_NODE_SOCKETS", "").split() if "=" in item)


def load_env(config: HAConfig) -> dict[str, str]:
    if not config.env_file.is_file():
        raise ServiceError(f"{config.env_file} is missing: run bin/eru --ha up")
    env = dict(os.environ)
    apply_env_file(config.env_file, env)
    env["ERU_PORT"] = str(LB_PORT)
    env["ERU_ADMIN_USER"] = env.get("ERU_ADMIN_USER", "admin")
    env["ERU_VAR_DIR"] = str(config.dir / "var")
    env["DJANGO_SETTINGS_MODULE"] = "eru_site.settings"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir() / "prometheus")
    env.pop("ERU_HA", None)  # bin/eru's switch, not the app's
    # Crashes are what this mode is for: the safety nets (reconcile: the re-send of lost work, the
    # adoption of what a dead worker made; the etcd mirror's repair) every 15 s instead of 120 s and
    # 300 s (eru_site/celery.py).
    env.setdefault("ERU_RECONCILE_INTERVAL", "15")
    return env


def apps(config: HAConfig, env: Mapping[str, str] | None = None) -> list[Daemon]:
    """Every process of this mode above the infrastructure, in the order they start."""
    if env is None:
        env = {}
        if config.env_file.is_file():
            apply_env_file(config.env_file, env)
    nodes = sorted(local_nodes(env).items())
    agents = [HAAgent(node, sock, i, env) for i, (node, sock) in enumerate(nodes, start=1)]
    web = [HAApp(n, env) for n in APP_NAMES if n.startswith("web")]
    rest = [HAApp(n, env) for n in APP_NAMES if not n.startswith("web")]
    return [*web, Haproxy(), *rest, *agents]


def manage(env: Mapping[str, str], *args: str, quiet: bool = False) -> None:
    import subprocess

    out = subprocess.DEVNULL if quiet else None
    argv = [str(PY), str(ROOT / "manage.py"), *args]
    code = subprocess.run(argv, env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out).returncode
    if code != 0:
        raise ServiceError(f"manage.py {args[0]} failed (exit {code})")


# --- commands ----------------------------------------------------------------------------------


@contextlib.contextmanager
def start_lock() -> Iterator[None]:
    """Held around every start, by `up` and by the supervisor: never two starts of one process."""
    run = run_dir()
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def restart_delay() -> float | None:
    """ERU_HA_RESTART_DELAY: seconds a process stays down before the supervisor starts it again
    (default 5); `off`: no supervisor."""
    value = os.environ.get("ERU_HA_RESTART_DELAY", "5").strip().lower()
    if value in ("off", "no", "none", ""):
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        raise ServiceError(f"ERU_HA_RESTART_DELAY must be seconds or off, not {value!r}") from None


class Supervisor(Daemon):
    """`python -m embedded.ha supervise`: the mode's restart policy. Every second it looks at every
    process of the mode (the infrastructure, then the rest, in their start order); one that has been
    down for ERU_HA_RESTART_DELAY seconds is started again through the same code as `up` (which
    cleans up what the dead one left). A start that fails is tried again after the same delay. It
    restarts only what `up` started, and `down` stops it first."""

    def __init__(self, env: Mapping[str, str] | None = None, delay: float = 5.0) -> None:
        run = run_dir()
        super().__init__(
            "supervisor",
            argv=[*PYU, "-m", "embedded.ha", "supervise", "--delay", str(delay)],
            needle=f"{' '.join(PYU)} -m embedded.ha supervise ",
            pidfile=run / "supervisor.pid",
            logfile=run / "supervisor.log",
            env=env,
            cwd=ROOT,
        )

    def detail(self) -> str:
        return f"restarts what is down; {self.logfile}"


def supervise(delay: float) -> int:
    """The supervisor's loop, until SIGTERM."""
    halt = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: halt.set())
    config = ha_config()
    cluster = HACluster(config)
    env = load_env(config)
    watched: list[tuple[str, Callable[[], bool], Callable[[], None]]] = [
        (name, service.is_running, functools.partial(cluster.start, name))
        for name, service in cluster.services.items()
    ]
    watched += [(p.name, p.is_running, p.start) for p in apps(config, env)]
    say(f"supervisor: watching {len(watched)} processes; restart after {delay:g} s down")
    down_since: dict[str, float] = {}
    while not halt.wait(1.0):
        for name, is_running, start in watched:
            if halt.is_set():
                break
            if is_running():
                down_since.pop(name, None)
                continue
            now = time.monotonic()
            since = down_since.setdefault(name, now)
            if now - since < delay:
                continue
            with start_lock():
                if is_running():
                    continue
                say(f"supervisor: {name} down for {now - since:.0f} s: starting it")
                try:
                    start()
                except Exception as exc:  # noqa: BLE001 — log it, try again after the delay
                    say(f"supervisor: {name}: start failed: {type(exc).__name__}: {exc}")
                    down_since[name] = time.monotonic()
                else:
                    down_since.pop(name, None)
    say("supervisor: stopped")
    return 0


def cmd_up() -> int:
    require_root()
    delay = restart_delay()
    with start_lock():
        config = ha_config(nodes=os.environ.get("ERU_NODES_COUNT", "2"))
        HACluster(config).up()
        env = load_env(config)
        start_apps(config, env)
        supervisor = Supervisor(env, delay or 0.0)
        if delay is None:
            supervisor.stop()  # an earlier up's, with a restart policy this one does not want
    if delay is not None:
        if supervisor.is_running() and supervisor.argv != supervisor.process().cmdline():  # type: ignore[union-attr]
            supervisor.stop()  # another delay asked: the new one's
        supervisor.start()
    if not wait_until(30, lambda: clients_web_answers(LB_PORT)):
        raise ServiceError(f"the load balancer does not answer on 127.0.0.1:{LB_PORT}")
    if not wait_until(30, lambda: beat_leader(config) is not None):
        say("warning: no beat launcher leads yet (bin/eru --ha logs beat1 beat2)")
    policy = (
        f"restarted {delay:g} s after they go down" if delay is not None else "not restarted (no supervisor)"
    )
    print(
        f"\nEru portal (HA) is up: http://127.0.0.1:{LB_PORT}/ (haproxy in front of web1, web2);\n"
        f"gRPC cores 127.0.0.1:{GRPC_PORTS[0]}, 127.0.0.1:{GRPC_PORTS[1]}; etcd {config.etcd_endpoints()}.\n"
        f"Crashed processes are {policy}.\n"
        "bin/eru --ha status · bin/eru --ha logs · bin/eru --ha down\n",
        flush=True,
    )
    return 0


def start_apps(config: HAConfig, env: Mapping[str, str]) -> None:
    run = run_dir()
    processes = apps(config, env)
    counts = run / "prometheus"
    if not any(p.pid() for p in processes):
        shutil.rmtree(counts, ignore_errors=True)
    counts.mkdir(exist_ok=True)
    say("migrate")
    manage(env, "migrate", "--noinput", quiet=True)
    say("collectstatic")
    manage(env, "collectstatic", "--noinput", quiet=True)
    say("eru_bootstrap")
    manage(env, "eru_bootstrap", "--agent-secrets", str(run))
    for p in processes:
        p.start()


def clients_web_answers(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/login/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def cmd_down(args: Sequence[str]) -> int:
    if any(arg != "--purge" for arg in args):
        raise ServiceError(f"unknown argument: {' '.join(args)}")
    require_root()
    config = ha_config()
    Supervisor().stop()  # first: it would start again what is stopped next
    for p in reversed(apps(config)):
        p.stop()
    HACluster(config).down(purge=bool(args))
    if args:  # also a cluster another checkout left (its rows' TLS material is under another key)
        shutil.rmtree(config.pg_dir, ignore_errors=True)
    return 0


def cmd_status() -> int:
    require_root()
    config = ha_config()
    ok = True
    rows = HACluster(config).status() + [Status(p.name, p.pid(), p.detail()) for p in apps(config)]
    for row in rows:
        print(row.line(), flush=True)
        ok = ok and row.pid is not None
    supervisor = Supervisor()
    print(Status(supervisor.name, supervisor.pid(), supervisor.detail()).line(), flush=True)
    leader = beat_leader(config)
    print(f"beat leader: {leader or '(none)'}", flush=True)
    return 0 if ok else 1


def beat_leader(config: HAConfig) -> str | None:
    for client_port, _ in config.etcd_ports():
        try:
            client = clients.etcd_client(client_port, timeout=1.0)
            try:
                value, _ = client.get("/eru/beat/active")
            finally:
                client.close()
        except Exception:  # noqa: BLE001 — this member is down: ask the next
            continue
        return value.decode() if value else None
    return None


def log_files(config: HAConfig) -> dict[str, Path]:
    """Every process' log, by name (etcd1, redis, postgres, node1, web1, …, supervisor)."""
    found: dict[str, Path] = {}
    for p in [*HACluster(config).services.values(), *apps(config), Supervisor()]:
        logfile = getattr(p, "logfile", None)
        if isinstance(logfile, Path):
            found[p.name] = logfile
    return found


def cmd_logs(names: Sequence[str]) -> int:
    every = log_files(ha_config())
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ServiceError(f"no process named {', '.join(unknown)} (known: {', '.join(every)})")
    chosen = [str(every[n]) for n in (names or every) if every[n].is_file()]
    if not chosen:
        raise ServiceError("no logs yet: run bin/eru --ha up")
    os.execvp("tail", ["tail", "-n", "50", "-F", *chosen])


def cmd_token(user: str | None) -> int:
    env = load_env(ha_config())
    argv = [str(PY), str(ROOT / "manage.py"), "eru_token", user or env["ERU_ADMIN_USER"]]
    os.execve(argv[0], argv, env)


def main(argv: Sequence[str]) -> int:
    command, args = (argv[0], list(argv[1:])) if argv else ("", [])
    os.chdir(ROOT)
    try:
        if command == "up":
            return cmd_up()
        if command == "down":
            return cmd_down(args)
        if command == "status":
            return cmd_status()
        if command == "logs":
            return cmd_logs(args)
        if command == "token":
            return cmd_token(args[0] if args else None)
        if command == "supervise" and len(args) == 2 and args[0] == "--delay":
            return supervise(float(args[1]))
    except ServiceError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

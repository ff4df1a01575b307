"""The `bin/eru` command line: the embedded cluster of var/cluster (see services) plus the Django
processes (gunicorn, a Celery worker, a heartbeat worker, Celery beat, the gRPC core) and one node
agent per local node, each one a Daemon found by its pidfile under var/cluster/run and recognised by
its command line."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from embedded import ha
from embedded.config import ROOT, Config, apply_env_file
from embedded.procs import Daemon, ServiceError, listeners, log, stop, strays, tail
from embedded.services import Cluster, Status, print_status, require_root

USAGE = """\
bin/eru — the embedded Eru cluster on this machine (like Eru's quickstart).

  bin/eru up       infrastructure (bin/services, var/cluster) + Django: migrate, collectstatic,
                   eru_bootstrap (admin user, pod `eru`, local nodes, their agent secrets),
                   then gunicorn, a Celery worker, a heartbeat worker, Celery beat, the gRPC core
                   (Eru's pb.CoreRPC on 127.0.0.1:5001) and one node agent per node.
                   Running it twice is harmless.
  bin/eru down     stop what `up` started (by pid), then the infrastructure
  bin/eru status   every process, up or down (exit 0 iff all are up)
  bin/eru logs [NAME]   follow the logs (web, worker, liveness, beat, grpc, agent-node1, …;
                   default all of them)
  bin/eru token [USER]  print a new API token for USER (default: the admin user)
  bin/eru --ha up|down|status|logs|token   (or ERU_HA=1 bin/eru …) the high-availability mode:
                   everything doubled (etcd: 3 members) under var/ha-cluster, ports 26000-26299;
                   `bin/eru --ha` alone prints its usage

Environment: ERU_NODES_COUNT (default 1), ERU_PORT (8000), ERU_GRPC_PORT (5001), ERU_ADMIN_USER (admin),
ERU_ADMIN_PASSWORD (else one is generated and printed once by eru_bootstrap).
"""

CLUSTER_DIR = ROOT / "var" / "cluster"
RUN = CLUSTER_DIR / "run"
PORT_BASE = 23700
VENV_BIN = ROOT / ".venv" / "bin"
PY = VENV_BIN / "python"
APPS = ("web", "worker", "lambdas", "liveness", "beat", "grpc")
AGENT_HEARTBEAT = 10  # s: the embedded agents' heartbeat interval (their lease: 30 s)


def say(message: str) -> None:
    log(f"eru: {message}")


class EruError(Exception):
    """Stop with this message (and exit code)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def web_port() -> int:
    return int(os.environ.get("ERU_PORT", "8000"))


def grpc_port() -> int:
    return int(os.environ.get("ERU_GRPC_PORT", "5001"))


def admin_user() -> str:
    return os.environ.get("ERU_ADMIN_USER", "admin")


def app_argv(name: str, port: int) -> list[str]:
    """The command line of each process. Each names this checkout's absolute paths, which is how a pid
    is recognised as ours."""
    celery = [str(VENV_BIN / "celery"), "-A", "eru_site"]
    quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    level = ["--loglevel", "INFO"]
    if name == "web":
        return [
            str(VENV_BIN / "gunicorn"), "eru_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            # Threads, not sync workers: a log follow holds one for minutes. ERU_STREAMS (64) of the
            # 80 may stream at once per process; the others answer pages.
            "--worker-class", "gthread", "--threads", "80",
            "--graceful-timeout", "5", "--access-logfile", "-", "-c", str(RUN / "gunicorn.conf.py"),
        ]  # fmt: skip
    if name == "worker":
        return [*celery, "worker", "--pool=threads", "-c", "8", *quiet, "-n", "worker@%h", *level]
    if name == "lambdas":  # each lambda holds a thread for its whole run: not the deploys' threads
        return [
            *celery,
            "worker",
            "-Q",
            "lambda",
            "--pool=threads",
            "-c",
            "16",
            *quiet,
            "-n",
            "lambdas@%h",
            *level,
        ]
    if name == "liveness":
        # The sweep (statuses and node heartbeats) has a queue and a worker of its own, so a big
        # deploy cannot delay it past the heartbeat lease and make every node look down.
        return [*celery, "worker", "-Q", "heartbeat", "--pool=solo", *quiet, "-n", "liveness@%h", *level]
    if name == "beat":
        return [*celery, "beat", "--schedule", str(RUN / "beat-schedule"), "--pidfile="]
    if name == "grpc":
        return [str(PY), str(ROOT / "manage.py"), "eru_grpc", "--address", f"127.0.0.1:{grpc_port()}"]
    raise EruError(f"unknown process: {name}")


def app_needle(name: str) -> str:
    """The part of the command line that identifies the process: an absolute path plus its role."""
    needles = {
        "web": f"{VENV_BIN}/gunicorn eru_site.wsgi ",
        "worker": f"{VENV_BIN}/celery -A eru_site worker --pool=threads ",
        "liveness": f"{VENV_BIN}/celery -A eru_site worker -Q heartbeat ",
        "lambdas": f"{VENV_BIN}/celery -A eru_site worker -Q lambda ",
        "grpc": f"{PY} {ROOT / 'manage.py'} eru_grpc ",
    }
    return needles.get(name, f"{VENV_BIN}/celery -A eru_site {name} ")


class App(Daemon):
    """One Django process. Leftovers of ours that no pidfile names (e.g. gunicorn workers whose
    master was killed: they keep the port) are stopped before a start and after a stop."""

    def __init__(self, name: str, env: Mapping[str, str] | None = None) -> None:
        self.port = web_port()
        super().__init__(
            name,
            argv=app_argv(name, self.port),
            needle=app_needle(name),
            pidfile=RUN / f"{name}.pid",
            logfile=RUN / f"{name}.log",
            env=env,
            cwd=ROOT,
        )

    def say(self, message: str) -> None:
        say(f"{self.name}: {message}")

    def reap_strays(self) -> None:
        found = strays(self.needle)
        if found:
            self.say(f"stopping leftover processes {' '.join(str(p.pid) for p in found)}")
            stop(found, self.stop_timeout)

    def prepare(self) -> None:
        self.reap_strays()
        if self.name == "web":
            # gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by every
            # checkout; keep ours under RUN. A config file, since older versions ignore unknown
            # settings there.
            (RUN / "gunicorn.conf.py").write_text(f'control_socket = "{RUN}/gunicorn.ctl"\n')
            if self.port in listeners():
                raise EruError(
                    f"port {self.port} (web) is already in use by someone else; set ERU_PORT to another port"
                )

        if self.name == "grpc" and grpc_port() in listeners():
            raise EruError(
                f"port {grpc_port()} (gRPC) is already in use by someone else; set ERU_GRPC_PORT to another"
            )

    def ready(self) -> bool:
        return self.name != "grpc" or grpc_port() in listeners()

    def cleanup(self) -> None:
        self.reap_strays()


class Agent(Daemon):
    """The node agent of one local node (python -m nodeagent), on the node's own docker socket, with
    the secret eru_bootstrap wrote for it."""

    def __init__(
        self, node: str, socket: str, env: Mapping[str, str] | None = None, *, api_port: int = 0
    ) -> None:
        core = f"127.0.0.1:{grpc_port()}"
        api = ["--api-addr", f"127.0.0.1:{api_port}"] if api_port else []
        super().__init__(
            f"agent-{node}",
            argv=[
                str(PY),
                "-m",
                "nodeagent",
                "--core",
                core,
                "--hostname",
                node,
                "--password-file",
                str(agent_secret_file(node)),
                "--docker-endpoint",
                socket,
                "--run-dir",
                str(RUN),
                "--heartbeat-interval",
                str(AGENT_HEARTBEAT),
                *api,
            ],  # fmt: skip
            needle=f"{PY} -m nodeagent --core {core} --hostname {node} ",
            pidfile=RUN / f"agent-{node}.pid",
            logfile=RUN / f"agent-{node}.log",
            env=env,
            cwd=ROOT,
        )


def agent_api_base() -> int:
    """The agents' /metrics ports: node1's is this + 1, node2's + 2, …; 0: off."""
    return int(os.environ.get("ERU_AGENT_API_PORT_BASE", "5100"))


def agent_secret_file(node: str) -> Path:
    return RUN / f"agent-{node}.secret"


def local_nodes(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The embedded nodes and their docker sockets (ERU_NODE_SOCKETS of var/cluster/env)."""
    if env is None:
        env_file = CLUSTER_DIR / "env"
        if not env_file.is_file():
            return {}
        found: dict[str, str] = {}
        apply_env_file(env_file, found)
        env = found
    return dict(item.split("=", 1) for item in env.get("ERU_NODE_SOCKETS", "").split() if "=" in item)


def apps(env: Mapping[str, str] | None = None) -> list[Daemon]:
    """Every process of ours, in the order they start: the Django ones, then the agents."""
    base = agent_api_base()
    agents = [
        Agent(node, socket, env, api_port=base + i if base else 0)
        for i, (node, socket) in enumerate(sorted(local_nodes(env).items()), start=1)
    ]
    return [*(App(name, env) for name in APPS), *agents]


def cluster(nodes: str | None = None, port_base: int | None = None) -> Cluster:
    """var/cluster; N and P as given, else as saved (PostgreSQL only if an earlier up asked for it)."""
    return Cluster(Config.load(CLUSTER_DIR, nodes=nodes, port_base=port_base))


def load_env() -> dict[str, str]:
    """This process' environment plus var/cluster/env, as `source`-ing it would give, plus the app's
    settings."""
    env_file = CLUSTER_DIR / "env"
    if not env_file.is_file():
        raise EruError(f"{env_file} is missing: run bin/eru up")
    env = dict(os.environ)
    apply_env_file(env_file, env)
    env.setdefault("ERU_DB", str(ROOT / "var" / "eru.sqlite3"))
    env["ERU_PORT"] = str(web_port())
    env["ERU_ADMIN_USER"] = admin_user()
    env["DJANGO_SETTINGS_MODULE"] = "eru_site.settings"
    # prometheus-client's multiprocess mode: every web and worker process counts into files here, and
    # /metrics adds them up, so any web process gives the same answer.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(RUN / "prometheus")
    (RUN / "prometheus").mkdir(parents=True, exist_ok=True)  # every Django process counts into it
    return env


def manage(env: Mapping[str, str], *args: str, quiet: bool = False) -> None:
    argv = [str(PY), str(ROOT / "manage.py"), *args]
    out = subprocess.DEVNULL if quiet else None
    code = subprocess.run(
        argv, env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, check=False
    ).returncode
    if code != 0:
        raise EruError(f"manage.py {args[0]} failed (exit {code})", code)


def django_prepare(env: Mapping[str, str]) -> None:
    say("migrate")
    manage(env, "migrate", "--noinput")
    say("collectstatic")
    manage(env, "collectstatic", "--noinput", quiet=True)
    say("eru_bootstrap")
    manage(env, "eru_bootstrap", "--agent-secrets", str(RUN))


def web_answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True  # any HTTP answer, even an error page, means gunicorn is serving
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_for_web(web: App) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if web_answers(web.port):
            return
        if not web.is_running():
            break
        time.sleep(0.1)
    log(tail(web.logfile, 30))
    raise EruError(f"the web server does not answer on 127.0.0.1:{web.port} (log: {web.logfile})")


def welcome(port: int, user: str) -> str:
    return f"""
Eru portal is up: http://127.0.0.1:{port}/   (admin user: {user}; its password was printed by
eru_bootstrap the first time, or is ERU_ADMIN_PASSWORD)

Things to try:
  1. Open http://127.0.0.1:{port}/ and log in as {user}: pod "eru" and its node(s) are there.
  2. Call the API with a token:
       TOKEN=$(bin/eru token)
       curl -H "Authorization: Token $TOKEN" http://127.0.0.1:{port}/api/nodes/
  3. Read the OpenAPI schema: curl http://127.0.0.1:{port}/api/schema/
  4. Each node's agent reports over Eru's gRPC protocol (127.0.0.1:{grpc_port()}): bin/eru logs agent-node1
  5. Metrics for Prometheus: curl -H "Authorization: Token $TOKEN" http://127.0.0.1:{port}/metrics
     (the core's) and curl http://127.0.0.1:{agent_api_base() + 1}/metrics (node1's agent)
  6. Eru's own erucli, unchanged, drives this core over gRPC:
       erucli -e 127.0.0.1:{grpc_port()} -u {user} -p "$TOKEN" pod nodes eru

bin/eru status · bin/eru logs · bin/eru down
"""


# --- commands ----------------------------------------------------------------------------------


def cmd_up() -> int:
    require_root()
    cluster(nodes=os.environ.get("ERU_NODES_COUNT", "1"), port_base=PORT_BASE).up()
    env = load_env()
    processes = apps(env)
    counts = RUN / "prometheus"
    if not any(app.pid() for app in processes):  # counters start again with a fresh set of processes
        shutil.rmtree(counts, ignore_errors=True)
        counts.mkdir()
    django_prepare(env)
    for app in processes:
        app.start()
    wait_for_web(next(p for p in processes if isinstance(p, App) and p.name == "web"))
    print(welcome(web_port(), admin_user()), end="", flush=True)
    return 0


def cmd_down() -> int:
    for app in reversed(apps()):
        app.stop()
    require_root()
    cluster().down()
    return 0


def cmd_status() -> int:
    ok = True
    try:
        require_root()
        ok = print_status(cluster())
    except ServiceError as exc:
        log(f"services: error: {exc}")
        ok = False
    for app in apps():
        row = Status(app.name, app.pid(), app.detail())
        print(row.line(), flush=True)
        ok = ok and row.pid is not None
    return 0 if ok else 1


def cmd_logs(names: Sequence[str]) -> int:
    every = [app.name for app in apps()]
    files = [str(RUN / f"{name}.log") for name in (names or every) if (RUN / f"{name}.log").is_file()]
    if not files:
        raise EruError(f"no logs under {RUN} yet")
    os.execvp("tail", ["tail", "-n", "50", "-F", *files])


def cmd_token(user: str | None) -> int:
    env = load_env()
    argv = [str(PY), str(ROOT / "manage.py"), "eru_token", user or admin_user()]
    os.execve(argv[0], argv, env)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--ha":
        return ha.main(argv[1:])
    if os.environ.get("ERU_HA", "") == "1":
        return ha.main(argv)
    command, args = (argv[0], list(argv[1:])) if argv else ("", [])
    os.chdir(ROOT)
    try:
        if command == "up":
            return cmd_up()
        if command == "down":
            return cmd_down()
        if command == "status":
            return cmd_status()
        if command == "logs":
            return cmd_logs(args)
        if command == "token":
            return cmd_token(args[0] if args else None)
    except EruError as exc:
        say(f"error: {exc}")
        return exc.code
    except ServiceError as exc:
        log(f"services: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""etcd (client P+90, peer P+91, data DIR/etcd) and Redis (P+79, no persistence, DIR/redis)."""

from __future__ import annotations

from embedded import clients
from embedded.config import Config
from embedded.procs import Daemon


class Etcd(Daemon):
    def __init__(self, config: Config) -> None:
        self.port = port = config.etcd_port
        peer = f"http://127.0.0.1:{config.etcd_peer_port}"
        name = f"eru-{config.port_base}"
        data = config.dir / "etcd"
        argv = [
            "etcd", "--name", name, "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{port}",
            "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}",
        ]  # fmt: skip
        super().__init__(
            "etcd",
            argv=argv,
            needle=f"--data-dir {data} ",
            pidfile=config.dir / "etcd.pid",
            logfile=config.dir / "etcd.log",
            ports=[(port, "etcd client"), (config.etcd_peer_port, "etcd peer")],
        )
        self.data = data

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        return clients.etcd_healthy(self.port)

    def detail(self) -> str:
        return f"127.0.0.1:{self.port}"

    def not_ready_message(self) -> str:
        return f"etcd did not become healthy on 127.0.0.1:{self.port} (log: {self.logfile})"

    def started_message(self, pid: int) -> str:
        return f"up on 127.0.0.1:{self.port} (pid {pid})"


class Redis(Daemon):
    ready_timeout = 5.0

    def __init__(self, config: Config) -> None:
        self.port = port = config.redis_port
        self.data = data = config.dir / "redis"
        # set-proc-title no keeps our argv (with DIR in it) in /proc/PID/cmdline, for the ours-check.
        # Not daemonized: spawned like everything else, its log on stdout appended to redis.log.
        argv = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(data), "--pidfile", str(data / "redis.pid"), "--logfile", "",
            "--set-proc-title", "no",
        ]  # fmt: skip
        super().__init__(
            "redis",
            argv=argv,
            needle=f"--dir {data} ",
            pidfile=data / "redis.pid",
            logfile=data / "redis.log",
            ports=[(port, "redis")],
        )

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        return clients.redis_ping(self.port)

    def detail(self) -> str:
        return f"127.0.0.1:{self.port}"

    def not_ready_message(self) -> str:
        return f"redis did not answer on 127.0.0.1:{self.port}"

    def started_message(self, pid: int) -> str:
        return f"up on 127.0.0.1:{self.port} (pid {pid})"

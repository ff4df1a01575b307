"""Where a cluster lives and what it is called: directory, ports, names, services.conf, the env file."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from embedded.procs import ServiceError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = "var/cluster"
DEFAULT_NODES = 1
DEFAULT_PORT_BASE = 23700
MAX_NODES = 18  # P+60+i must stay below redis' P+79
IMAGE = "eru/busybox:latest"
SOCKET_PATH_MAX = 104  # sun_path is 108 bytes; keep the margin the bash version kept


def resolve_dir(directory: str | Path) -> Path:
    """A relative DIR is taken from the repository root; the result is the real path (like
    `realpath -m`), since mountinfo and /proc/PID/cmdline compare against it."""
    path = Path(directory)
    if not path.is_absolute():
        path = ROOT / path
    return Path(os.path.realpath(path))


@dataclass(frozen=True)
class NodeLayout:
    """Everything named after node i of a cluster."""

    index: int
    port_base: int
    cluster_dir: Path

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def port(self) -> int:
        return self.port_base + 60 + self.index

    @property
    def dir(self) -> Path:
        return self.cluster_dir / f"n{self.index}"

    @property
    def data_root(self) -> Path:
        return self.dir / "data"

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def bridge(self) -> str:
        return f"eb{self.port_base}n{self.index}"

    @property
    def exec_root(self) -> Path:
        return Path(f"/run/eru-{self.port_base}-{self.index}")

    @property
    def cgroup(self) -> str:
        return f"eru-{self.port_base}-n{self.index}"

    @property
    def addr(self) -> str:
        return f"10.{(self.port_base // 100) % 256}.{self.index}.1"

    @property
    def needle(self) -> str:
        """What our dockerd's command line contains (see procs.is_ours)."""
        return f"--data-root {self.data_root} "


@dataclass(frozen=True)
class Config:
    """One cluster: its directory, node count, port base and whether it has PostgreSQL."""

    dir: Path
    nodes: int = DEFAULT_NODES
    port_base: int = DEFAULT_PORT_BASE
    postgres: bool = False

    @property
    def etcd_port(self) -> int:
        return self.port_base + 90

    @property
    def etcd_peer_port(self) -> int:
        return self.port_base + 91

    @property
    def redis_port(self) -> int:
        return self.port_base + 79

    @property
    def pg_port(self) -> int:
        return self.port_base + 32

    @property
    def pg_dir(self) -> Path:
        # Outside DIR: the postgres user must reach its cluster, and a checkout under /root (mode 700)
        # would not let it. Resolved, since leftover backends are found by their working directory.
        return Path(os.path.realpath("/var/tmp")) / f"eru-pg-{self.port_base}"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def conf_file(self) -> Path:
        return self.dir / "services.conf"

    @property
    def env_file(self) -> Path:
        return self.dir / "env"

    def node(self, index: int) -> NodeLayout:
        return NodeLayout(index, self.port_base, self.dir)

    def node_indices(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    def leftover_node_indices(self) -> list[int]:
        """The configured nodes plus any n<i> directory an earlier, bigger `up` left behind."""
        found = set(self.node_indices())
        if self.dir.is_dir():
            for entry in self.dir.iterdir():
                match = re.fullmatch(r"n([0-9]+)", entry.name)
                if match and entry.is_dir():
                    found.add(int(match.group(1)))
        return sorted(found)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        nodes: str | int | None = None,
        port_base: str | int | None = None,
        postgres: bool | None = None,
    ) -> Config:
        """N, P and PostgreSQL: as given, else what the last `up` saved, else the defaults."""
        path = resolve_dir(directory)
        saved = read_conf(path / "services.conf")
        nodes_s = str(nodes) if nodes is not None else saved.get("NODES") or str(DEFAULT_NODES)
        port_s = str(port_base) if port_base is not None else saved.get("PORT_BASE") or str(DEFAULT_PORT_BASE)
        if postgres is None:
            postgres = saved.get("POSTGRES") == "1"
        if not re.fullmatch(r"[0-9]+", nodes_s) or not 1 <= int(nodes_s) <= MAX_NODES:
            raise ServiceError(f"--nodes must be 1..{MAX_NODES}")
        if not re.fullmatch(r"[0-9]+", port_s) or not 1024 <= int(port_s) <= 65400:
            raise ServiceError("--port-base must be 1024..65400")
        return cls(path, int(nodes_s), int(port_s), postgres)

    def save(self) -> None:
        self.conf_file.write_text(
            f"NODES={self.nodes}\nPORT_BASE={self.port_base}\nPOSTGRES={int(self.postgres)}\n"
        )

    def env_text(self) -> str:
        """DIR/env, for the app and the tests to source."""
        nodes = " ".join(f"{n.name}=tcp://127.0.0.1:{n.port}" for n in map(self.node, self.node_indices()))
        sockets = " ".join(f"{n.name}=unix://{n.socket}" for n in map(self.node, self.node_indices()))
        lines = [
            f"# Written by bin/services up --dir {self.dir}; source it.",
            f"export ERU_ETCD_ENDPOINTS=127.0.0.1:{self.etcd_port}",
            f"export ERU_REDIS_URL=redis://127.0.0.1:{self.redis_port}/0",
            f'export ERU_TLS_DIR="{self.tls_dir}"',
            f'export ERU_NODES="{nodes}"',
            f'export ERU_NODE_SOCKETS="{sockets}"',
            f"export ERU_IMAGE={IMAGE}",
        ]
        if self.postgres:
            lines.append(f"export ERU_PG_URL=postgres://postgres@127.0.0.1:{self.pg_port}/eru")
        lines += [
            "# These make python-requests (docker-py) ignore the CA given to docker.tls.TLSConfig.",
            "unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE",
        ]
        return "\n".join(lines) + "\n"

    def write_env(self) -> None:
        tmp = self.dir / "env.tmp"
        tmp.write_text(self.env_text())
        tmp.replace(self.env_file)


def read_conf(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of services.conf (the first of each key wins, as `sed -n` + `$(...)` did for
    a single line); empty if the file is missing."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("NODES", "PORT_BASE", "POSTGRES"):
            values.setdefault(key, value)
    return values


def apply_env_file(path: Path, env: dict[str, str]) -> None:
    """Applies the `export K=V` and `unset A B` lines of an env file written by write_env to env, as
    sourcing it in bash would."""
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if sep:
                    env[key] = value
        elif words[0] == "unset":
            for key in words[1:]:
                env.pop(key, None)

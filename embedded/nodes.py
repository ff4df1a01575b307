"""A dockerd "node": its bridge, its daemon, what a dead one leaves behind (containerd, shims,
containers, mounts, sockets, cgroups) and the busybox image every node gets."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil

from embedded import clients
from embedded.config import IMAGE, SOCKET_PATH_MAX, Config, NodeLayout
from embedded.procs import (
    Daemon,
    ServiceError,
    holds,
    listeners,
    log,
    ours,
    read_pid,
    run,
    send,
    stop,
    strays,
    wait_gone,
    wait_until,
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
DOCKER_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT")

# --- mounts ------------------------------------------------------------------------------------


def decode_mount_path(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points at or under path, deepest first (mountinfo field 5)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    prefix = str(path).rstrip("/")
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = decode_mount_path(fields[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.add(point)
    return sorted(found, key=len, reverse=True)


def umount_under(path: Path) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# --- cgroups -----------------------------------------------------------------------------------


def cgroup_dirs(name: str) -> list[Path]:
    """The node's cgroup parent in every hierarchy: /sys/fs/cgroup/<controller>/<name> (v1) or
    /sys/fs/cgroup/<name> (v2)."""
    found = [d for d in CGROUP_ROOT.glob(f"*/{name}") if d.is_dir()]
    if (CGROUP_ROOT / name / "cgroup.procs").is_file():
        found.append(CGROUP_ROOT / name)
    return found


def cgroup_pids(name: str) -> Iterator[int]:
    """The pids in the node's cgroup parent: only its containers' processes live there."""
    for top in cgroup_dirs(name):
        for procs_file in top.rglob("cgroup.procs"):
            try:
                pids = [int(pid) for pid in procs_file.read_text().split()]
            except (OSError, ValueError):
                continue  # the cgroup may vanish under us (dockerd cleans it up as the container dies)
            yield from pids


def kill_containers(name: str) -> None:
    """SIGKILL every process in the node's cgroup parent."""
    for pid in cgroup_pids(name):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def remove_cgroups(name: str) -> None:
    """Removes the (empty) cgroup directories, deepest first."""
    for top in cgroup_dirs(name):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# --- bridge ------------------------------------------------------------------------------------


def address_holder(addr: str, bridge: str) -> str | None:
    """The interface other than bridge that has addr, if any."""
    for iface, addrs in psutil.net_if_addrs().items():
        if iface != bridge and any(a.family == socket.AF_INET and a.address == addr for a in addrs):
            return iface
    return None


def require_free_addr(layout: NodeLayout) -> None:
    other = address_holder(layout.addr, layout.bridge)
    if other:
        raise ServiceError(
            f"address {layout.addr} ({layout.name}) is already on interface {other}; pick another --port-base"
        )


def bridge_exists(bridge: str) -> bool:
    return Path("/sys/class/net", bridge).exists()


def ensure_bridge(layout: NodeLayout) -> None:
    br = layout.bridge
    require_free_addr(layout)
    if not bridge_exists(br):
        run(["ip", "link", "add", br, "type", "bridge"])
    addrs = psutil.net_if_addrs().get(br, [])
    if not any(
        a.family == socket.AF_INET and a.address == layout.addr and a.netmask == "255.255.255.0"
        for a in addrs
    ):
        run(["ip", "addr", "flush", "dev", br])
        run(["ip", "addr", "add", f"{layout.addr}/24", "dev", br])
    run(["ip", "link", "set", br, "up"])


def delete_bridge(bridge: str) -> None:
    if bridge_exists(bridge):
        run(["ip", "link", "del", bridge])


# --- busybox image -----------------------------------------------------------------------------


def busybox_binary() -> Path:
    result = run(["dpkg", "-L", "busybox-static"], check=False)
    for line in result.stdout.splitlines():
        if line.endswith("/bin/busybox") and Path(line).is_file():
            return Path(line)
    raise ServiceError("busybox-static is not installed (run bin/setup)")


def _tar_entry(
    tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"", link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, 0, 0, link
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data else None)


def ensure_busybox_tar(cluster_dir: Path) -> Path:
    """DIR/busybox.tar: a root file system of busybox-static, one symlink per applet, passwd and group."""
    target = cluster_dir / "busybox.tar"
    if target.is_file() and target.stat().st_size > 0:
        return target
    binary = busybox_binary()
    applets = run([str(binary), "--list"]).stdout.split()
    fd, tmp_name = tempfile.mkstemp(prefix="busybox.tar.", dir=cluster_dir)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for d in ("bin", "etc", "root", "tmp", "proc", "sys", "dev"):
                _tar_entry(tar, d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
            _tar_entry(tar, "bin/busybox", tarfile.REGTYPE, 0o755, binary.read_bytes())
            for applet in applets:
                if applet != "busybox":
                    _tar_entry(tar, f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
            passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            _tar_entry(tar, "etc/passwd", tarfile.REGTYPE, 0o644, passwd)
            _tar_entry(tar, "etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


# --- the node ----------------------------------------------------------------------------------


class Node(Daemon):
    """dockerd of node i, with mutual TLS on 127.0.0.1:P+60+i and its unix socket under DIR/n<i>."""

    ready_timeout = 20.0

    def __init__(self, config: Config, index: int) -> None:
        self.config = config
        self.layout = n = config.node(index)
        tls = config.tls_dir
        argv = [
            "dockerd", "--config-file", str(n.dir / "daemon.json"),
            "--host", f"unix://{n.socket}", "--host", f"tcp://127.0.0.1:{n.port}",
            "--tlsverify", "--tlscacert", str(tls / "ca.pem"),
            "--tlscert", str(tls / "server-cert.pem"), "--tlskey", str(tls / "server-key.pem"),
            "--data-root", str(n.data_root), "--exec-root", str(n.exec_root),
            "--pidfile", str(n.dir / "docker.pid"),
            "--bridge", n.bridge, "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--cgroup-parent", f"/{n.cgroup}", "--shutdown-timeout", "2", "--label", f"eru.node={n.name}",
            "--live-restore",  # containers outlive their dockerd: a restart or a crash of it kills none
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in DOCKER_ENV}
        super().__init__(
            n.name,
            argv=argv,
            needle=n.needle,
            pidfile=n.dir / "dockerd.pid",
            logfile=n.dir / "dockerd.log",
            env=env,
            ports=[(n.port, f"dockerd {n.name}")],
        )

    def detail(self) -> str:
        return f"tcp://127.0.0.1:{self.layout.port} bridge {self.layout.bridge}"

    def preflight(self, ports: Mapping[int, list[str]]) -> None:
        if self.is_running():
            return
        port = self.layout.port
        if port in ports and self.survivors():
            # A dockerd that was just killed: its containerd held the listening socket too and dies
            # after it (parent-death signal). Give it a moment before calling the port taken.
            wait_until(5.0, lambda: port not in listeners())
            ports = listeners()
        super().preflight(ports)
        require_free_addr(self.layout)
        if len(str(self.layout.socket).encode()) >= SOCKET_PATH_MAX:
            raise ServiceError(f"socket path too long: {self.layout.socket}")

    def ready(self) -> bool:
        return clients.docker_ping(self.layout.socket)

    def not_ready_message(self) -> str:
        return f"{self.name}: dockerd did not answer /_ping (log: {self.logfile})"

    def started_message(self, pid: int) -> str:
        return f"up on tcp://127.0.0.1:{self.layout.port} (pid {pid}, bridge {self.layout.bridge})"

    def prepare(self) -> None:
        n = self.layout
        n.dir.mkdir(parents=True, exist_ok=True)
        alive = self.survivors()
        if alive:
            # dockerd died and its containers did not (live-restore): the new dockerd takes them back
            # from their shims, so the exec-root and everything that runs stay as they are.
            # Its containerd dies with it (a parent-death signal), but not at once, and may linger as
            # a zombie nobody reaps: a new dockerd that finds its pid would wait on it and time out.
            # So it is stopped and its pidfile goes: dockerd starts a new one, the shims outlive both.
            self.stop_dead_dockerd()
            (n.exec_root / "containerd" / "containerd.pid").unlink(missing_ok=True)
            self.say(f"{len(alive)} process(es) of its containers still run: keeping {n.exec_root}")
        elif not self.reap():
            raise ServiceError(f"{self.name}: {n.exec_root} is in use by a dockerd of another directory")
        ensure_bridge(n)
        n.data_root.mkdir(parents=True, exist_ok=True)
        n.exec_root.mkdir(parents=True, exist_ok=True)
        (n.dir / "daemon.json").write_text(f'{{\n  "deprecated-key-path": "{n.dir}/key.json"\n}}\n')

    def after_start(self) -> None:
        """Every node has the busybox image, imported from DIR/busybox.tar (never pulled)."""
        sock = self.layout.socket
        if clients.docker_has_image(sock, IMAGE):
            return
        tarball = ensure_busybox_tar(self.config.dir)
        clients.docker_import(sock, tarball, IMAGE, ['CMD ["/bin/sh"]'])
        self.say(f"imported {IMAGE}")

    def stop(self) -> None:
        proc = self.process()
        if proc is not None:
            # dockerd gives each container its own stop timeout (10 s unless created with another)
            # whatever --shutdown-timeout says; after 2 s we do what it would do at the end: SIGKILL
            # the containers.
            send([proc], signal.SIGTERM)
            if wait_gone([proc], 2.0):
                kill_containers(self.layout.cgroup)
            stop([proc], 10.0)
            self.say(f"stopped (pid {proc.pid})")
        if self.reap():
            delete_bridge(self.layout.bridge)
        self.pidfile.unlink(missing_ok=True)

    def survivors(self) -> list[psutil.Process]:
        """What still runs of a dead dockerd: its containerd, the shims and the container processes
        (in the node's cgroup parent). Empty when nothing of the node is alive."""
        if self.foreign_dockerd():
            return []
        found = strays(f"{self.layout.exec_root}/")
        pids = {p.pid for p in found}
        for pid in cgroup_pids(self.layout.cgroup):
            if pid not in pids:
                with contextlib.suppress(psutil.Error):
                    found.append(psutil.Process(pid))
                    pids.add(pid)
        return found

    def foreign_dockerd(self) -> list[psutil.Process]:
        """dockerds of another directory on our exec-root (same --port-base): its leftovers are not ours."""
        on_ours = strays(f"--exec-root {self.layout.exec_root} ")
        return [p for p in on_ours if not holds(p, self.needle)]

    def reap(self) -> bool:
        """Kills what a dead node left behind: a dockerd of ours that no pidfile names, its containerd,
        shims and container processes (the cgroup parent is ours), mounts, stale sockets and
        pidfiles, and the exec-root. False, with nothing touched, if a dockerd of another directory
        uses the same exec-root."""
        n = self.layout
        foreign = self.foreign_dockerd()
        if foreign:
            pids = " ".join(str(p.pid) for p in foreign)
            log(f"{self.name}: {n.exec_root} is used by dockerd {pids} of another directory; left alone")
            return False
        self.stop_dead_dockerd()
        stop(strays(f"{n.exec_root}/"), 2.0)  # the shims
        kill_containers(n.cgroup)
        umount_under(n.dir)
        umount_under(n.exec_root)
        shutil.rmtree(n.exec_root, ignore_errors=True)
        remove_cgroups(n.cgroup)
        return True

    def stop_dead_dockerd(self) -> None:
        """A dockerd of ours that no pidfile names (if any), its containerd, their socket and pidfile."""
        n = self.layout
        stop(strays(self.needle), 10.0)
        containerd = ours(read_pid(n.exec_root / "containerd" / "containerd.pid"), f"{n.exec_root}/")
        if containerd is not None:
            stop([containerd], 5.0)
        n.socket.unlink(missing_ok=True)
        (n.dir / "docker.pid").unlink(missing_ok=True)

"""embedded.procs against processes spawned here: the ours-check, pidfiles, detaching, logs, stopping,
strays, ports. No daemons needed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from embedded import procs
from embedded.procs import Daemon, ServiceError

SLEEPER = "import time; time.sleep(60)"
IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def sleeper_argv(data_dir: Path, code: str = SLEEPER) -> list[str]:
    """A process whose command line names data_dir the way etcd's does (--data-dir DIR/etcd)."""
    return [sys.executable, "-c", code, "--data-dir", str(data_dir / "etcd")]


def needle(data_dir: Path) -> str:
    return f"--data-dir {data_dir / 'etcd'} "


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[int]]:
    """Pids spawned by a test, SIGKILLed at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        proc = procs.ours(pid, str(tmp_path))
        if proc is not None:
            procs.send([proc], signal.SIGKILL)
            procs.wait_gone([proc], 5)


def spawn(tmp_path: Path, spawned: list[int], code: str = SLEEPER, name: str = "p") -> int:
    pid = procs.spawn(sleeper_argv(tmp_path, code), tmp_path / f"{name}.pid", tmp_path / f"{name}.log")
    spawned.append(pid)
    return pid


# --- the ours-check ------------------------------------------------------------------------------


def test_own_process_is_ours_and_a_neighbour_directory_is_not(tmp_path: Path, spawned: list[int]) -> None:
    pid = spawn(tmp_path, spawned)
    assert procs.is_ours(pid, needle(tmp_path))
    # A neighbour cluster whose directory only starts like ours (sup1 / sup10), or a sibling dir.
    assert not procs.is_ours(pid, needle(Path(str(tmp_path)[:-1])))
    assert not procs.is_ours(pid, needle(tmp_path / "other"))
    assert not procs.is_ours(pid, f"--data-dir {tmp_path}/etc ")


def test_a_neighbour_with_a_longer_directory_never_matches(tmp_path: Path, spawned: list[int]) -> None:
    neighbour = Path(str(tmp_path) + "0")
    neighbour.mkdir()
    pid = procs.spawn(sleeper_argv(neighbour), tmp_path / "n.pid", tmp_path / "n.log")
    spawned.append(pid)
    assert procs.is_ours(pid, needle(neighbour))
    assert not procs.is_ours(pid, needle(tmp_path))


def test_pidfile_naming_someone_else_is_not_ours(tmp_path: Path) -> None:
    pidfile = tmp_path / "etcd.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # a live pid, but not a process of this directory
    assert procs.running(pidfile, needle(tmp_path)) is None
    pidfile.write_text("1\n")
    assert procs.running(pidfile, needle(tmp_path)) is None
    pidfile.write_text("garbage\n")
    assert procs.running(pidfile, needle(tmp_path)) is None
    assert procs.running(tmp_path / "missing.pid", needle(tmp_path)) is None


def test_pidfile_reads_digits_only(tmp_path: Path) -> None:
    (tmp_path / "p").write_text(" 1234\n")
    assert procs.read_pid(tmp_path / "p") == 1234
    (tmp_path / "p").write_text("")
    assert procs.read_pid(tmp_path / "p") is None


def test_a_stale_pidfile_after_the_process_died_is_not_ours(tmp_path: Path, spawned: list[int]) -> None:
    pid = spawn(tmp_path, spawned)
    proc = procs.running(tmp_path / "p.pid", needle(tmp_path))
    assert proc is not None
    proc.kill()
    assert not procs.wait_gone([proc], 5)
    assert procs.running(tmp_path / "p.pid", needle(tmp_path)) is None
    assert procs.read_pid(tmp_path / "p.pid") == pid  # the stale pidfile is still there


def test_a_zombie_is_not_ours(tmp_path: Path) -> None:
    child = subprocess.Popen([*sleeper_argv(tmp_path, "pass")])
    try:
        proc = psutil.Process(child.pid)
        deadline = time.monotonic() + 5
        while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.status() == psutil.STATUS_ZOMBIE
        assert not procs.is_ours(child.pid, needle(tmp_path))
    finally:
        child.wait()


# --- spawning ------------------------------------------------------------------------------------


def test_spawn_detaches(tmp_path: Path, spawned: list[int]) -> None:
    (tmp_path / "p.log").write_text("earlier run\n")
    held = os.open(tmp_path / "held", os.O_CREAT | os.O_RDWR)  # like bin/test's flock on fd 9
    os.set_inheritable(held, True)
    try:
        pid = spawn(tmp_path, spawned, "import sys, time; print('hello', flush=True); time.sleep(60)")
    finally:
        os.close(held)
    assert procs.read_pid(tmp_path / "p.pid") == pid
    assert os.getsid(pid) == pid  # a session of its own: a terminal's ^C or hang-up never reaches it
    assert os.getsid(pid) != os.getsid(0)
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == str(tmp_path / "p.log")
    assert os.readlink(f"/proc/{pid}/fd/2") == str(tmp_path / "p.log")
    assert procs.wait_until(5, lambda: "hello" in (tmp_path / "p.log").read_text())
    assert (tmp_path / "p.log").read_text().startswith("earlier run\nhello")  # appended
    targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert str(tmp_path / "held") not in targets  # no descriptor of ours is inherited


def test_spawn_rotates_a_big_log_once(tmp_path: Path, spawned: list[int]) -> None:
    log = tmp_path / "p.log"
    with log.open("wb") as out:
        out.truncate(procs.LOG_ROTATE_BYTES + 1)
    spawn(tmp_path, spawned)
    assert (tmp_path / "p.log.1").stat().st_size == procs.LOG_ROTATE_BYTES + 1
    assert log.stat().st_size < 1024


def test_spawn_of_a_missing_program_is_a_service_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="cannot run /nonexistent"):
        procs.spawn(["/nonexistent"], tmp_path / "x.pid", tmp_path / "x.log")


# --- stopping ------------------------------------------------------------------------------------


def test_stop_sends_sigkill_to_one_that_ignores_sigterm(tmp_path: Path, spawned: list[int]) -> None:
    spawn(tmp_path, spawned, IGNORES_TERM)
    proc = procs.running(tmp_path / "p.pid", needle(tmp_path))
    assert proc is not None
    time.sleep(0.3)  # let it install its handler
    started = time.monotonic()
    procs.stop([proc], timeout=0.5)
    assert not proc.is_running()
    assert time.monotonic() - started < 5


def test_strays_finds_ours_by_needle_alone(tmp_path: Path, spawned: list[int]) -> None:
    pids = {spawn(tmp_path, spawned, name=f"s{i}") for i in range(3)}
    found = {p.pid for p in procs.strays(needle(tmp_path))}
    assert found == pids
    assert procs.strays(needle(tmp_path / "nobody")) == []
    procs.stop(procs.strays(needle(tmp_path)), timeout=5)
    assert procs.strays(needle(tmp_path)) == []


def test_wait_until_gives_up_when_the_process_exits(tmp_path: Path) -> None:
    pid = procs.spawn(sleeper_argv(tmp_path, "pass"), tmp_path / "p.pid", tmp_path / "p.log")
    started = time.monotonic()
    assert not procs.wait_until(30, lambda: False, while_alive=psutil.Process(pid))
    assert time.monotonic() - started < 5


# --- one named process ---------------------------------------------------------------------------


def make_daemon(tmp_path: Path) -> Daemon:
    return Daemon(
        "sleeper",
        argv=sleeper_argv(tmp_path),
        needle=needle(tmp_path),
        pidfile=tmp_path / "sleeper.pid",
        logfile=tmp_path / "sleeper.log",
    )


def test_daemon_start_stop_kill(tmp_path: Path, spawned: list[int]) -> None:
    d = make_daemon(tmp_path)
    assert not d.is_running()
    assert d.pid() is None
    d.start()
    pid = d.pid()
    assert pid is not None
    spawned.append(pid)
    d.start()  # running already: nothing new
    assert d.pid() == pid
    assert len(procs.strays(d.needle)) == 1
    d.kill()  # like a crash: the pidfile stays, stale
    assert not d.is_running()
    assert procs.read_pid(d.pidfile) == pid
    d.start()  # recovers from the stale pidfile
    new_pid = d.pid()
    assert new_pid is not None
    assert new_pid != pid
    spawned.append(new_pid)
    d.stop()
    assert not d.is_running()
    assert not d.pidfile.exists()
    d.stop()  # stopping a stopped one is fine


def test_daemon_start_fails_when_the_process_dies_at_once(tmp_path: Path) -> None:
    d = Daemon(
        "dies",
        argv=[*sleeper_argv(tmp_path, "import sys; print('boom'); sys.exit(3)")],
        needle=needle(tmp_path),
        pidfile=tmp_path / "dies.pid",
        logfile=tmp_path / "dies.log",
    )
    d.ready = lambda: False  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(ServiceError, match="dies: did not become ready"):
        d.start()
    assert time.monotonic() - started < 5  # noticed the exit, did not wait the whole timeout


# --- ports ---------------------------------------------------------------------------------------


def test_a_port_taken_by_someone_else_is_refused_with_its_number(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        ports = procs.listeners()
        assert port in ports
        with pytest.raises(ServiceError, match=f"port {port} \\(redis\\) is already in use by someone else"):
            procs.require_free_port(ports, port, "redis")
        d = make_daemon(tmp_path)
        d.ports = [(port, "etcd client")]
        with pytest.raises(ServiceError, match=f"port {port} \\(etcd client\\)"):
            d.preflight(procs.listeners())
    procs.require_free_port(procs.listeners(), port, "redis")  # free again

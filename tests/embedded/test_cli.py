"""The bin/services and bin/eru command lines without daemons: arguments, usage, status of a directory
where nothing runs, and that the package stays free of Django and the project."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from embedded import services
from embedded.config import ROOT
from embedded.procs import ServiceError
from embedded.services import Cluster, Status, parse_args

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bin/services needs root")


def test_parse_args() -> None:
    args = parse_args(["up", "--dir", "var/x", "--nodes", "2", "--port-base", "27700", "--postgres"])
    assert (args.command, args.dir, args.nodes, args.port_base, args.postgres) == (
        "up",
        "var/x",
        "2",
        "27700",
        True,
    )
    assert parse_args(["down", "--purge"]).purge
    assert parse_args(["up", "--postgres", "--no-postgres"]).postgres is False
    assert parse_args(["status"]).postgres is None  # then the saved value
    with pytest.raises(ServiceError, match="unknown argument: --frob"):
        parse_args(["up", "--frob"])
    with pytest.raises(ServiceError, match="--dir needs a value"):
        parse_args(["up", "--dir"])
    with pytest.raises(services.UsageError):
        parse_args(["up", "-h"])


def test_status_lines_are_formatted_as_before() -> None:
    assert Status("etcd", 123, "127.0.0.1:24790").line() == "etcd        up    pid 123      127.0.0.1:24790"
    assert Status("node1", None, "x").line() == "node1       down               x"


def test_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert services.main([]) == 2
    assert services.main(["--help"]) == 2
    assert "bin/services up     [--dir DIR]" in capsys.readouterr().err


@needs_root
def test_status_of_an_empty_directory_is_all_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert services.main(["status", "--dir", str(tmp_path), "--port-base", "31700", "--nodes", "2"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["etcd", "down"],
        ["redis", "down"],
        ["node1", "down"],
        ["node2", "down"],
    ]
    assert lines[2].endswith("tcp://127.0.0.1:31761 bridge eb31700n1")


@needs_root
def test_wrapper_passes_arguments_and_exit_codes(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "bin" / "services"), "status", "--dir", str(tmp_path), "--port-base", "31700"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("etcd        down")
    done = subprocess.run(
        [str(ROOT / "bin" / "services"), "nonsense"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "bin/services reset" in done.stderr
    done = subprocess.run(
        [str(ROOT / "bin" / "services"), "up", "--dir", str(tmp_path), "--nodes", "99"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "services: error: --nodes must be 1..18"


@needs_root
def test_down_of_a_missing_directory_does_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert services.main(["down", "--dir", str(tmp_path / "none")]) == 0
    assert "services: nothing under" in capsys.readouterr().err


def test_cluster_load_needs_services_conf(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="services.conf is missing"):
        Cluster.load(tmp_path)
    (tmp_path / "services.conf").write_text("NODES=2\nPORT_BASE=31700\nPOSTGRES=1\n")
    c = Cluster.load(tmp_path)
    assert list(c.services) == ["etcd", "redis", "postgres", "node1", "node2"]
    assert not c.is_running("etcd")
    assert c.pid("node2") is None
    with pytest.raises(ServiceError, match="no process named 'node3'"):
        c.pid("node3")


def test_eru_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from embedded import eru

    cwd = os.getcwd()
    try:
        assert eru.main([]) == 2
    finally:
        os.chdir(cwd)
    assert "bin/eru token [USER]" in capsys.readouterr().err


def test_eru_s_environment_has_the_multiprocess_counts_directory_before_any_django_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bin/eru up runs manage.py migrate first, and it already counts into PROMETHEUS_MULTIPROC_DIR:
    the directory must exist by then (it once did not, and up failed at migrate)."""
    from embedded import eru

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "env").write_text("export ERU_NODES=node1=tcp://127.0.0.1:1\n")
    monkeypatch.setattr(eru, "CLUSTER_DIR", cluster)
    monkeypatch.setattr(eru, "RUN", cluster / "run")
    env = eru.load_env()
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(cluster / "run" / "prometheus")
    assert Path(env["PROMETHEUS_MULTIPROC_DIR"]).is_dir()
    assert "ERU_METRICS_ALLOW" not in env or env["ERU_METRICS_ALLOW"] == os.environ.get("ERU_METRICS_ALLOW")

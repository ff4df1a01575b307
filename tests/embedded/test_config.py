"""embedded.config: port arithmetic, names, services.conf, the env file. No daemons needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from embedded.config import ROOT, Config, apply_env_file, read_conf, resolve_dir
from embedded.procs import ServiceError


def test_ports_and_names_follow_the_port_base(tmp_path: Path) -> None:
    c = Config(tmp_path, nodes=2, port_base=24700, postgres=True)
    assert (c.etcd_port, c.etcd_peer_port, c.redis_port, c.pg_port) == (24790, 24791, 24779, 24732)
    assert c.pg_dir == Path(os.path.realpath("/var/tmp")) / "eru-pg-24700"
    assert c.tls_dir == tmp_path / "tls"
    n = c.node(2)
    assert n.name == "node2"
    assert n.port == 24762
    assert n.bridge == "eb24700n2"
    assert n.addr == "10.247.2.1"
    assert n.exec_root == Path("/run/eru-24700-2")
    assert n.cgroup == "eru-24700-n2"
    assert n.socket == tmp_path / "n2" / "docker.sock"
    assert n.needle == f"--data-root {tmp_path}/n2/data "


@pytest.mark.parametrize(
    ("port_base", "subnet"), [(23700, "10.237"), (27700, "10.21"), (25600, "10.0"), (65400, "10.142")]
)
def test_subnet_is_port_base_over_100_mod_256(tmp_path: Path, port_base: int, subnet: str) -> None:
    assert Config(tmp_path, port_base=port_base).node(3).addr == f"{subnet}.3.1"


def test_node_ports_stay_below_redis(tmp_path: Path) -> None:
    c = Config.load(tmp_path, nodes=18, port_base=24700)
    assert max(c.node(i).port for i in c.node_indices()) < c.redis_port
    with pytest.raises(ServiceError, match=r"--nodes must be 1\.\.18"):
        Config.load(tmp_path, nodes=19)


@pytest.mark.parametrize(
    ("nodes", "port_base", "message"),
    [
        ("0", None, "--nodes must be"),
        ("x", None, "--nodes must be"),
        ("-1", None, "--nodes must be"),
        (None, "1023", "--port-base must be 1024..65400"),
        (None, "65401", "--port-base must be"),
        (None, "24700x", "--port-base must be"),
    ],
)
def test_invalid_values(tmp_path: Path, nodes: str | None, port_base: str | None, message: str) -> None:
    with pytest.raises(ServiceError, match=message):
        Config.load(tmp_path, nodes=nodes, port_base=port_base)


def test_defaults_saved_values_and_overrides(tmp_path: Path) -> None:
    c = Config.load(tmp_path)
    assert (c.nodes, c.port_base, c.postgres) == (1, 23700, False)
    Config(c.dir, nodes=2, port_base=24700, postgres=True).save()
    assert (tmp_path / "services.conf").read_text() == "NODES=2\nPORT_BASE=24700\nPOSTGRES=1\n"
    c = Config.load(tmp_path)
    assert (c.nodes, c.port_base, c.postgres) == (2, 24700, True)
    c = Config.load(tmp_path, nodes="3", postgres=False)
    assert (c.nodes, c.port_base, c.postgres) == (3, 24700, False)
    assert read_conf(tmp_path / "nothing") == {}


def test_relative_dir_is_taken_from_the_repository_root(tmp_path: Path) -> None:
    assert resolve_dir("var/test") == Path(os.path.realpath(ROOT / "var" / "test"))
    assert resolve_dir(tmp_path / "a" / ".." / "b") == Path(os.path.realpath(tmp_path)) / "b"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real", target_is_directory=True)
    assert resolve_dir(link) == Path(os.path.realpath(tmp_path)) / "real"  # even before it exists


def test_leftover_nodes_include_directories_of_a_bigger_earlier_up(tmp_path: Path) -> None:
    (tmp_path / "n4").mkdir()
    (tmp_path / "nx").mkdir()
    (tmp_path / "n7").write_text("not a dir")
    assert Config(tmp_path, nodes=2).leftover_node_indices() == [1, 2, 4]


def test_env_file_is_what_bin_services_always_wrote(tmp_path: Path) -> None:
    c = Config(tmp_path, nodes=2, port_base=24700, postgres=True)
    assert c.env_text() == (
        f"# Written by bin/services up --dir {tmp_path}; source it.\n"
        "export ERU_ETCD_ENDPOINTS=127.0.0.1:24790\n"
        "export ERU_REDIS_URL=redis://127.0.0.1:24779/0\n"
        f'export ERU_TLS_DIR="{tmp_path}/tls"\n'
        'export ERU_NODES="node1=tcp://127.0.0.1:24761 node2=tcp://127.0.0.1:24762"\n'
        f'export ERU_NODE_SOCKETS="node1=unix://{tmp_path}/n1/docker.sock node2=unix://{tmp_path}/n2/docker.sock"\n'
        "export ERU_IMAGE=eru/busybox:latest\n"
        "export ERU_PG_URL=postgres://postgres@127.0.0.1:24732/eru\n"
        "# These make python-requests (docker-py) ignore the CA given to docker.tls.TLSConfig.\n"
        "unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE\n"
    )
    assert "ERU_PG_URL" not in Config(tmp_path).env_text()


def test_env_file_reads_back_as_bash_sources_it(tmp_path: Path) -> None:
    c = Config(tmp_path, nodes=2, port_base=24700, postgres=True)
    c.write_env()
    assert not (tmp_path / "env.tmp").exists()
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUESTS_CA_BUNDLE": "x", "KEEP": "y"}
    ours = dict(base)
    apply_env_file(c.env_file, ours)
    script = f'. "{c.env_file}"; env -0'
    out = subprocess.run(["bash", "-c", script], env=base, capture_output=True, check=True).stdout
    sourced = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    for key in ("ERU_ETCD_ENDPOINTS", "ERU_REDIS_URL", "ERU_TLS_DIR", "ERU_NODES", "ERU_NODE_SOCKETS"):
        assert ours[key] == sourced[key], key
    assert ours["ERU_PG_URL"] == sourced["ERU_PG_URL"]
    assert "REQUESTS_CA_BUNDLE" not in ours
    assert "REQUESTS_CA_BUNDLE" not in sourced
    assert ours["KEEP"] == "y"

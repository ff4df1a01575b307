"""embedded.ha without daemons: its layout, its command lines, and that neither mode's ours-check can
take a process of the other (both run from the same checkout, and each stops leftovers by needle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedded import eru, ha
from embedded.config import apply_env_file


@pytest.fixture
def config(tmp_path: Path) -> ha.HAConfig:
    return ha.HAConfig(tmp_path, 2, ha.PORT_BASE, True)


def test_ports_stay_in_the_range_of_the_mode(config: ha.HAConfig) -> None:
    ports = [ha.LB_PORT, *ha.WEB_PORTS, *ha.GRPC_PORTS, config.redis_port, config.pg_port]
    ports += [p for pair in config.etcd_ports() for p in pair]
    ports += [config.node(i).port for i in config.node_indices()]
    ports += [ha.AGENT_API_BASE + i for i in config.node_indices()]
    assert len(set(ports)) == len(ports)
    assert all(26000 <= p <= 26299 for p in ports), ports


def test_env_names_every_etcd_member_and_postgres(config: ha.HAConfig, tmp_path: Path) -> None:
    config.dir.mkdir(exist_ok=True)
    config.write_env()
    env: dict[str, str] = {"REQUESTS_CA_BUNDLE": "x"}
    apply_env_file(config.env_file, env)
    assert env["ERU_ETCD_ENDPOINTS"] == "127.0.0.1:26090,127.0.0.1:26092,127.0.0.1:26094"
    assert env["ERU_DATABASE"] == env["ERU_PG_URL"] == "postgres://postgres@127.0.0.1:26032/eru"
    assert env["ERU_REDIS_URL"] == "redis://127.0.0.1:26079/0"
    assert "REQUESTS_CA_BUNDLE" not in env


def test_etcd_members_form_one_cluster(config: ha.HAConfig) -> None:
    members = [ha.EtcdMember(config, i) for i in (1, 2, 3)]
    clusters = {m.argv[m.argv.index("--initial-cluster") + 1] for m in members}
    assert len(clusters) == 1
    assert clusters.pop().count("http://127.0.0.1:") == 3
    assert len({m.needle for m in members}) == 3


def test_redis_keeps_an_append_only_file(config: ha.HAConfig) -> None:
    argv = ha.AofRedis(config).argv
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--appendfsync") + 1] == "everysec"


def test_the_load_balancer_sends_to_both_web_instances() -> None:
    text = ha.Haproxy().config_text()
    assert f"bind 127.0.0.1:{ha.LB_PORT}" in text
    for port in ha.WEB_PORTS:
        assert f"127.0.0.1:{port} check" in text
    assert "option redispatch" in text


def line(argv: list[str]) -> str:
    return "".join(arg + " " for arg in argv)  # as procs.holds sees a command line


def test_needles_of_the_two_modes_never_match_each_other() -> None:
    ha_lines = {name: line(ha.app_argv(name)) for name in ha.APP_NAMES}
    default = {name: (line(eru.app_argv(name, 8000)), eru.app_needle(name)) for name in eru.APPS}
    for name, ha_line in ha_lines.items():
        assert ha.app_needle(name) in ha_line, name
        for other, other_line in ha_lines.items():  # each instance is found alone
            assert (ha.app_needle(name) in other_line) == (name == other), (name, other)
        for other, (default_line, default_needle) in default.items():
            assert default_needle not in ha_line, (other, name)
            assert ha.app_needle(name) not in default_line, (name, other)


def test_agents_know_both_cores(config: ha.HAConfig) -> None:
    agent = ha.HAAgent("node1", "unix:///x/docker.sock", 1)
    cores = agent.argv[agent.argv.index("--core") + 1].split(",")
    assert cores == [f"127.0.0.1:{p}" for p in ha.GRPC_PORTS]


def test_the_beat_launchers_campaign_for_one_key() -> None:
    argvs = [ha.app_argv(name) for name in ("beat1", "beat2")]
    assert all("eru_beat" in argv for argv in argvs)
    schedules = {argv[argv.index("--schedule") + 1] for argv in argvs}
    assert len(schedules) == 2  # each its own schedule file; only the leader's beat runs


def test_usage_is_printed_for_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert ha.main([]) == 2
    assert "bin/eru --ha up" in capsys.readouterr().err


def test_every_process_has_a_log_by_its_name(config: ha.HAConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ha, "ha_config", lambda nodes=None: config)
    logs = ha.log_files(config)
    for name in ("etcd1", "etcd2", "etcd3", "redis", "postgres", "node1", "node2", "lb", "supervisor"):
        assert name in logs, name
    assert set(ha.APP_NAMES) <= set(logs)
    assert logs["node1"].name == "dockerd.log"

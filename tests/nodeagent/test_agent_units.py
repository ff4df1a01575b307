"""The agent's own rules, without a core or a dockerd: its configuration, Eru's names, the health
check from ERU_META, and what one inspect reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.docker import ContainerInfo
from nodeagent import status as st
from nodeagent.config import ConfigError, load


def test_the_config_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "core: [10.0.0.1:5001, 10.0.0.2:5001]\nhostname: n1\nheartbeat_interval: 30\n"
        "auth: {username: node.n1, password: from-file}\n"
        "healthcheck: {interval: 20, timeout: 3, cache_ttl: 60}\n"
    )
    config = load(["--config", str(path)], env={"ERU_AGENT_HEARTBEAT_INTERVAL": "15"})
    assert config.core == ["10.0.0.1:5001", "10.0.0.2:5001"]
    assert (config.heartbeat_interval, config.healthcheck_interval, config.healthcheck_timeout) == (
        15,
        20.0,
        3.0,
    )
    assert config.principal == "node.n1"
    flagged = load(["--config", str(path), "--hostname", "n2", "--username", ""], env={})
    assert (flagged.hostname, flagged.password) == ("n2", "from-file")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    assert (
        load(["--core", "c:1", "--hostname", "x", "--password-file", str(secret)], env={}).password
        == "s3cret"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hostname", "x", "--password", "p"], "core: give"),
        (["--core", "c:1", "--password", "p"], "hostname: give"),
        (["--core", "c:1", "--hostname", "x"], "auth.password"),
        (
            ["--core", "c:1", "--hostname", "x", "--password", "p", "--heartbeat-interval", "ten"],
            "heartbeat_interval",
        ),
    ],
)
def test_a_bad_config_names_the_key(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(argv, env={})


def test_eru_names_and_the_health_check_of_eru_meta() -> None:
    assert st.parse_name("my_app_web_a1b2c3") == ("my_app", "web")
    assert st.parse_name("odd") == ("", "")
    meta = {
        "Publish": [],
        "HealthCheck": {"TCPPorts": ["80"], "HTTPPort": "8080", "HTTPURL": "/hz", "HTTPCode": 200},
    }
    assert st.healthcheck({"ERU_META": json.dumps(meta)}) == {
        "tcp_ports": ["80"],
        "http_port": "8080",
        "url": "/hz",
        "code": 200,
    }
    assert st.healthcheck({"ERU_META": json.dumps({"Publish": [], "HealthCheck": None})}) is None
    assert st.healthcheck({"ERU_META": "not json"}) is None


def _info(**kw: object) -> ContainerInfo:
    base: dict[str, object] = {
        "id": "c" * 64,
        "name": "app_web_abc123",
        "status": "running",
        "networks": {"bridge": "10.0.0.9"},
        "labels": {"ERU": "1", "ERU_META": json.dumps({"HealthCheck": {"TCPPorts": ["80"]}})},
    }
    return ContainerInfo(**{**base, **kw})  # type: ignore[arg-type]


def test_a_report_carries_eru_s_fields_and_ours() -> None:
    running = st.report(_info(started=100.0), "n1", "", now=103.0)
    assert (running.running, running.healthy, running.health) == (True, False, "")  # not checked yet
    assert (running.appname, running.entrypoint, running.nodename) == ("app", "web", "n1")
    assert dict(running.networks) == {"bridge": "10.0.0.9"}
    assert json.loads(running.extension)["ERU"] == "1"
    assert running.up_seconds == 3.0
    assert not running.HasField("exit_code")
    healthy = st.report(_info(), "n1", st.HEALTHY)
    assert (healthy.healthy, healthy.health) == (True, "healthy")
    oom = st.report(_info(status="exited", exit_code=137, oom_killed=True), "n1", st.HEALTHY)
    assert (oom.status, oom.exit_code, oom.running, oom.healthy, dict(oom.networks)) == (
        "oom_killed",
        137,
        False,
        False,
        {},
    )
    plain = st.report(_info(labels={"ERU": "1"}), "n1", "")
    assert plain.healthy  # no health check: healthy while it runs, as Eru's agent says
    assert st.same(running, st.report(_info(started=100.0), "n1", "", now=110.0))

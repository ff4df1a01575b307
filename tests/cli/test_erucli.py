"""erucli end to end: the CLI in-process against a live server, the real worker and real dockerd
nodes. Each command's output, exit code and effect (DB rows, Docker containers, audit via=cli).
The `cli` fixture is in tests/cli/conftest.py."""

from __future__ import annotations

import io
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clusters.models import AuditEvent, Deployment, Node, Workload
from tests.cli.conftest import Run
from tests.conftest import IMAGE, NODES, TLS_DIR

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ["workload", "deploy", "--pod", "eru", "--image", IMAGE]
SMALL = ["--cpu", "0.1", "--memory", "16M"]


def _fields(text: str) -> dict[str, str]:
    """`key  value` lines (node get, deployment get) as a dict; keys with no value are left out."""
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line.strip())


def _containers(docker_clean: dict[str, Any], **filters: Any) -> list[Any]:
    return [
        c
        for client in docker_clean.values()
        for c in client.containers.list(all=True, filters={"label": "ERU=1", **filters})
    ]


# --- login, errors --------------------------------------------------------------------------------
def test_login_saves_a_private_token_that_later_commands_use(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "config" / "eru" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("eru_revoked\n")  # a stale token must neither block login nor survive it
    token_file.chmod(0o644)
    monkeypatch.setattr(sys, "stdin", io.StringIO("nope\n"))
    wrong = cli("login", "--username", "admin", "--password-stdin", token=None)
    assert wrong.code == 1
    assert "error: Wrong username or password." in wrong.err
    assert cli("pod", "list", token=None).code == 1  # the stale token is refused...
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw-admin-1\n"))
    r = cli("login", "--username", "admin", "--password-stdin", token=None)
    assert r.code == 0
    assert str(token_file) in r.out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().startswith("eru_")
    assert "revoked" not in token_file.read_text()
    assert cli("pod", "list", token=None).code == 0  # ...the new one is used


def test_errors_name_the_problem_and_exit_1(cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("pod", "list", token="eru_wrong")
    assert r.code == 1
    assert r.err.startswith("error: Invalid or revoked token.\n")
    assert "erucli login" in r.err
    r = cli("node", "get", "nosuch")
    assert r.code == 1
    assert r.err.startswith("error: ")
    assert r.out == ""
    r = cli("pod", "list", eru="http://127.0.0.1:9")
    assert r.code == 1
    assert "cannot connect to the Eru API at http://127.0.0.1:9 (connection refused)" in r.err
    monkeypatch.setenv("ERU", "127.0.0.1:9")  # Eru's style: host:port, no scheme
    r = cli("pod", "list", eru=None)
    assert r.code == 1
    assert "cannot connect to the Eru API at http://127.0.0.1:9" in r.err


# --- pods and nodes -------------------------------------------------------------------------------
def test_pod_add_list_remove(cli: Callable[..., Run]) -> None:
    r = cli("pod", "add", "demo", "--desc", "demo pod", "--favor", "memory")
    assert r.code == 0
    assert "pod demo added" in r.out
    table = cli("pod", "list").out.splitlines()
    assert table[0].split() == ["NAME", "FAVOR", "DESC", "CREATED"]
    assert table[1].split()[:4] == ["demo", "memory", "demo", "pod"]
    assert [p["name"] for p in cli("pod", "list", "-o", "json").json] == ["demo"]
    again = cli("pod", "add", "demo")
    assert again.code == 1
    assert again.err == "error: name: pod demo already exists\n"
    assert cli("pod", "remove", "demo").code == 0
    assert cli("pod", "list", "--output", "json").json == []
    event = AuditEvent.objects.get(action="pod.add")
    assert event.via == "cli"
    assert event.actor_name == "admin"


def test_node_add_with_tls_dir_get_list_set_capacity_remove(cli: Callable[..., Run]) -> None:
    assert cli("pod", "add", "eru").code == 0
    missing = cli(
        "node", "add", "eru", "--nodename", "node1", "--endpoint", NODES["node1"], "--tls-dir", "/nope"
    )
    assert missing.code == 1
    assert missing.err.startswith("error: --ca: cannot read /nope/ca.pem")
    r = cli(
        "node", "add", "eru", "--nodename", "node1", "--endpoint", NODES["node1"],
        "--tls-dir", TLS_DIR, "--label", "zone=a",
    )  # fmt: skip
    assert r.code == 0, r.err
    fields = _fields(r.out)
    assert fields["name"] == "node1"
    assert fields["labels"] == "zone=a"
    assert fields["cpu"].startswith("0 used of ")
    assert "cores x 100" in fields["cpu"]
    node = cli("node", "get", "node1", "-o", "json").json
    assert node["cpu"] >= 1
    assert node["memory"] > 0
    assert node["used_memory"] == 0
    assert node["available"] is True
    assert node["pod"] == "eru"
    assert node["labels"] == {"zone": "a"}
    assert _fields(cli("node", "get", "node1").out)["status"] == "up"
    listing = cli("node", "list", "--pod", "eru").out.splitlines()
    assert listing[0].split() == ["NAME", "POD", "ENDPOINT", "STATUS", "CPU", "MEMORY", "LABELS"]
    assert listing[1].split()[:4] == ["node1", "eru", NODES["node1"], "up"]
    assert [n["name"] for n in cli("pod", "nodes", "eru", "-o", "json").json] == ["node1"]
    assert cli("pod", "nodes", "eru", "--filter", "down", "-o", "json").json == []
    r = cli("node", "set", "node1", "--label", "ssd=1")
    assert r.code == 0
    assert Node.objects.get(name="node1").labels == {"ssd": "1"}  # replaced
    capacity = cli(
        "pod", "capacity", "eru", "--cpu", "0.5", "--memory", "16M", "--cpu-unbind", "-o", "json"
    ).json
    assert capacity["capacity"]["node1"] >= 2
    assert capacity["total"] == capacity["capacity"]["node1"]
    assert "total: " in cli("pod", "capacity", "eru", "--cpu", "1", "--memory", "512M").out
    assert cli("node", "remove", "node1").code == 0
    assert not Node.objects.exists()
    assert AuditEvent.objects.get(action="node.add").via == "cli"


def test_node_down_then_deploy_to_it_fails_clearly(cli: Callable[..., Run], nodes: list[Any]) -> None:
    r = cli("node", "down", "node1")
    assert r.code == 0
    assert r.out == "node node1 is down\n"
    assert [n["name"] for n in cli("pod", "nodes", "eru", "--filter", "down", "-o", "json").json] == ["node1"]
    assert [n["name"] for n in cli("pod", "nodes", "eru", "-o", "json").json] == ["node2"]
    r = cli(*DEPLOY, "--entry", "web", "--node", "node1", *SMALL, "--", "sleep", "600")
    assert r.code == 1
    assert r.err.splitlines() == [
        "error: node_names: node is down (set down or no heartbeat): node1"
        " — 2 of 2 nodes left out: 1 bypassed, 1 not in node_names",
        "error: placement: 2 of 2 nodes left out: 1 bypassed, 1 not in node_names",
        "error: placement: node1: bypassed (set down by an operator)",
    ]  # why each node was left out
    assert not Deployment.objects.exists()
    assert cli("node", "up", "node1").out == "node node1 is up\n"
    assert AuditEvent.objects.get(action="node.down").via == "cli"


# --- deploy ---------------------------------------------------------------------------------------
def test_bad_input_prints_the_field_error_and_creates_nothing(cli: Callable[..., Run], pod: Any) -> None:
    r = cli(*DEPLOY, "--entry", "a_b", "--", "sleep", "600")
    assert r.code == 1
    assert r.err == "error: entrypoint: entrypoint name has '_' character\n"
    assert r.out == ""
    r = cli(*DEPLOY, "--entry", "web", "--memory", "lots")
    assert r.code == 1
    assert r.err.startswith("error: memory_request: ")
    assert "memory_request: memory_request:" not in r.err  # the field is named once
    assert not Deployment.objects.exists()
    assert not Workload.objects.exists()
    assert not AuditEvent.objects.filter(action="deployment.create").exists()


def test_dry_run_prints_the_plan_and_deploys_nothing(cli: Callable[..., Run], nodes: list[Any]) -> None:
    r = cli(*DEPLOY, "--entry", "web", "--count", "4", *SMALL, "--dry-run")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "NODE   COUNT",
        "node1  2",
        "node2  2",
        "total: 4 (dry run: nothing deployed)",
    ]
    plan = cli(
        *DEPLOY,
        "--entry",
        "web",
        "--count",
        "3",
        "--deploy-strategy",
        "each",
        *SMALL,
        "--dry-run",
        "-o",
        "json",
    )
    assert plan.json == {"plan": {"node1": 3, "node2": 3}, "total": 6}
    assert not Deployment.objects.exists()
    assert not Workload.objects.exists()


def test_deploy_waits_until_done_and_the_containers_run(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    r = cli(*DEPLOY, "--entry", "web", "--name", "cliapp", "--count", "2", *SMALL, "--", "sleep", "600")
    assert r.code == 0, r.err
    assert "2/2 (100%): 2 running, 0 failed [done]" in r.err
    rows = [line.split() for line in r.out.splitlines()[1:]]
    assert len(rows) == 2
    assert {row[3] for row in rows} == {"running"}
    containers = _containers(docker_clean, status="running")
    assert len(containers) == 2
    assert {c.name for c in containers} == {row[1] for row in rows}
    for c in containers:
        assert c.attrs["Config"]["Cmd"] == ["sleep", "600"]
        assert c.attrs["HostConfig"]["Memory"] == 16 << 20
        assert c.short_id in {row[4] for row in rows}
    listed = cli("workload", "list", "cliapp", "-o", "json").json
    assert len(listed) == 2
    assert {w["node"] for w in listed} == {"node1", "node2"}
    deployment = Deployment.objects.get()
    shown = cli("deployment", "get", deployment.pk)
    assert shown.code == 0
    assert _fields(shown.out)["state"] == "done"
    assert _fields(shown.out)["plan"] == "node1=1 node2=1"
    assert cli("deployment", "list", "-o", "json").json[0]["id"] == deployment.pk
    assert AuditEvent.objects.get(action="deployment.create").via == "cli"
    events = cli("audit", "--limit", "5", "-o", "json").json
    assert any(
        e["action"] == "deployment.create" and e["via"] == "cli" and e["actor_name"] == "admin"
        for e in events
    )
    assert "cli" in cli("audit").out


def test_workload_stop_start_remove(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    # sh exits on SIGTERM (a bare `sleep` as pid 1 ignores it and docker stop waits 10 s for SIGKILL)
    command = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    r = cli(
        *DEPLOY, "--entry", "web", "--node", "node1", "--count", "2", *SMALL, "-o", "json", "--", *command
    )
    assert r.code == 0, r.err
    ids = [w["id"] for w in r.json["workloads"]]
    assert r.json["deployment"]["state"] == "done"
    assert len(ids) == 2
    assert r.json["workloads"][0]["command"] == command
    stop = cli("workload", "stop", ids[0], "--wait")
    assert stop.code == 0
    assert stop.out == f"workload {ids[0]}: stopped\n"
    assert len(_containers(docker_clean, status="exited")) == 1
    assert cli("workload", "get", ids[0], "-o", "json").json["state"] == "stopped"
    status = cli("workload", "status", ids[0])
    assert status.code == 0
    assert status.out.splitlines()[0].split()[:6] == ["ID", "NAME", "NODE", "STATE", "STATUS", "HEALTH"]
    assert "exited (0)" in status.out  # what the worker saw when it stopped the container
    assert [w["id"] for w in cli("workload", "list", "--status", "exited", "-o", "json").json] == [ids[0]]
    start = cli("workload", "start", ids[0], "--wait")
    assert start.code == 0
    assert start.out == f"workload {ids[0]}: running\n"
    assert len(_containers(docker_clean, status="running")) == 2
    assert "restart requested" in cli("workload", "restart", ids[1]).out
    gone = cli("workload", "remove", *ids, "--wait")
    assert gone.code == 0
    assert gone.out.splitlines() == [f"workload {i}: removed" for i in ids]
    assert cli("workload", "list", "-o", "json").json == []
    assert _containers(docker_clean) == []
    missing = cli("workload", "stop", ids[0])
    assert missing.code == 1
    assert missing.err.startswith(f"error: workload {ids[0]}: ")
    actions = set(AuditEvent.objects.filter(via="cli").values_list("action", flat=True))
    assert {"workload.stop", "workload.start", "workload.restart", "workload.remove"} <= actions

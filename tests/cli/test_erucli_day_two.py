"""erucli's day-two verbs end to end (replace, realloc, dissociate, exec, node set's resources, node
resource, deployment cancel, deploy --deploy-timeout): the CLI in-process against a live server, the
real worker and real dockerd nodes. The `cli` fixture is in tests/cli/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db.models import F

from clusters.models import AuditEvent, Deployment, Node, Workload
from tests.cli.conftest import Run
from tests.conftest import IMAGE

pytestmark = pytest.mark.services

MiB = 1 << 20
# sh exits on SIGTERM (a bare `sleep` as pid 1 ignores it and docker stop waits 10 s for SIGKILL)
TRAP = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
TRAP_900 = ["sh", "-c", "trap 'exit 0' TERM; sleep 900 & wait"]
WEB = ["workload", "deploy", "--pod", "eru", "--image", IMAGE, "--entry", "web", "--name", "cliapp"]
SMALL = ["--cpu", "0.1", "--memory", "16M", "--cpu-unbind"]
REPLACE = ["workload", "replace", "--pod", "eru", "--entry", "web", "--name", "cliapp"]


def _deployed(cli: Callable[..., Run], count: int = 1, *where: str) -> list[dict[str, Any]]:
    r = cli(*WEB, "--count", count, *SMALL, *where, "-o", "json", "--", *TRAP)
    assert r.code == 0, r.err
    assert r.json["deployment"]["state"] == "done"
    return sorted(r.json["workloads"], key=lambda w: w["id"])


def _fields(text: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line.strip())


def _running(docker_clean: dict[str, Any]) -> dict[str, Any]:
    """The running ERU containers of both nodes, by id."""
    return {
        c.id: c
        for client in docker_clean.values()
        for c in client.containers.list(filters={"label": "ERU=1", "status": "running"})
    }


# --- replace --------------------------------------------------------------------------------------
def test_replace_swaps_every_container_on_its_node_and_prints_old_to_new(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    olds = _deployed(cli, 2)
    r = cli(*REPLACE, "--image", IMAGE, "--batch", "1", "--", *TRAP_900)
    assert r.code == 0, r.err
    assert "2/2 (100%): 2 running, 0 failed [done]" in r.err
    header, *lines = r.out.splitlines()
    assert header.split() == ["OLD", "NEW", "NAME", "NODE", "STATE", "CONTAINER", "ERROR"]
    rows = {int(line.split()[0]): line.split() for line in lines}
    assert sorted(rows) == [w["id"] for w in olds]  # old -> new, one line each
    for old in olds:
        _, new_id, _, node, state, _ = rows[old["id"]]
        assert (node, state) == (old["node"], "running")  # on the same node
        new = Workload.objects.get(pk=int(new_id))
        assert (new.memory_limit, new.cpu_limit) == (16 * MiB, 0.1)  # the same resources
        assert new.command == TRAP_900
    assert not Workload.objects.filter(pk__in=[w["id"] for w in olds]).exists()  # the old rows went
    running = _running(docker_clean)
    assert set(running) == set(Workload.objects.values_list("container_id", flat=True))
    assert all(c.attrs["Config"]["Cmd"] == TRAP_900 for c in running.values())
    d = Deployment.objects.get(kind="replace")
    assert (d.state, d.batch, d.total) == ("done", 1, 2)
    assert AuditEvent.objects.filter(action="workload.replace", via="cli").exists()


def test_replace_only_what_the_filters_choose_in_json(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    first, second = _deployed(cli, 2)
    r = cli(*REPLACE, "--id", first["id"], "-o", "json", "--", *TRAP_900)
    assert r.code == 0, r.err
    assert r.json["deployment"]["kind"] == "replace"
    assert [pair["old"] for pair in r.json["replaced"]] == [first["id"]]
    kept = Workload.objects.get(pk=second["id"])
    assert (kept.container_id, kept.command) == (second["container_id"], TRAP)  # left alone
    r = cli(*REPLACE, "--node", second["node"], "--label", "nosuch=1", "--", *TRAP_900)
    assert r.code == 1
    assert "no running or stopped workload of" in r.err
    assert Workload.objects.get(pk=second["id"]).command == TRAP  # no workload has that label


def test_a_replace_that_fails_keeps_the_old_workloads_and_exits_1(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    (old,) = _deployed(cli, 1)
    r = cli(*REPLACE, "--image", "eru/nosuch:latest")  # not on the nodes, and never pulled
    assert r.code == 1
    assert "error: " in r.err
    kept = Workload.objects.get(pk=old["id"])  # the old one was restored
    assert (kept.state, kept.image) == ("running", IMAGE)
    assert kept.container_id in _running(docker_clean)


# --- realloc --------------------------------------------------------------------------------------
def test_realloc_adds_deltas_to_a_running_workload(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    (w,) = _deployed(cli, 1, "--node", "node1")
    used = Node.objects.get(name="node1").used_memory
    grow = ["--memory-request", "16M", "--memory-limit", "16M", "--cpu-request", "0.1", "--cpu-limit", "0.1"]
    r = cli("workload", "realloc", *grow, w["id"])
    assert r.code == 0, r.err
    fields = _fields(r.out)
    assert fields["memory"] == "request 32M, limit 32M"
    assert fields["cpu"] == "request 0.2, limit 0.2"
    assert Node.objects.get(name="node1").used_memory == used + 16 * MiB
    assert _running(docker_clean)[w["container_id"]].attrs["HostConfig"]["Memory"] == 32 * MiB
    r = cli(
        "workload", "realloc", "--memory-request", "-16M", "--memory-limit", "-16M", w["id"], "-o", "json"
    )
    assert r.code == 0, r.err
    assert (r.json["memory_request"], r.json["memory_limit"]) == (16 * MiB, 16 * MiB)
    too_much = cli("workload", "realloc", "--memory-request", "1T", "--memory-limit", "1T", w["id"])
    assert too_much.code == 1
    assert too_much.err.startswith(f"error: workload {w['id']}: ")
    assert Workload.objects.get(pk=w["id"]).memory_limit == 16 * MiB  # nothing changed
    assert AuditEvent.objects.filter(action="workload.realloc", via="cli").count() == 2


# --- dissociate -----------------------------------------------------------------------------------
def test_dissociate_forgets_workloads_and_keeps_their_containers(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    first, second = _deployed(cli, 2, "--node", "node1")
    r = cli("workload", "dissociate", first["id"])
    assert r.code == 0, r.err
    assert r.out.splitlines()[1].split()[:2] == [first["name"], "node1"]
    assert not Workload.objects.filter(pk=first["id"]).exists()
    assert first["container_id"] in _running(docker_clean)  # still running, unmanaged
    r = cli("workload", "dissociate", "--node", "node1", "-o", "json")
    assert r.code == 0, r.err
    assert [w["name"] for w in r.json["dissociated"]] == [second["name"]]
    assert not Workload.objects.exists()
    assert Node.objects.get(name="node1").used_memory == 0  # the allocations went back
    assert AuditEvent.objects.filter(action="workload.dissociate", via="cli").exists()


# --- exec -----------------------------------------------------------------------------------------
def test_exec_prints_both_streams_and_exits_with_the_command_s_code(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    (w,) = _deployed(cli, 1)
    script = "echo out $X; pwd; echo err >&2; exit 3"
    r = cli("workload", "exec", w["id"], "--env", "X=42", "--workdir", "/tmp", "--", "sh", "-c", script)
    assert r.code == 3
    assert r.out == "out 42\n/tmp\n"
    assert r.err == "err\n"
    r = cli("workload", "exec", w["id"], "--user", "65534", "--", "id", "-u")
    assert (r.code, r.out) == (0, "65534\n")
    assert cli("workload", "exec", 999999, "--", "true").code == 1
    assert AuditEvent.objects.filter(action="workload.exec", via="cli").exists()


# --- nodes ----------------------------------------------------------------------------------------
def test_node_set_changes_the_capacity_absolute_or_by_delta(
    cli: Callable[..., Run], nodes: list[Any]
) -> None:
    memory = Node.objects.get(name="node1").memory
    r = cli("node", "set", "node1", "--memory", "-64M", "--delta")
    assert r.code == 0, r.err
    assert "capacity:" in r.out
    assert Node.objects.get(name="node1").memory == memory - 64 * MiB
    assert cli("node", "set", "node1", "--memory", memory).code == 0  # absolute, in bytes
    assert Node.objects.get(name="node1").memory == memory
    r = cli("node", "set", "node1", "--cpu", "0:100", "-o", "json")
    assert r.code == 0, r.err
    assert r.json["cpu_map"] == {"0": 100}
    assert cli("node", "set", "node1", "--cpu", "1:100", "--delta").code == 0  # core by core
    assert Node.objects.get(name="node1").cpu_map == {"0": 100, "1": 100}
    assert cli("node", "set", "node1", "--label", "zone=b").code == 0  # labels alone, as before
    assert Node.objects.get(name="node1").labels == {"zone": "b"}


def test_node_resource_checks_the_usage_and_fixes_it(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    _deployed(cli, 1, "--node", "node1")
    ok = cli("node", "resource", "node1")
    assert ok.code == 0, ok.err
    Node.objects.filter(name="node1").update(used_memory=F("used_memory") + 64 * MiB)  # a leak
    r = cli("node", "resource", "node1")
    assert r.code == 1
    assert "difference" in r.out
    assert cli("node", "resource", "node1", "-o", "json").json["ok"] is False
    fixed = cli("node", "resource", "node1", "--fix")
    assert fixed.code == 0, fixed.err
    assert Node.objects.get(name="node1").used_memory == 16 * MiB
    assert cli("node", "resource", "node1", "-o", "json").json["ok"] is True
    assert AuditEvent.objects.filter(action="node.resource_fix", via="cli").exists()


# --- deployments ----------------------------------------------------------------------------------
def test_deployment_cancel(cli: Callable[..., Run], pod: Any) -> None:
    d = Deployment.objects.create(pod=pod, app="web", entrypoint="web", image=IMAGE, count=2, total=2)
    r = cli("deployment", "cancel", d.pk)
    assert r.code == 0, r.err
    assert r.out.startswith(f"deployment {d.pk}: cancelled")
    assert Deployment.objects.get(pk=d.pk).state == "cancelled"
    shown = cli("deployment", "get", d.pk)
    assert shown.code == 1
    assert f"error: deployment {d.pk} cancelled" in shown.err
    assert AuditEvent.objects.filter(action="deployment.cancel", via="cli").exists()


def test_deploy_timeout_is_sent(
    cli: Callable[..., Run], nodes: list[Any], worker: Any, docker_clean: dict[str, Any]
) -> None:
    r = cli(*WEB, *SMALL, "--deploy-timeout", "60", "--", *TRAP)
    assert r.code == 0, r.err
    assert Deployment.objects.get().timeout == 60

"""erucli without a server (the fast tier): every command has help with the global options, a usage
error is exit 2, and the bodies the verbs send (the HTTP layer replaced by a recorder: what the
server does with them is tests/cli/test_erucli.py's and test_erucli_day_two.py's business)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

import schema
from erucli import cmd_workload, progress
from erucli.client import Client
from erucli.main import main

COMMANDS = [
    ["login"],
    ["lambda"],
    *[["pod", c] for c in ("add", "list", "remove", "nodes", "capacity")],
    *[["node", c] for c in ("add", "get", "list", "up", "down", "set", "resource", "remove")],
    *[["workload", c] for c in ("deploy", "list", "get", "status", "logs", "start", "stop", "restart")],
    *[["workload", c] for c in ("remove", "replace", "realloc", "dissociate", "exec")],
    *[["deployment", c] for c in ("get", "list", "cancel")],
    ["audit"],
]


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for path in [[], ["pod"], ["node"], ["workload"], ["deployment"], *COMMANDS]:
        for flag in ("--help", "-h"):
            assert main([*path, flag]) == 0, path
            out = capsys.readouterr().out
            assert out.startswith(f"Usage: erucli {' '.join(path)}".rstrip()), path
            if path and path[0] in ("login", "lambda", "audit") or len(path) == 2:
                assert "--output" in out, path
                assert "--eru" in out, path
                assert out.index("global options:") > out.index("Options:"), path  # global ones last
    assert main([]) in (0, 2)  # no command: the top help (a usage error since click 8.2)
    assert "quickstart:" in "".join(capsys.readouterr())
    assert main(["container", "--help"]) == 0  # Eru's alias of workload
    assert "deploy" in capsys.readouterr().out


def test_usage_errors_exit_2_and_name_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "deploy", "--pod", "eru"]) == 2
    assert "--entry" in capsys.readouterr().err
    assert main(["node", "set", "node1", "--label", "novalue"]) == 2
    assert "expected KEY=VALUE, got 'novalue'" in capsys.readouterr().err
    assert main(["workload", "realloc", "--memory-limit", "lots", "1"]) == 2
    assert "'lots' is not a size" in capsys.readouterr().err
    assert main(["pod", "list", "-o", "yaml"]) == 2
    assert main(["workload", "exec", "1"]) == 2  # no command


def test_erucli_sends_schema_fields_and_shows_the_schema_s_help(capsys: pytest.CaptureFixture[str]) -> None:
    body = cmd_workload.deploy_body(command=(), pod="eru", entry="web", image="x", cpu=0.5)
    assert set(body) <= set(schema.DeployRequest.model_fields)
    assert schema.DeployRequest.parse(body).cpu_limit == 0.5
    assert (body["count"], body["strategy"], body["nodes_limit"]) == (1, "AUTO", 0)
    assert "team" not in body
    chosen = cmd_workload.deploy_body(
        command=(), pod="eru", entry="web", image="x", team="web", deploy_timeout=60
    )
    assert (chosen["team"], chosen["timeout"]) == ("web", 60)
    assert set(chosen) <= set(schema.DeployRequest.model_fields)
    assert main(["workload", "deploy", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "cpu limit 1 and memory limit 512M" in text
    assert schema.help_of(schema.DeployRequest, "cpu_limit") in text


# --- the requests the verbs make, recorded -------------------------------------------------------
class Recorder:
    """Stands in for the HTTP layer: records (method, url, body) and answers from `answers`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answers: dict[tuple[str, str], Any] = {}
        self.streams: dict[str, list[dict[str, Any]]] = {}

    def request(self, client: Client, method: str, path: str, *, json: Any = None, **kw: Any) -> Any:
        self.calls.append((method, path, json))
        answer = self.answers.get((method, path.partition("?")[0]))
        return answer(json) if callable(answer) else answer

    def stream(
        self, client: Client, path: str, *, method: str = "GET", body: Any = None, **kw: Any
    ) -> Iterator[Any]:
        self.calls.append((method, path, body))
        yield from self.streams[path]

    def sent(self, method: str, path: str) -> Any:
        return next(body for m, p, body in self.calls if (m, p) == (method, path))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Recorder:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("ERU", "ERU_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    rec = Recorder()
    monkeypatch.setattr(
        Client, "request", lambda self, method, path, **kw: rec.request(self, method, path, **kw)
    )
    monkeypatch.setattr(Client, "stream", lambda self, path, **kw: rec.stream(self, path, **kw))
    monkeypatch.setattr("erucli.follow.POLL_INTERVAL", 0)
    return rec


WORKLOAD = {
    "id": 7, "name": "web_1", "pod": "eru", "node": "node1", "app": "web", "entrypoint": "web",
    "image": "x", "cpu_request": 1.5, "cpu_limit": 1.5, "memory_request": 96 << 20,
    "memory_limit": 96 << 20, "cpu_map": {"0": 100, "1": 50}, "created_at": "", "updated_at": "",
}  # fmt: skip


def test_global_options_may_follow_the_command(api: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Client] = []
    api.answers[("GET", "/api/pods/")] = []
    original = api.request

    def spy(client: Client, method: str, path: str, **kw: Any) -> Any:
        seen.append(client)
        return original(client, method, path, **kw)

    api.request = spy  # type: ignore[method-assign]
    assert main(["--eru", "http://a:1", "--timeout", "5", "pod", "list", "-o", "json", "--token", "t1"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert (seen[-1].base_url, seen[-1].timeout) == ("http://a:1", 5.0)
    assert seen[-1].session.headers["Authorization"] == "Token t1"
    assert main(["-o", "json", "pod", "list", "-e", "b:2"]) == 0  # Eru's host:port style
    assert json.loads(capsys.readouterr().out) == []
    assert (seen[-1].base_url, seen[-1].timeout) == ("http://b:2", 30.0)


def test_replace_sends_the_contract_and_prints_old_to_new(
    api: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    states = iter(["running", "done"])

    def deployment(_: Any = None) -> dict[str, Any]:
        state = next(states, "done")
        done = int(state == "done")
        return {"id": 3, "kind": "replace", "app": "web", "entrypoint": "web", "pod": "eru", "total": 1,
                "succeeded": done, "failed": 0, "percent": 100 * done, "state": state}  # fmt: skip

    new = {**WORKLOAD, "id": 9, "replaces": 7, "state": "running", "container_id": "c" * 64}
    api.answers[("POST", "/api/workloads/replace/")] = deployment
    api.answers[("GET", "/api/deployments/3/")] = deployment
    listings = iter([[new], [new], [{**new, "replaces": None}]])  # the old one goes at the end
    api.answers[("GET", "/api/workloads/")] = lambda _: next(listings, [{**new, "replaces": None}])
    argv = ["workload", "replace", "--pod", "eru", "--entry", "web", "--image", "y", "--label", "v=1"]
    code = main(
        [*argv, "--node", "node1", "--id", "7", "--batch", "2", "--timeout", "60", "--", "sleep", "9"]
    )
    assert code == 0
    assert api.sent("POST", "/api/workloads/replace/") == {
        "pod": "eru", "app": "web", "entrypoint": "web", "image": "y", "command": ["sleep", "9"],
        "filter_labels": {"v": "1"}, "nodes": ["node1"], "ids": [7], "batch": 2, "timeout": 60,
    }  # fmt: skip
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["OLD", "NEW", "NAME", "NODE", "STATE", "CONTAINER", "ERROR"]
    assert out.splitlines()[1].split()[:5] == ["7", "9", "web_1", "node1", "running"]
    assert "  1/1 (100%): 1 running, 0 failed [done]" in err.splitlines()  # the plain lines


def test_a_replace_that_is_not_done_exits_1(api: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    d = {"id": 4, "app": "web", "entrypoint": "web", "pod": "eru", "total": 2, "succeeded": 1, "failed": 0,
         "state": "cancelled", "error": "timed out after 60s"}  # fmt: skip
    api.answers[("POST", "/api/workloads/replace/")] = d
    api.answers[("GET", "/api/workloads/")] = []
    assert main(["workload", "replace", "--pod", "eru", "--entry", "web"]) == 1
    assert api.sent("POST", "/api/workloads/replace/") == {
        "pod": "eru", "app": "web", "entrypoint": "web",
        "filter_labels": {}, "nodes": [], "ids": [], "batch": 1,
    }  # fmt: skip
    assert "error: deployment 4 cancelled: timed out after 60s" in capsys.readouterr().err


def test_realloc_sends_deltas_in_bytes(api: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    api.answers[("POST", "/api/workloads/7/realloc/")] = WORKLOAD
    argv = ["workload", "realloc", "--cpu-limit", "-0.5", "--memory-limit", "-256M", "--cpu-unbind", "7"]
    assert main(argv) == 0
    assert api.sent("POST", "/api/workloads/7/realloc/") == {
        "cpu_request": 0.0, "cpu_limit": -0.5, "memory_request": 0, "memory_limit": -(256 << 20),
        "cpu_bind": False,
    }  # fmt: skip
    out = capsys.readouterr().out
    assert "request 1.5, limit 1.5" in out
    assert "0=100,1=50" in out
    assert main(["workload", "realloc", "--memory-request", "1G", "7"]) == 0
    assert api.calls[-1][2]["cpu_bind"] is None  # neither flag: kept as it is


def test_node_set_resource_and_dissociate_and_cancel_bodies(
    api: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    node = {"name": "node1", "labels": {}, "cpu": 2, "cpu_map": {"0": 100, "1": 100}, "memory": 8 << 30}
    api.answers[("PATCH", "/api/nodes/node1/")] = node
    assert main(["node", "set", "node1", "--label", "a=1"]) == 0
    assert api.calls[-1][2] == {"labels": {"a": "1"}, "delta": False, "over_commit": False}
    assert main(["node", "set", "node1", "--memory", "-2G", "--cpu", "-1", "--delta"]) == 0
    assert api.calls[-1][2] == {"cpu": -1, "memory": -(2 << 30), "delta": True, "over_commit": False}
    assert main(["node", "set", "node1", "--cpu", "0:100,1:100", "--over-commit"]) == 0
    assert api.calls[-1][2] == {"cpu": "0:100,1:100", "delta": False, "over_commit": True}
    assert "capacity: cpu 2 (2 cores: 0:100 1:100), memory 8G" in capsys.readouterr().out
    report = {"node": "node1", "ok": False, "diffs": ["memory: recorded 1G, counted 512M"]}
    api.answers[("GET", "/api/nodes/node1/resource/")] = report
    api.answers[("POST", "/api/nodes/node1/resource/")] = {
        **report,
        "ok": True,
        "diffs": [],
        "fixed": report["diffs"],
    }
    assert main(["node", "resource", "node1"]) == 1
    assert "  memory: recorded 1G, counted 512M" in capsys.readouterr().out.splitlines()
    assert main(["node", "resource", "node1", "--fix"]) == 0
    assert api.calls[-1][:2] == ("POST", "/api/nodes/node1/resource/")
    assert "fixed: memory: recorded 1G, counted 512M" in capsys.readouterr().out
    gone = [{"name": "w", "node": "node1", "container_id": "c" * 64}]
    api.answers[("POST", "/api/workloads/dissociate/")] = {"dissociated": gone}
    assert main(["workload", "dissociate", "7", "8"]) == 0
    assert api.calls[-1][2] == {"ids": [7, 8]}
    assert capsys.readouterr().out.splitlines()[:2] == ["NAME  NODE   CONTAINER", f"w     node1  {'c' * 12}"]
    assert main(["workload", "dissociate", "--node", "node1"]) == 0
    assert api.calls[-1][2] == {"node": "node1"}
    assert main(["workload", "dissociate"]) == 1
    api.answers[("POST", "/api/deployments/5/cancel/")] = {"id": 5, "state": "cancelled", "succeeded": 1,
                                                          "failed": 0, "total": 3}  # fmt: skip
    assert main(["deployment", "cancel", "5"]) == 0
    assert "deployment 5: cancelled" in capsys.readouterr().out


def test_exec_streams_both_outputs_and_exits_with_the_command_s_code(
    api: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    api.streams["/api/workloads/7/exec/"] = [
        {"stream": "stdout", "data": "hel"},  # parts of what it wrote, as they come
        {"stream": "stderr", "data": "oops\n"},
        {"stream": "stdout", "data": "lo\na\nb\n"},
        {"exit_code": 3},
    ]
    assert main(["workload", "exec", "7", "--env", "A=1", "--workdir", "/tmp", "--", "sh", "-c", "x"]) == 3
    sent = {"command": ["sh", "-c", "x"], "env": ["A=1"], "workdir": "/tmp", "user": ""}
    assert api.calls[-1] == ("POST", "/api/workloads/7/exec/", sent)
    out, err = capsys.readouterr()
    assert (out, err) == ("hello\na\nb\n", "oops\n")
    api.streams["/api/workloads/7/exec/"] = [{"exit_code": None, "timed_out": True, "message": "timed out"}]
    assert main(["workload", "exec", "7", "--run-timeout", "5", "--", "sleep", "9"]) == 1
    assert api.calls[-1][2]["timeout"] == 5
    assert capsys.readouterr().err == "error: workload 7: timed out\n"
    api.streams["/api/workloads/7/exec/"] = [{"error": "workload 7 is not running"}]
    assert main(["workload", "exec", "7", "--", "true"]) == 1
    assert capsys.readouterr().err == "error: workload 7: workload 7 is not running\n"


def test_a_terminal_gets_a_progress_bar_instead_of_the_plain_lines(
    api: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert progress.is_terminal()
    d = {"id": 3, "app": "web", "entrypoint": "web", "pod": "eru", "plan": {"node1": 1}, "total": 1,
         "succeeded": 1, "failed": 0, "percent": 100, "state": "done"}  # fmt: skip
    api.answers[("POST", "/api/deployments/")] = d
    api.answers[("GET", "/api/workloads/")] = []
    assert main(["workload", "deploy", "--pod", "eru", "--entry", "web", "--image", "x", "--", "true"]) == 0
    assert "1/1 (100%)" not in err.getvalue()
    assert "deployment 3" in err.getvalue()
    assert "1/1" in err.getvalue()  # rich's M/N column

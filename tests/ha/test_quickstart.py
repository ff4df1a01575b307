"""The README's first command, as an operator runs it: `bin/eru up` brings up the embedded cluster
(etcd, Redis, one dockerd node, web, workers, beat, the gRPC core, the node's agent), `bin/eru token`
gives a token, a deploy through the REST API runs a container on the node, its removal removes it,
`bin/eru status` says every part is up, and `bin/eru down` stops them all.

Runs only with ERU_QUICKSTART_TEST=1 (bin/test's last tier sets it): it starts and stops the cluster
of var/cluster on its fixed ports. A cluster this checkout's `bin/eru up` runs already is left alone
(the test is skipped); ports another checkout holds fail it, with their names."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from embedded import clients, eru
from embedded.config import ROOT

pytestmark = pytest.mark.ha

BIN = str(ROOT / "bin" / "eru")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def up() -> Iterator[str]:
    """`bin/eru up` from this checkout; `bin/eru down` after, whatever happened. The API's base URL."""
    if os.environ.get("ERU_QUICKSTART_TEST") != "1":
        pytest.skip("the quickstart test runs with ERU_QUICKSTART_TEST=1 (bin/test's last tier)")
    if (ROOT / "var" / "cluster" / "env").is_file() and _run("status", timeout=60).returncode == 0:
        pytest.skip("bin/eru up runs in this checkout already: the test leaves it alone")
    ports = {"web": eru.web_port(), "gRPC": eru.grpc_port(), "etcd": eru.PORT_BASE + 90}
    taken = [f"{name} {port}" for name, port in ports.items() if _taken(port)]
    assert not taken, f"ports in use by someone else (another checkout's bin/eru up?): {taken}"
    try:
        started = _run("up")
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert "Eru portal is up" in started.stdout
        yield f"http://127.0.0.1:{eru.web_port()}/api"
    finally:
        stopped = _run("down")
        assert stopped.returncode == 0, stopped.stderr[-3000:]
        status = _run("status", timeout=60)
        assert status.returncode != 0
        lines = [line for line in status.stdout.splitlines() if line.strip()]
        assert lines, status.stderr
        assert all(line.split()[1] == "down" for line in lines), status.stdout


def test_bin_eru_up_deploys_a_container_and_down_stops_everything(up: str) -> None:
    token = _run("token", timeout=60)
    assert token.returncode == 0, token.stderr
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Token {token.stdout.strip().splitlines()[-1]}"

    def node_up() -> bool:  # the agent's first heartbeat came through the core
        nodes = session.get(f"{up}/nodes/", timeout=10).json()["results"]
        return bool(nodes) and all(n["available"] for n in nodes)

    _until("node1 up", node_up, 60)
    body = {
        "pod": "eru",
        "app": "quickstart",
        "entrypoint": "web",
        "image": "eru/busybox:latest",
        "command": ["sleep", "3600"],
        "count": 1,
        "cpu_limit": 0.1,
        "memory_limit": "16M",
    }
    r = session.post(f"{up}/deployments/", json=body, timeout=30)
    assert r.status_code == 201, r.text
    url = f"{up}/deployments/{r.json()['id']}/"
    done = _until(
        "the deploy", lambda: (d := session.get(url, timeout=10).json())["state"] != "running" and d, 60
    )
    assert (done["state"], done["succeeded"]) == ("done", 1), done
    workloads = session.get(f"{up}/workloads/?app=quickstart", timeout=10).json()["results"]
    assert len(workloads) == 1, workloads
    w = workloads[0]
    sock = eru.cluster().config.node(1).socket
    with clients.docker_client(sock) as docker:
        container = docker.containers.get(w["container_id"])
        assert container.status == "running"
        assert container.name == w["name"]
    status = _run("status", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr  # every part up

    r = session.delete(f"{up}/workloads/{w['id']}/", timeout=30)
    assert r.status_code in (202, 204), r.text

    def gone() -> bool:
        with clients.docker_client(sock) as docker:
            left = docker.containers.list(all=True, filters={"name": w["name"]})
        return not left and session.get(f"{up}/workloads/{w['id']}/", timeout=10).status_code == 404

    _until("the removal", gone, 60)

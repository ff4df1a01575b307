"""Eru's spec file and the spec policy, on the real nodes: every field reaches the container (inspected
in Docker), errors name their path in the spec, and what a member who is not an administrator may ask
for is the pod policy's to grant (audited)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from clusters import services
from clusters.models import AuditEvent, Deployment, PodMember, Workload
from tests.conftest import IMAGE, wait_for

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec(port: int, data_dir: str) -> dict[str, Any]:
    return {
        "appname": "web",
        "entrypoints": {
            "api": {
                "cmd": "httpd -f -p 80 -h /data",
                "dir": "/data",
                "log": {"type": "json-file", "config": {"max-size": "1m"}},
                "publish": [f"{port}:80"],
                "restart": "on-failure:3",
                "sysctls": {"net.core.somaxconn": "1024"},
                "hook": {"after_start": ["touch /tmp/started"], "force": True},
            }
        },
        "volumes": [f"{data_dir}:/data:ro", "webcache:/cache"],
        "labels": {"team": "infra"},
        "dns": ["10.0.0.53"],
        "extra_hosts": ["db.local:10.0.0.5"],
    }


BASE = {"pod": "eru", "image": IMAGE, "cpu_limit": 0.5, "memory_limit": "32M", "cpu_bind": False,
        "node_names": ["node1"]}  # fmt: skip


def _deploy(api: APIClient, body: dict[str, Any]) -> Any:
    return api.post("/api/deployments/", {**BASE, **body}, format="json")


def test_every_spec_field_reaches_the_container(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any], admin_user: Any, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("hello from the spec\n")
    tmp_path.chmod(0o755)
    port = _port()
    api = APIClient()
    api.force_authenticate(admin_user)
    answer = _deploy(api, {"entrypoint": "api", "spec": _spec(port, str(tmp_path)), "cap_add": ["NET_ADMIN"]})
    assert answer.status_code == 201, answer.json()
    d = wait_for(lambda: (row := Deployment.objects.get(pk=answer.json()["id"])).is_final and row)
    w = d.workloads.get()
    assert d.state == Deployment.State.DONE, w.error
    assert (w.app, w.entrypoint, w.command) == ("web", "api", ["httpd", "-f", "-p", "80", "-h", "/data"])
    c = docker_clean["node1"].containers.get(w.container_id)
    host, config = c.attrs["HostConfig"], c.attrs["Config"]
    assert config["WorkingDir"] == "/data"
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert host["Dns"] == ["10.0.0.53"]
    assert host["ExtraHosts"] == ["db.local:10.0.0.5"]
    assert sorted(host["Binds"]) == sorted([f"{tmp_path}:/data:ro", "webcache:/cache"])
    assert host["CapAdd"] == ["NET_ADMIN"]
    assert config["Labels"]["team"] == "infra"
    assert c.exec_run(["ls", "/tmp/started"]).exit_code == 0  # the after_start hook ran
    # published on the node, and answering there
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    wait_for(lambda: _get(conn) == "hello from the spec\n", timeout=10)
    assert any(p["public"] == port and p["private"] == 80 for p in w.ports)


def test_privileged_reaches_docker(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any], admin_user: Any
) -> None:
    """This machine's dockerd cannot start a privileged container (its bounding set lacks a
    capability: "unable to apply caps"), so the deploy fails here with Docker's word for it and leaves
    nothing; what the core asks of Docker is checked on a container created, not started, from the
    same options."""
    api = APIClient()
    api.force_authenticate(admin_user)
    answer = _deploy(api, {"app": "priv", "entrypoint": "e", "command": ["sleep", "60"], "privileged": True})
    assert answer.status_code == 201
    d = wait_for(lambda: (row := Deployment.objects.get(pk=answer.json()["id"])).is_final and row, timeout=60)
    w = d.workloads.get()
    from clusters import selectors

    spec = selectors.container_spec(w)
    assert spec["options"] == {"privileged": True}
    made = docker_clean["node1"].containers.create(IMAGE, ["true"], labels={"ERU": "1"}, **spec["options"])
    assert made.attrs["HostConfig"]["Privileged"] is True
    if d.state == Deployment.State.FAILED:
        assert "caps" in w.error
    else:  # a dockerd that can: it runs privileged
        assert docker_clean["node1"].containers.get(w.container_id).attrs["HostConfig"]["Privileged"] is True


def _get(conn: http.client.HTTPConnection) -> str:
    try:
        conn.request("GET", "/index.html")
        return conn.getresponse().read().decode()
    except OSError:
        conn.close()
        return ""


def test_spec_errors_name_their_path_and_change_nothing(nodes: list[Any], admin_user: Any) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    spec = {"appname": "web", "entrypoints": {"api": {"cmd": "sleep 60", "restart": "sometimes", "bogus": 1}}}
    got = _deploy(api, {"entrypoint": "api", "spec": spec}).json()
    assert got["spec.entrypoints.api.bogus"] == ["spec.entrypoints.api.bogus: unknown field"]
    spec["entrypoints"]["api"].pop("bogus")
    got = _deploy(api, {"entrypoint": "api", "spec": spec}).json()
    assert got["spec.entrypoints.api.restart"] == ["restart: no, always, unless-stopped or on-failure[:N]"]
    assert (
        "entry db not found in specs (it has: api)"
        in _deploy(api, {"entrypoint": "db", "spec": spec}).json()["entrypoint"][0]
    )
    assert "spec.builds" in _deploy(api, {"entrypoint": "api", "spec": {**spec, "builds": {}}}).json()
    auto = {**spec, "volumes": ["AUTO:/data:rw:10G"]}
    auto["entrypoints"] = {"api": {"cmd": "sleep 60"}}
    assert "storage plugin" in _deploy(api, {"entrypoint": "api", "spec": auto}).json()["spec.volumes"][0]
    assert "line 2" in _deploy(api, {"entrypoint": "api", "spec": "appname: web\n  : : ["}).json()["spec"][0]
    assert _deploy(
        api, {"entrypoint": "api", "app": "web", "command": ["sleep", "1"], "privilegd": True}
    ).json() == {"privilegd": ["privilegd: unknown field"]}
    assert not Deployment.objects.exists()


def test_the_pod_policy_grants_what_members_may_ask_for(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any], admin_user: Any, deployer: Any
) -> None:
    pod = nodes[0].pod
    PodMember.objects.create(pod=pod, user=deployer, role=PodMember.Role.DEPLOYER)
    member, admin = APIClient(), APIClient()
    member.force_authenticate(deployer)
    admin.force_authenticate(admin_user)
    base = {"app": "pol", "entrypoint": "e", "command": ["sleep", "600"]}
    asks = {
        "privileged": True,
        "network": "host",
        "volumes": ["/var/run/docker.sock:/var/run/docker.sock", "/etc:/host-etc:ro"],
        "sysctls": {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "512"},
        "cap_add": ["SYS_ADMIN"],
    }
    refused = _deploy(member, {**base, **asks}).json()
    assert "pod policy's 'privileged'" in refused["privileged"][0]
    assert "pod policy's 'host_network'" in refused["network"][0]
    assert [m.split(";")[0] for m in refused["volumes"]] == [
        "volumes: /var/run/docker.sock reaches the Docker socket: it needs the pod policy's 'docker_socket'",
        "volumes: host path /etc is outside the pod policy's 'host_paths' (none)",
    ]
    assert len(refused["sysctls"]) == 1  # somaxconn is a safe one
    assert "capability SYS_ADMIN" in refused["cap_add"][0]
    assert not Deployment.objects.exists()
    assert member.put(f"/api/pods/{pod.name}/policy/", {"privileged": True}, format="json").status_code == 403
    grant = {
        "privileged": True,
        "host_paths": ["/etc"],
        "sysctls": ["net.ipv4.ip_forward"],
        "cap_add": ["sys_admin"],
    }
    policy = admin.put(f"/api/pods/{pod.name}/policy/", grant, format="json")
    assert policy.status_code == 200, policy.json()
    assert policy.json()["cap_add"] == ["SYS_ADMIN"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.POD_POLICY)
    assert (event.before["privileged"], event.after["privileged"]) == (False, True)
    granted = {k: v for k, v in asks.items() if k not in ("network", "privileged")}  # privileged: see above
    granted["volumes"] = ["/etc:/host-etc:ro"]
    still = refused_now(deployer, {**base, **asks, "network": ""})
    assert list(still) == ["volumes"]  # granted now but the Docker socket
    assert "docker_socket" in still["volumes"][0]
    answer = _deploy(member, {**base, **granted})
    assert answer.status_code == 201, answer.json()
    d = wait_for(lambda: (row := Deployment.objects.get(pk=answer.json()["id"])).is_final and row)
    host = docker_clean["node1"].containers.get(d.workloads.get().container_id).attrs["HostConfig"]
    assert host["Privileged"] is False  # exactly what was granted and asked for
    assert host["CapAdd"] == ["SYS_ADMIN"]
    assert host["Binds"] == ["/etc:/host-etc:ro"]
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "512"}
    assert member.get(f"/api/pods/{pod.name}/policy/").json()["host_paths"] == ["/etc"]


def refused_now(user: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The policy's refusals of a request for this user, asked of the service without deploying."""
    from django.core.exceptions import ValidationError

    from clusters.models import Pod
    from clusters.services.policy import require_spec_allowed

    pod = Pod.objects.get(name="eru")
    spec = services.deployment_validate(pod=pod, data={**BASE, **body})
    try:
        require_spec_allowed(user, pod, spec.request)
    except ValidationError as exc:
        return dict(exc.message_dict)
    return {}


def test_a_forced_after_start_hook_that_fails_fails_the_workload(
    nodes: list[Any], worker: Any, docker_clean: dict[str, Any], admin_user: Any
) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    hook = {"after_start": ["sh -c 'echo not ready >&2; exit 4'"], "force": True}
    answer = _deploy(api, {"app": "hk", "entrypoint": "e", "command": ["sleep", "600"], "hook": hook})
    d = wait_for(lambda: (row := Deployment.objects.get(pk=answer.json()["id"])).is_final and row)
    w = d.workloads.get()
    assert (d.state, w.state) == (Deployment.State.FAILED, Workload.State.FAILED)
    assert "after_start hook failed (force)" in w.error
    assert "exited 4 (its output is in the worker's log)" in w.error
    assert "exited 4: not ready" not in w.error  # the output may carry secrets: every member reads it
    wait_for(lambda: not docker_clean["node1"].containers.list(all=True, filters={"label": "ERU=1"}))
    soft = {"after_start": ["false"], "before_stop": ["touch /tmp/stopping"]}
    answer = _deploy(api, {"app": "hk", "entrypoint": "soft", "command": ["sleep", "600"], "hook": soft})
    d = wait_for(lambda: (row := Deployment.objects.get(pk=answer.json()["id"])).is_final and row)
    assert d.state == Deployment.State.DONE  # not forced: it runs
    w = d.workloads.get()
    services.workload_control(actor=services.SYSTEM, workload=w, action="stop")
    wait_for(lambda: Workload.objects.get(pk=w.pk).state == Workload.State.STOPPED)
    stopped = docker_clean["node1"].containers.get(w.container_id)
    assert stopped.status == "exited"
    stopped.get_archive("/tmp/stopping")  # the before_stop hook ran in it first (NotFound otherwise)


def test_erucli_deploys_an_eru_spec_file(
    nodes: list[Any],
    worker: Any,
    docker_clean: dict[str, Any],
    admin_user: Any,
    live_server: Any,
    tmp_path: Path,
) -> None:
    spec = tmp_path / "app.yaml"
    spec.write_text("appname: redisish\nentrypoints:\n  main:\n    cmd: sleep 600\n    restart: always\n"
                    "labels: {team: infra}\n")  # fmt: skip
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="cli")
    env = {**os.environ, "ERU": live_server.url, "ERU_TOKEN": token}
    argv = [sys.executable, "-m", "erucli", "workload", "deploy", "--pod", "eru", "--entry", "main",
            "--image", IMAGE, "--cpu", "0.2", "--memory", "32M", "--node", "node1", str(spec)]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    w = Workload.objects.get(app="redisish")
    assert (w.entrypoint, w.command, w.labels) == ("main", ["sleep", "600"], {"team": "infra"})
    c = docker_clean["node1"].containers.get(w.container_id)
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
    spec.write_text("appname: x\nentrypoints:\n  main:\n    cmd: sleep 600\n    restrat: always\n")
    bad = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "spec.entrypoints.main.restrat: unknown field" in bad.stderr

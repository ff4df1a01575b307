"""Eru's spec file and the container options, without a node: what a spec gives a deploy, the body's
fields on top, and every refusal with its path."""

from __future__ import annotations

import pytest

from schema import DeployRequest, SchemaError
from schema.container import docker_options
from schema.spec import merged

SPEC = """
appname: redis
entrypoints:
  singular:
    cmd: "redis-server --appendonly yes"
    dir: /data
    publish: ["6379"]
    healthcheck: {tcp_ports: ["6379"]}
    hook: {after_start: ["sh -c 'echo started'"], force: true}
    restart: always
    sysctls: {net.core.somaxconn: "1024"}
  sidecar:
    commands: ["sleep", "600"]
volumes: ["/var/log:/var/log"]
labels: {team: infra}
dns: ["8.8.8.8"]
extra_hosts: ["db.local:10.0.0.5"]
"""


def test_an_entrypoint_of_a_spec_with_the_body_on_top() -> None:
    data, origins = merged(
        {"spec": SPEC, "entrypoint": "singular", "pod": "eru", "image": "redis:7", "env": ["A=1"]}
    )
    r = DeployRequest.parse(data)
    assert (r.app, r.entrypoint, r.command) == ("redis", "singular", ["redis-server", "--appendonly", "yes"])
    assert (r.dir, r.publish, r.restart, r.env) == ("/data", ["6379"], "always", ["A=1"])
    assert r.healthcheck is not None
    assert r.healthcheck.tcp_ports == ["6379"]
    assert r.container_options()["hook"]["force"] is True
    assert origins["restart"] == "spec.entrypoints.singular.restart"
    assert origins["labels"] == "spec.labels"
    assert "env" not in origins  # the body's own
    options = docker_options(r.container_options())
    assert options["ports"] == {"6379/tcp": 6379}
    assert options["restart_policy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert options["extra_hosts"] == {"db.local": "10.0.0.5"}
    assert options["volumes"] == ["/var/log:/var/log"]
    other, _ = merged({"spec": SPEC, "entrypoint": "sidecar", "command": ["sleep", "1"]})
    assert other["command"] == ["sleep", "1"]  # given in both: the body's


@pytest.mark.parametrize(
    ("body", "path", "text"),
    [
        ({"entrypoint": "nope"}, "entrypoint", "entry nope not found in specs (it has: sidecar, singular)"),
        ({"entrypoint": "singular", "app": "other"}, "app", "is not the spec's appname"),
        ({"entrypoint": "singular", "spec": "appname: [x"}, "spec", "not YAML"),
        ({"entrypoint": "singular", "spec": "- a list"}, "spec", "expected a mapping"),
        ({"entrypoint": "x", "spec": {"appname": "a", "entrypoints": {"x": {"cmd": "a", "privilegd": 1}}}},
         "spec.entrypoints.x.privilegd", "unknown field"),
        ({"entrypoint": "x", "spec": {"appname": "a", "entrypoints": {"x": {"publish": "80"}}}},
         "spec.entrypoints.x.publish", "valid list"),
        ({"entrypoint": "x", "spec": {"appname": "a", "entrypoints": {"x": {}}, "stages": ["b"]}},
         "spec.stages", "image builds are not done here"),
        ({"entrypoint": "x", "spec": {"appname": "a", "entrypoints": {"x": {"cmd": "a 'b"}}}},
         "spec.entrypoints.x.cmd", "No closing quotation"),
    ],
)  # fmt: skip
def test_a_bad_spec_names_its_path(body: dict[str, object], path: str, text: str) -> None:
    with pytest.raises(SchemaError) as err:
        merged({"spec": SPEC, **body})
    assert path in err.value.errors, err.value.errors
    assert text in err.value.errors[path][0]


@pytest.mark.parametrize(
    ("fields", "path", "text"),
    [
        ({"publish": ["80:"]}, "publish", "is not a port"),
        ({"publish": ["70000"]}, "publish", "is not a port"),
        ({"restart": "on-failure:x"}, "restart", "on-failure[:N]"),
        ({"dir": "relative"}, "dir", "absolute path"),
        ({"dns": ["resolver"]}, "dns", "not an IP address"),
        ({"extra_hosts": ["db.local"]}, "extra_hosts", "name:10.0.0.5"),
        ({"volumes": ["/a"]}, "volumes", "should look like"),
        ({"volumes": ["/a:/b:rx"]}, "volumes", "should look like"),
        ({"volumes": ["/a/../etc:/b"]}, "volumes", "should look like"),
        ({"sysctls": {"bad name": "1"}}, "sysctls", "not a sysctl name"),
        ({"cap_add": ["net admin"]}, "cap_add", "not a capability"),
        ({"hook": {"after_start": [""]}}, "hook.after_start", "non-empty line"),
        ({"log": {"type": "Json File"}}, "log.type", "not a log driver"),
        ({"privilegd": True}, "privilegd", "unknown field"),
    ],
)
def test_container_options_are_checked(fields: dict[str, object], path: str, text: str) -> None:
    base = {"pod": "eru", "app": "a", "entrypoint": "e", "image": "eru/busybox:latest"}
    with pytest.raises(SchemaError) as err:
        DeployRequest.parse({**base, **fields})
    assert path in err.value.errors, err.value.errors
    assert text in err.value.errors[path][0]

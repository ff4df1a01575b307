"""Eru's DeployOptions and ReplaceOptions as our deploy fields (agents.grpc_server.options), in the
shapes erucli v23.10.11 sends: dashed resource keys, a storage entry always, host network and user
root by default. Pure mapping: no database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from agents.grpc_server import options
from protocol import core_pb2 as pb

MiB = 1 << 20


def _resources(cpumem: dict[str, Any] | None = None, /, **storage: Any) -> dict[str, bytes]:
    """As erucli builds them: cpumem with its four keys (cpu-bind only when set) and storage."""
    cpu = {"cpu-request": 0.0, "cpu-limit": 1.0, "memory-request": 0, "memory-limit": 512 * MiB}
    store = {"storage-request": 0, "storage-limit": 0, "volumes-request": None, "volumes-limit": None}
    return {
        "cpumem": json.dumps({**cpu, **(cpumem or {})}).encode(),
        "storage": json.dumps({**store, **storage}).encode(),
    }


def erucli_deploy(**over: Any) -> pb.DeployOptions:
    """`erucli workload deploy --pod eru --entry web --image busybox spec.yaml` with its defaults."""
    fields: dict[str, Any] = {
        "name": "app",
        "entrypoint": pb.EntrypointOptions(name="web", commands=["sleep", "600"]),
        "resources": _resources(),
        "podname": "eru",
        "node_filter": pb.NodeFilter(),
        "image": "eru/busybox:latest",
        "count": 1,
        "networks": {"host": ""},
        "user": "root",
        "raw_args": b"",
    }
    fields.update(over)
    return pb.DeployOptions(**fields)


def _refused(call: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        call()
    return info.value.message_dict


def test_erucli_s_defaults_map_to_our_fields() -> None:
    d = options.deploy_fields(erucli_deploy())
    assert d.pod == "eru"
    assert d.excludes == []
    assert d.data == {
        "app": "app", "entrypoint": "web", "command": ["sleep", "600"], "image": "eru/busybox:latest",
        "count": 1, "network": "host", "strategy": "AUTO", "cpu_request": 0.0, "cpu_limit": 1.0,
        "memory_request": 0, "memory_limit": 512 * MiB, "cpu_bind": False,
    }  # fmt: skip


def test_every_entrypoint_and_placement_field_is_taken() -> None:
    ep = pb.EntrypointOptions(
        name="web", command="sh -c 'echo hi'", privileged=True, dir="/app", publish=["80", "53/udp"],
        log=pb.LogOptions(type="json-file", config={"max-size": "10m"}), restart="always",
        healthcheck=pb.HealthCheckOptions(tcp_ports=["80"], http_port="80", url="/ok", code=200),
        hook=pb.HookOptions(after_start=["echo up"], before_stop=["echo down"], force=True),
        sysctls={"net.core.somaxconn": "1024"},
    )  # fmt: skip
    opts = erucli_deploy(
        entrypoint=ep, extra_args="--verbose", nodenames=["node2"], env=["A=1"], dns=["1.1.1.1"],
        extra_hosts=["db:10.0.0.5"], networks={"bridge": ""}, labels={"team": "x"},
        nodelabels={"zone": "a"}, deploy_strategy=pb.DeployOptions.EACH, nodes_limit=3, count=2,
        node_filter=pb.NodeFilter(includes=["node1"], excludes=["node3"], labels={"disk": "ssd"}),
        resources=_resources({"cpu-request": 0.5, "cpu-bind": True}, **{"volumes-limit": ["/data:/data:ro"]}),
    )  # fmt: skip
    d = options.deploy_fields(opts)
    assert d.excludes == ["node3"]
    assert d.data == {
        "app": "app", "entrypoint": "web", "command": ["sh", "-c", "echo hi", "--verbose"], "count": 2,
        "privileged": True, "dir": "/app", "restart": "always", "publish": ["80", "53/udp"],
        "sysctls": {"net.core.somaxconn": "1024"},
        "log": {"type": "json-file", "config": {"max-size": "10m"}},
        "healthcheck": {"tcp_ports": ["80"], "http_port": "80", "code": 200, "url": "/ok"},
        "hook": {"after_start": ["echo up"], "before_stop": ["echo down"], "force": True},
        "image": "eru/busybox:latest", "env": ["A=1"], "dns": ["1.1.1.1"], "extra_hosts": ["db:10.0.0.5"],
        "labels": {"team": "x"}, "network": "bridge", "node_names": ["node1", "node2"],
        "node_labels": {"zone": "a", "disk": "ssd"}, "strategy": "EACH", "nodes_limit": 3,
        "cpu_request": 0.5, "cpu_limit": 1.0, "memory_request": 0, "memory_limit": 512 * MiB,
        "cpu_bind": True, "volumes": ["/data:/data:ro"],
    }  # fmt: skip


def test_no_resources_and_no_network_ask_nothing() -> None:
    d = options.deploy_fields(erucli_deploy(resources={}, networks={}))
    assert "network" not in d.data
    assert not set(d.data) & {"cpu_request", "cpu_limit", "memory_request", "memory_limit", "cpu_bind"}


def test_storage_is_refused_unless_zero() -> None:
    for key in ("storage-request", "storage-limit"):
        refused = _refused(
            lambda key=key: options.deploy_fields(erucli_deploy(resources=_resources(**{key: 1 << 30})))
        )
        assert list(refused) == [f"resources.storage.{key}"]
        assert "no storage plugin" in refused[f"resources.storage.{key}"][0]
    absent = options.deploy_fields(erucli_deploy(resources={"cpumem": b'{"cpu-limit": 1}'}))
    assert absent.data["cpu_limit"] == 1.0
    other = {"volumes-request": ["/a:/a"], "volumes-limit": ["/b:/b"]}
    assert list(_refused(lambda: options.deploy_fields(erucli_deploy(resources=_resources(**other))))) == [
        "resources.storage.volumes-request"
    ]


def test_bad_resources_are_named_by_their_dashed_key() -> None:
    bad = {"cpumem": b'{"cpu-limit": "lots", "memory-limit": 1.5, "keep-cpu-bind": true}', "gpu": b"{}"}
    refused = _refused(lambda: options.deploy_fields(erucli_deploy(resources=bad)))
    assert set(refused) == {
        "resources.cpumem.cpu-limit", "resources.cpumem.memory-limit", "resources.cpumem.keep-cpu-bind",
        "resources.gpu",
    }  # fmt: skip
    assert "no gpu resource plugin" in refused["resources.gpu"][0]
    assert list(_refused(lambda: options.deploy_fields(erucli_deploy(resources={"cpumem": b"{"})))) == [
        "resources.cpumem"
    ]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"user": "nobody"}, "user"),
        ({"debug": True}, "debug"),
        ({"open_stdin": True}, "open_stdin"),
        ({"data": {"/etc/x": b"x"}}, "data"),
        ({"modes": {"/etc/x": pb.FileMode(mode=0o644)}}, "modes"),
        ({"owners": {"/etc/x": pb.FileOwner(uid=1)}}, "owners"),
        ({"after_create": ["echo"]}, "after_create"),
        ({"raw_args": b'{"x": 1}'}, "raw_args"),
        ({"node_filter": pb.NodeFilter(all=True)}, "node_filter.all"),
        ({"deploy_strategy": pb.DeployOptions.DUMMY}, "deploy_strategy"),
        ({"networks": {"bridge": "10.0.0.9"}}, "networks"),
        ({"networks": {"a": "", "b": ""}}, "networks"),
        ({"extra_args": "-v"}, "extra_args"),  # with commands: Eru would drop it
        ({"podname": ""}, "podname"),
        ({"entrypoint": pb.EntrypointOptions(commands=["x"])}, "entrypoint.name"),
        ({"entrypoint": pb.EntrypointOptions(name="w", command="echo 'x")}, "entrypoint.command"),
        (
            {
                "ignore_hook": True,
                "entrypoint": pb.EntrypointOptions(name="w", hook=pb.HookOptions(after_start=["x"])),
            },
            "ignore_hook",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(over: dict[str, Any], field: str) -> None:
    refused = _refused(lambda: options.deploy_fields(erucli_deploy(**over)))
    assert list(refused) == [field]
    assert refused[field][0].startswith(f"{field}: ")


def test_every_refusal_at_once_and_the_calls_differ() -> None:
    refused = _refused(lambda: options.deploy_fields(erucli_deploy(user="x", debug=True, raw_args=b"y")))
    assert set(refused) == {"user", "debug", "raw_args"}
    lam = erucli_deploy(open_stdin=True, entrypoint=pb.EntrypointOptions(commands=["cat"]))
    assert options.deploy_fields(lam, "RunAndWait").data["entrypoint"] == "run"
    dummy = options.deploy_fields(erucli_deploy(deploy_strategy=pb.DeployOptions.DUMMY), "CalculateCapacity")
    assert "strategy" not in dummy.data
    assert (
        options.deploy_fields(erucli_deploy(ignore_hook=True)).data["app"] == "app"
    )  # no hook: nothing ignored


def erucli_replace(**over: Any) -> pb.ReplaceOptions:
    """`erucli workload replace --entry web --image img spec.yaml`: no resources, no network."""
    deploy = erucli_deploy(resources={}, networks={}, podname="", deploy_strategy=pb.DeployOptions.AUTO)
    fields: dict[str, Any] = {"deployOpt": deploy, "networkinherit": False}
    fields.update(over)
    return pb.ReplaceOptions(**fields)


def test_a_replace_takes_the_given_fields_and_the_selection() -> None:
    r = options.replace_fields(erucli_replace())
    assert (r.pod, r.ids) == ("", [])
    assert r.data == {
        "app": "app", "entrypoint": "web", "batch": 0, "command": ["sleep", "600"],
        "image": "eru/busybox:latest",
    }  # fmt: skip
    deploy = erucli_deploy(node_filter=pb.NodeFilter(includes=["node1"]), env=["A=1"], networks={})
    r = options.replace_fields(
        erucli_replace(
            deployOpt=deploy, filter_labels={"v": "1"}, IDs=["abc", "abc", "def"], networkinherit=True
        )
    )
    assert (r.pod, r.ids) == ("eru", ["abc", "def"])
    assert r.data["nodes"] == ["node1"]
    assert r.data["filter_labels"] == {"v": "1"}
    assert "network" not in r.data  # inherited: each keeps its own
    assert "cpu_limit" not in r.data  # a replace keeps each workload's resources


def test_a_replace_refuses_by_name() -> None:
    assert list(_refused(lambda: options.replace_fields(erucli_replace(copy={"/a": "/b"})))) == ["copy"]
    inherit = erucli_replace(networkinherit=True, deployOpt=erucli_deploy(networks={"bridge": ""}))
    assert list(_refused(lambda: options.replace_fields(inherit))) == ["networkinherit"]
    hooks = erucli_replace(deployOpt=erucli_deploy(ignore_hook=True))
    assert list(_refused(lambda: options.replace_fields(hooks))) == ["ignore_hook"]
    excl = erucli_replace(deployOpt=erucli_deploy(node_filter=pb.NodeFilter(excludes=["node1"])))
    assert list(_refused(lambda: options.replace_fields(excl))) == ["deployOpt.node_filter.excludes"]
    assert "deployOpt.name" in _refused(
        lambda: options.replace_fields(erucli_replace(deployOpt=erucli_deploy(name="")))
    )


def test_erucli_pod_capacity_s_shape_is_taken() -> None:
    """cmd/pod/capacity.go: cpu and memory (request and limit), storage {"storage": 0}, DUMMY."""
    resources = {"cpumem": b'{"cpu": 0.5, "memory": 268435456}', "storage": b'{"storage": 0}'}
    opts = pb.DeployOptions(
        podname="eru",
        entrypoint=pb.EntrypointOptions(name="0b6f2b1e-5a7c-4f51-9c1e-3d2a1b0c9d8e"),
        deploy_strategy=pb.DeployOptions.DUMMY,
        resources=resources,
    )
    data = options.deploy_fields(opts, "CalculateCapacity").data
    assert (data["cpu_request"], data["cpu_limit"]) == (0.5, 0.5)
    assert (data["memory_request"], data["memory_limit"]) == (256 * MiB, 256 * MiB)
    assert "strategy" not in data
    refused = _refused(lambda: options.deploy_fields(pb.DeployOptions(**{**_fields(opts), "resources": {
        "cpumem": b'{"cpu": 1}', "storage": b'{"storage": 1024}'}}), "CalculateCapacity"))  # fmt: skip
    assert "no storage plugin" in " ".join(refused["resources.storage.storage"])
    with pytest.raises(ValidationError):  # a deploy takes no `cpu` key: erucli never sends one there
        options.deploy_fields(erucli_deploy(resources={"cpumem": b'{"cpu": 1}'}))


def _fields(opts: pb.DeployOptions) -> dict[str, Any]:
    return {f.name: v for f, v in opts.ListFields()}


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1e400", "-Infinity"])
def test_numbers_that_are_not_finite_are_refused_by_name(value: str) -> None:
    cpumem = f'{{"cpu-limit": {value}}}'.encode()
    refused = _refused(lambda: options.deploy_fields(erucli_deploy(resources={"cpumem": cpumem})))
    assert "resources.cpumem.cpu-limit" in refused


def test_a_strategy_outside_eru_s_is_refused_by_name() -> None:
    refused = _refused(lambda: options.deploy_fields(erucli_deploy(deploy_strategy=9)))  # type: ignore[arg-type]
    assert "deploy_strategy" in refused


class _Ended:
    """A call's context as gRPC gives it once the call has terminated (a client that cancelled
    before the handler registered its callback: a race no client provokes on purpose)."""

    def __init__(self, terminated: bool) -> None:
        self.terminated, self.callbacks = terminated, []

    def add_callback(self, callback: Any) -> bool:
        if self.terminated:
            return False
        self.callbacks.append(callback)
        return True


def test_a_call_that_ended_before_its_handler_asked_is_seen_as_ended() -> None:
    from agents.grpc_server.base import ended

    assert ended(_Ended(terminated=True)).is_set()  # type: ignore[arg-type]
    live = _Ended(terminated=False)
    gone = ended(live)  # type: ignore[arg-type]
    assert not gone.is_set()
    live.callbacks[0]()  # the client goes
    assert gone.is_set()

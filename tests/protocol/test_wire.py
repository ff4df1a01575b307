"""protocol/core.proto against Eru's own (projecteru2/core v23.10.11, rpc/gen/core.proto): every name,
number and type Eru's side reads, the bytes on the wire, and that the committed modules are what
protocol/generate.py makes of the .proto."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from protocol import core_pb2
from protocol.generate import ROOT, generate
from tests.protocol.eru_table import ERU_ENUMS, ERU_MESSAGES, ERU_METHODS

# Eru's messages, enums and calls: tests/protocol/eru_table.py.
# Our replies that are Eru's message plus fields of ours only (numbered from 10001).
OUR_REPLIES = {"NodeStatusReply": "Empty"}
EXTENSION_FROM = 10001

SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_UINT64: "uint64",
}
LABELS = {"singular": FieldDescriptor.LABEL_OPTIONAL, "repeated": FieldDescriptor.LABEL_REPEATED}


def type_name(field: FieldDescriptor) -> str:
    """The field's type as the .proto writes it (an enum: its name, nested ones as Outer.Inner)."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        return str(field.enum_type.full_name).removeprefix("pb.")
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return SCALARS[field.type]
    entry = field.message_type
    if entry.GetOptions().map_entry:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map<{type_name(key)},{type_name(value)}>"
    return entry.name


def spec(field: FieldDescriptor) -> tuple[int, str, str]:
    # protobuf 7 has no FieldDescriptor.label; is_repeated is what is left of it.
    return field.number, type_name(field), "repeated" if field.is_repeated else "singular"


@pytest.mark.parametrize("message", sorted(ERU_MESSAGES))
def test_our_fields_are_erus_or_ours(message: str) -> None:
    for field in core_pb2.DESCRIPTOR.message_types_by_name[message].fields:
        if field.number < EXTENSION_FROM:
            assert spec(field) == ERU_MESSAGES[message].get(field.name), f"{message}.{field.name}"
            assert field.containing_oneof is None, f"{message}.{field.name}: Eru's fields have no presence"


@pytest.mark.parametrize("message", sorted(ERU_MESSAGES))
def test_we_carry_every_eru_field(message: str) -> None:
    ours = core_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name
    for name, eru in ERU_MESSAGES[message].items():
        assert name in ours, f"{message}.{name}"
        assert spec(ours[name]) == eru, f"{message}.{name}"


@pytest.mark.parametrize("message", sorted(OUR_REPLIES))
def test_our_replies_decode_as_erus(message: str) -> None:
    fields = core_pb2.DESCRIPTOR.message_types_by_name[message].fields
    eru = ERU_MESSAGES[OUR_REPLIES[message]]
    for field in fields:
        if field.name not in eru:
            assert field.number >= EXTENSION_FROM, f"{message}.{field.name}"


def test_service() -> None:
    service = core_pb2.DESCRIPTOR.services_by_name["CoreRPC"]
    assert service.full_name == "pb.CoreRPC"
    assert sorted(service.methods_by_name) == sorted(ERU_METHODS)
    for name, (request, response, client_streaming, server_streaming) in ERU_METHODS.items():
        method = service.methods_by_name[name]
        assert method.input_type.name == request, name
        assert OUR_REPLIES.get(method.output_type.name, method.output_type.name) == response, name
        assert method.client_streaming == client_streaming, name
        assert method.server_streaming == server_streaming, name


@pytest.mark.parametrize("enum", sorted(ERU_ENUMS))
def test_enums(enum: str) -> None:
    outer, _, inner = enum.rpartition(".")
    if outer:
        ours = core_pb2.DESCRIPTOR.message_types_by_name[outer].enum_types_by_name[inner]
    else:
        ours = core_pb2.DESCRIPTOR.enum_types_by_name[enum]
    assert {v.name: v.number for v in ours.values} == ERU_ENUMS[enum]


def test_every_message_of_ours_is_in_the_table() -> None:
    """A message added to the .proto is Eru's (in the table) or ours (numbered from 10001 or in
    pb.PortalRPC's messages, which this list names)."""
    ours_only = {"NodeStatusReply", "PublishedPort", "SetWorkloadsUsageOptions", "WorkloadUsage"}
    assert set(core_pb2.DESCRIPTOR.message_types_by_name) == set(ERU_MESSAGES) | ours_only


# The bytes Eru's side sends and reads, worked out by hand. A field's tag is the varint of
# (number << 3) | wire type (0: varint, 2: length-delimited). nodename, 1001, a string:
# 1001 << 3 | 2 = 8010 = 0b111110_1001010; as a varint, the low 7 bits first with the high bit set
# (1001010 | 0x80 = 0xca), then the rest (111110 = 0x3e): ca 3e. A map is a repeated entry message with
# key = 1 (tag 0a) and value = 2 (tag 12).
GOLDEN = [
    (core_pb2.Empty(), ""),
    (core_pb2.GetNodeOptions(nodename="n"), "ca3e 01 6e"),
    (
        core_pb2.SetNodeStatusOptions(nodename="node1", ttl=180),
        "ca3e 05 6e6f646531"  # 1001 nodename: "node1"
        "d03e b401",  # 1002 << 3 | 0 = 8016 = d0 3e; 180 = 0b1_0110100: b4 01
    ),
    (
        core_pb2.WorkloadStatus(
            id="abc",
            running=True,
            healthy=True,
            networks={"bridge": "10.0.0.2"},
            appname="app",
            nodename="node1",
            entrypoint="web",
        ),
        "ca3e 03 616263"  # 1001 id: "abc"
        "d03e 01"  # 1002 running: true
        "d83e 01"  # 1003 healthy: true (1003 << 3 = 8024 = 62 * 128 + 88)
        "e23e 12 0a06 627269646765 1208 31302e302e302e32"  # 1004 networks: entry of 18 bytes
        "fa3e 03 617070"  # 1007 appname: "app" (8058 = 62 * 128 + 122)
        "823f 05 6e6f646531"  # 1008 nodename: "node1" (8066 = 63 * 128 + 2)
        "8a3f 03 776562",  # 1009 entrypoint: "web"
    ),
    # Ours: 10001 << 3 | 0 = 80008 = 4 * 128**2 + 113 * 128 + 8: 88 f1 04.
    (core_pb2.NodeStatusReply(resync=True), "88f104 01"),
]


@pytest.mark.parametrize(
    ("message", "hex_bytes"), GOLDEN, ids=lambda v: type(v).__name__ if isinstance(v, Message) else "hex"
)
def test_golden_bytes(message: Message, hex_bytes: str) -> None:
    assert message.SerializeToString(deterministic=True) == bytes.fromhex(hex_bytes)


@functools.cache
def eru_classes() -> dict[str, type[Message]]:
    """Eru's messages, built from the table alone in a pool of the test's own (package erutest)."""
    file = descriptor_pb2.FileDescriptorProto(name="erutest/core.proto", package="erutest", syntax="proto3")
    types = {v: k for k, v in SCALARS.items()}
    nested: dict[str, descriptor_pb2.DescriptorProto] = {}
    for enum_name, values in ERU_ENUMS.items():
        outer, _, inner = enum_name.rpartition(".")
        if outer:
            nested.setdefault(outer, file.message_type.add(name=outer))
            enum = nested[outer].enum_type.add(name=inner)
        else:
            enum = file.enum_type.add(name=inner)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)

    def kind_of(field: descriptor_pb2.FieldDescriptorProto, kind: str) -> None:
        if kind in types:
            field.type = types[kind]
        else:
            field.type = FieldDescriptor.TYPE_ENUM if kind in ERU_ENUMS else FieldDescriptor.TYPE_MESSAGE
            field.type_name = f".erutest.{kind}"

    for message_name, fields in ERU_MESSAGES.items():
        message = nested.get(message_name) or file.message_type.add(name=message_name)
        for name, (number, kind, label) in fields.items():
            field = message.field.add(name=name, number=number, label=LABELS[label])
            if kind.startswith("map<"):  # a nested entry message: key = 1, value = 2
                entry = message.nested_type.add(name=f"{name.title().replace('_', '')}Entry")
                entry.options.map_entry = True
                key, value = kind[4:-1].split(",")
                entry.field.add(name="key", number=1, type=types[key], label=LABELS["singular"])
                kind_of(entry.field.add(name="value", number=2, label=LABELS["singular"]), value)
                field.type = FieldDescriptor.TYPE_MESSAGE
                field.type_name = f".erutest.{message_name}.{entry.name}"
            else:
                kind_of(field, kind)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"erutest.{name}"))
        for name in ERU_MESSAGES
    }


def test_eru_decodes_our_workload_status() -> None:
    ours = core_pb2.WorkloadStatus(
        id="abc",
        running=True,
        networks={"bridge": "10.0.0.2"},
        ttl=60,
        appname="app",
        nodename="node1",
        status="exited",
        exit_code=137,
        restart_count=2,
        health="unhealthy",
        up_seconds=1.5,
        name="app_web_1",
    )
    ours.ports.add(ip="0.0.0.0", private=80, public=8080, type="tcp")
    eru = eru_classes()["WorkloadStatus"].FromString(ours.SerializeToString())
    for name in ERU_MESSAGES["WorkloadStatus"]:
        assert getattr(eru, name) == getattr(ours, name), name


def test_eru_decodes_our_options_and_reply() -> None:
    classes = eru_classes()
    ours = core_pb2.SetWorkloadsStatusOptions(complete=True, nodename="node1")
    ours.status.add(id="abc", status="running")
    eru = classes["SetWorkloadsStatusOptions"].FromString(ours.SerializeToString())
    assert [s.id for s in eru.status] == ["abc"]
    reply = core_pb2.NodeStatusReply(resync=True).SerializeToString()
    assert classes["Empty"].FromString(reply).SerializeToString() == reply  # parsed, kept as unknown


def test_we_decode_erus_bytes() -> None:
    eru = eru_classes()["WorkloadStatus"](id="abc", healthy=True, networks={"host": ""}, extension=b"{}")
    ours = core_pb2.WorkloadStatus.FromString(eru.SerializeToString())
    assert ours.SerializeToString(deterministic=True) == eru.SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", ["core_pb2.py", "core_pb2.pyi", "core_pb2_grpc.py"])
def test_committed_modules_are_generated(tmp_path: Path, name: str) -> None:
    generate(tmp_path)
    assert (tmp_path / "protocol" / name).read_bytes() == (ROOT / "protocol" / name).read_bytes()


def _erucli_deploy(classes: dict[str, type[Message]]) -> Message:
    """A DeployOptions as erucli sends it (cmd/workload/deploy.go): dashed resource keys, a storage entry."""
    resources = {
        "cpumem": b'{"cpu-request": 0.1, "cpu-limit": 1, "memory-request": 0, "memory-limit": 536870912}',
        "storage": b'{"storage-request": 0, "storage-limit": 0, "volumes-request": null}',
    }
    entry = classes["EntrypointOptions"](name="web", commands=["sleep", "60"], publish=["80"])
    entry.healthcheck.CopyFrom(classes["HealthCheckOptions"](tcp_ports=["80"]))
    options = classes["DeployOptions"](
        name="app", entrypoint=entry, podname="eru", image="eru/busybox:latest", count=2,
        networks={"host": ""}, user="root", deploy_strategy=2, nodes_limit=1, resources=resources,
    )  # fmt: skip
    options.node_filter.includes.append("node1")
    return options


def test_we_decode_erucli_deploy_options() -> None:
    classes = eru_classes()
    eru = _erucli_deploy(classes)
    ours = core_pb2.DeployOptions.FromString(eru.SerializeToString())
    assert ours.SerializeToString(deterministic=True) == eru.SerializeToString(deterministic=True)
    assert ours.deploy_strategy == core_pb2.DeployOptions.EACH
    assert ours.entrypoint.healthcheck.tcp_ports == ["80"]
    assert ours.node_filter.includes == ["node1"]
    assert set(ours.resources) == {"cpumem", "storage"}
    run = classes["RunAndWaitOptions"](deploy_options=eru, cmd=b"stdin", async_timeout=5)
    decoded = core_pb2.RunAndWaitOptions.FromString(run.SerializeToString())
    assert decoded.deploy_options.name == "app"
    assert decoded.cmd == b"stdin"


def test_eru_decodes_our_attach_and_create_messages() -> None:
    classes = eru_classes()
    attach = core_pb2.AttachWorkloadMessage(
        workload_id="abc", data=b"[exitcode] 3", std_stream_type=core_pb2.ERUERROR
    )
    eru = classes["AttachWorkloadMessage"].FromString(attach.SerializeToString())
    assert (eru.workload_id, eru.data, eru.std_stream_type) == ("abc", b"[exitcode] 3", -1)
    created = core_pb2.CreateWorkloadMessage(id="abc", success=True, publish={"bridge": "10.0.0.2:80"})
    eru = classes["CreateWorkloadMessage"].FromString(created.SerializeToString())
    assert eru.success
    assert dict(eru.publish) == {"bridge": "10.0.0.2:80"}

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CoreInfo(_message.Message):
    __slots__ = ("version", "revison", "build_at", "golang_version", "os_arch", "identifier")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISON_FIELD_NUMBER: _ClassVar[int]
    BUILD_AT_FIELD_NUMBER: _ClassVar[int]
    GOLANG_VERSION_FIELD_NUMBER: _ClassVar[int]
    OS_ARCH_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    version: str
    revison: str
    build_at: str
    golang_version: str
    os_arch: str
    identifier: str
    def __init__(self, version: _Optional[str] = ..., revison: _Optional[str] = ..., build_at: _Optional[str] = ..., golang_version: _Optional[str] = ..., os_arch: _Optional[str] = ..., identifier: _Optional[str] = ...) -> None: ...

class GetNodeOptions(_message.Message):
    __slots__ = ("nodename", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, nodename: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "endpoint", "podname", "available", "bypass", "labels", "info", "resource_capacity", "resource_usage", "test")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    BYPASS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_USAGE_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    endpoint: str
    podname: str
    available: bool
    bypass: bool
    labels: _containers.ScalarMap[str, str]
    info: str
    resource_capacity: str
    resource_usage: str
    test: bool
    def __init__(self, name: _Optional[str] = ..., endpoint: _Optional[str] = ..., podname: _Optional[str] = ..., available: _Optional[bool] = ..., bypass: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., info: _Optional[str] = ..., resource_capacity: _Optional[str] = ..., resource_usage: _Optional[str] = ..., test: _Optional[bool] = ...) -> None: ...

class SetNodeStatusOptions(_message.Message):
    __slots__ = ("nodename", "ttl", "agent_version", "log_lines_dropped")
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOG_LINES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    ttl: int
    agent_version: str
    log_lines_dropped: int
    def __init__(self, nodename: _Optional[str] = ..., ttl: _Optional[int] = ..., agent_version: _Optional[str] = ..., log_lines_dropped: _Optional[int] = ...) -> None: ...

class NodeStatusReply(_message.Message):
    __slots__ = ("resync",)
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    resync: bool
    def __init__(self, resync: _Optional[bool] = ...) -> None: ...

class PublishedPort(_message.Message):
    __slots__ = ("ip", "private", "public", "type")
    IP_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ip: str
    private: int
    public: int
    type: str
    def __init__(self, ip: _Optional[str] = ..., private: _Optional[int] = ..., public: _Optional[int] = ..., type: _Optional[str] = ...) -> None: ...

class WorkloadStatus(_message.Message):
    __slots__ = ("id", "running", "healthy", "networks", "extension", "ttl", "appname", "nodename", "entrypoint", "status", "exit_code", "restart_count", "ports", "health", "up_seconds", "name", "seq")
    class NetworksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    APPNAME_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    UP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    running: bool
    healthy: bool
    networks: _containers.ScalarMap[str, str]
    extension: bytes
    ttl: int
    appname: str
    nodename: str
    entrypoint: str
    status: str
    exit_code: int
    restart_count: int
    ports: _containers.RepeatedCompositeFieldContainer[PublishedPort]
    health: str
    up_seconds: float
    name: str
    seq: int
    def __init__(self, id: _Optional[str] = ..., running: _Optional[bool] = ..., healthy: _Optional[bool] = ..., networks: _Optional[_Mapping[str, str]] = ..., extension: _Optional[bytes] = ..., ttl: _Optional[int] = ..., appname: _Optional[str] = ..., nodename: _Optional[str] = ..., entrypoint: _Optional[str] = ..., status: _Optional[str] = ..., exit_code: _Optional[int] = ..., restart_count: _Optional[int] = ..., ports: _Optional[_Iterable[_Union[PublishedPort, _Mapping]]] = ..., health: _Optional[str] = ..., up_seconds: _Optional[float] = ..., name: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class SetWorkloadsStatusOptions(_message.Message):
    __slots__ = ("status", "complete", "nodename", "listed_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    LISTED_AT_FIELD_NUMBER: _ClassVar[int]
    status: _containers.RepeatedCompositeFieldContainer[WorkloadStatus]
    complete: bool
    nodename: str
    listed_at: float
    def __init__(self, status: _Optional[_Iterable[_Union[WorkloadStatus, _Mapping]]] = ..., complete: _Optional[bool] = ..., nodename: _Optional[str] = ..., listed_at: _Optional[float] = ...) -> None: ...

class WorkloadsStatus(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _containers.RepeatedCompositeFieldContainer[WorkloadStatus]
    def __init__(self, status: _Optional[_Iterable[_Union[WorkloadStatus, _Mapping]]] = ...) -> None: ...

class WorkloadUsage(_message.Message):
    __slots__ = ("id", "cpu", "memory")
    ID_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    cpu: float
    memory: int
    def __init__(self, id: _Optional[str] = ..., cpu: _Optional[float] = ..., memory: _Optional[int] = ...) -> None: ...

class SetWorkloadsUsageOptions(_message.Message):
    __slots__ = ("nodename", "usage", "at")
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    usage: _containers.RepeatedCompositeFieldContainer[WorkloadUsage]
    at: float
    def __init__(self, nodename: _Optional[str] = ..., usage: _Optional[_Iterable[_Union[WorkloadUsage, _Mapping]]] = ..., at: _Optional[float] = ...) -> None: ...

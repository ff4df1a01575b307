from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TriOpt(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEEP: _ClassVar[TriOpt]
    TRUE: _ClassVar[TriOpt]
    FALSE: _ClassVar[TriOpt]

class StdStreamType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STDOUT: _ClassVar[StdStreamType]
    STDERR: _ClassVar[StdStreamType]
    TYPEWORKLOADID: _ClassVar[StdStreamType]
    ERUERROR: _ClassVar[StdStreamType]
KEEP: TriOpt
TRUE: TriOpt
FALSE: TriOpt
STDOUT: StdStreamType
STDERR: StdStreamType
TYPEWORKLOADID: StdStreamType
ERUERROR: StdStreamType

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

class Pod(_message.Message):
    __slots__ = ("name", "desc")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESC_FIELD_NUMBER: _ClassVar[int]
    name: str
    desc: str
    def __init__(self, name: _Optional[str] = ..., desc: _Optional[str] = ...) -> None: ...

class Pods(_message.Message):
    __slots__ = ("pods",)
    PODS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[Pod]
    def __init__(self, pods: _Optional[_Iterable[_Union[Pod, _Mapping]]] = ...) -> None: ...

class AddPodOptions(_message.Message):
    __slots__ = ("name", "desc")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESC_FIELD_NUMBER: _ClassVar[int]
    name: str
    desc: str
    def __init__(self, name: _Optional[str] = ..., desc: _Optional[str] = ...) -> None: ...

class RemovePodOptions(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetPodOptions(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class NodeResource(_message.Message):
    __slots__ = ("name", "diffs", "resource_capacity", "resource_usage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIFFS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_USAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    diffs: _containers.RepeatedScalarFieldContainer[str]
    resource_capacity: str
    resource_usage: str
    def __init__(self, name: _Optional[str] = ..., diffs: _Optional[_Iterable[str]] = ..., resource_capacity: _Optional[str] = ..., resource_usage: _Optional[str] = ...) -> None: ...

class GetNodeResourceOptions(_message.Message):
    __slots__ = ("opts", "fix")
    OPTS_FIELD_NUMBER: _ClassVar[int]
    FIX_FIELD_NUMBER: _ClassVar[int]
    opts: GetNodeOptions
    fix: bool
    def __init__(self, opts: _Optional[_Union[GetNodeOptions, _Mapping]] = ..., fix: _Optional[bool] = ...) -> None: ...

class AddNodeOptions(_message.Message):
    __slots__ = ("nodename", "endpoint", "podname", "ca", "cert", "key", "labels", "resources", "test")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    CA_FIELD_NUMBER: _ClassVar[int]
    CERT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    endpoint: str
    podname: str
    ca: str
    cert: str
    key: str
    labels: _containers.ScalarMap[str, str]
    resources: _containers.ScalarMap[str, bytes]
    test: bool
    def __init__(self, nodename: _Optional[str] = ..., endpoint: _Optional[str] = ..., podname: _Optional[str] = ..., ca: _Optional[str] = ..., cert: _Optional[str] = ..., key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Mapping[str, bytes]] = ..., test: _Optional[bool] = ...) -> None: ...

class RemoveNodeOptions(_message.Message):
    __slots__ = ("nodename",)
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    def __init__(self, nodename: _Optional[str] = ...) -> None: ...

class ListNodesOptions(_message.Message):
    __slots__ = ("podname", "all", "labels", "timeout_in_second", "skip_info")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_IN_SECOND_FIELD_NUMBER: _ClassVar[int]
    SKIP_INFO_FIELD_NUMBER: _ClassVar[int]
    podname: str
    all: bool
    labels: _containers.ScalarMap[str, str]
    timeout_in_second: int
    skip_info: bool
    def __init__(self, podname: _Optional[str] = ..., all: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., timeout_in_second: _Optional[int] = ..., skip_info: _Optional[bool] = ...) -> None: ...

class SetNodeOptions(_message.Message):
    __slots__ = ("nodename", "endpoint", "ca", "cert", "key", "labels", "resources", "delta", "workloads_down", "bypass")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CA_FIELD_NUMBER: _ClassVar[int]
    CERT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_DOWN_FIELD_NUMBER: _ClassVar[int]
    BYPASS_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    endpoint: str
    ca: str
    cert: str
    key: str
    labels: _containers.ScalarMap[str, str]
    resources: _containers.ScalarMap[str, bytes]
    delta: bool
    workloads_down: bool
    bypass: TriOpt
    def __init__(self, nodename: _Optional[str] = ..., endpoint: _Optional[str] = ..., ca: _Optional[str] = ..., cert: _Optional[str] = ..., key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Mapping[str, bytes]] = ..., delta: _Optional[bool] = ..., workloads_down: _Optional[bool] = ..., bypass: _Optional[_Union[TriOpt, str]] = ...) -> None: ...

class GetNodeStatusOptions(_message.Message):
    __slots__ = ("nodename",)
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    def __init__(self, nodename: _Optional[str] = ...) -> None: ...

class NodeStatusStreamMessage(_message.Message):
    __slots__ = ("nodename", "podname", "alive", "error")
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    nodename: str
    podname: str
    alive: bool
    error: str
    def __init__(self, nodename: _Optional[str] = ..., podname: _Optional[str] = ..., alive: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("id", "podname", "nodename", "name", "privileged", "labels", "publish", "image", "status", "create_time", "env", "resources")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PublishEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    id: str
    podname: str
    nodename: str
    name: str
    privileged: bool
    labels: _containers.ScalarMap[str, str]
    publish: _containers.ScalarMap[str, str]
    image: str
    status: WorkloadStatus
    create_time: int
    env: _containers.RepeatedScalarFieldContainer[str]
    resources: str
    def __init__(self, id: _Optional[str] = ..., podname: _Optional[str] = ..., nodename: _Optional[str] = ..., name: _Optional[str] = ..., privileged: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., publish: _Optional[_Mapping[str, str]] = ..., image: _Optional[str] = ..., status: _Optional[_Union[WorkloadStatus, _Mapping]] = ..., create_time: _Optional[int] = ..., env: _Optional[_Iterable[str]] = ..., resources: _Optional[str] = ...) -> None: ...

class Workloads(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    def __init__(self, workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ...) -> None: ...

class WorkloadID(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WorkloadIDs(_message.Message):
    __slots__ = ("IDs",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    IDs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, IDs: _Optional[_Iterable[str]] = ...) -> None: ...

class ListWorkloadsOptions(_message.Message):
    __slots__ = ("appname", "entrypoint", "nodename", "labels", "limit")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APPNAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    appname: str
    entrypoint: str
    nodename: str
    labels: _containers.ScalarMap[str, str]
    limit: int
    def __init__(self, appname: _Optional[str] = ..., entrypoint: _Optional[str] = ..., nodename: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class WorkloadStatusStreamOptions(_message.Message):
    __slots__ = ("appname", "entrypoint", "nodename", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APPNAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    appname: str
    entrypoint: str
    nodename: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, appname: _Optional[str] = ..., entrypoint: _Optional[str] = ..., nodename: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkloadStatusStreamMessage(_message.Message):
    __slots__ = ("id", "workload", "status", "error", "delete")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    id: str
    workload: Workload
    status: WorkloadStatus
    error: str
    delete: bool
    def __init__(self, id: _Optional[str] = ..., workload: _Optional[_Union[Workload, _Mapping]] = ..., status: _Optional[_Union[WorkloadStatus, _Mapping]] = ..., error: _Optional[str] = ..., delete: _Optional[bool] = ...) -> None: ...

class RemoveWorkloadOptions(_message.Message):
    __slots__ = ("IDs", "force")
    IDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    IDs: _containers.RepeatedScalarFieldContainer[str]
    force: bool
    def __init__(self, IDs: _Optional[_Iterable[str]] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveWorkloadMessage(_message.Message):
    __slots__ = ("id", "success", "hook")
    ID_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    id: str
    success: bool
    hook: str
    def __init__(self, id: _Optional[str] = ..., success: _Optional[bool] = ..., hook: _Optional[str] = ...) -> None: ...

class DissociateWorkloadOptions(_message.Message):
    __slots__ = ("IDs",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    IDs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, IDs: _Optional[_Iterable[str]] = ...) -> None: ...

class DissociateWorkloadMessage(_message.Message):
    __slots__ = ("id", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    error: str
    def __init__(self, id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ControlWorkloadOptions(_message.Message):
    __slots__ = ("IDs", "type", "force")
    IDS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    IDs: _containers.RepeatedScalarFieldContainer[str]
    type: str
    force: bool
    def __init__(self, IDs: _Optional[_Iterable[str]] = ..., type: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ControlWorkloadMessage(_message.Message):
    __slots__ = ("id", "error", "hook")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    id: str
    error: str
    hook: bytes
    def __init__(self, id: _Optional[str] = ..., error: _Optional[str] = ..., hook: _Optional[bytes] = ...) -> None: ...

class ReallocOptions(_message.Message):
    __slots__ = ("id", "resources")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    id: str
    resources: _containers.ScalarMap[str, bytes]
    def __init__(self, id: _Optional[str] = ..., resources: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class ReallocResourceMessage(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: str
    def __init__(self, error: _Optional[str] = ...) -> None: ...

class FileMode(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: int
    def __init__(self, mode: _Optional[int] = ...) -> None: ...

class FileOwner(_message.Message):
    __slots__ = ("uid", "gid")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class SendOptions(_message.Message):
    __slots__ = ("IDs", "data", "modes", "owners")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class ModesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FileMode
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FileMode, _Mapping]] = ...) -> None: ...
    class OwnersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FileOwner
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FileOwner, _Mapping]] = ...) -> None: ...
    IDS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    IDs: _containers.RepeatedScalarFieldContainer[str]
    data: _containers.ScalarMap[str, bytes]
    modes: _containers.MessageMap[str, FileMode]
    owners: _containers.MessageMap[str, FileOwner]
    def __init__(self, IDs: _Optional[_Iterable[str]] = ..., data: _Optional[_Mapping[str, bytes]] = ..., modes: _Optional[_Mapping[str, FileMode]] = ..., owners: _Optional[_Mapping[str, FileOwner]] = ...) -> None: ...

class SendMessage(_message.Message):
    __slots__ = ("id", "path", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    error: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class NodeFilter(_message.Message):
    __slots__ = ("includes", "excludes", "labels", "all")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INCLUDES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    includes: _containers.RepeatedScalarFieldContainer[str]
    excludes: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    all: bool
    def __init__(self, includes: _Optional[_Iterable[str]] = ..., excludes: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., all: _Optional[bool] = ...) -> None: ...

class HookOptions(_message.Message):
    __slots__ = ("after_start", "before_stop", "force")
    AFTER_START_FIELD_NUMBER: _ClassVar[int]
    BEFORE_STOP_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    after_start: _containers.RepeatedScalarFieldContainer[str]
    before_stop: _containers.RepeatedScalarFieldContainer[str]
    force: bool
    def __init__(self, after_start: _Optional[_Iterable[str]] = ..., before_stop: _Optional[_Iterable[str]] = ..., force: _Optional[bool] = ...) -> None: ...

class HealthCheckOptions(_message.Message):
    __slots__ = ("tcp_ports", "http_port", "url", "code")
    TCP_PORTS_FIELD_NUMBER: _ClassVar[int]
    HTTP_PORT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    tcp_ports: _containers.RepeatedScalarFieldContainer[str]
    http_port: str
    url: str
    code: int
    def __init__(self, tcp_ports: _Optional[_Iterable[str]] = ..., http_port: _Optional[str] = ..., url: _Optional[str] = ..., code: _Optional[int] = ...) -> None: ...

class LogOptions(_message.Message):
    __slots__ = ("type", "config")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    type: str
    config: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., config: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EntrypointOptions(_message.Message):
    __slots__ = ("name", "command", "privileged", "dir", "log", "publish", "healthcheck", "hook", "restart", "sysctls", "commands")
    class SysctlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    DIR_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    SYSCTLS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    command: str
    privileged: bool
    dir: str
    log: LogOptions
    publish: _containers.RepeatedScalarFieldContainer[str]
    healthcheck: HealthCheckOptions
    hook: HookOptions
    restart: str
    sysctls: _containers.ScalarMap[str, str]
    commands: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., command: _Optional[str] = ..., privileged: _Optional[bool] = ..., dir: _Optional[str] = ..., log: _Optional[_Union[LogOptions, _Mapping]] = ..., publish: _Optional[_Iterable[str]] = ..., healthcheck: _Optional[_Union[HealthCheckOptions, _Mapping]] = ..., hook: _Optional[_Union[HookOptions, _Mapping]] = ..., restart: _Optional[str] = ..., sysctls: _Optional[_Mapping[str, str]] = ..., commands: _Optional[_Iterable[str]] = ...) -> None: ...

class DeployOptions(_message.Message):
    __slots__ = ("name", "entrypoint", "podname", "nodenames", "image", "extra_args", "count", "env", "dns", "extra_hosts", "networks", "user", "debug", "open_stdin", "labels", "nodelabels", "deploy_strategy", "data", "nodes_limit", "ignore_hook", "after_create", "raw_args", "node_filter", "modes", "owners", "resources")
    class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AUTO: _ClassVar[DeployOptions.Strategy]
        FILL: _ClassVar[DeployOptions.Strategy]
        EACH: _ClassVar[DeployOptions.Strategy]
        GLOBAL: _ClassVar[DeployOptions.Strategy]
        DRAINED: _ClassVar[DeployOptions.Strategy]
        DUMMY: _ClassVar[DeployOptions.Strategy]
    AUTO: DeployOptions.Strategy
    FILL: DeployOptions.Strategy
    EACH: DeployOptions.Strategy
    GLOBAL: DeployOptions.Strategy
    DRAINED: DeployOptions.Strategy
    DUMMY: DeployOptions.Strategy
    class NetworksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodelabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class ModesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FileMode
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FileMode, _Mapping]] = ...) -> None: ...
    class OwnersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FileOwner
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FileOwner, _Mapping]] = ...) -> None: ...
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    NODENAMES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HOSTS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    OPEN_STDIN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODELABELS_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NODES_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IGNORE_HOOK_FIELD_NUMBER: _ClassVar[int]
    AFTER_CREATE_FIELD_NUMBER: _ClassVar[int]
    RAW_ARGS_FIELD_NUMBER: _ClassVar[int]
    NODE_FILTER_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    entrypoint: EntrypointOptions
    podname: str
    nodenames: _containers.RepeatedScalarFieldContainer[str]
    image: str
    extra_args: str
    count: int
    env: _containers.RepeatedScalarFieldContainer[str]
    dns: _containers.RepeatedScalarFieldContainer[str]
    extra_hosts: _containers.RepeatedScalarFieldContainer[str]
    networks: _containers.ScalarMap[str, str]
    user: str
    debug: bool
    open_stdin: bool
    labels: _containers.ScalarMap[str, str]
    nodelabels: _containers.ScalarMap[str, str]
    deploy_strategy: DeployOptions.Strategy
    data: _containers.ScalarMap[str, bytes]
    nodes_limit: int
    ignore_hook: bool
    after_create: _containers.RepeatedScalarFieldContainer[str]
    raw_args: bytes
    node_filter: NodeFilter
    modes: _containers.MessageMap[str, FileMode]
    owners: _containers.MessageMap[str, FileOwner]
    resources: _containers.ScalarMap[str, bytes]
    def __init__(self, name: _Optional[str] = ..., entrypoint: _Optional[_Union[EntrypointOptions, _Mapping]] = ..., podname: _Optional[str] = ..., nodenames: _Optional[_Iterable[str]] = ..., image: _Optional[str] = ..., extra_args: _Optional[str] = ..., count: _Optional[int] = ..., env: _Optional[_Iterable[str]] = ..., dns: _Optional[_Iterable[str]] = ..., extra_hosts: _Optional[_Iterable[str]] = ..., networks: _Optional[_Mapping[str, str]] = ..., user: _Optional[str] = ..., debug: _Optional[bool] = ..., open_stdin: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., nodelabels: _Optional[_Mapping[str, str]] = ..., deploy_strategy: _Optional[_Union[DeployOptions.Strategy, str]] = ..., data: _Optional[_Mapping[str, bytes]] = ..., nodes_limit: _Optional[int] = ..., ignore_hook: _Optional[bool] = ..., after_create: _Optional[_Iterable[str]] = ..., raw_args: _Optional[bytes] = ..., node_filter: _Optional[_Union[NodeFilter, _Mapping]] = ..., modes: _Optional[_Mapping[str, FileMode]] = ..., owners: _Optional[_Mapping[str, FileOwner]] = ..., resources: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class CreateWorkloadMessage(_message.Message):
    __slots__ = ("podname", "nodename", "id", "name", "error", "success", "publish", "hook", "resources")
    class PublishEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PODNAME_FIELD_NUMBER: _ClassVar[int]
    NODENAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    podname: str
    nodename: str
    id: str
    name: str
    error: str
    success: bool
    publish: _containers.ScalarMap[str, str]
    hook: bytes
    resources: str
    def __init__(self, podname: _Optional[str] = ..., nodename: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., error: _Optional[str] = ..., success: _Optional[bool] = ..., publish: _Optional[_Mapping[str, str]] = ..., hook: _Optional[bytes] = ..., resources: _Optional[str] = ...) -> None: ...

class CapacityMessage(_message.Message):
    __slots__ = ("total", "node_capacities")
    class NodeCapacitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NODE_CAPACITIES_FIELD_NUMBER: _ClassVar[int]
    total: int
    node_capacities: _containers.ScalarMap[str, int]
    def __init__(self, total: _Optional[int] = ..., node_capacities: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ReplaceOptions(_message.Message):
    __slots__ = ("deployOpt", "networkinherit", "filter_labels", "copy", "IDs")
    class FilterLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CopyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEPLOYOPT_FIELD_NUMBER: _ClassVar[int]
    NETWORKINHERIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_LABELS_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    deployOpt: DeployOptions
    networkinherit: bool
    filter_labels: _containers.ScalarMap[str, str]
    copy: _containers.ScalarMap[str, str]
    IDs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deployOpt: _Optional[_Union[DeployOptions, _Mapping]] = ..., networkinherit: _Optional[bool] = ..., filter_labels: _Optional[_Mapping[str, str]] = ..., copy: _Optional[_Mapping[str, str]] = ..., IDs: _Optional[_Iterable[str]] = ...) -> None: ...

class ReplaceWorkloadMessage(_message.Message):
    __slots__ = ("create", "remove", "error")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    create: CreateWorkloadMessage
    remove: RemoveWorkloadMessage
    error: str
    def __init__(self, create: _Optional[_Union[CreateWorkloadMessage, _Mapping]] = ..., remove: _Optional[_Union[RemoveWorkloadMessage, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class AttachWorkloadMessage(_message.Message):
    __slots__ = ("workload_id", "data", "std_stream_type")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STD_STREAM_TYPE_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    data: bytes
    std_stream_type: StdStreamType
    def __init__(self, workload_id: _Optional[str] = ..., data: _Optional[bytes] = ..., std_stream_type: _Optional[_Union[StdStreamType, str]] = ...) -> None: ...

class RunAndWaitOptions(_message.Message):
    __slots__ = ("deploy_options", "cmd", "async_timeout")
    DEPLOY_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    ASYNC_FIELD_NUMBER: _ClassVar[int]
    ASYNC_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    deploy_options: DeployOptions
    cmd: bytes
    async_timeout: int
    def __init__(self, deploy_options: _Optional[_Union[DeployOptions, _Mapping]] = ..., cmd: _Optional[bytes] = ..., async_timeout: _Optional[int] = ..., **kwargs) -> None: ...

class ExecuteWorkloadOptions(_message.Message):
    __slots__ = ("workload_id", "commands", "envs", "workdir", "open_stdin", "repl_cmd")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    ENVS_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    OPEN_STDIN_FIELD_NUMBER: _ClassVar[int]
    REPL_CMD_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    commands: _containers.RepeatedScalarFieldContainer[str]
    envs: _containers.RepeatedScalarFieldContainer[str]
    workdir: str
    open_stdin: bool
    repl_cmd: bytes
    def __init__(self, workload_id: _Optional[str] = ..., commands: _Optional[_Iterable[str]] = ..., envs: _Optional[_Iterable[str]] = ..., workdir: _Optional[str] = ..., open_stdin: _Optional[bool] = ..., repl_cmd: _Optional[bytes] = ...) -> None: ...

class LogStreamOptions(_message.Message):
    __slots__ = ("id", "tail", "since", "until", "follow")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    tail: str
    since: str
    until: str
    follow: bool
    def __init__(self, id: _Optional[str] = ..., tail: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogStreamMessage(_message.Message):
    __slots__ = ("id", "error", "data", "std_stream_type")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STD_STREAM_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    error: str
    data: bytes
    std_stream_type: StdStreamType
    def __init__(self, id: _Optional[str] = ..., error: _Optional[str] = ..., data: _Optional[bytes] = ..., std_stream_type: _Optional[_Union[StdStreamType, str]] = ...) -> None: ...

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

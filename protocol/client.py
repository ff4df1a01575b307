"""A client of pb.CoreRPC as Eru's agent uses it: several core addresses (the next one is tried when
one is unavailable), Eru's credential (one metadata entry: key = username, value = password) and a
timeout on every call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

import grpc

from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc

T = TypeVar("T")
_RETRY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class CoreClient:
    def __init__(
        self, addresses: Sequence[str], username: str, password: str, *, timeout: float = 5.0
    ) -> None:
        if not addresses:
            raise ValueError("core: give at least one core address (host:port)")
        self.addresses = list(addresses)
        self.timeout = timeout
        self._metadata = ((username.lower(), password),)
        self._lock = threading.Lock()
        self._current = 0
        self._channels: dict[int, grpc.Channel] = {}  # by address index; closed by close()
        self._stubs: dict[int, tuple[pb_grpc.CoreRPCStub, pb_grpc.PortalRPCStub]] = {}

    def _connected(self, portal: bool) -> tuple[int, Any]:
        with self._lock:
            index = self._current
            if index not in self._stubs:
                channel = self._channels[index] = grpc.insecure_channel(self.addresses[index])
                self._stubs[index] = (pb_grpc.CoreRPCStub(channel), pb_grpc.PortalRPCStub(channel))
            return index, self._stubs[index][portal]

    def _next(self, failed: int) -> None:
        """The next address, unless another thread moved on from the failed one already. Channels
        stay open: another thread may have a call in flight on the old one."""
        with self._lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self.addresses)

    def _call(self, name: str, request: object, *, portal: bool = False) -> T:  # type: ignore[type-var]
        for attempt in range(len(self.addresses)):
            index, stub = self._connected(portal)
            try:
                result: T = getattr(stub, name)(request, timeout=self.timeout, metadata=self._metadata)
                return result
            except grpc.RpcError as exc:
                if exc.code() not in _RETRY or attempt == len(self.addresses) - 1:
                    raise
                self._next(index)
        raise AssertionError("unreachable")

    def info(self) -> pb.CoreInfo:
        return self._call("Info", pb.Empty())

    def get_node(self, name: str) -> pb.Node:
        return self._call("GetNode", pb.GetNodeOptions(nodename=name))

    def set_node_status(self, name: str, ttl: int, *, version: str = "", dropped: int = 0) -> bool:
        """Eru's heartbeat; True when the core asks for every container's status again."""
        request = pb.SetNodeStatusOptions(
            nodename=name, ttl=ttl, agent_version=version, log_lines_dropped=dropped
        )
        reply: pb.NodeStatusReply = self._call("SetNodeStatus", request)
        return reply.resync

    def set_workloads_status(
        self,
        statuses: Sequence[pb.WorkloadStatus],
        *,
        complete: bool = False,
        nodename: str = "",
        listed_at: float = 0.0,
    ) -> pb.WorkloadsStatus:
        """The statuses the core took come back; the others it did not (see WorkloadsStatus)."""
        request = pb.SetWorkloadsStatusOptions(
            status=statuses, complete=complete, nodename=nodename, listed_at=listed_at
        )
        return self._call("SetWorkloadsStatus", request)

    def set_workloads_usage(self, nodename: str, usage: Sequence[pb.WorkloadUsage], at: float) -> None:
        """This project's own call (pb.PortalRPC): the node's measured usage, for the core's history."""
        request = pb.SetWorkloadsUsageOptions(nodename=nodename, usage=usage, at=at)
        self._call("SetWorkloadsUsage", request, portal=True)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()

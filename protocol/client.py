"""A client of pb.CoreRPC as Eru's agent uses it: several core addresses (the next one is tried when
one is unavailable), Eru's credential (one metadata entry: key = username, value = password) and a
timeout on every call."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

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
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.CoreRPCStub | None = None

    def _connected(self) -> pb_grpc.CoreRPCStub:
        with self._lock:
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.addresses[self._current])
                self._stub = pb_grpc.CoreRPCStub(self._channel)
            return self._stub

    def _next(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None
            self._current = (self._current + 1) % len(self.addresses)

    def _call(self, name: str, request: object) -> T:  # type: ignore[type-var]
        for attempt in range(len(self.addresses)):
            method = getattr(self._connected(), name)
            try:
                result: T = method(request, timeout=self.timeout, metadata=self._metadata)
                return result
            except grpc.RpcError as exc:
                if exc.code() not in _RETRY or attempt == len(self.addresses) - 1:
                    raise
                self._next()
        raise AssertionError("unreachable")

    def info(self) -> pb.CoreInfo:
        return self._call("Info", pb.Empty())

    def get_node(self, name: str) -> pb.Node:
        return self._call("GetNode", pb.GetNodeOptions(nodename=name))

    def set_node_status(self, name: str, ttl: int, *, version: str = "") -> bool:
        """Eru's heartbeat; True when the core asks for every container's status again."""
        reply: pb.NodeStatusReply = self._call(
            "SetNodeStatus", pb.SetNodeStatusOptions(nodename=name, ttl=ttl, agent_version=version)
        )
        return reply.resync

    def set_workloads_status(
        self, statuses: Sequence[pb.WorkloadStatus], *, complete: bool = False, nodename: str = ""
    ) -> pb.WorkloadsStatus:
        request = pb.SetWorkloadsStatusOptions(status=statuses, complete=complete, nodename=nodename)
        return self._call("SetWorkloadsStatus", request)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None

"""The door itself: Eru's pb.CoreRPC made of the call groups (each in its own module), and this
project's pb.PortalRPC, on one grpcio server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from django.conf import settings

from agents.grpc_server import base
from agents.grpc_server.agent_calls import AgentCalls, PortalService
from agents.grpc_server.deploy_calls import DeployCalls
from agents.grpc_server.pod_calls import PodCalls
from agents.grpc_server.stream_calls import StreamCalls
from agents.grpc_server.workload_calls import WorkloadCalls
from protocol import core_pb2_grpc as pb_grpc


class CoreService(AgentCalls, PodCalls, DeployCalls, WorkloadCalls, StreamCalls, pb_grpc.CoreRPCServicer):
    """pb.CoreRPC: a call no group defines is UNIMPLEMENTED (grpcio's default)."""


def serve(
    address: str | None = None, *, workers: int | None = None, streams: int | None = None
) -> tuple[grpc.Server, int]:
    """Start the door (not blocking): the server and the port it listens on (address port 0: any).
    Threads: `workers` for unary calls plus `streams` for long ones (base.streams bounds those)."""
    if streams is not None:
        base.streams = base.Streams(streams)
    threads = (workers or settings.ERU_GRPC_WORKERS) + (streams or settings.ERU_GRPC_STREAMS)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=threads,
    )
    pb_grpc.add_CoreRPCServicer_to_server(CoreService(), server)
    pb_grpc.add_PortalRPCServicer_to_server(PortalService(), server)
    port = server.add_insecure_port(address or settings.ERU_GRPC_ADDRESS)
    if port == 0:
        raise OSError(f"cannot listen on {address or settings.ERU_GRPC_ADDRESS}")
    server.start()
    return server, port

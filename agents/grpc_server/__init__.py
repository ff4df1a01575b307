"""The core's gRPC door: Eru's pb.CoreRPC (protocol/core.proto) — what Eru's agent and Eru's own erucli
call — and this project's pb.PortalRPC. Thin: authenticate the call (clusters.principals), hand it to
clusters.services, map the errors to gRPC status codes with their message (all erucli prints)."""

from agents.grpc_server.agent_calls import PortalService, report_of
from agents.grpc_server.server import CoreService, serve

__all__ = ["CoreService", "PortalService", "report_of", "serve"]

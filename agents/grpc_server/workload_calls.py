"""Workloads: list, get, status, control, remove, realloc, dissociate, logs, exec (Eru's pb.CoreRPC)."""

from __future__ import annotations


class WorkloadCalls:
    """Mixed into server.CoreService."""

"""Deploying: CreateWorkload, CalculateCapacity, RunAndWait, ReplaceWorkload (Eru's pb.CoreRPC)."""

from __future__ import annotations


class DeployCalls:
    """Mixed into server.CoreService."""

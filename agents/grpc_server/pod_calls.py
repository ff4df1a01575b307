"""Pods and nodes: erucli pod … and node … (Eru's pb.CoreRPC)."""

from __future__ import annotations


class PodCalls:
    """Mixed into server.CoreService."""

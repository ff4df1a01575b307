"""REST API: non-interactive exec in a workload's container (WorkloadViewSet's exec action)."""

from __future__ import annotations


class WorkloadExecMixin:
    """The exec action of WorkloadViewSet (filled by the exec work)."""

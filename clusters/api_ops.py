"""REST API: Eru's day-two operations on workloads and deployments (replace, realloc, dissociate,
cancel), as mixins of the viewsets in clusters.api."""

from __future__ import annotations


class WorkloadOpsMixin:
    """replace, realloc and dissociate actions of WorkloadViewSet."""


class DeploymentOpsMixin:
    """The cancel action of DeploymentViewSet."""

"""Field errors a user can cause: Django's ValidationError keyed by the field's name (or path), which
the API answers as a 400 and the portal shows beside the field."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


class QuotaExceeded(ValidationError):
    """A field error that a quota refuses: 400 in the API like any other, RESOURCE_EXHAUSTED at the
    gRPC door."""


class StateConflict(ValidationError):
    """A field error that the state of a row refuses (a pod that still has nodes, a workload a worker
    is changing): 400 in the API, FAILED_PRECONDITION at the gRPC door."""


def quota_refused(field: str, message: str) -> QuotaExceeded:
    return QuotaExceeded({field: [message]})


def state_refused(field: str, message: str) -> StateConflict:
    return StateConflict({field: [message]})

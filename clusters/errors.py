"""Field errors a user can cause: Django's ValidationError keyed by the field's name (or path), which
the API answers as a 400 and the portal shows beside the field."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})

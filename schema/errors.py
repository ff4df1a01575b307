"""Validation failures as `{field path: [messages]}`: the shape the API answers with (a 400 per field),
the form shows beside each field, and erucli prints as `error: path: message` lines."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class SchemaError(ValueError):
    """Input that does not fit the schema. `errors` maps a field's path (`count`, `labels.zone`,
    `command.2`) to its messages, every bad field at once."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(_line(path, messages) for path, messages in errors.items()))
        self.errors = errors


def _line(path: str, messages: list[str]) -> str:
    """ "path: message", the path once though most messages name their field already."""
    return " ".join(m if m.startswith(f"{path}: ") else f"{path}: {m}" for m in messages)


def _message(error: Any, path: str) -> str:
    """Our own checks raise ValueError with a message that names the field already; pydantic's type
    errors ("Input should be a valid integer") get the field's path in front."""
    cause = (error.get("ctx") or {}).get("error")
    if error["type"] == "value_error" and cause is not None:
        return str(cause)
    if error["type"] == "missing":
        return f"{path}: this field is required"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field"
    text = error["msg"]
    return f"{path}: {text[:1].lower()}{text[1:]}"


def errors_of(exc: Exception) -> dict[str, list[str]] | None:
    """The field errors of a pydantic ValidationError (None for any other exception)."""
    if not isinstance(exc, ValidationError):
        return None
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "non_field_errors"
        errors.setdefault(path, []).append(_message(error, path))
    return errors

"""Error types of the scheduling engine.

``str(error)`` is always the message Eru itself would give: Eru wraps a base error with a context,
``errors.Wrapf(base, "need: %d, ...")``, which prints as ``"<context>: <base message>"``.
"""

from __future__ import annotations

__all__ = [
    "AlreadyFilled",
    "InvalidRequest",
    "NotEnoughResource",
    "SchedulingError",
    "INSUFFICIENT_CAPACITY",
    "INSUFFICIENT_RESOURCE",
]

# Eru's base messages (core/types/errors.go).
INSUFFICIENT_CAPACITY = "cannot alloc a plan, not enough nodes capacity"
INSUFFICIENT_RESOURCE = "cannot alloc a plan, not enough resource"
ALREADY_FILLED = "cannot alloc a fill node plan, each node has enough workloads"


class SchedulingError(Exception):
    """Base class of every error raised by :mod:`scheduling`; ``str(e)`` is Eru's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidRequest(SchedulingError):
    """Bad user input. ``field`` names the offending field (``"cpu_request"``, ``"memory_limit"``, ...)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class NotEnoughResource(SchedulingError):
    """Not enough capacity: a strategy cannot place the instances, or a node cannot host them."""

    @classmethod
    def resource(cls, context: str = "") -> NotEnoughResource:
        """Eru's ``ErrInsufficientResource`` wrapped with ``context``."""
        return cls(f"{context}: {INSUFFICIENT_RESOURCE}" if context else INSUFFICIENT_RESOURCE)

    @classmethod
    def capacity(cls, context: str = "") -> NotEnoughResource:
        """Eru's ``ErrInsufficientCapacity`` wrapped with ``context``."""
        return cls(f"{context}: {INSUFFICIENT_CAPACITY}" if context else INSUFFICIENT_CAPACITY)


class AlreadyFilled(SchedulingError):
    """FILL found every selected node already at the target count: there is nothing to add."""

    def __init__(self) -> None:
        super().__init__(ALREADY_FILLED)

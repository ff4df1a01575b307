"""Human sizes: "512M", "1.5G", "4096" (bytes) — binary multiples, like erucli."""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(value: int | float | str | None, *, field: str) -> int:
    """Bytes from an int or a string like '512M'. Raises ValueError naming the field."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a size like 512M or a number of bytes")
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{field}: {value!r} is not a size; use bytes or a number with K, M, G or T")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def format_size(value: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if value >= _UNITS[unit]:
            return f"{value / _UNITS[unit]:.4g}{unit}"
    return f"{value}B"

"""Human sizes: "512M", "1.5G", "4096" (bytes) — binary multiples, like erucli."""

from __future__ import annotations

import math
import re

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(-?\d{1,20}(?:\.\d{1,9})?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
MAX_SIZE = 1 << 60  # 1 EiB: far beyond any host, well inside a 64-bit column


def parse_size(value: object, *, field: str) -> int:
    """Bytes from an int or a string like '512M'. Raises ValueError naming the field."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{field}: expected a size like 512M or a number of bytes")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{field}: must be a finite number of bytes")
        size = int(value)
    else:
        match = _SIZE.match(value)
        if not match:
            raise ValueError(
                f"{field}: {value[:40]!r} is not a size; use bytes or a number with K, M, G or T"
            )
        number, unit = match.groups()
        size = int(float(number) * _UNITS[unit.upper()])
    if abs(size) > MAX_SIZE:
        raise ValueError(f"{field}: {value} is above the limit of 1 EiB")
    return size


def format_size(value: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if value >= _UNITS[unit]:
            return f"{value / _UNITS[unit]:.4g}{unit}"
    return f"{value}B"

"""Integer query parameters and list pages for the API. `?limit=` and `?offset=` that are not a
positive number are ignored (the defaults), as DRF does; a number beyond the bounds is a 400 that
names the parameter and its bounds (DRF would cap the limit silently, or fail in the database)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_PAGE_SIZE = 1000
MAX_BIGINT = 2**63 - 1  # the largest id, OFFSET and LIMIT the databases take


def bounded_int(value: str, name: str, low: int, high: int) -> int:
    """A query parameter that must be an integer from `low` to `high`; a 400 naming it otherwise."""
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and low <= int(value) <= high):
        raise exceptions.ValidationError({name: [f"{name}: must be an integer from {low} to {high}"]})
    return int(value)


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request: Request) -> int:
        raw = _number(request.query_params.get(self.limit_query_param))
        return self.default_limit if raw in (None, "0") else bounded_int(raw, "limit", 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        raw = _number(request.query_params.get(self.offset_query_param))
        return 0 if raw is None else bounded_int(raw, "offset", 0, MAX_BIGINT)


def _number(raw: str | None) -> str | None:
    """The parameter if it is made of digits only, else None (left out)."""
    return raw if raw is not None and raw.isascii() and raw.isdigit() else None

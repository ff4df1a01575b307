"""Integer query parameters and list pages for the API: `?limit=` and `?offset=` within bounds,
else a 400 that names the parameter and its bounds."""

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
        raw = request.query_params.get(self.limit_query_param)
        return self.default_limit if raw is None else bounded_int(raw, "limit", 1, MAX_PAGE_SIZE)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        return 0 if raw is None else bounded_int(raw, "offset", 0, MAX_BIGINT)

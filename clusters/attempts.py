"""Password guessing, counted per client across every web process: the token exchange's throttle,
the login forms (portal and admin) and the gRPC door's password credentials use one counter in the
shared cache (settings.CACHES["throttle"], Redis)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

log = logging.getLogger(__name__)
T = TypeVar("T")
RATE = 20  # attempts per client and WINDOW
WINDOW = 60  # s, from the first attempt


class SharedCache(BaseCache):
    """A throttle's history in the cache every web process shares (settings.CACHES["throttle"]), so a
    client's attempts count once however many workers answer them. While that cannot be reached,
    this process's own cache stands in — each worker then allows the rate, as a per-process cache
    always did, rather than every attempt or none — said in the log, and tried again after RETRY s."""

    RETRY = 30.0

    def __init__(self, alias: str = "throttle", fallback: str = "default") -> None:
        super().__init__({})
        self.alias, self.fallback = alias, fallback
        self.down_until = 0.0

    def _do(self, op: Callable[[BaseCache], T]) -> T:
        if time.monotonic() >= self.down_until:
            try:
                return op(caches[self.alias])
            except Exception as exc:  # whatever the configured backend raises (redis-py's errors, OSError)
                self.down_until = time.monotonic() + self.RETRY
                log.warning(
                    "throttle: cache %r unreachable (%s); counting in this process alone for %.0f s",
                    self.alias,
                    exc,
                    self.RETRY,
                )
        return op(caches[self.fallback])

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return self._do(lambda c: c.get(key, default, version))

    def set(
        self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._do(lambda c: c.set(key, value, timeout, version))

    def delete(self, key: str, version: int | None = None) -> bool:
        return self._do(lambda c: c.delete(key, version))

    def clear(self) -> None:
        self._do(lambda c: c.clear())

    def count(self, key: str, window: int) -> int:
        """One more attempt under `key`, atomically (Redis INCR): how many in the window, which
        starts at the first attempt and lasts `window` seconds."""

        def bump(c: BaseCache) -> int:
            c.add(key, 0, window)
            try:
                return int(c.incr(key))
            except ValueError:  # it expired between the two calls: a new window
                c.add(key, 1, window)
                return 1

        return self._do(bump)


SHARED = SharedCache()


def blocked(scope: str, client: str) -> bool:
    """Whether `client` used up its failed attempts in `scope` (counted by `failed`)."""
    return int(SHARED.get(f"attempts:{scope}:{client}", 0) or 0) >= RATE


def failed(scope: str, client: str) -> None:
    """One more failed attempt of `client` in `scope`: a right password costs nothing, so a script
    calling often with its own credential is never locked out by itself."""
    SHARED.count(f"attempts:{scope}:{client}", WINDOW)


def allowed(scope: str, client: str) -> bool:
    """One more password attempt of `client` (an address, or an account) in `scope`: whether it may go."""
    return SHARED.count(f"attempts:{scope}:{client}", WINDOW) <= RATE

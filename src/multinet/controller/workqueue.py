"""A keyed, deduplicating, delay-capable work queue with one worker (client-go style, small).

Keys are PodNetwork names. Adding a key that is already waiting keeps the earlier due time; a key
added while it is being processed runs again afterwards, so no change is lost. A failing key is
retried with growing delays. One worker means one reconcile at a time: two passes over the same
PodNetwork can never interleave, and our handful of networks needs no parallelism.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from multinet.errors import MultinetError
from multinet.retry import Backoff

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds; the last one repeats


class WorkQueue:
    def __init__(
        self,
        handler: Callable[[str], Awaitable[None]],
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self._handler = handler
        self._backoff = Backoff.stepped(retry_delays)
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._wake = asyncio.Event()

    def add(self, key: str, delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        if key not in self._due or due < self._due[key]:
            self._due[key] = due
            self._wake.set()

    def __len__(self) -> int:
        return len(self._due)

    async def _next(self) -> str:
        while True:
            self._wake.clear()
            if self._due:
                key, due = min(self._due.items(), key=lambda kv: kv[1])
                wait = due - time.monotonic()
                if wait <= 0:
                    del self._due[key]
                    return key
            else:
                wait = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def run(self) -> None:
        """Process keys until cancelled."""
        while True:
            key = await self._next()
            try:
                await self._handler(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                n = self._failures[key] = self._failures.get(key, 0) + 1
                delay = self._backoff.delay(n)
                log.warning(
                    "reconcile failed, retrying",
                    extra={"key": key, "attempt": n, "retry_in": delay, "error": str(exc)},
                    exc_info=not isinstance(exc, MultinetError),  # a bug: show where
                )
                self.add(key, delay)

"""One way to wait between attempts: capped exponential backoff, or a fixed table of delays.

Every loop that retries (the publish loop, the NRI reconnect, the PodNetwork and controller
watches, status writes, IPAM lists, the controller's work queue) takes its delays from a
``Backoff``; only *which* errors are worth another attempt stays with the caller, because that is
a property of the call, not of the waiting.

- ``Backoff``: the policy, a pure value; ``delay(n)`` is the wait after the n-th failure in a row.
- ``Retry``: the running count of one loop (``failed()`` -> the delay to wait, ``reset()``).
- ``retrying``: call a coroutine function up to ``attempts`` times while ``retry_on`` says yes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Backoff:
    """``initial`` doubling (by ``factor``) up to ``cap``; or, when ``steps`` is given, those
    delays in order with the last one repeating (a hand-tuned curve such as the work queue's)."""

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    steps: tuple[float, ...] = ()

    @classmethod
    def stepped(cls, steps: Sequence[float]) -> Backoff:
        if not steps:
            raise ValueError("a stepped backoff needs at least one delay")
        return cls(initial=steps[0], cap=max(steps), steps=tuple(steps))

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 = the first)."""
        n = max(failures, 1)
        if self.steps:
            return self.steps[min(n, len(self.steps)) - 1]
        # min() before the power would still overflow for huge n; the cap bounds it anyway.
        exponent = min(n - 1, 64)
        return float(min(self.initial * self.factor**exponent, self.cap))


class Retry:
    """The failures in a row of one loop; ``failed()`` says how long to wait now."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return self.backoff.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0

    @property
    def next_delay(self) -> float:
        """What ``failed()`` would return, without counting a failure (for log messages)."""
        return self.backoff.delay(self.failures + 1)


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    backoff: Backoff,
    retry_on: Callable[[Exception], bool],
) -> T:
    """``await call()``; on an exception ``retry_on`` accepts, wait ``backoff`` and try again, at
    most ``attempts`` calls in all. The last exception (or one ``retry_on`` rejects) propagates."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt >= attempts or not retry_on(exc):
                raise
        await asyncio.sleep(backoff.delay(attempt))
    raise ValueError(f"attempts must be at least 1, got {attempts}")

"""Helpers shared by the test suite (`from helpers import wait_for`: tests/ is on pythonpath)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises AssertionError naming `what`, the timeout and the last value (or the last exception
    the predicate raised) when `timeout` seconds pass first. Exceptions count as "not yet", so a
    predicate may look up an object that does not exist yet.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # a lookup that fails is simply "not yet"
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)

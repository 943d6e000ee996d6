"""The controller's work queue: keys deduplicated, delays honoured, failures retried with backoff,
a key added while it is being processed runs again afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from multinet.controller.workqueue import WorkQueue


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.calls: list[tuple[str, float]] = []
        self.fail_times = fail_times
        self.gate: asyncio.Event | None = None
        self.changed = asyncio.Event()

    async def __call__(self, key: str) -> None:
        self.calls.append((key, time.monotonic()))
        self.changed.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("boom")

    async def wait_calls(self, n: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.calls) < n:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(queue: WorkQueue) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_duplicates_collapse() -> None:
    rec = Recorder()
    queue = WorkQueue(rec)
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    async with running(queue):
        await rec.wait_calls(2)
        await asyncio.sleep(0.05)  # nothing else is due: prove no extra call follows
    assert sorted(k for k, _ in rec.calls) == ["a", "b"]


async def test_delay_is_honoured_and_earlier_add_wins() -> None:
    rec = Recorder()
    queue = WorkQueue(rec)
    start = time.monotonic()
    queue.add("a", 0.3)
    queue.add("a", 5.0)  # later due time does not postpone the earlier one
    async with running(queue):
        await rec.wait_calls(1)
    assert rec.calls[0][1] - start >= 0.29


async def test_failures_are_retried_with_backoff() -> None:
    rec = Recorder(fail_times=2)
    queue = WorkQueue(rec, retry_delays=(0.05, 0.2))
    queue.add("a")
    async with running(queue):
        await rec.wait_calls(3)
    gaps = [b[1] - a[1] for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.19


@pytest.mark.timeout(10)
async def test_added_while_processing_runs_again() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    queue = WorkQueue(rec)
    queue.add("a")
    async with running(queue):
        await rec.wait_calls(1)
        queue.add("a")  # the object changed while we were reconciling it
        rec.gate.set()
        await rec.wait_calls(2)
    assert [k for k, _ in rec.calls] == ["a", "a"]

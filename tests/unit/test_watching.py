"""The shared list/watch loop and the backoff helper: events decoded by us (deep documents cut,
bookmarks skipped), 410 Gone re-lists at once, other errors wait with capped backoff; the
backoff's delays are the ones each loop had before."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from multinet.api import documents
from multinet.kube import watching
from multinet.kube.errors import ApiError, Gone
from multinet.retry import Backoff, Retry, retrying

RES = watching.Resource("g", "v1", "things")


class _Content:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    async def readline(self) -> bytes:
        return self.lines.pop(0) if self.lines else b""


class _Response:
    status, reason = 200, "OK"

    def __init__(self, raw: bytes = b"", lines: list[bytes] | None = None) -> None:
        self.raw = raw
        self.content = _Content(lines or [])
        self.closed = False

    async def read(self) -> bytes:
        return self.raw

    def release(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Custom:
    def __init__(self, items: list[Any], lines: list[bytes]) -> None:
        self.items, self.lines = items, lines
        self.calls: list[dict[str, Any]] = []
        self.watch_response: _Response | None = None

    async def list_cluster_custom_object(self, *args: Any, **kwargs: Any) -> _Response:
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            self.watch_response = _Response(lines=list(self.lines))
            return self.watch_response
        doc = {"metadata": {"resourceVersion": "7"}, "items": self.items}
        return _Response(json.dumps(doc).encode())


def _line(kind: str, obj: Any) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _deep(n: int) -> str:
    return "[" * n + "]" * n


async def test_list_then_events_decoded_by_us() -> None:
    deep = f'{{"type": "MODIFIED", "object": {{"metadata": {{"name": "d"}}, "x": {_deep(5000)}}}}}'
    custom = _Custom(
        [{"metadata": {"name": "a"}}, "not an object"],
        [
            _line("ADDED", {"metadata": {"name": "b"}}),
            _line("BOOKMARK", {"metadata": {"resourceVersion": "9"}}),
            deep.encode() + b"\n",
            _line("DELETED", {"metadata": {"name": "a"}}),
        ],
    )
    items, rv = await watching.list_objects(custom, RES)
    assert rv == "7" and items == [{"metadata": {"name": "a"}}]
    seen = [
        (k, o["metadata"].get("name") or o["metadata"]["resourceVersion"])
        async for k, o in watching.watch_events(custom, RES, rv, 5)
    ]
    assert seen == [("ADDED", "b"), ("BOOKMARK", "9"), ("MODIFIED", "d"), ("DELETED", "a")]
    watch_call = custom.calls[-1]
    assert watch_call["resource_version"] == "7" and watch_call["allow_watch_bookmarks"]
    assert custom.watch_response is not None and custom.watch_response.closed
    assert documents.TOO_DEEP in json.dumps(documents.loads(deep))


async def test_an_expired_watch_is_gone() -> None:
    custom = _Custom([], [_line("ERROR", {"code": 410, "reason": "Expired", "message": "old"})])
    with pytest.raises(Gone):
        async for _ in watching.watch_events(custom, RES, "1", 5):
            pass


async def test_run_relists_at_once_on_gone_and_backs_off_on_errors() -> None:
    relists: list[float] = []
    loop = asyncio.get_running_loop()

    async def relist() -> str:
        relists.append(loop.time())
        if len(relists) == 2:
            raise ApiError("list refused", 503)
        return str(len(relists))

    async def watch(rv: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if rv == "1":
            raise Gone("expired", 410)
        yield "ADDED", {"metadata": {"name": rv}}
        if rv == "3":
            await asyncio.Event().wait()  # a quiet watch: the test ends here

    events: list[str] = []
    got = asyncio.Event()

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        events.append(obj["metadata"]["name"])
        got.set()

    task = asyncio.create_task(
        watching.run(
            "things",
            relist,
            watch,
            on_event,
            backoff=Backoff(initial=0.2, cap=1.0),
        )
    )
    async with asyncio.timeout(5):
        await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["3"]
    assert relists[1] - relists[0] < 0.15  # Gone: no wait
    assert relists[2] - relists[1] >= 0.19  # an error: the backoff's first delay


async def test_run_resumes_from_the_last_resource_version_when_the_server_ends_the_watch() -> None:
    """No re-list at rest: a watch the server ended (its timeout) resumes from the newest
    resourceVersion seen, a bookmark's included; bookmarks never reach ``on_event``."""
    relists = 0
    watched: list[str] = []
    ended = {
        "7": [("ADDED", {"metadata": {"name": "a", "resourceVersion": "8"}})],
        "8": [("BOOKMARK", {"metadata": {"resourceVersion": "12"}})],
        "12": [("MODIFIED", {"metadata": {"name": "a", "resourceVersion": "13"}})],
    }

    async def relist() -> str:
        nonlocal relists
        relists += 1
        return "7"

    quiet = asyncio.Event()

    async def watch(rv: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        watched.append(rv)
        if rv not in ended:
            quiet.set()
        for event in ended.get(rv, []):
            yield event
        if rv not in ended:
            await asyncio.Event().wait()  # quiet from here on

    events: list[tuple[str, str]] = []
    task = asyncio.create_task(
        watching.run(
            "things", relist, watch, lambda k, o: events.append((k, o["metadata"]["name"]))
        )
    )
    async with asyncio.timeout(5):
        await quiet.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert relists == 1
    assert watched == ["7", "8", "12", "13"]
    assert events == [("ADDED", "a"), ("MODIFIED", "a")]


def test_backoff_delays() -> None:
    assert [Backoff(0.5, 30.0).delay(n) for n in range(1, 9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    table = Backoff.stepped((0.5, 1.0, 2.0, 5.0, 10.0, 30.0))
    assert [table.delay(n) for n in (1, 4, 6, 7, 100)] == [0.5, 5.0, 30.0, 30.0, 30.0]
    retry = Retry(Backoff(0.2, 5.0))
    assert [retry.failed() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    retry.reset()
    assert retry.next_delay == 0.2


async def test_retrying_stops_on_refusals_and_after_the_last_attempt() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        raise ApiError("busy", 429 if len(calls) < 3 else 403)

    with pytest.raises(ApiError) as err:
        await retrying(
            flaky,
            attempts=5,
            backoff=Backoff(0.001, 0.001),
            retry_on=lambda e: isinstance(e, ApiError) and e.transient,
        )
    assert err.value.status == 403 and len(calls) == 3

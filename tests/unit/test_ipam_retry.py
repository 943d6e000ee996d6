"""IPAM API calls ride out a busy apiserver (429 while its watch cache builds), not other errors.

A restarting apiserver cannot be made to answer 429 on demand, so the calls here are fakes that
raise what the client would raise; it leaves the adapter as kube.errors.ApiError.
"""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from multinet.kube import ipam
from multinet.kube.errors import ApiError


def _fake_busy_then_ok(failures: list[int]) -> object:
    calls = {"n": 0}

    async def call() -> str:
        calls["n"] += 1
        if failures:
            raise ApiException(status=failures.pop(0), reason="busy")
        return "ok"

    call.calls = calls  # type: ignore[attr-defined]
    return call


async def test_busy_answers_are_retried() -> None:
    call = _fake_busy_then_ok([429, 503])
    assert await ipam._retry_busy(call) == "ok"  # type: ignore[arg-type]
    assert call.calls["n"] == 3  # type: ignore[attr-defined]


async def test_other_errors_are_not_retried() -> None:
    call = _fake_busy_then_ok([403])
    with pytest.raises(ApiError) as err:
        await ipam._retry_busy(call)  # type: ignore[arg-type]
    assert err.value.status == 403
    assert call.calls["n"] == 1  # type: ignore[attr-defined]


async def test_gives_up_after_the_last_attempt() -> None:
    call = _fake_busy_then_ok([429, 429, 429])
    with pytest.raises(ApiError):
        await ipam._retry_busy(call, attempts=3)  # type: ignore[arg-type]

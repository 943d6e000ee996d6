"""The one place the client's errors are turned into ours.

``kubernetes_asyncio`` raises ``ApiException`` for an apiserver that answered with an error, and
aiohttp/OS errors for one that could not be reached (restarting, network blip). Every adapter wraps
its calls in ``translated(what)`` and sees only ``ApiError`` (``Conflict`` for 409, ``NotFound`` for
404, ``Gone`` for 410), with ``status`` 0 for an unreachable apiserver, so no other module needs to
know either foreign family. Each adapter then maps ``ApiError`` to its own domain error (claim,
allocation, publish) where the meaning depends on the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from multinet.errors import MultinetError

#: What an unreachable apiserver raises through the client.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError)


class ApiError(MultinetError):
    """The apiserver refused or could not be reached (``status`` 0); retrying later may help."""

    def __init__(self, message: str, status: int = 0, *, reason: str = "", body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def transient(self) -> bool:
        """Unreachable, timed out, throttled (429: also a restarting apiserver building its watch
        cache) or a server error: the same request may succeed later."""
        return self.status in (0, 408, 429) or self.status >= 500


class Conflict(ApiError):
    """409: resourceVersion moved on, or the object exists: re-read and decide again."""


class NotFound(ApiError):
    """404: the object (or, for a create, its namespace or owner) does not exist."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old: list again."""


_KINDS: dict[int, type[ApiError]] = {409: Conflict, 404: NotFound, 410: Gone}


def for_status(status: int, message: str, *, reason: str = "", body: str = "") -> ApiError:
    """The ApiError class that says what HTTP ``status`` means to a caller."""
    return _KINDS.get(status, ApiError)(message, status, reason=reason, body=body)


def mapped(exc: BaseException, what: str) -> ApiError:
    """``exc`` (an ApiException or a transport error) as an ApiError about ``what``."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        reason = str(exc.reason or "")
        raw = exc.body
        body = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
        return for_status(
            status, f"{what}: {status} {reason}: {body[:300]}", reason=reason, body=body
        )
    return ApiError(f"{what}: apiserver unreachable: {exc}", 0, reason=str(exc))


async def read_body(response: Any) -> bytes:
    """The body of a raw response (a call made with ``_preload_content=False``), the connection
    released. An error status raises ``ApiException``, as a call that preloads does: the client
    checks the status only when it reads the body itself, so without this a refused request
    (403, 404, 429, 500) would read as its Status object, e.g. a list as no items."""
    try:
        raw: bytes = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        exc = ApiException(status=response.status, reason=response.reason)
        exc.body = raw
        raise exc
    return raw


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Run the block; an ApiException or transport error leaves it as an ``ApiError``."""
    try:
        yield
    except ApiException as exc:
        raise mapped(exc, what) from exc
    except TRANSPORT_ERRORS as exc:
        raise mapped(exc, what) from exc

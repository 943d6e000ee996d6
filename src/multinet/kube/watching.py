"""The one list + watch loop, shared by the node agent (PodNetworks) and the controller
(PodNetworks, ResourceClaims).

``run`` lists, watches from the list's resourceVersion, and when the server ends the watch
(``timeout_seconds``) watches again from the last resourceVersion it saw (an event's or a
bookmark's), as client-go's reflector does: a watch resumed from a resourceVersion misses nothing,
and re-listing every object each time the server ends a watch cost every node agent a full list of
the cluster's PodNetworks every few minutes, all of them at about the same time. It starts over
with a fresh list at once on 410 Gone (the resourceVersion expired), and after any other error with
capped backoff (e.g. while the apiserver restarts). Lists and watch events are decoded by us with
``documents.loads``, not by the client: one object nested deeper than Python's decoder follows must
not make every list fail. Objects are plain JSON dicts (camelCase, as stored).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

from multinet.api import documents
from multinet.kube.errors import ApiError, Gone, for_status, read_body, translated
from multinet.retry import Backoff, Retry

log = logging.getLogger(__name__)

#: Re-list at once after a failed one, then wait longer, up to 30 s between tries.
BACKOFF = Backoff(initial=0.5, cap=30.0)
WATCH_TIMEOUT_SECONDS = 300

Object = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Resource:
    """A cluster-scoped resource served by ``/apis/<group>/<version>/<plural>``."""

    group: str
    version: str
    plural: str
    field_selector: str = ""

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}"

    def _args(self) -> tuple[tuple[str, str, str], dict[str, Any]]:
        kwargs: dict[str, Any] = {"_preload_content": False}
        if self.field_selector:
            kwargs["field_selector"] = self.field_selector
        return (self.group, self.version, self.plural), kwargs


async def list_objects(custom: Any, resource: Resource) -> tuple[list[Object], str]:
    """The items of ``resource`` and the list's resourceVersion (``custom``: CustomObjectsApi)."""
    args, kwargs = resource._args()
    with translated(f"list {resource}"):
        # _preload_content=False: the raw aiohttp response, not the model the stubs claim.
        response = await custom.list_cluster_custom_object(*args, **kwargs)
        raw = await read_body(response)
    doc = documents.loads(raw)
    if not isinstance(doc, dict):
        raise ApiError(f"list {resource}: the answer is not a JSON object", 500)
    items = [i for i in doc.get("items") or [] if isinstance(i, dict)]
    return items, str((doc.get("metadata") or {}).get("resourceVersion") or "")


async def watch_events(
    custom: Any, resource: Resource, resource_version: str, timeout_seconds: int
) -> AsyncIterator[tuple[str, Object]]:
    """(type, object) of each ADDED/MODIFIED/DELETED/BOOKMARK event until the server ends the
    watch; an ERROR event raises (``Gone`` for an expired resourceVersion). A bookmark carries
    only a resourceVersion (where to resume); ``run`` does not hand it to ``on_event``."""
    args, kwargs = resource._args()
    what = f"watch {resource}"
    with translated(what):
        response = await custom.list_cluster_custom_object(
            *args,
            watch=True,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            allow_watch_bookmarks=True,
            **kwargs,
        )
        if not 200 <= response.status <= 299:
            await read_body(response)  # raises, with the apiserver's Status
    try:
        while True:
            with translated(what):
                line = await response.content.readline()
            if not line:
                return  # the server ended the watch (timeout_seconds)
            event = documents.loads(line)
            if not isinstance(event, dict):
                raise ApiError(f"{what}: an event is not a JSON object", 500)
            kind, obj = event.get("type"), event.get("object")
            if kind == "ERROR":
                raise _status_error(obj, what)
            if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") and isinstance(obj, dict):
                yield str(kind), obj
    finally:
        response.close()  # an unfinished stream: drop the connection, do not return it to the pool


def _status_error(status: object, what: str) -> ApiError:
    """An ERROR event's Status object as the ApiError a refused request would be."""
    fields = status if isinstance(status, dict) else {}
    code = fields.get("code")
    code = code if isinstance(code, int) else 500
    message = f"{what}: {code} {fields.get('reason', '')}: {fields.get('message', status)}"
    return for_status(code, message, reason=str(fields.get("reason", "")))


async def run(
    what: str,
    relist: Callable[[], Awaitable[str]],
    watch: Callable[[str], AsyncIterator[tuple[str, Object]]],
    on_event: Callable[[str, Object], None],
    *,
    backoff: Backoff = BACKOFF,
) -> NoReturn:
    """Forever: ``relist()`` (hands the items over, returns the resourceVersion), then feed each
    event of ``watch(resourceVersion)`` to ``on_event``; resume or start over as the module
    docstring says."""
    retry = Retry(backoff)
    resource_version = ""  # empty: list first
    while True:
        try:
            if not resource_version:
                resource_version = await relist()
                retry.reset()
            async for kind, obj in watch(resource_version):
                resource_version = _resource_version(obj) or resource_version
                if kind != "BOOKMARK":
                    on_event(kind, obj)
        except asyncio.CancelledError:
            raise
        except Gone:
            log.debug("%s watch expired; re-listing", what)
            resource_version = ""
        except Exception as exc:  # connection refused while the apiserver restarts, ...
            resource_version = ""
            delay = retry.failed()
            log.warning("%s watch failed (%s); re-listing in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)


def _resource_version(obj: Object) -> str:
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else ""

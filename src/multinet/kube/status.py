"""Writes what happened in the pod where users look: the claim status and the pod annotation.

Runs after the NRI hook has answered (never inside its deadline). Failures are retried a few
times with backoff; one that remains (a refusal, or the apiserver still unreachable) is logged in
the apiserver's words and raised as ApiError, for the reporter to tell the user (an Event); an
object already gone is only logged. The pod runs either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client

from multinet import DRIVER_NAME
from multinet.kube.coreapi import CoreApi
from multinet.kube.errors import ApiError, NotFound, translated
from multinet.plans import ClaimRef
from multinet.retry import Backoff, retrying
from multinet.status import (
    NETWORK_STATUS_ANNOTATION,
    DeviceOutcome,
    claim_status_apply,
    network_status_annotation,
)

log = logging.getLogger(__name__)

_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
_BACKOFF = Backoff(initial=0.2, cap=5.0)


def refusal(exc: ApiError) -> str:
    """The apiserver's reason for refusing a write, in its own words (its Status message)."""
    try:
        message = json.loads(exc.body).get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{exc.status} {exc.reason}: {message or exc.body or exc}"


def _worth_retrying(exc: Exception) -> bool:
    """A conflict (the pod moved on: re-read), a busy or unreachable apiserver; not a refusal."""
    return isinstance(exc, ApiError) and (exc.status == 409 or exc.transient)


class StatusWriter:
    """Server-side apply of `status.devices` (field manager = driver name, forced)."""

    def __init__(self, api: client.ApiClient, *, attempts: int = 5) -> None:
        self._resource = client.ResourceV1Api(api)
        self._core = CoreApi(api)
        self._attempts = attempts

    async def write_claim(self, claim: ClaimRef, outcomes: list[DeviceOutcome]) -> None:
        body = claim_status_apply(claim, outcomes)
        await self._retry(
            f"claim {claim}",
            lambda: self._resource.patch_namespaced_resource_claim_status(  # type: ignore[call-arg]
                claim.name,
                claim.namespace,
                body,
                field_manager=DRIVER_NAME,
                force=True,
                _content_type=_APPLY,
            ),
        )

    async def annotate_pod(self, namespace: str, name: str, outcomes: list[DeviceOutcome]) -> None:
        async def patch() -> None:
            pod = await self._core.read_namespaced_pod(name, namespace)
            metadata = pod.get("metadata") or {}
            existing = (metadata.get("annotations") or {}).get(NETWORK_STATUS_ANNOTATION)
            value = network_status_annotation(existing, outcomes)
            patch_body = {
                "metadata": {
                    "resourceVersion": metadata.get("resourceVersion"),
                    "annotations": {NETWORK_STATUS_ANNOTATION: value},
                }
            }
            await self._core.patch_namespaced_pod(name, namespace, patch_body, content_type=_MERGE)

        await self._retry(f"pod {namespace}/{name}", patch)

    async def _retry(self, what: str, call: Callable[[], Awaitable[object]]) -> None:
        async def attempt() -> None:
            with translated(f"reporting to {what}"):
                await call()

        try:
            await retrying(
                attempt, attempts=self._attempts, backoff=_BACKOFF, retry_on=_worth_retrying
            )
        except NotFound:
            log.info("not reporting: %s is gone", what)
        except ApiError as exc:
            # The apiserver's own words say which field it refused (a 422 names it).
            log.error(
                "reporting to %s failed: %s %s: %s", what, exc.status, exc.reason, exc.body[:2000]
            )
            raise

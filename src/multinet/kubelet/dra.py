"""The DRAPlugin service (v1 and v1beta1) mapped onto one `Preparer`.

Contract with the kubelet (docs/architecture.md, protocols 2): every claim in a request gets an
entry in the response, failures travel as a per-claim `error` string (a gRPC-level error would
make the kubelet drop the whole batch), an empty request succeeds, and both calls are idempotent.
Calls are serialised: one prepare or unprepare at a time, as the upstream helper does, so the
preparer never sees two operations on the same claim interleave. Each call must answer within
the kubelet's 45 s client timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grpclib.server import Stream

from multinet.errors import MultinetError
from multinet.kubelet._pb import dra_v1_grpc as v1_grpc
from multinet.kubelet._pb import dra_v1_pb2 as v1
from multinet.kubelet._pb import dra_v1beta1_grpc as v1beta1_grpc
from multinet.kubelet._pb import dra_v1beta1_pb2 as v1beta1
from multinet.kubelet.grpcserver import unary
from multinet.plans import ClaimRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedDevice:
    """One allocated device of a prepared claim, as the kubelet wants it back."""

    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...] = ()
    share_id: str | None = None


class Preparer(Protocol):
    """What the node agent implements. Raise a MultinetError whose message names the claim,
    the request and the field; anything else is reported as an internal error."""

    async def prepare(self, claim: ClaimRef) -> Sequence[PreparedDevice]: ...

    async def unprepare(self, claim: ClaimRef) -> None: ...


def _error_text(action: str, claim: ClaimRef, exc: BaseException) -> str:
    if isinstance(exc, MultinetError):
        return str(exc)
    return f"internal error while {action} claim {claim} ({claim.uid}): {type(exc).__name__}: {exc}"


class DRAService:
    """Protocol-independent half: runs the preparer per claim and collects per-claim outcomes."""

    def __init__(self, preparer: Preparer) -> None:
        self._preparer = preparer
        self._lock = asyncio.Lock()

    async def prepare(
        self, claims: Iterable[ClaimRef]
    ) -> dict[str, Sequence[PreparedDevice] | str]:
        """Claim UID -> devices, or an error string."""
        out: dict[str, Sequence[PreparedDevice] | str] = {}
        async with self._lock:
            for claim in claims:
                if claim.uid in out:
                    continue
                try:
                    out[claim.uid] = await self._preparer.prepare(claim)
                except Exception as exc:
                    out[claim.uid] = _error_text("preparing", claim, exc)
                    _log_failure("prepare", claim, exc)
        return out

    async def unprepare(self, claims: Iterable[ClaimRef]) -> dict[str, str]:
        """Claim UID -> error string ("" when done)."""
        out: dict[str, str] = {}
        async with self._lock:
            for claim in claims:
                if claim.uid in out:
                    continue
                try:
                    await self._preparer.unprepare(claim)
                    out[claim.uid] = ""
                except Exception as exc:
                    out[claim.uid] = _error_text("unpreparing", claim, exc)
                    _log_failure("unprepare", claim, exc)
        return out


def _log_failure(action: str, claim: ClaimRef, exc: BaseException) -> None:
    extra = {"claim": str(claim), "claim_uid": claim.uid}
    if isinstance(exc, MultinetError):
        log.warning("%s failed: %s", action, exc, extra=extra)
    else:
        log.exception("%s failed unexpectedly", action, extra=extra)


def _refs(claims: Iterable[Any]) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]


class DRAPluginV1Servicer(v1_grpc.DRAPluginBase):
    def __init__(self, service: DRAService) -> None:
        self._service = service

    async def NodePrepareResources(
        self, stream: Stream[v1.NodePrepareResourcesRequest, v1.NodePrepareResourcesResponse]
    ) -> None:
        await unary(stream, self.prepare)

    async def NodeUnprepareResources(
        self, stream: Stream[v1.NodeUnprepareResourcesRequest, v1.NodeUnprepareResourcesResponse]
    ) -> None:
        await unary(stream, self.unprepare)

    async def prepare(
        self, request: v1.NodePrepareResourcesRequest
    ) -> v1.NodePrepareResourcesResponse:
        response = v1.NodePrepareResourcesResponse()
        for uid, result in (await self._service.prepare(_refs(request.claims))).items():
            entry = response.claims[uid]
            if isinstance(result, str):
                entry.error = result
                continue
            for d in result:
                dev = entry.devices.add(
                    request_names=d.request_names,
                    pool_name=d.pool_name,
                    device_name=d.device_name,
                    cdi_device_ids=d.cdi_device_ids,
                )
                if d.share_id is not None:
                    dev.share_id = d.share_id
        return response

    async def unprepare(
        self, request: v1.NodeUnprepareResourcesRequest
    ) -> v1.NodeUnprepareResourcesResponse:
        response = v1.NodeUnprepareResourcesResponse()
        for uid, error in (await self._service.unprepare(_refs(request.claims))).items():
            response.claims[uid].error = error
        return response


class DRAPluginV1Beta1Servicer(v1beta1_grpc.DRAPluginBase):
    """The same over v1beta1, which has no share_id (a shared device is reported without it)."""

    def __init__(self, service: DRAService) -> None:
        self._service = service

    async def NodePrepareResources(
        self,
        stream: Stream[v1beta1.NodePrepareResourcesRequest, v1beta1.NodePrepareResourcesResponse],
    ) -> None:
        await unary(stream, self.prepare)

    async def NodeUnprepareResources(
        self,
        stream: Stream[
            v1beta1.NodeUnprepareResourcesRequest, v1beta1.NodeUnprepareResourcesResponse
        ],
    ) -> None:
        await unary(stream, self.unprepare)

    async def prepare(
        self, request: v1beta1.NodePrepareResourcesRequest
    ) -> v1beta1.NodePrepareResourcesResponse:
        response = v1beta1.NodePrepareResourcesResponse()
        for uid, result in (await self._service.prepare(_refs(request.claims))).items():
            entry = response.claims[uid]
            if isinstance(result, str):
                entry.error = result
                continue
            for d in result:
                entry.devices.add(
                    request_names=d.request_names,
                    pool_name=d.pool_name,
                    device_name=d.device_name,
                    cdi_device_ids=d.cdi_device_ids,
                )
        return response

    async def unprepare(
        self, request: v1beta1.NodeUnprepareResourcesRequest
    ) -> v1beta1.NodeUnprepareResourcesResponse:
        response = v1beta1.NodeUnprepareResourcesResponse()
        for uid, error in (await self._service.unprepare(_refs(request.claims))).items():
            response.claims[uid].error = error
        return response

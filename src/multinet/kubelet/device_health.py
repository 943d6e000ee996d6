"""The optional DRA device health stream (`v1alpha1.DRAResourceHealth`).

Protocol: docs/architecture.md, protocols 2.

Kubelet 1.36 opens `NodeWatchResources` on the DRA socket of every registered driver whenever
the ResourceHealthStatus gate is on (the default), whether or not the driver lists the service,
and retries every 5 s while it fails. So we serve it, even though all we know is which devices
we publish.

What we send: every response is the COMPLETE device list of this node's pool, every device
HEALTHY. A device whose host interface vanished simply drops out of the list (it also leaves
the ResourceSlice); the kubelet then reports it UNKNOWN once its timeout passes, which is the
honest answer for a device we no longer see.

When: at connect, whenever the set of published device names changes, and as a heartbeat
every `heartbeat_seconds`. The heartbeat is not optional: the kubelet stamps each report with
its own receive time and turns a device UNKNOWN when no report arrived within
`health_check_timeout_seconds`, so an idle stream must repeat itself well inside that window.

Not asked: before Kubernetes 1.36 the gate is alpha and off, and the kubelet never opens the
stream. Nothing breaks (device health just does not reach pod status); `stream_not_opened`
tells the agent so, once, so it can say it where users look (an Event on the Node).

Ending: a kubelet cancel (deregistration, kubelet restart) cancels the handler task, which we
let propagate (grpclib logs it at INFO). On shutdown `close()` makes every open stream return
normally, so the kubelet sees a clean end of stream (EOF) instead of an error; it reconnects to
the next agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Collection
from typing import Protocol

from grpclib.server import Stream

from multinet.kubelet._pb import dra_health_v1alpha1_grpc as pb_grpc
from multinet.kubelet._pb import dra_health_v1alpha1_pb2 as pb

log = logging.getLogger(__name__)

#: The name the registration lists when this service is served ("<proto package>.<service>").
HEALTH_SERVICE = "v1alpha1.DRAResourceHealth"
#: Long enough to ride out a busy agent, short enough that a dead agent shows as UNKNOWN soon.
HEALTH_CHECK_TIMEOUT_SECONDS = 60
#: A third of the timeout: two heartbeats may be lost before the kubelet marks devices UNKNOWN.
HEARTBEAT_SECONDS = 20.0
#: A kubelet with the gate on opens the stream right after registering the plugin (well within
#: a second here); this long without one means it will not.
OPEN_GRACE_SECONDS = 30.0
NOT_WATCHED_REASON = "DeviceHealthNotWatched"
NOT_WATCHED_MESSAGE = (
    "the kubelet registered the multinet.dev plugin but opened no device health stream within "
    f"{OPEN_GRACE_SECONDS:.0f} s: its ResourceHealthStatus feature gate is off (the default "
    "before Kubernetes 1.36), so device health does not appear in pod status; nothing else "
    "depends on it"
)


class DeviceSource(Protocol):
    """What the stream needs of the agent's publish loop (``agent.publish.PublishLoop``)."""

    #: Notified (``notify_all``) after a publish that changed the set of device names.
    devices_changed: asyncio.Condition

    def device_names(self) -> Collection[str]:
        """Names of the devices currently published in this node's pool."""
        ...


class DeviceHealthServicer(pb_grpc.DRAResourceHealthBase):
    def __init__(
        self,
        source: DeviceSource,
        *,
        pool: str,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        timeout_seconds: int = HEALTH_CHECK_TIMEOUT_SECONDS,
    ) -> None:
        if not pool:
            raise ValueError("health stream needs the pool name (the node name), got ''")
        if not 0 < heartbeat_seconds < timeout_seconds:
            raise ValueError(
                f"heartbeat_seconds ({heartbeat_seconds}) must be positive and below "
                f"timeout_seconds ({timeout_seconds}), or the kubelet marks devices UNKNOWN"
            )
        self._source = source
        self._pool = pool
        self._heartbeat = heartbeat_seconds
        self._timeout = timeout_seconds
        self._closing = False
        #: Streams currently open (observability and tests).
        self.open_streams = 0
        #: Set when the kubelet first opens a stream.
        self.opened = asyncio.Event()

    def snapshot(self, names: Collection[str]) -> pb.NodeWatchResourcesResponse:
        """The complete list for `names`, all HEALTHY as of now."""
        now = int(time.time())
        return pb.NodeWatchResourcesResponse(
            devices=[
                pb.DeviceHealth(
                    device=pb.DeviceIdentifier(pool_name=self._pool, device_name=name),
                    health=pb.HEALTHY,
                    last_updated_time=now,
                    health_check_timeout_seconds=self._timeout,
                )
                for name in sorted(names)
            ]
        )

    async def NodeWatchResources(
        self, stream: Stream[pb.NodeWatchResourcesRequest, pb.NodeWatchResourcesResponse]
    ) -> None:
        await stream.recv_message()  # an empty request: nothing to read in it
        self.open_streams += 1
        self.opened.set()
        log.info("kubelet opened the device health stream", extra={"pool": self._pool})
        try:
            while not self._closing:
                sent = frozenset(self._source.device_names())
                await stream.send_message(self.snapshot(sent))
                await self._next_change(sent)
        finally:  # also on cancel by the kubelet: nothing to undo but the count
            self.open_streams -= 1
            log.debug("device health stream ended", extra={"pool": self._pool})

    async def _next_change(self, sent: frozenset[str]) -> None:
        """Until the names differ from `sent`, `close()` ran, or a heartbeat is due."""
        changed = self._source.devices_changed
        async with changed:
            try:
                async with asyncio.timeout(self._heartbeat):
                    await changed.wait_for(
                        lambda: self._closing or frozenset(self._source.device_names()) != sent
                    )
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Ends every open stream normally (kubelet sees EOF). Call before stopping the server."""
        self._closing = True
        changed = self._source.devices_changed
        async with changed:
            changed.notify_all()


async def stream_not_opened(
    servicer: DeviceHealthServicer,
    registered: Awaitable[object],
    grace_seconds: float = OPEN_GRACE_SECONDS,
) -> bool:
    """True when the kubelet registered the plugin (`registered` resolved) but opened no health
    stream within `grace_seconds` after that: its ResourceHealthStatus gate is off."""
    await registered
    try:
        await asyncio.wait_for(servicer.opened.wait(), grace_seconds)
    except TimeoutError:
        return True
    return False

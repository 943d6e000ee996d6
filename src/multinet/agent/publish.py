"""The agent's publish loop: host interfaces + Ready PodNetworks -> this node's ResourceSlices.

Inputs, both event driven: the inventory's debounced snapshots (netlink notifications) and the
PodNetwork watcher's ``changed`` event. Each wake-up resolves the newest snapshot against the
current networks and hands the devices to the publisher, which writes only what differs. A
failed publish is retried with capped exponential backoff; newer input simply replaces what
was pending, so a slow or restarting apiserver never builds a queue.

Devices inside pods: a host-device NIC moved into a pod disappears from the host netns, but it
is allocated and the pool must not flap, so devices named by ``away()`` (the agent's attachments)
are kept in the slice with the facts last seen on the host. Those facts also outlive the
process: the attach hook records them (``link_of``) with the attachment in the checkpoint, and
``away_links()`` hands them back, so after an agent restart a device that is already away is
rebuilt from the record and stays in the slice.

Shared (macvlan) parent NICs are published in the form ``sharing`` says
(``devices.slots.Sharing``): one device with consumable capacity where the apiserver serves it,
else N slot devices per NIC. The agent detects the form at start (``kube.features``) and sets
it before the first publish; ``use_sharing`` changes it later (a probe that failed at start and
succeeded on a retry) and republishes.

Time budget: none of this runs under the NRI deadline; netlink decoding happens on the
inventory's thread, API calls are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Protocol

from multinet import slices
from multinet.agent import metrics
from multinet.devices.away import with_away_devices
from multinet.devices.binding import DeviceConflict, NetworkSelector
from multinet.devices.model import Device, HostSnapshot, Link
from multinet.devices.resolve import Resolution, resolve
from multinet.devices.slots import Sharing
from multinet.retry import Backoff, Retry

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """What the loop needs of ``netlink.inventory.Inventory``."""

    @property
    def current(self) -> HostSnapshot: ...

    def changes(self) -> AsyncIterator[HostSnapshot]: ...


class NetworkSource(Protocol):
    """What the loop needs of ``kube.podnetworks.PodNetworkWatcher``."""

    selectors: tuple[NetworkSelector, ...]
    changed: asyncio.Event

    async def report_conflicts(self, conflicts: Sequence[DeviceConflict]) -> int: ...


class Publisher(Protocol):
    """What the loop needs of ``kube.slices.SlicePublisher``."""

    async def publish(self, devices: Sequence[Device]) -> slices.SlicePlan: ...


class PublishLoop:
    def __init__(
        self,
        *,
        inventory: SnapshotSource,
        networks: NetworkSource,
        publisher: Publisher,
        away: Callable[[], Collection[str]] = frozenset,
        away_links: Callable[[], Mapping[str, Link]] = dict,
        sharing: Sharing = Sharing.SLOT_DEVICES,
        initial_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.inventory = inventory
        self.networks = networks
        self.publisher = publisher
        self.away = away
        #: Recorded links of away devices (device name -> link), for those not seen since start.
        self.away_links = away_links
        #: How shared parents are published; until told otherwise, the form that works on
        #: every Kubernetes version (slot devices).
        self.sharing = sharing
        self.initial_backoff_seconds = initial_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        #: Set after the first successful publish (readiness).
        self.published = asyncio.Event()
        self.last: Resolution | None = None
        #: Notified after a successful publish that changed the set of published device names
        #: (the kubelet health stream, ``kubelet.device_health.DeviceSource``, waits on it).
        self.devices_changed = asyncio.Condition()
        self._published_names: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self._seen: dict[str, Link] = {}  # device name -> link last seen on the host
        #: ifname -> (reason, networks whose pattern selects it) as last logged.
        self._told: dict[str, tuple[str, tuple[str, ...]]] = {}

    def use_sharing(self, sharing: Sharing) -> None:
        """Publish shared parents in the form ``sharing`` from now on (republishing if new)."""
        if sharing is not self.sharing:
            self.sharing = sharing
            self._wake.set()

    def device_names(self) -> frozenset[str]:
        """Names of the devices in the last successful publish."""
        return self._published_names

    def link_of(self, device: str) -> Link | None:
        """The host link ``device`` was last resolved from (what the slice advertises)."""
        return self._seen.get(device)

    def devices(self, snapshot: HostSnapshot) -> Resolution:
        """Resolve ``snapshot`` against the current networks, keeping devices that are away."""
        wanted = set(self.away())
        recorded = self.away_links() if wanted else {}
        snapshot, self._seen = with_away_devices(snapshot, self._seen, wanted, recorded)
        return resolve(snapshot, self.networks.selectors, sharing=self.sharing)

    async def publish_once(self) -> slices.SlicePlan:
        resolution = self.devices(self.inventory.current)
        self.last = resolution
        self._log_exclusions(resolution.excluded)
        metrics.DEVICE_CONFLICTS.set(len(resolution.conflicts))
        if resolution.conflicts:
            for c in resolution.conflicts:
                log.warning(
                    "interface %s (device %s) is selected by PodNetworks %s: bound to none",
                    c.ifname,
                    c.device,
                    ", ".join(c.networks),
                )
        with contextlib.suppress(Exception):  # Events are a courtesy; never block publishing
            await self.networks.report_conflicts(resolution.conflicts)
        plan = await self.publisher.publish(resolution.devices)
        writes = len(plan.to_delete) + len(plan.to_update) + len(plan.to_create)
        metrics.SLICE_WRITES.inc(writes)
        metrics.PUBLISHED_DEVICES.set(plan.device_count)
        metrics.LAST_PUBLISH_TIMESTAMP.set(time.time())
        self.published.set()
        names = frozenset(d.name for d in resolution.devices)
        if names != self._published_names:
            self._published_names = names
            async with self.devices_changed:
                self.devices_changed.notify_all()
        return plan

    def _log_exclusions(self, excluded: Mapping[str, str]) -> None:
        """Say why each interface is not advertised, once (again when that changes).

        At INFO when a PodNetwork's pattern selects it: that is the case an administrator looks
        for ("names: ['*']" and the NIC is missing); every other exclusion (each new pod veth,
        for one) only at DEBUG, so a busy node's log is not flooded."""
        told: dict[str, tuple[str, tuple[str, ...]]] = {}
        for ifname, why in sorted(excluded.items()):
            wanted = tuple(n.name for n in self.networks.selectors if n.selects(ifname))
            told[ifname] = (why, wanted)
            if self._told.get(ifname) == told[ifname]:
                continue
            if wanted:
                log.info(
                    "interface %s is not advertised (%s) although PodNetwork %s selects it by"
                    " pattern; name it exactly to advertise it",
                    ifname,
                    why,
                    ", ".join(wanted),
                    extra={"ifname": ifname},
                )
            else:
                log.debug(
                    "interface %s is not advertised: %s", ifname, why, extra={"ifname": ifname}
                )
        self._told = told

    async def _follow_inventory(self) -> None:
        async for _ in self.inventory.changes():
            self._wake.set()

    async def _follow_networks(self) -> None:
        while True:
            await self.networks.changed.wait()
            self.networks.changed.clear()
            self._wake.set()

    async def run(self) -> None:
        """Forever: publish at start, then after every change; retry failures with backoff."""
        followers = [
            asyncio.create_task(self._follow_inventory(), name="publish-inventory"),
            asyncio.create_task(self._follow_networks(), name="publish-networks"),
        ]
        retry = Retry(Backoff(self.initial_backoff_seconds, self.max_backoff_seconds))
        self._wake.set()
        try:
            while True:
                waker = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait([waker, *followers], return_when="FIRST_COMPLETED")
                for task in followers:
                    if task in done:  # a follower died: the inventory failed, say so loudly
                        waker.cancel()
                        task.result()
                        raise RuntimeError(f"{task.get_name()} ended")
                self._wake.clear()
                try:
                    await self.publish_once()
                    retry.reset()
                except Exception as exc:
                    metrics.PUBLISH_ERRORS.inc()
                    delay = retry.failed()
                    log.warning(
                        "publishing ResourceSlices failed, retrying in %.1fs: %s", delay, exc
                    )
                    await asyncio.sleep(delay)
                    self._wake.set()
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

"""The publish loop's collaborators as plain data, for tests that drive `PublishLoop` without
netlink or an apiserver: the inventory's snapshots, a fixed set of Ready networks, and a
publisher that plans against a pool with no slices yet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from multinet import slices
from multinet.devices.binding import DeviceConflict, NetworkSelector
from multinet.devices.model import Device, HostSnapshot

BLUE = (NetworkSelector(name="blue", interfaces=("ens5f*",)),)


@dataclass
class Snapshots:
    """The inventory's place in the loop, given as data."""

    current: HostSnapshot

    async def changes(self) -> AsyncIterator[HostSnapshot]:
        yield self.current


@dataclass
class StaticNetworks:
    selectors: tuple[NetworkSelector, ...] = BLUE
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def report_conflicts(self, conflicts: Sequence[DeviceConflict]) -> int:
        return len(conflicts)


class EmptyPool:
    """The publish step without an apiserver: the plan against a pool with no slices yet."""

    async def publish(self, devices: Sequence[Device]) -> slices.SlicePlan:
        return slices.plan(slices.NodeRef("node-a", "uid"), devices, [])

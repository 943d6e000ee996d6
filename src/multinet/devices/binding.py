"""Which PodNetwork selects which device.

A network selects host interfaces by name: an entry without glob characters is an exact name, an
entry with ``*``, ``?`` or ``[`` is a shell pattern (matched case-sensitively, like the kernel's
names). Only Ready networks take part; the caller filters.

A device selected by two networks is bound to neither: publishing either answer would let the
scheduler hand one NIC to pods of a network the administrator did not mean. The conflict is
returned as data so the caller can log it, count it and emit Events on both networks.

In ``macvlan`` mode the selected device is the *parent*: pods get children of it, so it is
advertised as shareable (``allowMultipleAllocations``) with the consumable capacity
``multinet.dev/interfaces`` bounding how many children it serves. Where the cluster does not
serve consumable capacity, ``devices.slots`` turns that shared device into as many plain slot
devices as its capacity says (one number, ``NetworkSelector.max_interfaces``, for both forms).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from multinet.devices import attributes
from multinet.devices.model import Capacity, Device

MACVLAN = "macvlan"
HOST_DEVICE = "host-device"
#: Capacity name bounding the macvlan children of a shared parent.
INTERFACES_CAPACITY = attributes.ours("interfaces")
DEFAULT_MAX_INTERFACES = 64
_GLOB = set("*?[")


@dataclass(frozen=True)
class NetworkSelector:
    """The part of a Ready PodNetwork the inventory needs."""

    name: str
    interfaces: tuple[str, ...]  # exact names and glob patterns
    mode: str = HOST_DEVICE
    #: One NIC serves several claims (always in macvlan mode; most CNI chains); else one claim
    #: takes it whole.
    shared: bool = False
    #: shared only: how many children (claims) one parent serves at most.
    max_interfaces: int = DEFAULT_MAX_INTERFACES

    @property
    def exact_names(self) -> frozenset[str]:
        return frozenset(n for n in self.interfaces if not _GLOB & set(n))

    def selects(self, ifname: str) -> bool:
        return any(
            fnmatch.fnmatchcase(ifname, entry) if _GLOB & set(entry) else ifname == entry
            for entry in self.interfaces
        )


@dataclass(frozen=True)
class DeviceConflict:
    """One device selected by several networks; bound to none of them."""

    device: str
    ifname: str
    networks: tuple[str, ...]  # sorted


@dataclass(frozen=True)
class Binding:
    devices: tuple[Device, ...]
    conflicts: tuple[DeviceConflict, ...]


def explicit_names(networks: Iterable[NetworkSelector]) -> frozenset[str]:
    """Interface names some network spells out exactly (they bypass the exclusion rules)."""
    out: set[str] = set()
    for network in networks:
        out |= network.exact_names
    return frozenset(out)


def shared_capacity(most: int) -> dict[str, Capacity]:
    """The consumable capacity of a shared parent serving at most ``most`` children."""
    most = max(1, most)
    return {INTERFACES_CAPACITY: Capacity(value=most, default=1, minimum=1, maximum=most)}


def _bound(device: Device, network: NetworkSelector) -> Device:
    attrs = dict(device.attributes)
    attrs[attributes.POD_NETWORK] = network.name
    if not (network.shared or network.mode == MACVLAN):
        return replace(device, attributes=attrs, network=network.name)
    capacity = shared_capacity(network.max_interfaces)
    return replace(
        device, attributes=attrs, network=network.name, shareable=True, capacity=capacity
    )


def bind(devices: Sequence[Device], networks: Sequence[NetworkSelector]) -> Binding:
    """Devices with the podNetwork attribute set where exactly one network selects them."""
    out: list[Device] = []
    conflicts: list[DeviceConflict] = []
    for device in devices:
        chosen = [n for n in networks if n.selects(device.ifname)]
        if len(chosen) == 1:
            out.append(_bound(device, chosen[0]))
            continue
        if len(chosen) > 1:
            names = tuple(sorted({n.name for n in chosen}))
            conflicts.append(
                DeviceConflict(device=device.name, ifname=device.ifname, networks=names)
            )
        out.append(device)
    return Binding(devices=tuple(out), conflicts=tuple(conflicts))

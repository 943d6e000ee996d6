"""Snapshot + Ready networks (+ the sharing form) -> the devices to publish: the one call the
agent makes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from multinet.devices import attributes, binding, exclusion, naming, slots
from multinet.devices.model import Device, HostSnapshot


@dataclass(frozen=True)
class Resolution:
    devices: tuple[Device, ...]  # sorted by name
    conflicts: tuple[binding.DeviceConflict, ...]
    excluded: dict[str, str]  # ifname -> reason, for logs


def devices(snapshot: HostSnapshot) -> list[Device]:
    """Every link of the snapshot as an unbound device (exclusions not applied)."""
    names = naming.assign_names(snapshot.links)
    return [
        Device(name=names[link.index], ifname=link.ifname, attributes=attributes.build(link))
        for link in snapshot.links
    ]


def resolve(
    snapshot: HostSnapshot,
    networks: Sequence[binding.NetworkSelector] = (),
    *,
    sharing: slots.Sharing = slots.Sharing.CONSUMABLE_CAPACITY,
) -> Resolution:
    """``sharing``: how shared (macvlan) parents are published (``slots``); the agent passes
    what it detected, the default is the form the API was made for."""
    explicit = binding.explicit_names(networks)
    reasons = exclusion.reasons(snapshot)
    by_index = snapshot.by_index()
    excluded = {
        by_index[i].ifname: why for i, why in reasons.items() if by_index[i].ifname not in explicit
    }
    candidates = [d for d in devices(snapshot) if d.ifname not in excluded]
    bound = binding.bind(candidates, networks)
    published = slots.published(bound.devices, sharing)
    ordered = tuple(sorted(published, key=lambda d: d.name))
    return Resolution(devices=ordered, conflicts=bound.conflicts, excluded=excluded)

"""Sharing one NIC without consumable capacity: a shared parent as N once-allocatable slots.

A macvlan-mode network's parent NIC serves many pods. Where the apiserver serves consumable
capacity (DRAConsumableCapacity: beta and on from Kubernetes 1.36, alpha and off in 1.34 and
1.35) it is published once, shareable (``allowMultipleAllocations``) with the capacity
``multinet.dev/interfaces`` (``binding``). Where it does not, the apiserver silently drops those
fields and the device becomes an ordinary once-allocatable one: one pod per NIC. So there the
same parent is published as N plain devices instead, "slots", each allocatable once; the
scheduler then hands out at most N children of the NIC without knowing anything is shared.

- N is the parent's capacity, i.e. the network's per-parent maximum (one number, both forms).
- Names: ``naming.slot_name`` (``<parent>-s<index>``), stable DNS labels; a plain name another
  published device already has (a virtual interface literally called ``eth1-s0``) takes the
  salted form instead, so names stay unique in the pool.
- Attributes: the parent's own (class selectors on ``ifName``, ``podNetwork``, PCI placement keep
  matching) plus ``multinet.dev/parentDevice`` and ``multinet.dev/slot``.
- Every slot keeps the parent's ``ifname``: preparing a slot creates the macvlan child of that
  NIC exactly as for the shared device, so nothing after publishing needs to know the form.

Pure: which form to use is detected by ``multinet.kube.features`` and passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import replace

from multinet.devices import attributes, binding, naming
from multinet.devices.model import Device

#: The parent device a slot stands for (its name in the same pool).
PARENT_ATTRIBUTE = attributes.ours("parentDevice")
#: The slot's index, 0 .. N-1.
SLOT_ATTRIBUTE = attributes.ours("slot")


class Sharing(enum.Enum):
    """How a shareable (macvlan) parent NIC is published. The values are condition reasons."""

    #: One device, ``allowMultipleAllocations`` and the consumable capacity ``interfaces``.
    CONSUMABLE_CAPACITY = "ConsumableCapacity"
    #: N plain devices per parent, each allocatable once.
    SLOT_DEVICES = "SlotDevices"


def slot_count(device: Device) -> int:
    """How many slots the shared ``device`` becomes: the value of its interfaces capacity."""
    capacity = device.capacity.get(binding.INTERFACES_CAPACITY)
    return max(1, capacity.value) if capacity is not None else 1


def slots_of(device: Device, taken: frozenset[str] = frozenset()) -> list[Device]:
    """The slot devices of the shared ``device``; ``taken``: names other devices already have."""
    out = []
    for index in range(slot_count(device)):
        name = naming.slot_name(device.name, index)
        if name in taken:
            name = naming.slot_name(device.name, index, salted=True)
        attrs = {**device.attributes, PARENT_ATTRIBUTE: device.name, SLOT_ATTRIBUTE: index}
        out.append(
            replace(
                device,
                name=name,
                attributes=attrs,
                capacity={},
                shareable=False,
                parent=device.name,
            )
        )
    return out


def published(devices: Sequence[Device], sharing: Sharing) -> tuple[Device, ...]:
    """``devices`` (bound, shared parents included) in the form ``sharing`` publishes them."""
    if sharing is Sharing.CONSUMABLE_CAPACITY:
        return tuple(devices)
    plain = [d for d in devices if not d.shareable]
    taken = frozenset(d.name for d in plain)
    slots: list[Device] = []
    for device in devices:
        if device.shareable:
            slots += slots_of(device, taken)
    return (*plain, *slots)

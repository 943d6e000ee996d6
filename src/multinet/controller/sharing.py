"""Pure: how a macvlan network's NICs are shared, as the published ResourceSlices show it.

Each node agent detects at start whether the apiserver serves consumable capacity
(``kube.features``) and publishes a shared parent NIC in that form (``devices.slots``). The
controller does not probe for itself (RBAC cannot grant a dry-run-only create, and what the
apiserver would do is less than what it did): it reads what survived in the slices, device by
device, for the devices bound to the network:

- a ``multinet.dev/slot`` attribute: a slot device (``SlotDevices``);
- ``allowMultipleAllocations: true``: one shared device with consumable capacity
  (``ConsumableCapacity``);
- the ``multinet.dev/interfaces`` capacity without ``allowMultipleAllocations``: the apiserver
  dropped the field on write, so that NIC serves one pod (``Unshared``: an agent that decided
  wrongly, or one from before detection existed);
- anything else is not (yet) published as shared and says nothing.

``view`` boils one slice down to that (what the controller keeps per slice, not the slice),
``condition`` turns the views into the network's ``Sharing`` condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from multinet.api import names, parameters
from multinet.api.conditions import Absent, Desired
from multinet.api.podnetwork import PodNetwork
from multinet.devices import binding
from multinet.devices.slots import SLOT_ATTRIBUTE, Sharing
from multinet.errors import ConfigError

SHARING = "Sharing"
CONSUMABLE = Sharing.CONSUMABLE_CAPACITY.value
SLOTS = Sharing.SLOT_DEVICES.value
UNSHARED = "Unshared"
SHOWN_NODES = 5


@dataclass(frozen=True)
class SliceView:
    """What one ResourceSlice shows of the networks' shared NICs."""

    pool: str
    #: network -> form -> the most pods one parent NIC serves in it (capacity or slot count).
    forms: Mapping[str, Mapping[str, int]]


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def device_form(device: Mapping[str, Any]) -> tuple[str, int] | None:
    """(form, pods per parent NIC) of one published device; None when it says nothing."""
    attrs = device.get("attributes") or {}
    if SLOT_ATTRIBUTE in attrs:
        return SLOTS, _int((attrs[SLOT_ATTRIBUTE] or {}).get("int")) + 1
    capacity = (device.get("capacity") or {}).get(binding.INTERFACES_CAPACITY)
    if device.get("allowMultipleAllocations") is True:
        return CONSUMABLE, _int((capacity or {}).get("value"))
    if capacity is not None:
        return UNSHARED, 1
    return None


def view(slice_: Mapping[str, Any]) -> SliceView | None:
    """The view of a slice of our driver; None for anything else."""
    spec = slice_.get("spec") or {}
    if spec.get("driver") != names.DRIVER:
        return None
    forms: dict[str, dict[str, int]] = {}
    for device in spec.get("devices") or []:
        network = ((device.get("attributes") or {}).get(names.ATTRIBUTE) or {}).get("string")
        found = device_form(device)
        if not network or found is None:
            continue
        form, most = found
        seen = forms.setdefault(network, {})
        seen[form] = max(seen.get(form, 0), most)
    return SliceView(pool=str((spec.get("pool") or {}).get("name", "")), forms=forms)


def networks_changed(old: SliceView | None, new: SliceView | None) -> set[str]:
    """Networks whose part of a slice differs between two views of it."""
    before = old.forms if old is not None else {}
    after = new.forms if new is not None else {}
    return {n for n in set(before) | set(after) if before.get(n) != after.get(n)}


def _nodes(pools: Iterable[str]) -> str:
    shown = sorted(pools)
    more = f" and {len(shown) - SHOWN_NODES} more" if len(shown) > SHOWN_NODES else ""
    return ", ".join(shown[:SHOWN_NODES]) + more


def shared(pnw: PodNetwork) -> bool:
    """Whether the network shares its NICs (enabled, valid parameters, macvlan or a sharing
    CNI chain)."""
    try:
        params = parameters.parse(pnw.spec.parameters)
    except ConfigError:
        return False
    return pnw.spec.enabled and params.shares_parent


def condition(pnw: PodNetwork, views: Iterable[SliceView]) -> Desired | Absent:
    """The network's ``Sharing`` condition; ``Absent`` when it does not share its NICs."""
    if not shared(pnw):
        return Absent(SHARING)
    network, gen = pnw.metadata.name, pnw.metadata.generation
    pools: dict[str, set[str]] = {}
    most: dict[str, int] = {}
    for v in views:
        for form, count in v.forms.get(network, {}).items():
            pools.setdefault(form, set()).add(v.pool)
            most[form] = max(most.get(form, 0), count)
    if not pools:
        message = "no node publishes a device of this network yet"
        return Desired(SHARING, "Unknown", "NoDevices", message, gen)
    if UNSHARED in pools:
        message = (
            "the apiserver dropped allowMultipleAllocations from this network's devices on "
            f"node(s) {_nodes(pools[UNSHARED])} (DRAConsumableCapacity off): each parent NIC "
            "there serves one pod; restart the node agent there to publish slot devices instead"
        )
        return Desired(SHARING, "False", "NotShared", message, gen)
    slots = f"{most.get(SLOTS, 0)} slot devices, one pod per slot"
    if CONSUMABLE in pools and SLOTS in pools:
        message = (
            f"consumable capacity on node(s) {_nodes(pools[CONSUMABLE])}; each parent NIC as "
            f"{slots}, on node(s) {_nodes(pools[SLOTS])} (each node agent detects at start "
            "whether the apiserver serves consumable capacity)"
        )
        return Desired(SHARING, "True", "Mixed", message, gen)
    if CONSUMABLE in pools:
        message = (
            "consumable capacity is served by this cluster (DRAConsumableCapacity on): each "
            f"parent NIC is published once, shared by up to {most[CONSUMABLE]} pods"
        )
        return Desired(SHARING, "True", CONSUMABLE, message, gen)
    message = (
        "consumable capacity is not served by this cluster (DRAConsumableCapacity off): each "
        f"parent NIC is published as {slots}"
    )
    return Desired(SHARING, "True", SLOTS, message, gen)

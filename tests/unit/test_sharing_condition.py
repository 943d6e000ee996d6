"""The PodNetwork's ``Sharing`` condition: which form the published slices show for its NICs.

The slices here are the ones the agent's own planning renders from resolved devices (both
forms); the 1.34/1.35 apiserver's silent drop of the alpha fields is applied to such a body the
way the apiserver's strategy applies it.

Cases: the exact type, status, reason and message for slot devices, consumable capacity, both
across nodes, devices that lost allowMultipleAllocations (False, naming the nodes), and no
devices yet (Unknown); no condition (removed) for host-device, disabled or invalid networks; the
removal leaves other conditions alone; the controller keeps one small view per slice and queues
only the networks whose part of a slice changed; a reconcile writes the condition, and leaves
it alone until the slices were listed.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

from multinet import slices
from multinet.api import conditions, podnetwork
from multinet.api.conditions import Absent, Desired
from multinet.controller import sharing
from multinet.controller.reconcile import Reconciler
from multinet.controller.runtime import Controller
from multinet.devices import binding
from multinet.devices.model import Hardware, HostSnapshot, Link
from multinet.devices.resolve import resolve
from multinet.devices.slots import Sharing
from multinet.kube.controllerapi import Kube

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
MACVLAN = {"interfaces": {"names": ["ens5f*"]}, "mode": "macvlan"}


def pnw(
    params: Any = None, *, enabled: bool = True, name: str = "mv", gen: int = 2
) -> podnetwork.PodNetwork:
    return podnetwork.parse(
        {
            "metadata": {"name": name, "uid": "u-1", "generation": gen},
            "spec": {"provider": "multinet.dev", "enabled": enabled, "parameters": params},
        }
    )


def nic(function: int) -> Link:
    return Link(
        index=5 + function,
        ifname=f"ens5f{function}",
        perm_mac=f"0c:42:a1:00:00:0{function}",
        hw=Hardware(pci_address=f"0000:3b:00.{function}"),
    )


def published(node: str, form: Sharing, nics: int = 2) -> list[dict[str, Any]]:
    """The slices a node agent publishes for the macvlan network ``mv`` in ``form``."""
    net = binding.NetworkSelector(name="mv", interfaces=("ens5f*",), mode="macvlan")
    snapshot = HostSnapshot(links=tuple(nic(f) for f in range(nics)))
    devices = resolve(snapshot, [net], sharing=form).devices
    plan = slices.plan(slices.NodeRef(node, "uid-" + node), devices, [])
    out = []
    for i, body in enumerate(plan.to_create):
        stored = copy.deepcopy(body)
        stored["metadata"] = {"name": f"{node}-multinet.dev-{i}"}
        out.append(stored)
    return out


def dropped(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``bodies`` as a 1.34/1.35 apiserver with DRAConsumableCapacity off stores them."""
    out = copy.deepcopy(bodies)
    for body in out:
        for device in body["spec"]["devices"]:
            device.pop("allowMultipleAllocations", None)
            for capacity in (device.get("capacity") or {}).values():
                capacity.pop("requestPolicy", None)
    return out


def views(*bodies: list[dict[str, Any]]) -> list[sharing.SliceView]:
    found = [sharing.view(b) for group in bodies for b in group]
    return [v for v in found if v is not None]


def test_slot_devices() -> None:
    found = sharing.condition(pnw(MACVLAN), views(published("node-a", Sharing.SLOT_DEVICES)))
    assert found == Desired(
        "Sharing",
        "True",
        "SlotDevices",
        "consumable capacity is not served by this cluster (DRAConsumableCapacity off): each"
        " parent NIC is published as 64 slot devices, one pod per slot",
        2,
    )


def test_consumable_capacity() -> None:
    shown = views(
        published("node-a", Sharing.CONSUMABLE_CAPACITY),
        published("node-b", Sharing.CONSUMABLE_CAPACITY),
    )
    assert sharing.condition(pnw(MACVLAN), shown) == Desired(
        "Sharing",
        "True",
        "ConsumableCapacity",
        "consumable capacity is served by this cluster (DRAConsumableCapacity on): each parent"
        " NIC is published once, shared by up to 64 pods",
        2,
    )


def test_nodes_that_differ_are_named() -> None:
    shown = views(
        published("node-a", Sharing.CONSUMABLE_CAPACITY),
        published("node-b", Sharing.SLOT_DEVICES),
    )
    found = sharing.condition(pnw(MACVLAN), shown)
    assert isinstance(found, Desired)
    assert (found.status, found.reason) == ("True", "Mixed")
    assert found.message == (
        "consumable capacity on node(s) node-a; each parent NIC as 64 slot devices, one pod per"
        " slot, on node(s) node-b (each node agent detects at start whether the apiserver serves"
        " consumable capacity)"
    )


def test_devices_that_lost_allow_multiple_allocations_are_not_shared() -> None:
    shown = views(
        dropped(published("node-b", Sharing.CONSUMABLE_CAPACITY)),
        published("node-a", Sharing.SLOT_DEVICES),
    )
    found = sharing.condition(pnw(MACVLAN), shown)
    assert isinstance(found, Desired)
    assert (found.type, found.status, found.reason) == ("Sharing", "False", "NotShared")
    assert found.message == (
        "the apiserver dropped allowMultipleAllocations from this network's devices on node(s)"
        " node-b (DRAConsumableCapacity off): each parent NIC there serves one pod; restart the"
        " node agent there to publish slot devices instead"
    )


def test_no_devices_yet_is_unknown() -> None:
    other = published("node-a", Sharing.SLOT_DEVICES)
    found = sharing.condition(pnw(MACVLAN, name="elsewhere"), views(other))
    assert found == Desired(
        "Sharing", "Unknown", "NoDevices", "no node publishes a device of this network yet", 2
    )


def test_networks_that_do_not_share_have_no_sharing_condition() -> None:
    shown = views(published("node-a", Sharing.SLOT_DEVICES))
    host_device = {"interfaces": {"names": ["ens5f*"]}}
    assert sharing.condition(pnw(host_device), shown) == Absent("Sharing")
    assert sharing.condition(pnw(MACVLAN, enabled=False), shown) == Absent("Sharing")
    assert sharing.condition(pnw({"mode": "macvlan"}), shown) == Absent("Sharing")


def test_removing_a_condition_leaves_the_others_alone() -> None:
    foreign = {"type": "example.com/Healthy", "status": "True", "reason": "Fine"}
    current = [foreign, {"type": "Sharing", "status": "True", "reason": "SlotDevices"}]
    out = conditions.set_conditions(current, [Absent("Sharing")], now=T0)
    assert out.conditions == [foreign] and out.changed and out.transitions == ()
    again = conditions.set_conditions(out.conditions, [Absent("Sharing")], now=T0)
    assert not again.changed


def test_a_view_is_small_and_ignores_other_drivers_and_unshared_devices() -> None:
    (body,) = published("node-a", Sharing.SLOT_DEVICES)
    assert sharing.view(body) == sharing.SliceView(pool="node-a", forms={"mv": {"SlotDevices": 64}})
    assert sharing.view({**body, "spec": {**body["spec"], "driver": "gpu.example.com"}}) is None
    host_device = {"name": "nic", "attributes": {"multinetwork.networking.k8s.io/podNetwork": {}}}
    assert sharing.device_form(host_device) is None


# --- the controller -------------------------------------------------------------------------


def controller() -> Controller:
    return Controller(Kube.__new__(Kube))  # never called: these tests only feed events


def queued(c: Controller) -> set[str]:
    return set(c.queue._due)


def test_the_controller_queues_the_networks_whose_part_of_a_slice_changed() -> None:
    c = controller()
    c.podnetwork_event("ADDED", {"metadata": {"name": "mv"}, "spec": {"provider": "multinet.dev"}})
    c.queue._due.clear()
    assert c.slice_views() is None  # not listed yet: the condition is left alone

    c.slices_listed(published("node-a", Sharing.SLOT_DEVICES))
    assert queued(c) == {"mv"}  # the first list decides every network
    c.queue._due.clear()

    (body,) = published("node-a", Sharing.SLOT_DEVICES)
    c.slice_event("MODIFIED", body)  # the same view: nothing to do
    assert queued(c) == set()
    (changed,) = published("node-a", Sharing.CONSUMABLE_CAPACITY)
    c.slice_event("MODIFIED", changed)
    assert queued(c) == {"mv"}
    c.queue._due.clear()
    c.slice_event("DELETED", changed)
    assert queued(c) == {"mv"} and c.slice_views() == []


class FakeKube:
    """The controller's API calls as data: a unit test has no apiserver."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.events: list[tuple[str, str]] = []

    async def get_podnetwork(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    async def get_device_class(self, name: str) -> dict[str, Any]:
        return {"metadata": {"ownerReferences": [{"kind": "PodNetwork", "uid": "u-1"}]}}

    async def replace_device_class(self, existing: Any, body: Any) -> None:
        pass

    async def patch_podnetwork_status(
        self, name: str, resource_version: str, conditions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self.body["status"] = {"conditions": conditions}
        return self.body

    async def post_event(self, obj: Any, *, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def _network_body() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "mv",
            "uid": "u-1",
            "generation": 2,
            "resourceVersion": "9",
            "finalizers": ["multinet.dev/in-use"],
        },
        "spec": {"provider": "multinet.dev", "parameters": MACVLAN},
    }


async def test_a_reconcile_writes_the_sharing_condition_once_slices_are_listed() -> None:
    kube = FakeKube(_network_body())
    shown: list[sharing.SliceView] | None = None
    reconciler = Reconciler(kube, now=lambda: T0, slice_views=lambda: shown)  # type: ignore[arg-type]

    await reconciler.reconcile("mv")
    assert [c["type"] for c in kube.body["status"]["conditions"]] == ["Ready", "DeviceClassReady"]

    shown = views(published("node-a", Sharing.SLOT_DEVICES))
    await reconciler.reconcile("mv")
    cond = conditions.find(kube.body["status"]["conditions"], "Sharing")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", "SlotDevices")
    assert ("Normal", "SlotDevices") in kube.events

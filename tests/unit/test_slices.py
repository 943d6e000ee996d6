"""ResourceSlice bodies and the pure diff against what the apiserver has.

Cases: split at 128 (64 with shareable devices), empty pool still has one slice, generation and
resourceSliceCount on every slice, ownerReference to the Node, no writes when nothing changed
(also when the server added fields), in-place update when only content changed, generation bump
and full rewrite when the device set changed, obsolete and foreign-pool slices deleted.
"""

from __future__ import annotations

import copy
from typing import Any

from multinet import slices
from multinet.devices.binding import INTERFACES_CAPACITY
from multinet.devices.model import Capacity, Device, Version

NODE = slices.NodeRef(name="node-1", uid="uid-1")


def dev(i: int, **attrs: Any) -> Device:
    return Device(
        name=f"nic-{i:04d}", ifname=f"nic{i}", attributes={"multinet.dev/mtu": 1500, **attrs}
    )


def served(plan: slices.SlicePlan, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the apiserver holds after applying ``plan``: names, resourceVersions, extra fields."""
    out = {
        s["metadata"]["name"]: s for s in existing if s["metadata"]["name"] not in plan.to_delete
    }
    for b in plan.to_update:
        new = copy.deepcopy(b)
        new["metadata"]["resourceVersion"] = str(int(b["metadata"]["resourceVersion"]) + 1)
        out[b["metadata"]["name"]] = new
    for n, b in enumerate(plan.to_create):
        new = copy.deepcopy(b)
        name = b["metadata"].pop("generateName") + f"x{len(out)}{n}"
        new["metadata"] = {**b["metadata"], "name": name, "resourceVersion": "1", "uid": name}
        new["metadata"].pop("generateName", None)
        out[name] = new
    return list(out.values())


def test_512_devices_split_into_four_slices_of_128_sharing_generation_and_count() -> None:
    plan = slices.plan(NODE, [dev(i) for i in range(512)], [])
    assert plan.generation == 1 and not plan.to_update and not plan.to_delete
    assert [len(b["spec"]["devices"]) for b in plan.to_create] == [128] * 4
    for b in plan.to_create:
        assert b["spec"]["pool"] == {"name": "node-1", "generation": 1, "resourceSliceCount": 4}
        assert b["spec"]["nodeName"] == "node-1" and b["spec"]["driver"] == "multinet.dev"
        assert b["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": "node-1",
                "uid": "uid-1",
                "controller": True,
            }
        ]
    names = [d["name"] for b in plan.to_create for d in b["spec"]["devices"]]
    assert names == sorted(names) and len(set(names)) == 512


def test_129_devices_need_two_slices() -> None:
    plan = slices.plan(NODE, [dev(i) for i in range(129)], [])
    assert [len(b["spec"]["devices"]) for b in plan.to_create] == [128, 1]


def test_shareable_devices_limit_slices_to_64() -> None:
    shared = Device(
        name="nic-0000",
        ifname="p0",
        shareable=True,
        capacity={INTERFACES_CAPACITY: Capacity(value=8, maximum=8)},
    )
    plan = slices.plan(NODE, [shared] + [dev(i) for i in range(1, 100)], [])
    assert [len(b["spec"]["devices"]) for b in plan.to_create] == [64, 36]
    first = plan.to_create[0]["spec"]["devices"][0]
    assert first["allowMultipleAllocations"] is True
    assert first["capacity"] == {
        "multinet.dev/interfaces": {
            "value": "8",
            "requestPolicy": {"default": "1", "validRange": {"min": "1", "max": "8"}},
        }
    }


def test_an_empty_pool_still_publishes_one_empty_slice() -> None:
    plan = slices.plan(NODE, [], [])
    assert len(plan.to_create) == 1
    assert plan.to_create[0]["spec"]["devices"] == []
    assert plan.to_create[0]["spec"]["pool"]["resourceSliceCount"] == 1


def test_attribute_values_render_with_their_type() -> None:
    d = Device(
        name="a",
        ifname="a",
        attributes={"x/b": True, "x/i": 3, "x/s": "3", "x/v": Version("1.2.3")},
    )
    assert slices.render_device(d)["attributes"] == {
        "x/b": {"bool": True},
        "x/i": {"int": 3},
        "x/s": {"string": "3"},
        "x/v": {"version": "1.2.3"},
    }


def test_nothing_is_written_when_nothing_changed_even_if_the_server_added_fields() -> None:
    devices = [dev(i) for i in range(200)]
    existing = served(slices.plan(NODE, devices, []), [])
    for s in existing:  # what the apiserver adds on its own
        s["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        s["metadata"]["managedFields"] = [{"manager": "multinet"}]
        for d in s["spec"]["devices"]:
            d["allowMultipleAllocations"] = None
    assert slices.plan(NODE, devices, existing).empty


def test_changed_attribute_updates_only_its_slice_in_place_at_the_same_generation() -> None:
    devices = [dev(i) for i in range(200)]
    existing = served(slices.plan(NODE, devices, []), [])
    devices[150] = dev(150, **{"multinetwork.networking.k8s.io/podNetwork": "blue"})
    plan = slices.plan(NODE, devices, existing)
    assert plan.generation == 1 and not plan.to_create and not plan.to_delete
    assert len(plan.to_update) == 1
    upd = plan.to_update[0]
    assert any(d["name"] == "nic-0150" for d in upd["spec"]["devices"])
    before = next(s for s in existing if s["metadata"]["name"] == upd["metadata"]["name"])
    assert upd["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert slices.plan(NODE, devices, served(plan, existing)).empty


def test_added_device_bumps_generation_and_rewrites_every_slice() -> None:
    devices = [dev(i) for i in range(200)]
    existing = served(slices.plan(NODE, devices, []), [])
    plan = slices.plan(NODE, [*devices, dev(200)], existing)
    assert plan.generation == 2
    assert len(plan.to_update) == 2 and not plan.to_create and not plan.to_delete
    assert {b["spec"]["pool"]["generation"] for b in plan.to_update} == {2}


def test_shrinking_deletes_surplus_slices_and_keeps_the_count_right() -> None:
    existing = served(slices.plan(NODE, [dev(i) for i in range(300)], []), [])
    plan = slices.plan(NODE, [dev(1)], existing)
    assert len(plan.to_delete) == 2 and len(plan.to_update) == 1 and plan.generation == 2
    assert plan.to_update[0]["spec"]["pool"]["resourceSliceCount"] == 1
    after = served(plan, existing)
    assert len(after) == 1 and slices.plan(NODE, [dev(1)], after).empty


def test_removing_every_device_leaves_one_empty_slice() -> None:
    existing = served(slices.plan(NODE, [dev(i) for i in range(3)], []), [])
    plan = slices.plan(NODE, [], existing)
    assert plan.to_update[0]["spec"]["devices"] == [] and not plan.to_delete


def test_generation_continues_past_the_highest_existing_and_old_generations_are_deleted() -> None:
    existing = served(slices.plan(NODE, [dev(1)], []), [])
    stale = copy.deepcopy(existing[0])
    stale["metadata"]["name"] = "node-1-multinet.dev-old"
    stale["spec"]["pool"]["generation"] = 0
    existing[0]["spec"]["pool"]["generation"] = 7
    plan = slices.plan(NODE, [dev(1)], [*existing, stale])
    assert plan.to_delete == ("node-1-multinet.dev-old",)
    assert plan.generation == 7 and not plan.to_update and not plan.to_create


def test_slices_of_another_pool_name_are_deleted() -> None:
    existing = served(slices.plan(NODE, [dev(1)], []), [])
    other = copy.deepcopy(existing[0])
    other["metadata"]["name"] = "renamed"
    other["spec"]["pool"]["name"] = "old-node-name"
    plan = slices.plan(NODE, [dev(1)], [*existing, other])
    assert plan.to_delete == ("renamed",) and not plan.to_update


def test_a_recreated_node_gets_new_owner_references() -> None:
    existing = served(slices.plan(NODE, [dev(1)], []), [])
    plan = slices.plan(slices.NodeRef(name="node-1", uid="uid-2"), [dev(1)], existing)
    assert plan.to_update[0]["metadata"]["ownerReferences"][0]["uid"] == "uid-2"

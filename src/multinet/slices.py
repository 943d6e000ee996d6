"""Devices -> ResourceSlice bodies for this node's pool, and the writes that get there.

Pure: no I/O. ``kube.slices`` lists the existing slices, calls ``plan`` and applies the result.

The rules (resource.k8s.io/v1, and what the upstream Go helper does, PROTOCOLS.md 3):

- One pool per node, named after the node; slices carry ``nodeName`` and an ownerReference to the
  Node so they disappear with it.
- At most 128 devices per slice; 64 when a device is shareable with consumable capacity or has
  taints (the API's lower limit applies to taints and counters; we take it for capacity too, so
  a 1.36 apiserver with tighter validation cannot reject us).
- There is always at least one slice, possibly with no devices: "this node has none" is an answer
  the scheduler can use, "no slice" is not.
- Every slice of the pool carries ``pool.generation`` and ``pool.resourceSliceCount``. When the
  *set* of devices or the split changes, the generation is bumped past the highest existing one
  and every slice is rewritten, so the scheduler never sees a device twice at one generation.
  When only the content of some slices changed (an attribute, a binding), those slices are
  updated in place at the same generation.
- Writes happen only when something differs; the order is delete obsolete, update, create.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multinet.api import names
from multinet.devices.model import AttrValue, Capacity, Device, Version

MAX_DEVICES = 128
MAX_DEVICES_SHARED = 64
API_VERSION = names.RESOURCE_API
#: The keys of a rendered device we own; anything else the server adds is ignored in comparisons.
_DEVICE_KEYS = ("name", "attributes", "capacity", "allowMultipleAllocations")

Body = dict[str, Any]


@dataclass(frozen=True)
class NodeRef:
    name: str
    uid: str


@dataclass(frozen=True)
class SlicePlan:
    generation: int
    to_delete: tuple[str, ...] = ()  # slice names
    to_update: tuple[Body, ...] = ()  # full bodies with metadata.name and resourceVersion
    to_create: tuple[Body, ...] = ()  # bodies with metadata.generateName
    slice_count: int = 1
    device_count: int = 0
    reasons: tuple[str, ...] = field(default=())  # why writes are needed, for logs

    @property
    def empty(self) -> bool:
        return not (self.to_delete or self.to_update or self.to_create)


def render_attribute(value: AttrValue) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: bool is an int in Python
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, Version):
        return {"version": value.value}
    return {"string": value}


def render_capacity(capacity: Capacity) -> dict[str, Any]:
    most = capacity.maximum if capacity.maximum is not None else capacity.value
    return {
        "value": str(capacity.value),
        "requestPolicy": {
            "default": str(capacity.default),
            "validRange": {"min": str(capacity.minimum), "max": str(most)},
        },
    }


def render_device(device: Device) -> Body:
    out: Body = {"name": device.name}
    if device.attributes:
        out["attributes"] = {
            k: render_attribute(device.attributes[k]) for k in sorted(device.attributes)
        }
    if device.capacity:
        out["capacity"] = {k: render_capacity(device.capacity[k]) for k in sorted(device.capacity)}
    if device.shareable:
        out["allowMultipleAllocations"] = True
    return out


def slice_limit(devices: Sequence[Device]) -> int:
    shared = any(d.shareable or d.capacity for d in devices)
    return MAX_DEVICES_SHARED if shared else MAX_DEVICES


def chunks(devices: Sequence[Device]) -> list[list[Body]]:
    """Rendered devices, sorted by name, split at the slice limit; at least one (maybe empty)."""
    rendered = [render_device(d) for d in sorted(devices, key=lambda d: d.name)]
    limit = slice_limit(devices)
    return [rendered[i : i + limit] for i in range(0, len(rendered), limit)] or [[]]


def owner_references(node: NodeRef) -> list[Body]:
    return [
        {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid, "controller": True}
    ]


def _project_device(device: Mapping[str, Any]) -> Body:
    out = {k: device[k] for k in _DEVICE_KEYS if device.get(k)}
    return out


def _devices_of(slice_: Mapping[str, Any]) -> list[Body]:
    return [_project_device(d) for d in (slice_.get("spec", {}).get("devices") or [])]


def _names(devices: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    return frozenset(str(d.get("name")) for d in devices)


def _pool(slice_: Mapping[str, Any]) -> Mapping[str, Any]:
    pool: Mapping[str, Any] = slice_.get("spec", {}).get("pool") or {}
    return pool


def _owners(slice_: Mapping[str, Any]) -> list[Body]:
    refs = slice_.get("metadata", {}).get("ownerReferences") or []
    keys = ("apiVersion", "kind", "name", "uid", "controller")
    return [{k: r.get(k) for k in keys if r.get(k) is not None} for r in refs]


def body(
    node: NodeRef,
    driver: str,
    devices: list[Body],
    *,
    generation: int,
    count: int,
    name: str | None = None,
    resource_version: str | None = None,
) -> Body:
    meta: Body = {"ownerReferences": owner_references(node)}
    if name is None:
        meta["generateName"] = f"{node.name}-{driver}-"
    else:
        meta["name"] = name
        if resource_version:
            meta["resourceVersion"] = resource_version
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceSlice",
        "metadata": meta,
        "spec": {
            "driver": driver,
            "nodeName": node.name,
            "pool": {"name": node.name, "generation": generation, "resourceSliceCount": count},
            "devices": devices,
        },
    }


def _same(slice_: Mapping[str, Any], node: NodeRef, devices: list[Body], count: int) -> bool:
    spec = slice_.get("spec", {})
    return (
        _devices_of(slice_) == devices
        and _pool(slice_).get("resourceSliceCount") == count
        and spec.get("nodeName") == node.name
        and _owners(slice_) == owner_references(node)
    )


def plan(
    node: NodeRef,
    devices: Sequence[Device],
    existing: Sequence[Mapping[str, Any]],
    *,
    driver: str = names.DRIVER,
) -> SlicePlan:
    """The writes that turn ``existing`` (this node's slices of ``driver``) into ``devices``.

    ``existing`` are slice objects as JSON dicts (camelCase), as listed from the apiserver.
    """
    wanted = chunks(devices)
    count = len(wanted)
    device_count = sum(len(c) for c in wanted)
    pool = [s for s in existing if _pool(s).get("name") == node.name]
    foreign = [s for s in existing if _pool(s).get("name") != node.name]
    top = max((int(_pool(s).get("generation") or 0) for s in pool), default=0)
    current = sorted(
        (s for s in pool if int(_pool(s).get("generation") or 0) == top),
        key=lambda s: str(s["metadata"]["name"]),
    )
    obsolete = [s for s in pool if s not in current] + foreign
    to_delete = [str(s["metadata"]["name"]) for s in obsolete]

    # Same device set, same split: update only the slices whose content differs, in place.
    by_names = {_names(_devices_of(s)): s for s in current}
    if (
        current
        and len(current) == count
        and len(by_names) == count
        and all(_names(c) in by_names for c in wanted)
    ):
        updates = []
        for chunk in wanted:
            old = by_names[_names(chunk)]
            if not _same(old, node, chunk, count):
                meta = old["metadata"]
                updates.append(
                    body(
                        node,
                        driver,
                        chunk,
                        generation=top,
                        count=count,
                        name=str(meta["name"]),
                        resource_version=meta.get("resourceVersion"),
                    )
                )
        reasons: tuple[str, ...] = ("content",) if updates else ()
        if to_delete:
            reasons += ("obsolete slices",)
        return SlicePlan(
            generation=top,
            to_delete=tuple(to_delete),
            to_update=tuple(updates),
            slice_count=count,
            device_count=device_count,
            reasons=reasons,
        )

    # The device set or the split changed: a new generation, every slice rewritten.
    generation = top + 1
    reuse = current[:count]
    to_delete += [str(s["metadata"]["name"]) for s in current[count:]]
    update_bodies = tuple(
        body(
            node,
            driver,
            chunk,
            generation=generation,
            count=count,
            name=str(old["metadata"]["name"]),
            resource_version=old["metadata"].get("resourceVersion"),
        )
        for old, chunk in zip(reuse, wanted, strict=False)
    )
    create_bodies = tuple(
        body(node, driver, chunk, generation=generation, count=count)
        for chunk in wanted[len(reuse) :]
    )
    return SlicePlan(
        generation=generation,
        to_delete=tuple(to_delete),
        to_update=update_bodies,
        to_create=create_bodies,
        slice_count=count,
        device_count=device_count,
        reasons=("device set changed",),
    )

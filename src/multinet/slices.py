"""Devices -> ResourceSlice bodies for this node's pool, and the writes that get there.

Pure: no I/O. ``kube.slices`` lists the existing slices, calls ``plan`` and applies the result.

The rules (resource.k8s.io/v1, and what the upstream Go helper does; docs/architecture.md,
protocols 3):

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


@dataclass(frozen=True)
class _Existing:
    """This node's slices as listed: the newest generation's, and those to delete outright."""

    top: int  # the highest generation in the pool (0 when there is none)
    current: list[Mapping[str, Any]]  # the slices at ``top``, by name
    obsolete: list[str]  # names of older generations' and other pools' slices


def _generation(slice_: Mapping[str, Any]) -> int:
    return int(_pool(slice_).get("generation") or 0)


def _sort_existing(node: NodeRef, existing: Sequence[Mapping[str, Any]]) -> _Existing:
    pool = [s for s in existing if _pool(s).get("name") == node.name]
    foreign = [s for s in existing if _pool(s).get("name") != node.name]
    top = max((_generation(s) for s in pool), default=0)
    current = sorted(
        (s for s in pool if _generation(s) == top),
        key=lambda s: str(s["metadata"]["name"]),
    )
    obsolete = [s for s in pool if s not in current] + foreign
    return _Existing(top, current, [str(s["metadata"]["name"]) for s in obsolete])


def _rewrite(
    old: Mapping[str, Any],
    node: NodeRef,
    driver: str,
    devices: list[Body],
    *,
    generation: int,
    count: int,
) -> Body:
    """The body that replaces slice ``old`` in place (its name and resourceVersion kept)."""
    meta = old["metadata"]
    return body(
        node,
        driver,
        devices,
        generation=generation,
        count=count,
        name=str(meta["name"]),
        resource_version=meta.get("resourceVersion"),
    )


def _same_split(
    current: Sequence[Mapping[str, Any]], wanted: Sequence[list[Body]]
) -> dict[frozenset[str], Mapping[str, Any]] | None:
    """The current slices by their device names, if ``wanted`` has the same device sets."""
    by_names = {_names(_devices_of(s)): s for s in current}
    count = len(wanted)
    if (
        current
        and len(current) == count
        and len(by_names) == count
        and all(_names(c) in by_names for c in wanted)
    ):
        return by_names
    return None


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
    found = _sort_existing(node, existing)
    by_names = _same_split(found.current, wanted)
    if by_names is not None:
        return _plan_in_place(node, driver, wanted, found, by_names)
    return _plan_new_generation(node, driver, wanted, found)


def _plan_in_place(
    node: NodeRef,
    driver: str,
    wanted: Sequence[list[Body]],
    found: _Existing,
    by_names: Mapping[frozenset[str], Mapping[str, Any]],
) -> SlicePlan:
    """Same device set, same split: update only the slices whose content differs, in place."""
    count = len(wanted)
    updates = [
        _rewrite(old, node, driver, chunk, generation=found.top, count=count)
        for chunk in wanted
        if not _same(old := by_names[_names(chunk)], node, chunk, count)
    ]
    reasons: tuple[str, ...] = ("content",) if updates else ()
    if found.obsolete:
        reasons += ("obsolete slices",)
    return SlicePlan(
        generation=found.top,
        to_delete=tuple(found.obsolete),
        to_update=tuple(updates),
        slice_count=count,
        device_count=sum(len(c) for c in wanted),
        reasons=reasons,
    )


def _plan_new_generation(
    node: NodeRef, driver: str, wanted: Sequence[list[Body]], found: _Existing
) -> SlicePlan:
    """The device set or the split changed: a new generation, every slice rewritten."""
    count = len(wanted)
    generation = found.top + 1
    reuse = found.current[:count]
    surplus = [str(s["metadata"]["name"]) for s in found.current[count:]]
    return SlicePlan(
        generation=generation,
        to_delete=(*found.obsolete, *surplus),
        to_update=tuple(
            _rewrite(old, node, driver, chunk, generation=generation, count=count)
            for old, chunk in zip(reuse, wanted, strict=False)
        ),
        to_create=tuple(
            body(node, driver, chunk, generation=generation, count=count)
            for chunk in wanted[len(reuse) :]
        ),
        slice_count=count,
        device_count=sum(len(c) for c in wanted),
        reasons=("device set changed",),
    )

"""The shipped manifests as data: deploy/base rendered without a cluster, and the workloads in it.

``render_base`` does what ``kubectl kustomize deploy/base`` does for the features the base uses
(``resources`` and ``images``), so unit tests need no kubectl binary; it refuses any other
kustomization field, and tests/e2e/test_deploy.py checks that it agrees with the real kustomize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "deploy" / "base"
SAMPLES = REPO / "deploy" / "samples"
HANDLED = {"apiVersion", "kind", "resources", "images"}

Obj = dict[str, Any]


def kustomization(directory: Path) -> Obj:
    doc: Obj = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return doc


def _retag(image: str, images: list[Obj]) -> str:
    # Split "name:tag" at the last colon that is not part of a registry port.
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        name, tag = image, ""
    for entry in images:
        if entry["name"] == name:
            name = entry.get("newName", name)
            tag = str(entry.get("newTag", tag))
    return f"{name}:{tag}" if tag else name


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render(directory: Path) -> list[Obj]:
    """Every object the kustomization in ``directory`` lists, images rewritten."""
    kust = kustomization(directory)
    unhandled = set(kust) - HANDLED
    if unhandled:
        raise AssertionError(
            f"{directory}/kustomization.yaml uses {sorted(unhandled)}: teach tests/manifests.py "
            "to render them (or render with kubectl kustomize)"
        )
    objects: list[Obj] = []
    for name in kust["resources"]:
        objects += [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
    for obj in objects:
        for container in _containers(obj):
            container["image"] = _retag(container["image"], kust.get("images", []))
    return objects


def render_base() -> list[Obj]:
    return render(BASE)


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in the render, found {len(found)}"
    return found[0]


def container(workload: Obj) -> Obj:
    """The single container of a Deployment or DaemonSet."""
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    result: Obj = only
    return result


def containers(objects: list[Obj]) -> list[Obj]:
    return [c for o in objects for c in _containers(o)]

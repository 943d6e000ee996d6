"""End to end: the kubelet's device health stream is served, so the kubelet stops erroring.

Kubelet 1.36 opens `v1alpha1.DRAResourceHealth/NodeWatchResources` on our DRA socket and, while
that fails, retries every 5 s and logs "Error receiving from WatchResources stream" each time.
After the agent (re)starts on this tree's code, the kubelet must open the stream and log no new
such error, neither from the restart itself (the old agent ends its stream cleanly) nor during
an observation window longer than two of the kubelet's retry periods. What it received is in
the kubelet's own health checkpoint: every device of this node's slices, Healthy.

A kubelet whose ResourceHealthStatus gate is off (the default before 1.36; read from its own
metrics) never opens the stream: then the agent must say so with a Normal Event on the Node.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import support
from helpers import wait_for
from localcluster import Cluster
from localcluster import multinet as deployment

pytestmark = [pytest.mark.cluster, pytest.mark.root]

ERROR = "Error receiving from WatchResources stream"
STARTED = "Successfully started WatchResources health stream"
#: The kubelet retries a failed stream every 5 s: this window sees at least two retries.
OBSERVE_SECONDS = 12.0


class LogTail:
    """The kubelet log written after construction (survives a rotation that shrinks it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def text(self) -> str:
        with self.path.open("rb") as f:
            if f.seek(0, 2) < self.offset:  # rotated: everything in the new file is new
                self.offset = 0
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.text().splitlines() if needle in line]


def _published(cluster: Cluster) -> set[str]:
    out = cluster.kubectl(
        "get",
        "resourceslices",
        "--field-selector",
        f"spec.driver=multinet.dev,spec.nodeName={cluster.node_name}",
        "-o",
        "json",
    ).stdout
    return {d["name"] for s in json.loads(out)["items"] for d in s["spec"].get("devices", [])}


def _healthy_in_kubelet(cluster: Cluster) -> set[str]:
    """Devices the kubelet's health checkpoint holds as Healthy for our driver and pool."""
    state = json.loads((cluster.kubelet_root / "dra_health_state").read_text())
    devices = state.get("multinet.dev", {}).get("Devices", {}).values()
    return {
        d["DeviceName"]
        for d in devices
        if d["PoolName"] == cluster.node_name and d["Health"] == "Healthy"
    }


def _the_node_says_health_is_not_watched(cluster: Cluster) -> None:
    deployment.restart_agent(cluster)  # this tree's agent, whatever ran before

    def notice() -> list[str]:
        return [
            m
            for m in support.events_for(cluster, "default", "Node", cluster.node_name)
            if "opened no device health stream" in m
        ]

    (message, *_) = wait_for(notice, timeout=90, what="the DeviceHealthNotWatched Node Event")
    assert "ResourceHealthStatus feature gate is off" in message


def test_kubelet_health_stream_runs_without_errors(multinet: Cluster) -> None:
    if not support.kubelet_feature_enabled(multinet, multinet.node_name, "ResourceHealthStatus"):
        # Kubernetes 1.34 and 1.35: the gate is alpha and off, so the kubelet never asks; the
        # agent says so on the Node, once, 30 s after the kubelet registered it.
        _the_node_says_health_is_not_watched(multinet)
        return
    kubelet_log = multinet.log_dir / "kubelet.log"
    # Run this tree's agent (a reused cluster may still run an older one), then restart it
    # again: the second restart is the one under test, it ends a stream that is being served.
    deployment.restart_agent(multinet)
    tail = LogTail(kubelet_log)
    deployment.restart_agent(multinet)

    wait_for(
        lambda: tail.lines(STARTED),
        timeout=30,
        what=f"{STARTED!r} in {kubelet_log} after the agent restart",
    )
    deadline = time.monotonic() + OBSERVE_SECONDS
    while time.monotonic() < deadline:  # bounded observation window; fail at the first error
        errors = tail.lines(ERROR)
        assert not errors, f"kubelet logged health stream errors in {kubelet_log}:\n" + "\n".join(
            errors[:5]
        )
        time.sleep(0.5)
    assert not tail.lines(ERROR)
    assert len(tail.lines(STARTED)) == 1, "the kubelet re-opened the stream: it ended early"
    assert _published(multinet), "this node publishes no multinet devices"
    # Subset: a device that left the slice stays in the kubelet's cache until its timeout.
    wait_for(
        lambda: _published(multinet) <= _healthy_in_kubelet(multinet),
        timeout=10,
        what="the kubelet to hold every published device Healthy",
    )

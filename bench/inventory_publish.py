"""Benchmark: inventory + ResourceSlice publishing with 512 veth devices.

Runs in two throwaway network namespaces (the host is shared with other work): the inventory
reads namespace A holding 512 veths whose peers sit in namespace B, so A has exactly 512
candidate devices. Measures

- start -> complete slices: Inventory start (first rtnetlink dump and decode) + resolve + publish
- hotplug -> slice: a new veth appears in A until a publish containing it returned (N runs)
- removal -> slice: the same for deleting it
- RSS of this process (current and peak)

Publishing goes to a real apiserver when --kubeconfig is given (driver ``bench.multinet.dev``
so the node's real slices are untouched; its slices are deleted at the end), otherwise the
publish step is the pure plan (what would be written) serialised to JSON.

    .venv/bin/python bench/inventory_publish.py [--devices 512] [--runs 20] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence

from multinet import slices
from multinet.agent.publish import PublishLoop
from multinet.devices.binding import DeviceConflict, NetworkSelector
from multinet.devices.model import Device
from multinet.netlink.inventory import Inventory


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def sh_quiet(*args: str) -> None:
    subprocess.run(args, capture_output=True)


def rss_kib() -> tuple[int, int]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


class Networks:
    def __init__(self) -> None:
        self.selectors = (NetworkSelector(name="bench", interfaces=("bn*",)),)
        self.changed = asyncio.Event()

    async def report_conflicts(self, conflicts: Sequence[DeviceConflict]) -> int:
        return 0


class PurePublisher:
    """No apiserver: plan against what the previous plan would have left, serialise it."""

    def __init__(self) -> None:
        self.existing: list[dict[str, object]] = []
        self.node = slices.NodeRef("bench-node", "bench-uid")

    async def publish(self, devices: Sequence[Device]) -> slices.SlicePlan:
        plan = slices.plan(self.node, devices, self.existing)
        json.dumps([*plan.to_update, *plan.to_create])
        if not plan.empty:
            kept = [s for s in self.existing if s["metadata"]["name"] not in plan.to_delete]  # type: ignore[index]
            made = [
                {**b, "metadata": {**b["metadata"], "name": f"s{i}", "resourceVersion": "1"}}
                for i, b in enumerate(plan.to_create)
            ]
            updated = {b["metadata"]["name"]: b for b in plan.to_update}
            self.existing = [updated.get(s["metadata"]["name"], s) for s in kept] + made  # type: ignore[index]
        return plan


class Watching:
    """Wraps a publisher and wakes waiters when a published device set matches."""

    def __init__(self, inner: PurePublisher | object) -> None:
        self.inner = inner
        self.names: set[str] = set()
        self.updated = asyncio.Event()

    async def publish(self, devices: Sequence[Device]) -> slices.SlicePlan:
        plan: slices.SlicePlan = await self.inner.publish(devices)  # type: ignore[attr-defined]
        self.names = {d.ifname for d in devices}
        self.updated.set()
        return plan

    async def until(self, pred: object) -> float:
        while not pred(self.names):  # type: ignore[operator]
            self.updated.clear()
            await asyncio.wait_for(self.updated.wait(), 10)
        return time.monotonic()


def add_veths(ns_a: str, ns_b: str, count: int) -> None:
    """`count` veths in `ns_a`, their peers in `ns_b`, in one `ip -batch`."""
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as batch:
        for i in range(count):
            batch.write(f"link add bn{i:04d} type veth peer name bp{i:04d} netns {ns_b}\n")
        batch.flush()
        sh("ip", "-n", ns_a, "-batch", batch.name)


async def hotplug(
    publisher: Watching, ns_a: str, ns_b: str, runs: int
) -> tuple[list[float], list[float]]:
    """Milliseconds from adding (then deleting) a veth in `ns_a` to a publish that shows it."""
    add_ms, del_ms = [], []
    for r in range(runs):
        name = f"bx{r:04d}"
        t0 = time.monotonic()
        peer = f"by{r:04d}"
        sh(
            "ip",
            "-n",
            ns_a,
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            ns_b,
        )
        t1 = await publisher.until(lambda names, n=name: n in names)
        add_ms.append((t1 - t0) * 1000)
        t0 = time.monotonic()
        sh("ip", "-n", ns_a, "link", "del", name)
        t1 = await publisher.until(lambda names, n=name: n not in names)
        del_ms.append((t1 - t0) * 1000)
    return add_ms, del_ms


async def bench(
    count: int, runs: int, kubeconfig: str | None, node: str | None
) -> dict[str, object]:
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"mnbenchA{tag}", f"mnbenchB{tag}"
    sh("ip", "netns", "add", ns_a)
    sh("ip", "netns", "add", ns_b)
    api = None
    try:
        add_veths(ns_a, ns_b, count)
        if kubeconfig:
            from multinet.kube.client import api_client
            from multinet.kube.slices import SlicePublisher

            api = await api_client(kubeconfig)
            inner: object = SlicePublisher(api, node or "", driver="bench.multinet.dev")
        else:
            inner = PurePublisher()
        publisher = Watching(inner)
        start = time.monotonic()
        inv = Inventory(netns=ns_a, debounce_seconds=0.1)
        await inv.start()
        inventory_ready = time.monotonic()
        loop = PublishLoop(inventory=inv, networks=Networks(), publisher=publisher)
        plan = await loop.publish_once()
        complete = time.monotonic()
        rss_after_start = rss_kib()
        assert plan.device_count == count, plan.device_count
        runner = asyncio.create_task(loop.run())
        add_ms, del_ms = await hotplug(publisher, ns_a, ns_b, runs)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await inv.close()
        if kubeconfig:
            await inner.delete_all()  # type: ignore[attr-defined]
        rss, peak = rss_kib()
        return {
            "devices": count,
            "slices": plan.slice_count,
            "apiserver": bool(kubeconfig),
            "inventory_start_ms": round((inventory_ready - start) * 1000, 1),
            "start_to_complete_slices_ms": round((complete - start) * 1000, 1),
            "hotplug_to_slice_ms": {
                "p50": round(statistics.median(add_ms), 1),
                "max": round(max(add_ms), 1),
            },
            "removal_to_slice_ms": {
                "p50": round(statistics.median(del_ms), 1),
                "max": round(max(del_ms), 1),
            },
            "debounce_ms": 100,
            "rss_after_start_mib": round(rss_after_start[0] / 1024, 1),
            "rss_end_mib": round(rss / 1024, 1),
            "rss_peak_mib": round(peak / 1024, 1),
        }
    finally:
        if api is not None:
            await api.close()
        for ns in (ns_a, ns_b):
            sh_quiet("ip", "netns", "del", ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=512)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument(
        "--node", default=None, help="node owning the bench slices (with --kubeconfig)"
    )
    args = parser.parse_args()
    result = asyncio.run(bench(args.devices, args.runs, args.kubeconfig, args.node))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

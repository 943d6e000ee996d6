"""Agent and controller memory on the local cluster with many devices and many attached pods.

The node agent's RSS is measured three times: idle on a quiet node, idle with `--devices` more
host NICs published (macvlan links on one veth parent, all bound to one host-device PodNetwork),
and with `--pods` pods running, each holding one of those NICs in its network namespace
(`--pods` claims prepared, attached, recorded in the checkpoint, their status written). The
controller's RSS is read at the same moments. Each figure is VmRSS from /proc/<pid>/status,
read `--settle` seconds after the step finished, so it is the process at rest, not mid-burst.

    .venv/bin/python bench/agent_load_memory.py [--devices 512] [--pods 100] [--settle 5]

Needs root (it makes the NICs). Reuses a running 1-node local cluster (started if none) with
multinet as host processes, and deploys multinet if needed; restart the agent first
(`python -m localcluster.multinet undeploy` then `deploy`) to measure the working tree's code.
Cleans up the namespace, the PodNetwork and the NICs even on failure.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client
from localcluster import multinet as deployment
from pod_startup import (
    DRIVER,
    _cleanup,
    claim_body,
    connect,
    network_ready,
    pod_body,
    podnetwork_object,
    sh,
    wait_until,
)
from podwatch import PodWatch

from multinet.api.names import ATTRIBUTE as POD_NETWORK_ATTRIBUTE


def say(text: str) -> None:
    print(f"[agent-load-memory] {text}", file=sys.stderr, flush=True)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextmanager
def macvlan_nics(prefix: str, count: int) -> Iterator[str]:
    """`count` macvlan links `<prefix>NNN` on a veth parent `<prefix>p`; yields their glob.

    macvlan links rather than veth pairs: a veth's other end would be published too (or, in
    another netns, make its host end a "pod veth" that no glob selects)."""
    parent = f"{prefix}p"
    sh("ip", "link", "add", parent, "type", "veth", "peer", "name", f"{prefix}q")
    try:
        lines = [
            f"link add {prefix}{i:03d} link {parent} type macvlan mode bridge" for i in range(count)
        ]
        subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True)
        sh("ip", "link", "set", parent, "up")
        yield f"{prefix}[0-9]*"
    finally:
        # Deleting the parent deletes every macvlan still on the host; one a pod still holds goes
        # with its netns.
        subprocess.run(["ip", "link", "del", parent], capture_output=True)


def podnetwork_body(name: str, pattern: str) -> dict[str, Any]:
    interfaces = {"names": [pattern]}
    return podnetwork_object(
        name, {"interfaces": interfaces, "mode": "host-device", "interfaceName": "net1"}
    )


def bound_devices(custom: client.CustomObjectsApi, network: str) -> int:
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")
    return sum(
        1
        for item in slices["items"]
        if item["spec"].get("driver") == DRIVER
        for device in item["spec"].get("devices", [])
        if device.get("attributes", {}).get(POD_NETWORK_ATTRIBUTE, {}).get("string") == network
    )


def published_devices(custom: client.CustomObjectsApi) -> int:
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")
    return sum(
        len(item["spec"].get("devices", []))
        for item in slices["items"]
        if item["spec"].get("driver") == DRIVER
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=512)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds at rest before a read")
    parser.add_argument("--timeout", type=float, default=600.0, help="per step, seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cluster, core, custom = connect(say)
    pids = {
        "node agent": cluster.processes.pid(deployment.AGENT),
        "controller": cluster.processes.pid(deployment.CONTROLLER),
    }
    if None in pids.values():
        raise SystemExit("multinet is not running as host processes (a 1-node cluster is needed)")
    tag = secrets.token_hex(2)
    namespace, network = f"bench-mem-{tag}", f"bench-mem-{tag}"
    rows: list[tuple[str, dict[str, float]]] = []

    def read(step: str) -> None:
        time.sleep(args.settle)
        rows.append((step, {k: rss_mib(p) for k, p in pids.items() if p is not None}))
        say(f"{step}: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in rows[-1][1].items()))

    read("quiet node")
    with macvlan_nics(f"mnl{tag}", args.devices) as pattern:
        try:
            core.create_namespace({"metadata": {"name": namespace}})
            custom.create_cluster_custom_object(
                "multinetwork.networking.k8s.io",
                "v1alpha1",
                "podnetworks",
                podnetwork_body(network, pattern),
            )
            wait_until("PodNetwork Ready", 60, lambda: network_ready(custom, network))
            started = time.monotonic()
            wait_until(
                f"{args.devices} devices bound to {network} in the slices",
                args.timeout,
                lambda: bound_devices(custom, network) >= args.devices,
            )
            say(f"{args.devices} devices published in {time.monotonic() - started:.1f} s")
            total = published_devices(custom)
            read(f"{total} devices published")

            claims = [f"nic-{i:03d}" for i in range(args.pods)]
            for name in claims:
                custom.create_namespaced_custom_object(
                    "resource.k8s.io", "v1", namespace, "resourceclaims", claim_body(name, network)
                )
            started = time.monotonic()
            names = [f"pod-{i:03d}" for i in range(args.pods)]
            with PodWatch(core, namespace) as pods:
                for name, claim in zip(names, claims, strict=True):
                    core.create_namespaced_pod(namespace, pod_body(name, claim))
                if missing := pods.wait_running(names, args.timeout):
                    raise TimeoutError(f"{len(missing)} of {args.pods} pods not Running")
            say(f"{args.pods} pods Running in {time.monotonic() - started:.1f} s")
            read(f"{total} devices, {args.pods} pods attached")
        finally:
            say("cleaning up")
            _cleanup(core, custom, namespace, network)
    print(
        f"agent and controller RSS (VmRSS, MiB, {args.settle:g} s at rest before each read); "
        f"{args.devices} macvlan NICs bound to one host-device network, {args.pods} pods"
    )
    print(f"  {'step':40} " + " ".join(f"{k:>12}" for k in pids))
    for step, values in rows:
        print(f"  {step:40} " + " ".join(f"{values[k]:12.1f}" for k in pids))
    return 0


if __name__ == "__main__":
    sys.exit(main())

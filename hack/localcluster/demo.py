"""`make demo`: two pods on two nodes each get a NIC of the same network and talk over it; then
the NICs go home.

A real cluster of two sandbox nodes (see docs/local-cluster.md) runs multinet as users run it:
deploy/base's controller Deployment and agent DaemonSet, as pods, from the image `make image`
builds. Each node gets a veth "NIC" on the host's lab bridge (one L2 segment, like a real
secondary network). Every step is announced; a failing step says which one failed and where the
logs are. The cluster is torn down at the end unless it was already running before the demo or
`--keep` is given; the demo's own objects and NICs are always removed.

    python -m localcluster.demo [--keep] [--nodes N]
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import multinet as deployment
from . import sandbox
from .cluster import Cluster, ClusterError, down, up
from .layout import TEST_IMAGE

NIC = "demo0"  # the NIC each node gets (its other end is on the lab bridge)
SUBNET = "198.51.100.0/24"  # documentation range: never routed anywhere
NETWORK = "demo-net"
NAMESPACE = "multinet-demo"
PODS = ("demo-a", "demo-b")


class StepFailed(Exception):
    pass


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def step(number: int, title: str, cluster: Cluster | None) -> Iterator[None]:
    say(f"\n==> [{number}] {title}")
    try:
        yield
    except (
        ClusterError,
        sandbox.SandboxError,
        subprocess.CalledProcessError,
        TimeoutError,
        StepFailed,
    ) as exc:
        detail = getattr(exc, "stderr", "") or ""
        logs = cluster.log_dir if cluster else "the cluster's log directory"
        raise StepFailed(f"step {number} ({title}) failed: {exc}\n{detail}\nlogs: {logs}") from exc


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def wait(what: str, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def node_nic(node: str) -> str:
    """The NIC as its node shows it: name, MTU, MAC and addresses; empty while it is away."""
    out = sh("ip", "netns", "exec", node, "ip", "-j", "addr", "show", "dev", NIC, check=False)
    links = json.loads(out) if out.strip() else []
    if not links:
        return ""
    (link,) = links
    inet = [
        f"{a['local']}/{a['prefixlen']}"
        for a in link.get("addr_info", [])
        if a.get("scope") != "link"  # the kernel's own link-local address comes and goes
    ]
    return f"{link['ifname']} mtu {link['mtu']} mac {link['address']} addresses {inet or 'none'}"


def manifests() -> str:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
            "kind": "PodNetwork",
            "metadata": {"name": NETWORK},
            "spec": {
                "provider": "multinet.dev",
                "parameters": {
                    "interfaces": {"names": [NIC]},
                    "mode": "host-device",
                    "interfaceName": "net1",
                    "ipam": {"type": "pool", "subnet": SUBNET},
                },
            },
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def workload() -> str:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "demo-nic", "namespace": NAMESPACE},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [{"name": "nic", "exactly": {"deviceClassName": NETWORK}}]
                    }
                }
            },
        },
        *(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "dnsPolicy": "Default",
                    "containers": [
                        {
                            "name": "main",
                            "image": TEST_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"],
                            "resources": {"claims": [{"name": "nic"}]},
                        }
                    ],
                    "resourceClaims": [{"name": "nic", "resourceClaimTemplateName": "demo-nic"}],
                },
            }
            for name in PODS
        ),
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def cleanup(cluster: Cluster, nodes: list[str]) -> None:
    cluster.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", check=False
    )
    cluster.kubectl("delete", "podnetwork", NETWORK, "--ignore-not-found", check=False)
    for node in nodes:
        sandbox.remove_nic(node, NIC)


def pod_field(cluster: Cluster, pod: str, path: str) -> str:
    return cluster.kubectl("get", "pod", pod, "-n", NAMESPACE, "-o", f"jsonpath={path}").stdout


def _running(cluster: Cluster, pod: str) -> bool:
    return pod_field(cluster, pod, "{.status.phase}") == "Running"


def net1_address(cluster: Cluster, pod: str) -> str:
    out = cluster.kubectl("exec", "-n", NAMESPACE, pod, "--", "ip", "-o", "-4", "addr", "show",
                          "net1").stdout  # fmt: skip
    return out.split()[3].split("/")[0] if out.split() else ""


def run(keep: bool, count: int) -> None:
    cluster: Cluster | None = None
    was_up = Cluster.load().is_up()
    nodes: list[str] = []
    try:
        with step(1, f"bring up a real {count}-node cluster from binaries (node sandboxes)", None):
            cluster = up(say=lambda s: say(f"    {s}"), nodes=count)
            nodes = cluster.node_names[:2]
        _story(cluster, nodes)
        say("\ndemo complete: two pods on two nodes talked over net1, and the NICs are home")
    finally:
        if cluster is not None:
            cleanup(cluster, nodes)
            if not keep and not was_up:
                say("\n==> tearing the cluster down (make demo KEEP=1 keeps it)")
                down(say=lambda s: say(f"    {s}"))


def _story(cluster: Cluster, nodes: list[str]) -> None:
    with step(2, "deploy multinet: deploy/base's Deployment and DaemonSet, as pods", cluster):
        deployment.deploy(cluster, say=lambda s: say(f"    {s}"))
        say(cluster.kubectl("get", "pods", "-n", "multinet-system", "-o", "wide").stdout.rstrip())
    before = _give_nics(cluster, nodes)
    with step(4, f"create PodNetwork {NETWORK} (NICs named {NIC}, pool {SUBNET})", cluster):
        cluster.kubectl("apply", "-f", "-", input=manifests())
        jsonpath = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        wait(
            "the PodNetwork to become Ready",
            lambda: cluster.kubectl("get", "podnetwork", NETWORK, "-o", jsonpath).stdout == "True",
        )
        say(cluster.kubectl("get", "podnetwork", NETWORK).stdout.rstrip())
    with step(5, "each node advertises its NIC in its ResourceSlice", cluster):
        found = wait("a device on each node", lambda: _devices_by_node(cluster, nodes))
        for node, device in sorted(found.items()):
            say(f"    {node}: device {device}")
    with step(6, "two pods claim a NIC each: the scheduler puts them on different nodes", cluster):
        cluster.kubectl("apply", "-f", "-", input=workload())
        for pod in PODS:
            wait(
                f"pod {pod} to run",
                functools.partial(_running, cluster, pod),
                timeout=180,
            )
        say(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout.rstrip())
        placed = {pod_field(cluster, pod, "{.spec.nodeName}") for pod in PODS}
        if len(placed) != len(PODS):
            raise StepFailed(f"the pods share a node: {placed}")
    addresses = _show_net1(cluster)
    with step(8, f"{PODS[0]} pings {PODS[1]} over net1 (across nodes)", cluster):
        out = cluster.kubectl("exec", "-n", NAMESPACE, PODS[0], "--", "ping", "-c", "3", "-W",
                              "2", "-I", "net1", addresses[PODS[1]]).stdout  # fmt: skip
        say(out.rstrip())
    _delete_and_compare(cluster, nodes, before)


def _give_nics(cluster: Cluster, nodes: list[str]) -> dict[str, str]:
    with step(
        3, f"give each node a NIC {NIC} (a veth whose other end is on the lab bridge)", cluster
    ):
        cleanup(cluster, nodes)
        before = {}
        for node in nodes:
            sandbox.add_nic(node, NIC)
            before[node] = node_nic(node)
            say(f"    {node}: {before[node]}")
    return before


def _show_net1(cluster: Cluster) -> dict[str, str]:
    with step(7, "each pod's net1 (kubectl exec <pod> -- ip addr show net1)", cluster):
        addresses = {}
        for pod in PODS:
            out = cluster.kubectl("exec", "-n", NAMESPACE, pod, "--", "ip", "addr", "show",
                                  "net1").stdout  # fmt: skip
            say(f"    {pod}:\n" + out.rstrip())
            addresses[pod] = net1_address(cluster, pod)
        if len(set(addresses.values())) != len(PODS) or not all(addresses.values()):
            raise StepFailed(f"the pods need distinct net1 addresses from the pool: {addresses}")
    return addresses


def _delete_and_compare(cluster: Cluster, nodes: list[str], before: dict[str, str]) -> None:
    with step(9, "delete the pods: each NIC goes back to its node as it was", cluster):
        cluster.kubectl("delete", "pods", "-n", NAMESPACE, *PODS, "--wait=true")
        for node in nodes:
            after = wait(f"the NIC back on {node}", functools.partial(node_nic, node), 60)
            say(f"    {node}: {after}")
            if after != before[node]:
                raise StepFailed(f"{NIC} came back changed on {node}:\n  before: "
                                 f"{before[node]}\n  after:  {after}")  # fmt: skip
        say("    identical to before the pods (name, MTU, MAC, addresses)")


def _devices_by_node(cluster: Cluster, nodes: list[str]) -> dict[str, str] | None:
    """{node: device name} once every node advertises a device of the demo network."""
    slices = json.loads(
        cluster.kubectl(
            "get", "resourceslices", "--field-selector", "spec.driver=multinet.dev", "-o", "json"
        ).stdout
    )
    found: dict[str, str] = {}
    for item in slices.get("items", []):
        for device in item["spec"].get("devices", []):
            attrs = device.get("attributes", {})
            net = attrs.get("multinetwork.networking.k8s.io/podNetwork", {}).get("string")
            if net == NETWORK:
                found[item["spec"]["nodeName"]] = device["name"]
    return found if set(found) >= set(nodes) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.demo")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument(
        "--nodes", type=int, default=2, help="cluster size (default 2; the demo uses two nodes)"
    )
    args = parser.parse_args(argv)
    if args.nodes < 2:
        parser.error("the demo needs at least 2 nodes")
    try:
        run(args.keep, args.nodes)
    except StepFailed as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`make demo`: a pod gets a second network interface on a real node, and the host gets it back.

Every step is announced; a failing step says which one failed and where the logs are. The
cluster is torn down at the end unless it was already running before the demo or `--keep`
is given; the demo's own objects and its veth "NIC" are always removed.

    python -m localcluster.demo [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import multinet as deployment
from .cluster import Cluster, ClusterError, down, up
from .layout import TEST_IMAGE

NIC = "mn-demo0"  # the host end of the demo's veth "NIC"
PEER = "mn-demo0p"
NIC_ADDRESS = "198.51.100.10/24"  # documentation range: never routed anywhere
NETWORK = "demo-net"
NAMESPACE = "multinet-demo"


class StepFailed(Exception):
    pass


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def step(number: int, title: str, cluster: Cluster | None) -> Iterator[None]:
    say(f"\n==> [{number}] {title}")
    try:
        yield
    except (ClusterError, subprocess.CalledProcessError, TimeoutError, StepFailed) as exc:
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


def host_nic() -> str:
    return sh("ip", "-o", "addr", "show", "dev", NIC, check=False).strip()


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
                },
            },
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def workload() -> str:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": "demo-nic", "namespace": NAMESPACE},
            "spec": {
                "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": NETWORK}}]}
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "demo", "namespace": NAMESPACE},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": TEST_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                        "resources": {"claims": [{"name": "nic"}]},
                    }
                ],
                "resourceClaims": [{"name": "nic", "resourceClaimName": "demo-nic"}],
            },
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)


def cleanup(cluster: Cluster) -> None:
    cluster.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", check=False
    )
    cluster.kubectl("delete", "podnetwork", NETWORK, "--ignore-not-found", check=False)
    sh("ip", "link", "del", NIC, check=False)


def run(keep: bool) -> None:
    cluster: Cluster | None = None
    was_up = Cluster.load().is_up()
    try:
        with step(1, "bring up a real single-node cluster from binaries", cluster):
            cluster = up(say=lambda s: say(f"    {s}"))
        with step(2, "deploy multinet (CRDs, RBAC, controller and node agent)", cluster):
            deployment.deploy(cluster, say=lambda s: say(f"    {s}"))
        with step(3, f"create a veth 'NIC' {NIC} on the node with {NIC_ADDRESS}", cluster):
            cleanup(cluster)
            sh("ip", "link", "add", NIC, "type", "veth", "peer", "name", PEER)
            sh("ip", "addr", "add", NIC_ADDRESS, "dev", NIC)
            sh("ip", "link", "set", NIC, "up")
            before = host_nic()
            say(f"    host: {before}")
        with step(4, f"create PodNetwork {NETWORK} selecting {NIC}", cluster):
            cluster.kubectl("apply", "-f", "-", input=manifests())
            wait(
                "the PodNetwork to become Ready",
                lambda: (
                    cluster.kubectl(
                        "get",
                        "podnetwork",
                        NETWORK,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    ).stdout
                    == "True"
                ),
            )
            say(cluster.kubectl("get", "podnetwork", NETWORK).stdout.rstrip())
        with step(5, "the node advertises the NIC in its ResourceSlice", cluster):
            device = wait("a device bound to the network", lambda: find_device(cluster))
            say(f"    device {device['name']}: " + json.dumps(device.get("attributes", {})))
        with step(
            6, "create a ResourceClaim through the PodNetwork's DeviceClass, and a Pod", cluster
        ):
            cluster.kubectl("apply", "-f", "-", input=workload())
            wait(
                "the pod to run",
                lambda: (
                    cluster.kubectl(
                        "get", "pod", "demo", "-n", NAMESPACE, "-o", "jsonpath={.status.phase}"
                    ).stdout
                    == "Running"
                ),
                timeout=180,
            )
            say(cluster.kubectl("get", "pod,resourceclaim", "-n", NAMESPACE).stdout.rstrip())
        with step(7, "the pod's interfaces (kubectl exec demo -- ip addr)", cluster):
            out = cluster.kubectl("exec", "-n", NAMESPACE, "demo", "--", "ip", "addr").stdout
            say(out.rstrip())
            if "net1" not in out or NIC_ADDRESS.split("/", 1)[0] not in out:
                raise StepFailed(f"net1 with {NIC_ADDRESS} not found inside the pod")
        with step(8, "the claim's status.devices", cluster):
            status = wait(
                "the claim status",
                lambda: (
                    cluster.kubectl(
                        "get",
                        "resourceclaim",
                        "demo-nic",
                        "-n",
                        NAMESPACE,
                        "-o",
                        "jsonpath={.status.devices}",
                    ).stdout
                ),
            )
            say(json.dumps(json.loads(status), indent=2))
        with step(9, "delete the pod: the NIC goes back to the host as it was", cluster):
            cluster.kubectl("delete", "pod", "demo", "-n", NAMESPACE, "--wait=true")
            after = wait("the NIC back on the host", host_nic, timeout=60)
            say(f"    host: {after}")
            if after != before:
                raise StepFailed(f"{NIC} came back changed:\n  before: {before}\n  after:  {after}")
            say("    identical to before the pod (name, index, address)")
        say("\ndemo complete: the pod had net1, and the host has its NIC back")
    finally:
        if cluster is not None:
            cleanup(cluster)
            if not keep and not was_up:
                say("\n==> tearing the cluster down (make demo KEEP=1 keeps it)")
                down(say=lambda s: say(f"    {s}"))


def find_device(cluster: Cluster) -> dict[str, Any] | None:
    slices = json.loads(
        cluster.kubectl(
            "get", "resourceslices", "--field-selector", "spec.driver=multinet.dev", "-o", "json"
        ).stdout
    )
    for item in slices.get("items", []):
        for device in item["spec"].get("devices", []):
            attrs = device.get("attributes", {})
            net = attrs.get("multinetwork.networking.k8s.io/podNetwork", {}).get("string")
            if net == NETWORK:
                return dict(device)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.demo")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args(argv)
    try:
        run(args.keep)
    except StepFailed as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Churn on the local cluster: force-delete a pod that holds a host-device NIC and create its
replacement at once, R rounds, on one veth "NIC" (one PodNetwork, host-device, one address).

Each replacement pod asks for the NIC through a ResourceClaimTemplate, as a Deployment's pods
do, so its claim is new and the scheduler can give it the NIC only once the old claim is gone;
the NIC may still be in the old pod's sandbox then. Reported: per round, the replacement's
create call -> watch saw it Running (ms; p50, max, all rounds), the Warning Events on the
replacement pods (kubelet prepare failures and back-offs show here; the scheduler's
FailedScheduling while the old claim is still allocated is counted apart), the agent's WARNING/ERROR
log lines, and whether the NIC is home and exactly as before after the last pod is deleted.

Needs root (it makes the veth NIC). Reuses a running local cluster and deploys multinet if
needed. Cleans up the namespace, the PodNetwork and the NIC even on failure.
Usage: bench/churn.py [--rounds R] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from kubernetes import client
from pod_startup import (
    _cleanup,
    agent_log,
    connect,
    network_ready,
    parent_nic,
    percentile,
    pod_body,
    sh,
)
from pod_startup import wait_until as _wait_until
from podwatch import PodWatch


def say(text: str) -> None:
    print(f"[churn] {text}", file=sys.stderr, flush=True)


def nic_view(name: str) -> dict[str, Any] | None:
    """What `ip` shows of the NIC (name, MTU, MAC, state, global addresses), None when absent."""
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", name], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    (link,) = json.loads(out.stdout)
    return {
        "name": link["ifname"],
        "mtu": link["mtu"],
        "mac": link["address"],
        "up": "UP" in link["flags"],
        "addresses": sorted(
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") != "link"
        ),
    }


def template_body(name: str, network: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {
            "spec": {
                "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": network}}]}
            }
        },
    }


def replacement_body(name: str, template: str) -> dict[str, Any]:
    body = pod_body(name, None)
    body["spec"]["containers"][0]["resources"] = {"claims": [{"name": "nic"}]}
    body["spec"]["resourceClaims"] = [{"name": "nic", "resourceClaimTemplateName": template}]
    return body


def warnings(core: client.CoreV1Api, namespace: str) -> list[str]:
    events = core.list_namespaced_event(namespace, field_selector="type=Warning").items
    return [f"{e.involved_object.name}: {e.reason}: {e.message}" for e in events]


def report(
    rounds: int,
    starts: list[float],
    warned: list[str],
    noisy: list[str],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    """Print the figures; 0 when the NIC came home exact and the node warned of nothing."""
    print(f"churn: {rounds} rounds of force-delete + immediate replacement, one NIC")
    print(
        f"  replacement create -> Running: p50 {percentile(starts, 50):.0f} ms, "
        f"max {max(starts):.0f} ms, mean {statistics.fmean(starts):.0f} ms"
    )
    print(f"  all rounds (ms): {' '.join(f'{s:.0f}' for s in starts)}")
    # FailedScheduling: the scheduler tried while the old claim still held the NIC, which
    # is Kubernetes' wait for deallocation; everything else would be the node's (ours).
    scheduler = [w for w in warned if ": FailedScheduling: " in w]
    node = [w for w in warned if w not in scheduler]
    print(f"  Warning Events: {len(node)} from the node, {len(scheduler)} FailedScheduling")
    for line in node[:10]:
        print(f"    {line[:240]}")
    print(f"  agent WARNING/ERROR log lines: {len(noisy)}")
    for line in noisy[:10]:
        print(f"    {line[:240]}")
    exact = after == before
    print(f"  NIC home and exact after the last round: {'yes' if exact else 'NO'}")
    if not exact:
        print(f"    before {before}\n    after  {after}")
    return 0 if exact and not node else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0, help="per pod, seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cluster, core, custom = connect(say)
    tag = secrets.token_hex(3)
    namespace, network = f"churn-{tag}", f"churn-{tag}"
    with parent_nic() as nic:
        sh("ip", "addr", "add", "198.51.100.51/24", "dev", nic)
        try:
            return rounds(cluster, core, custom, namespace, network, nic, args)
        finally:
            say("cleaning up")
            _cleanup(core, custom, namespace, network)


def rounds(
    cluster: Any,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    network: str,
    nic: str,
    args: argparse.Namespace,
) -> int:
    before = nic_view(nic)
    core.create_namespace({"metadata": {"name": namespace}})
    custom.create_cluster_custom_object(
        "multinetwork.networking.k8s.io",
        "v1alpha1",
        "podnetworks",
        {
            "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
            "kind": "PodNetwork",
            "metadata": {"name": network},
            "spec": {
                "provider": "multinet.dev",
                "parameters": {"interfaces": {"names": [nic]}, "interfaceName": "net1"},
            },
        },
    )
    _wait_until("PodNetwork Ready", 60, lambda: network_ready(custom, network))
    custom.create_namespaced_custom_object(
        "resource.k8s.io",
        "v1",
        namespace,
        "resourceclaimtemplates",
        template_body("nic", network),
    )
    log = agent_log(cluster)
    log_offset = log.stat().st_size
    starts: list[float] = []
    with PodWatch(core, namespace) as pods:
        core.create_namespaced_pod(namespace, replacement_body("app-000", "nic"))
        _wait_until("the first pod Running", args.timeout, lambda: "app-000" in pods.running)
        for n in range(1, args.rounds + 1):
            old, new = f"app-{n - 1:03d}", f"app-{n:03d}"
            core.delete_namespaced_pod(old, namespace, grace_period_seconds=0)
            created = time.monotonic()
            core.create_namespaced_pod(namespace, replacement_body(new, "nic"))
            if pods.wait_running([new], args.timeout):
                raise TimeoutError(f"round {n}: {new} not Running after {args.timeout:g} s")
            starts.append((pods.running[new] - created) * 1e3)
            say(f"round {n}: {new} Running {starts[-1]:.0f} ms after its create call")
        last = f"app-{args.rounds:03d}"
        core.delete_namespaced_pod(last, namespace, grace_period_seconds=1)
    after = _wait_until("the NIC back on the host", 60, lambda: nic_view(nic))
    warned = warnings(core, namespace)
    with log.open(errors="replace") as f:
        f.seek(log_offset)
        noisy = [ln.rstrip() for ln in f if " WARNING " in ln or " ERROR " in ln]
    return report(args.rounds, starts, warned, noisy, before, after)


if __name__ == "__main__":
    sys.exit(main())

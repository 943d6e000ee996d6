"""Pod start-up on the local cluster: N pods each with its own macvlan claim beside N plain pods.

Both batches use the test image (already in containerd, imagePullPolicy Never) and are created at
once (API calls back to back, claims created beforehand, untimed). The macvlan batch shares one
veth "NIC" as parent (a PodNetwork in macvlan mode with pool IPAM on a /24 of 10.249.x.0/24), so
the scheduler allocates N claims on one shareable device and the agent prepares N claims and
attaches N children. The plain batch is deleted before the macvlan batch starts, so both see
the same node load.

Reported per batch:
  wall            first create call -> every pod observed Running (watch, ms resolution)
  observed        per pod, its create call returned -> watch saw it scheduled / Running
  api             per pod, creationTimestamp -> Ready lastTransitionTime and -> container
                  startedAt (server timestamps, 1 s resolution: the figures are whole seconds)
and from the agent's /metrics, the deltas over the macvlan batch of multinet_agent_prepare_seconds
and multinet_agent_attach_seconds (per claim / per pod: mean and a bucket-interpolated p50/p99),
plus the WARNING/ERROR lines the agent logged meanwhile.

Needs root (it makes the veth NIC). Reuses a running local cluster (up() is a no-op then) and
deploys multinet if needed. Cleans up the namespace, the PodNetwork and the NIC even on failure.
Usage: bench/pod_startup.py [--pods N] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from localcluster import TEST_IMAGE, Cluster, up
from localcluster import multinet as deployment
from podwatch import PodWatch

from multinet.api.names import ATTRIBUTE as POD_NETWORK_ATTRIBUTE

METRICS_URL = f"http://127.0.0.1:{deployment.AGENT_METRICS_PORT}/metrics"
DRIVER = "multinet.dev"


def say(text: str) -> None:
    print(f"[pod-startup] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- agent metrics -----------------------------------------------------------------------------


@dataclass
class Histogram:
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative

    def minus(self, other: Histogram) -> Histogram:
        return Histogram(
            self.count - other.count,
            self.total - other.total,
            {le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation (as PromQL does)."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le in sorted(self.buckets):
            n = self.buckets[le]
            if n >= rank:
                if le == float("inf"):
                    return lower
                inside = n - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, n
        return lower


_SAMPLE = re.compile(r'^(\w+?)(_bucket|_count|_sum)(?:\{le="([^"]+)"\})? (\S+)$')


def scrape() -> dict[str, Histogram]:
    """The agent's histograms by base name (only unlabelled ones, which ours are)."""
    with urllib.request.urlopen(METRICS_URL, timeout=10) as reply:
        text = reply.read().decode()
    out: dict[str, Histogram] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, kind, le, value = m.group(1), m.group(2), m.group(3), float(m.group(4))
        h = out.setdefault(name, Histogram())
        if kind == "_count":
            h.count = value
        elif kind == "_sum":
            h.total = value
        elif le is not None:
            h.buckets[float(le)] = value
    return out


# -- objects -----------------------------------------------------------------------------------


def pod_body(name: str, claim: str | None, *, template: str | None = None) -> dict[str, Any]:
    """A pod sleeping in the test image, holding the ResourceClaim `claim` or one made from the
    ResourceClaimTemplate `template` (as its claim "nic"), or none."""
    container: dict[str, Any] = {
        "name": "main",
        "image": TEST_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sleep", "3600"],
    }
    # dnsPolicy Default: no cluster DNS here (ClusterFirst would add a Warning to every pod).
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "dnsPolicy": "Default",
        "containers": [container],
    }
    if claim or template:
        container["resources"] = {"claims": [{"name": "nic"}]}
        source = {"resourceClaimName": claim} if claim else {"resourceClaimTemplateName": template}
        spec["resourceClaims"] = [{"name": "nic", **source}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def claim_body(name: str, device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": device_class}}]}
        },
    }


def podnetwork_object(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
        "kind": "PodNetwork",
        "metadata": {"name": name},
        "spec": {"provider": DRIVER, "parameters": parameters},
    }


def podnetwork_body(name: str, parent: str, subnet: str) -> dict[str, Any]:
    return podnetwork_object(
        name,
        {
            "interfaces": {"names": [parent]},
            "mode": "macvlan",
            "interfaceName": "net1",
            "ipam": {"type": "pool", "subnet": subnet},
        },
    )


def wait_until(what: str, timeout: float, predicate: Any, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # a lookup that fails is "not yet"
            last = exc
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


# -- one batch ---------------------------------------------------------------------------------


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class Batch:
    label: str
    wall: float = 0.0
    observed_scheduled: list[float] = field(default_factory=list)  # ms
    observed_running: list[float] = field(default_factory=list)  # ms
    api_ready: list[float] = field(default_factory=list)  # s
    api_started: list[float] = field(default_factory=list)  # s


def run_batch(
    core: client.CoreV1Api, namespace: str, label: str, claims: list[str | None], timeout: float
) -> Batch:
    names = [f"{label}-{i:03d}" for i in range(len(claims))]
    created: dict[str, float] = {}
    result = Batch(label)
    with PodWatch(core, namespace) as pods:
        first = time.monotonic()
        for name, claim in zip(names, claims, strict=True):
            core.create_namespaced_pod(namespace, pod_body(name, claim))
            created[name] = time.monotonic()
        if pods.wait_running(names, timeout - (time.monotonic() - first)):
            raise TimeoutError(_stuck(core, namespace, label, names, pods.running, timeout))
        result.wall = max(pods.running[n] for n in names) - first
        for name in names:
            result.observed_scheduled.append((pods.scheduled[name] - created[name]) * 1e3)
            result.observed_running.append((pods.running[name] - created[name]) * 1e3)
    for pod in core.list_namespaced_pod(namespace).items:
        if not pod.metadata.name.startswith(f"{label}-"):
            continue
        born = _ts(pod.metadata.creation_timestamp)
        assert born is not None
        ready = next((c for c in pod.status.conditions or [] if c.type == "Ready"), None)
        if ready is not None and ready.status == "True":
            result.api_ready.append(_ts(ready.last_transition_time) - born)  # type: ignore[operator]
        for status in pod.status.container_statuses or []:
            if status.state and status.state.running:
                result.api_started.append(_ts(status.state.running.started_at) - born)  # type: ignore[operator]
    return result


def _stuck(
    core: client.CoreV1Api,
    namespace: str,
    label: str,
    names: list[str],
    running: dict[str, float],
    timeout: float,
) -> str:
    missing = [n for n in names if n not in running]
    lines = [f"{label}: {len(missing)} of {len(names)} pods not Running after {timeout:g} s"]
    events = core.list_namespaced_event(namespace).items
    for name in missing[:5]:
        msgs = [f"{e.reason}: {e.message}" for e in events if e.involved_object.name == name]
        lines.append(f"  {name}: {' | '.join(msgs[-3:]) or 'no events'}")
    return "\n".join(lines)


def delete_batch(core: client.CoreV1Api, namespace: str, timeout: float) -> None:
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=1)
    wait_until(
        "the batch's pods to be gone",
        timeout,
        lambda: not core.list_namespaced_pod(namespace).items,
        interval=1.0,
    )


# -- setup and teardown ------------------------------------------------------------------------


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def parent_nic() -> Iterator[str]:
    name = f"mnps{secrets.token_hex(3)}"
    sh("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    try:
        sh("ip", "link", "set", f"{name}p", "up")
        sh("ip", "link", "set", name, "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def device_published(custom: client.CustomObjectsApi, parent: str, network: str) -> bool:
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")
    for item in slices["items"]:
        if item["spec"].get("driver") != DRIVER:
            continue
        for device in item["spec"].get("devices", []):
            attrs = device.get("attributes", {})
            if (
                attrs.get(f"{DRIVER}/ifName", {}).get("string") == parent
                and attrs.get(POD_NETWORK_ATTRIBUTE, {}).get("string") == network
                and device.get("allowMultipleAllocations")
            ):
                return True
    return False


def network_ready(custom: client.CustomObjectsApi, name: str) -> bool:
    obj = custom.get_cluster_custom_object(
        "multinetwork.networking.k8s.io", "v1alpha1", "podnetworks", name
    )
    conds = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


# -- report ------------------------------------------------------------------------------------


def row(label: str, values: list[float], unit: str) -> str:
    if not values:
        return f"  {label:34} {'-':>8} {'-':>8} {'-':>8} {'-':>8}  {unit}"
    return (
        f"  {label:34} {percentile(values, 50):8.2f} {percentile(values, 99):8.2f} "
        f"{statistics.fmean(values):8.2f} {max(values):8.2f}  {unit}"
    )


def report(batches: list[Batch], agent: dict[str, Histogram], log_lines: list[str], n: int) -> None:
    print(f"pod start-up, {n} pods created at once per batch (2-core node, one kubelet)")
    print(f"  {'':34} {'p50':>8} {'p99':>8} {'mean':>8} {'max':>8}")
    for b in batches:
        print(f"{b.label}: wall, first create -> all Running: {b.wall:.2f} s")
        print(row("observed create -> scheduled", b.observed_scheduled, "ms"))
        print(row("observed create -> Running", b.observed_running, "ms"))
        print(row("api creation -> Ready (1 s res.)", b.api_ready, "s"))
        print(row("api creation -> started (1 s res.)", b.api_started, "s"))
    if len(batches) == 2:
        plain, mac = batches
        extra = percentile(mac.observed_running, 50) - percentile(plain.observed_running, 50)
        print(
            f"macvlan - plain: wall {mac.wall - plain.wall:+.2f} s, "
            f"p50 create->Running {extra:+.0f} ms"
        )
    print("agent, over the macvlan batch (from /metrics; includes any other user of the node):")
    for name, per in (
        ("multinet_agent_prepare_seconds", "claim"),
        ("multinet_agent_attach_seconds", "pod"),
    ):
        h = agent.get(name)
        if h is None or h.count <= 0:
            print(f"  {name}: no observations")
            continue
        p50, p99 = h.quantile(0.5), h.quantile(0.99)
        print(
            f"  {name}: {h.count:.0f} observations, mean {h.total / h.count * 1e3:.1f} ms per "
            f"{per}, p50 ~{(p50 or 0) * 1e3:.1f} ms, p99 ~{(p99 or 0) * 1e3:.1f} ms (buckets)"
        )
    print(f"agent WARNING/ERROR lines during the macvlan batch: {len(log_lines)}")
    for line in log_lines[:10]:
        print(f"  {line[:240]}")


def agent_log(cluster: Cluster) -> Path:
    return cluster.log_dir / f"{deployment.AGENT}.log"


def connect(say: Any) -> tuple[Cluster, client.CoreV1Api, client.CustomObjectsApi]:
    """The local cluster (started if needed) with multinet deployed, and API clients for it."""
    cluster = up(say=say)
    deployment.deploy(cluster, say=say)
    config.load_kube_config(str(cluster.kubeconfig))
    return cluster, client.CoreV1Api(), client.CustomObjectsApi()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300.0, help="per batch, seconds")
    args = parser.parse_args()
    # SIGTERM (e.g. make interrupted) must still run the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cluster, core, custom = connect(say)
    tag = secrets.token_hex(3)
    namespace, network = f"bench-{tag}", f"bench-{tag}"
    subnet = f"10.249.{secrets.randbelow(256)}.0/24"
    batches: list[Batch] = []
    with parent_nic() as parent:
        try:
            core.create_namespace({"metadata": {"name": namespace}})
            custom.create_cluster_custom_object(
                "multinetwork.networking.k8s.io",
                "v1alpha1",
                "podnetworks",
                podnetwork_body(network, parent, subnet),
            )
            say(f"namespace {namespace}, PodNetwork {network} on {parent} ({subnet})")
            wait_until("PodNetwork Ready", 60, lambda: network_ready(custom, network))
            wait_until(
                f"{parent} published as a shareable device",
                60,
                lambda: device_published(custom, parent, network),
            )

            say(f"plain batch: {args.pods} pods")
            batches.append(run_batch(core, namespace, "plain", [None] * args.pods, args.timeout))
            delete_batch(core, namespace, args.timeout)

            claims = [f"nic-{i:03d}" for i in range(args.pods)]
            for name in claims:
                custom.create_namespaced_custom_object(
                    "resource.k8s.io", "v1", namespace, "resourceclaims", claim_body(name, network)
                )
            log = agent_log(cluster)
            log_offset = log.stat().st_size
            before = scrape()
            say(f"macvlan batch: {args.pods} pods, one claim each")
            batches.append(run_batch(core, namespace, "macvlan", list(claims), args.timeout))
            # The attach histogram is observed when the hook answers, before Running; prepare
            # before the sandbox: both are complete once every pod runs.
            after = scrape()
            with log.open(errors="replace") as f:
                f.seek(log_offset)
                noisy = [ln.rstrip() for ln in f if " WARNING " in ln or " ERROR " in ln]
            agent = {}
            for k, h in after.items():
                prior = before.get(k, Histogram())
                if h.count < prior.count:  # the agent restarted meanwhile: counters reset
                    say(f"{k}: counter reset (agent restarted); using the values since then")
                    prior = Histogram()
                agent[k] = h.minus(prior)
            report(batches, agent, noisy, args.pods)
        finally:
            say("cleaning up")
            _cleanup(core, custom, namespace, network)
    return 0


def _cleanup(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str, network: str
) -> None:
    """Namespace first (pods -> children deleted, claims unprepared), then the network; the NIC
    goes when parent_nic() exits. Each step best-effort and bounded."""
    try:
        core.delete_namespace(namespace, grace_period_seconds=1)
        wait_until(
            f"namespace {namespace} gone",
            180,
            lambda: namespace not in {n.metadata.name for n in core.list_namespace().items},
            interval=1.0,
        )
    except Exception as exc:
        say(f"cleanup: namespace {namespace}: {exc}")
    try:
        custom.delete_cluster_custom_object(
            "multinetwork.networking.k8s.io", "v1alpha1", "podnetworks", network
        )
    except Exception as exc:
        say(f"cleanup: PodNetwork {network}: {exc}")


if __name__ == "__main__":
    sys.exit(main())

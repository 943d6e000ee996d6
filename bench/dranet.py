"""multinet beside dranet on one local cluster: pod start-up overhead, RunPodSandbox hook latency
and agent memory of the two DRA + NRI network drivers, each moving a whole host NIC into a pod.

One node (the local cluster with `nodes=1`, multinet's agent a host process) runs both drivers:

  multinet  its node agent, as `localcluster.multinet` deploys it; a PodNetwork in host-device
            mode over the veth NIC `mnbm0` (`interfaces.names: ["mnbm*"]`, `ipam: none`)
  dranet    kubernetes-sigs/dranet v1.4.0's node binary (driver `dra.net`), built from its Go
            module by hack/dranet-build.sh, a host process managed like a cluster component
            (pid file, log in the cluster's log dir, stopped by `down`), under the service account
            and ClusterRole of dranet's own install.yaml with a node-bound token; a DeviceClass
            selecting dra.net devices whose ifName starts with `mnbd`, over the veth NIC `mnbd0`

dranet is told where this cluster keeps things: `--kubelet-root-dir` (its plugin and registration
sockets under the local kubelet's root), `--hostname-override` (the node), `--kubeconfig`,
`--db-path` and TMPDIR under the cluster's state dir, `--bind-address 127.0.0.1:9179` (its default
:9177 is multinet's controller health port), `--cloud-provider-hint NONE --profile-provider none`
(no metadata-server probes), `--filter` publishing only interfaces named mnbd* (its default
filter hides veths; by default it would publish every other host interface), `-v 2` (its
per-RunPodSandbox "took <duration>" line). Its NRI socket path is fixed at /var/run/nri/nri.sock:
the bench links it to the cluster's NRI socket for its lifetime, only if nothing is there, and
removes the link (and the /run/nri it made) at the end.

Each pod asks for one NIC through a ResourceClaimTemplate and gets one static IPv4 address from the
template's opaque config (multinet: `addresses`; dranet: `interface.addresses`), named `net1` in
the pod: the same work per pod for both drivers (move, rename, address, up). R rounds (default 15),
each one plain pod (no claim), one multinet pod and one dranet pod, one at a time, the order
rotating; after each pod it is deleted and the bench waits until its claim is gone, the NIC is back
on the host and published again, so every pod starts on a quiet node with its NIC free.

Reported:
  start       create call -> the watch saw the pod Ready (ms, this machine's clock); the overhead
              of a driver is its pod's figure minus the same round's plain pod's (p50 over
              rounds); the API's creationTimestamp -> Ready lastTransitionTime (1 s resolution) too
  hook        multinet: multinet_agent_attach_seconds from the agent's /metrics, scraped before
              and after each multinet pod: the _sum delta of its one observation is that pod's
              exact value; dranet: its own log line "RunPodSandbox Pod ns/name UID .. took D"
              (cross-checked with the _sum delta of dranet_driver_nri_plugin_requests_latency_
              seconds{method="RunPodSandbox",status="success"} from its /metrics)
  prepare     NodePrepareResources as the kubelet times it (its dra_grpc_operations_duration_
              seconds{driver_name,method_name=".../NodePrepareResources"}, read through the
              apiserver's node proxy before and after each driver pod: the _sum delta)
  RSS         VmRSS of /proc/<pid>/status of each agent process, idle before the rounds and after
Every pod is checked: the claim is allocated by the expected driver, `net1` in the pod has the
address, and the NIC left the host; the other driver's NIC never moves.

Needs root. Reuses a running local cluster (started with 1 node if none) and deploys multinet if
needed; cleans up pods, claims, the namespace, the PodNetwork, the DeviceClass, dranet's RBAC,
the dranet process, the NRI link and the NICs, even on failure.
Usage: bench/dranet.py [--rounds R] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from localcluster import Cluster, up
from localcluster import multinet as deployment
from pod_startup import pod_body
from podwatch import PodWatch

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "dranet-build.sh"
DRANET_VERSION = "v1.4.0"
DRANET_MODULE = "sigs.k8s.io/dranet"
DRANET = "dranet"  # the managed process's name (pid file, log)
DRANET_DRIVER = "dra.net"
DRANET_PORT = 9179
MULTINET_DRIVER = "multinet.dev"
MULTINET_METRICS = f"http://127.0.0.1:{deployment.AGENT_METRICS_PORT}/metrics"
DRANET_METRICS = f"http://127.0.0.1:{DRANET_PORT}/metrics"
NRI_LINK = Path("/var/run/nri/nri.sock")
#: The NICs: veth pairs whose other ends (mnbx*) match neither driver's selection.
NICS = {"multinet": ("mnbm0", "mnbxm0"), "dranet": ("mnbd0", "mnbxd0")}
ADDRESSES = {"multinet": "198.51.100.11/24", "dranet": "203.0.113.11/24"}
KINDS = ("plain", "multinet", "dranet")
POD_IFNAME = "net1"
DRANET_FILTER = (
    '"dra.net/ifName" in attributes && attributes["dra.net/ifName"].StringValue.startsWith("mnbd")'
)

T = TypeVar("T")


def say(text: str) -> None:
    print(f"[dranet] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wait_until(
    what: str, timeout: float, predicate: Callable[[], T | None], interval: float = 0.2
) -> T:
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


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


# -- dranet: build, RBAC, process ---------------------------------------------------------------


def build_dranet() -> Path:
    """hack/dranet-build.sh: the cached binary, or a build of it (minutes, once)."""
    out = subprocess.run(
        [str(BUILD_SCRIPT), DRANET_VERSION], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def dranet_module_dir() -> Path:
    """The module's source in the Go module cache (the build script downloaded it)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{DRANET_MODULE}@{DRANET_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    )
    return Path(json.loads(out.stdout)["Dir"])


def dranet_rbac() -> list[dict[str, Any]]:
    """ClusterRole, ClusterRoleBinding and ServiceAccount of dranet's own install.yaml."""
    docs = yaml.safe_load_all((dranet_module_dir() / "install.yaml").read_text())
    wanted = {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    return [d for d in docs if d and d["kind"] in wanted]


def apply(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))


def delete(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    doc = "\n---\n".join(json.dumps(o) for o in objects)
    cluster.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-", input=doc, check=False
    )


def dranet_dir(cluster: Cluster) -> Path:
    return cluster.state_dir / "dranet"


def dranet_argv(cluster: Cluster, binary: Path, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={cluster.node_name}",
        f"--kubelet-root-dir={cluster.kubelet_root}",
        f"--db-path={dranet_dir(cluster) / 'dranet.db'}",
        f"--bind-address=127.0.0.1:{DRANET_PORT}",
        "--cloud-provider-hint=NONE",
        "--profile-provider=none",
        f"--filter={DRANET_FILTER}",
        "-v=2",
    ]


def dranet_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{DRANET_PORT}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def dranet_running(cluster: Cluster, binary: Path) -> Iterator[int]:
    """dranet as a managed host process under its own RBAC; yields its pid once healthy."""
    if cluster.processes.alive(DRANET):
        say("a dranet from an earlier run is still running: stopping it")
        cluster.stop_process(DRANET)
    rbac = dranet_rbac()
    apply(cluster, rbac)
    kubeconfig = cluster.service_account_kubeconfig(
        "kube-system", "dranet", bound_node=cluster.node_name
    )
    tmp = dranet_dir(cluster) / "tmp"  # its embedded PCI database goes to a temp dir
    tmp.mkdir(parents=True, exist_ok=True)
    argv = dranet_argv(cluster, binary, kubeconfig)
    say(f"starting dranet: {' '.join(argv[1:])}")
    pid = cluster.start_process(DRANET, argv, env={"TMPDIR": str(tmp)})
    try:
        deadline = time.monotonic() + 60
        while not dranet_healthy():
            if not cluster.processes.alive(DRANET):
                raise RuntimeError(
                    f"dranet exited at start; log {cluster.processes.log_path(DRANET)}:\n"
                    + cluster.processes.tail(DRANET, 25, this_run=True)
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "dranet not healthy after 60 s (kubelet registration?):\n"
                    + cluster.processes.tail(DRANET, 25, this_run=True)
                )
            time.sleep(0.5)
        yield pid
    finally:
        cluster.stop_process(DRANET)
        delete(cluster, rbac)
        shutil.rmtree(dranet_dir(cluster), ignore_errors=True)


@contextmanager
def nri_link(cluster: Cluster) -> Iterator[None]:
    """dranet dials /var/run/nri/nri.sock; the local cluster's containerd listens elsewhere."""
    target = cluster.nri_socket
    if NRI_LINK.resolve() == target.resolve() and NRI_LINK.exists():
        yield
        return
    if NRI_LINK.exists() or NRI_LINK.is_symlink():
        raise RuntimeError(
            f"{NRI_LINK} exists and is not the local cluster's NRI socket ({target}): another "
            "containerd's; dranet would register there, so the bench stops"
        )
    made_dir = not NRI_LINK.parent.exists()
    NRI_LINK.parent.mkdir(parents=True, exist_ok=True)
    NRI_LINK.symlink_to(target)
    say(f"linked {NRI_LINK} -> {target} for the bench's lifetime")
    try:
        yield
    finally:
        if NRI_LINK.is_symlink():
            NRI_LINK.unlink()
        if made_dir:
            with suppress(OSError):
                NRI_LINK.parent.rmdir()


# -- NICs ----------------------------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


@contextmanager
def nics() -> Iterator[None]:
    """One veth pair per driver; the bench's names, so a leftover of a killed run is replaced."""
    made: list[str] = []
    try:
        for nic, peer in NICS.values():
            for name in (nic, peer):
                if link_exists(name):
                    say(f"deleting {name}, left by an earlier run")
                    subprocess.run(["ip", "link", "del", name], capture_output=True)
            sh("ip", "link", "add", nic, "type", "veth", "peer", "name", peer)
            made.append(nic)
            sh("ip", "link", "set", peer, "up")
            sh("ip", "link", "set", nic, "up")
        yield
    finally:
        for nic in made:
            subprocess.run(["ip", "link", "del", nic], capture_output=True)


# -- objects -------------------------------------------------------------------------------------


def podnetwork_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
        "kind": "PodNetwork",
        "metadata": {"name": name},
        "spec": {
            "provider": MULTINET_DRIVER,
            "parameters": {
                "interfaces": {"names": ["mnbm*"]},
                "mode": "host-device",
                "interfaceName": POD_IFNAME,
                "ipam": {"type": "none"},
            },
        },
    }


def deviceclass_body(name: str) -> dict[str, Any]:
    expression = (
        f'device.driver == "{DRANET_DRIVER}" && has(device.attributes["dra.net"].ifName) '
        '&& device.attributes["dra.net"].ifName.startsWith("mnbd")'
    )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def template_body(kind: str, device_class: str) -> dict[str, Any]:
    if kind == "multinet":
        parameters: dict[str, Any] = {"addresses": [ADDRESSES[kind]]}
        driver = MULTINET_DRIVER
    else:
        parameters = {"interface": {"name": POD_IFNAME, "addresses": [ADDRESSES[kind]]}}
        driver = DRANET_DRIVER
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": kind},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [{"name": "nic", "exactly": {"deviceClassName": device_class}}],
                    "config": [
                        {
                            "requests": ["nic"],
                            "opaque": {"driver": driver, "parameters": parameters},
                        }
                    ],
                }
            }
        },
    }


def published(custom: client.CustomObjectsApi, driver: str, node: str, ifname: str) -> bool:
    """Whether `driver` publishes a device of `node` whose ifName attribute is `ifname`."""
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")
    for item in slices["items"]:
        spec = item["spec"]
        if spec.get("driver") != driver or spec.get("nodeName") != node:
            continue
        for device in spec.get("devices", []):
            attrs = device.get("attributes", {})
            for key in ("ifName", f"{driver}/ifName"):
                if attrs.get(key, {}).get("string") == ifname:
                    return True
    return False


def published_ifnames(custom: client.CustomObjectsApi, driver: str) -> list[str]:
    names: list[str] = []
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")
    for item in slices["items"]:
        if item["spec"].get("driver") != driver:
            continue
        for device in item["spec"].get("devices", []):
            attrs = device.get("attributes", {})
            value = attrs.get("ifName") or attrs.get(f"{driver}/ifName") or {}
            names.append(str(value.get("string", device.get("name"))))
    return sorted(names)


def network_ready(custom: client.CustomObjectsApi, name: str) -> bool:
    obj = custom.get_cluster_custom_object(
        "multinetwork.networking.k8s.io", "v1alpha1", "podnetworks", name
    )
    conds = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


# -- measurements --------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_METRIC = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return parse_samples(reply.read().decode())


def parse_samples(text: str) -> Samples:
    out: Samples = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include these (others may differ)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


MN_ATTACH = "multinet_agent_attach_seconds"
DN_NRI = "dranet_driver_nri_plugin_requests_latency_seconds"
SLICE_WRITES = "multinet_agent_slice_writes_total"
DN_RUN = {"method": "RunPodSandbox", "status": "success"}
#: The kubelet's own timing of each driver's gRPC calls (method label: the full gRPC method).
KUBELET_GRPC = "dra_grpc_operations_duration_seconds"
PREPARE_METHOD = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def go_duration_ms(text: str) -> float:
    """A Go time.Duration's String() ("1.234567ms", "812.3µs", "1m2.5s") in milliseconds."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _GO_UNITS.get(u, 3.6e6) for n, u in parts)


def dranet_hook_ms(log: Path, offset: int, namespace: str, pod: str) -> float | None:
    """dranet's own figure: `RunPodSandbox Pod <ns>/<pod> UID <uid> took <duration>` (-v 2)."""
    pattern = re.compile(
        rf"RunPodSandbox Pod {re.escape(namespace)}/{re.escape(pod)} UID \S+ took (\S+)"
    )
    with log.open(errors="replace") as f:
        f.seek(offset)
        for line in f:
            m = pattern.search(line)
            if m:
                return go_duration_ms(m.group(1).rstrip('"'))
    return None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class Sample:
    kind: str
    round: int
    ready_ms: float  # create call -> watch saw Ready
    scheduled_ms: float  # create call -> watch saw it bound to the node (claims allocated)
    api_ready_s: float  # creationTimestamp -> Ready lastTransitionTime (1 s resolution)
    hook_ms: float | None = None  # the driver's RunPodSandbox figure
    prepare_ms: float | None = None  # NodePrepareResources as the kubelet timed it
    metric_ms: float | None = None  # dranet: from its /metrics, as a cross-check


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    rss_idle: dict[str, int] = field(default_factory=dict)  # KiB
    rss_after: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    agent_noise: dict[str, list[str]] = field(default_factory=dict)
    slice_writes: float = 0.0  # multinet_agent_slice_writes_total over the rounds

    def of(self, kind: str) -> list[Sample]:
        return [s for s in self.samples if s.kind == kind]


# -- the bench -----------------------------------------------------------------------------------


@dataclass
class Bench:
    cluster: Cluster
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    namespace: str
    device_class: dict[str, str]  # kind -> DeviceClass name
    timeout: float
    pids: dict[str, int]
    watch: PodWatch | None = None

    def run_pod(self, kind: str, rnd: int) -> Sample:
        name = f"{kind}-{rnd:02d}"
        assert self.watch is not None
        before_mn = scrape(MULTINET_METRICS) if kind == "multinet" else {}
        before_dn = scrape(DRANET_METRICS) if kind == "dranet" else {}
        before_kubelet = self.kubelet_samples() if kind != "plain" else {}
        log = self.cluster.processes.log_path(DRANET)
        offset = log.stat().st_size
        template = None if kind == "plain" else kind
        created = time.monotonic()
        self.core.create_namespaced_pod(self.namespace, pod_body(name, None, template=template))
        ready = self.watch.wait_ready(name, self.timeout)
        pod = self.core.read_namespaced_pod(name, self.namespace)
        cond = next(c for c in pod.status.conditions if c.type == "Ready")
        sample = Sample(
            kind,
            rnd,
            (ready - created) * 1e3,
            (self.watch.scheduled[name] - created) * 1e3,
            _ts(cond.last_transition_time) - _ts(pod.metadata.creation_timestamp),
        )
        if kind == "multinet":
            sample.hook_ms = self._multinet_hook(before_mn, name)
        elif kind == "dranet":
            sample.hook_ms = wait_until(
                f"dranet's RunPodSandbox line for {name}",
                10,
                lambda: dranet_hook_ms(log, offset, self.namespace, name),
            )
            after = scrape(DRANET_METRICS)
            count = metric(after, f"{DN_NRI}_count", **DN_RUN) - metric(
                before_dn, f"{DN_NRI}_count", **DN_RUN
            )
            if count == 1:
                total = metric(after, f"{DN_NRI}_sum", **DN_RUN)
                sample.metric_ms = (total - metric(before_dn, f"{DN_NRI}_sum", **DN_RUN)) * 1e3
        if kind != "plain":
            sample.prepare_ms = self._prepare_ms(kind, before_kubelet, name)
            self._check(kind, pod)
        return sample

    def kubelet_samples(self) -> Samples:
        text = self.core.connect_get_node_proxy_with_path(self.cluster.node_name, "metrics")
        return parse_samples(text)

    def _prepare_ms(self, kind: str, before: Samples, name: str) -> float:
        """The one NodePrepareResources call this pod cost its driver, as the kubelet timed it
        (the _sum delta of the kubelet's histogram: exact, not bucket-interpolated)."""
        labels = {
            "driver_name": MULTINET_DRIVER if kind == "multinet" else DRANET_DRIVER,
            "method_name": PREPARE_METHOD,
        }
        after = self.kubelet_samples()
        count = metric_sum(after, f"{KUBELET_GRPC}_count", **labels) - metric_sum(
            before, f"{KUBELET_GRPC}_count", **labels
        )
        if count != 1:
            raise RuntimeError(f"{name}: {count:g} NodePrepareResources calls, expected 1")
        total = metric_sum(after, f"{KUBELET_GRPC}_sum", **labels)
        return (total - metric_sum(before, f"{KUBELET_GRPC}_sum", **labels)) * 1e3

    def _multinet_hook(self, before: Samples, name: str) -> float:
        """The one attach observation this pod added (observed before the hook answers)."""
        seen = metric(before, f"{MN_ATTACH}_count")

        def observed() -> Samples | None:
            now = scrape(MULTINET_METRICS)
            return now if metric(now, f"{MN_ATTACH}_count") > seen else None

        after = wait_until(f"multinet's attach observation for {name}", 10, observed)
        count = metric(after, f"{MN_ATTACH}_count") - metric(before, f"{MN_ATTACH}_count")
        if count != 1:
            raise RuntimeError(f"{name}: {count:g} attach observations, expected 1")
        return (metric(after, f"{MN_ATTACH}_sum") - metric(before, f"{MN_ATTACH}_sum")) * 1e3

    def _check(self, kind: str, pod: Any) -> None:
        """The right driver gave the pod its own NIC, named net1, with the address; the other
        driver's NIC is still on the host."""
        name = pod.metadata.name
        statuses = pod.status.resource_claim_statuses or []
        claim_name = statuses[0].resource_claim_name
        claim = self.custom.get_namespaced_custom_object(
            "resource.k8s.io", "v1", self.namespace, "resourceclaims", claim_name
        )
        results = claim["status"]["allocation"]["devices"]["results"]
        driver = MULTINET_DRIVER if kind == "multinet" else DRANET_DRIVER
        if [r["driver"] for r in results] != [driver]:
            raise RuntimeError(f"{name}: claim allocated {results}, expected one {driver} device")
        addr = self.cluster.kubectl(
            "exec", "-n", self.namespace, name, "--", "ip", "-o", "-4", "addr", "show", POD_IFNAME
        ).stdout
        if ADDRESSES[kind] not in addr:
            raise RuntimeError(f"{name}: {POD_IFNAME} has not {ADDRESSES[kind]}: {addr!r}")
        mine = NICS[kind][0]
        other = NICS["dranet" if kind == "multinet" else "multinet"][0]
        if link_exists(mine) or not link_exists(other):
            raise RuntimeError(f"{name}: expected {mine} gone from the host and {other} there")

    def clean_round(self, kind: str, name: str) -> None:
        """Delete the pod; wait until it and its claim are gone and its NIC is home, published."""
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=1)
        wait_until(
            f"pod {name} gone",
            self.timeout,
            lambda: (
                name
                not in {
                    p.metadata.name for p in self.core.list_namespaced_pod(self.namespace).items
                }
            ),
        )
        if kind == "plain":
            return
        wait_until(
            f"the claim of {name} gone",
            self.timeout,
            lambda: (
                not self.custom.list_namespaced_custom_object(
                    "resource.k8s.io", "v1", self.namespace, "resourceclaims"
                )["items"]
            ),
        )
        nic = NICS[kind][0]
        wait_until(f"{nic} back on the host", self.timeout, lambda: link_exists(nic))
        driver = MULTINET_DRIVER if kind == "multinet" else DRANET_DRIVER
        wait_until(
            f"{nic} published by {driver} again",
            self.timeout,
            lambda: published(self.custom, driver, self.cluster.node_name, nic),
        )

    def rss(self) -> dict[str, int]:
        return {kind: rss_kib(pid) for kind, pid in self.pids.items()}


def rounds(bench: Bench, count: int) -> Run:
    run = Run()
    logs = {
        "multinet": bench.cluster.processes.log_path(deployment.AGENT),
        "dranet": bench.cluster.processes.log_path(DRANET),
    }
    offsets = {k: p.stat().st_size for k, p in logs.items()}
    writes = metric(scrape(MULTINET_METRICS), SLICE_WRITES)
    time.sleep(5)  # both agents idle: nothing published or prepared since a few seconds
    run.rss_idle = bench.rss()
    say(f"idle RSS: {fmt_rss(run.rss_idle)}")
    with PodWatch(bench.core, bench.namespace) as pods:
        bench.watch = pods
        for rnd in range(count):
            order = KINDS[rnd % 3 :] + KINDS[: rnd % 3]
            line = []
            for kind in order:
                sample = bench.run_pod(kind, rnd)
                run.samples.append(sample)
                bench.clean_round(kind, f"{kind}-{rnd:02d}")
                hook = f" hook {sample.hook_ms:.1f} ms" if sample.hook_ms is not None else ""
                line.append(f"{kind} {sample.ready_ms:.0f} ms{hook}")
            say(f"round {rnd + 1}/{count}: " + ", ".join(line))
        bench.watch = None
    time.sleep(2)
    run.rss_after = bench.rss()
    run.slice_writes = metric(scrape(MULTINET_METRICS), SLICE_WRITES) - writes
    events = bench.core.list_namespaced_event(bench.namespace, field_selector="type=Warning").items
    run.warnings = [f"{e.involved_object.name}: {e.reason}: {e.message}" for e in events]
    for kind, path in logs.items():
        with path.open(errors="replace") as f:
            f.seek(offsets[kind])
            text = list(f)
        if kind == "multinet":
            noisy = [ln.rstrip() for ln in text if " WARNING " in ln or " ERROR " in ln]
        else:  # klog: E and W severity lines
            noisy = [ln.rstrip() for ln in text if re.match(r"^[EWF]\d{4} ", ln)]
        run.agent_noise[kind] = noisy
    return run


# -- report --------------------------------------------------------------------------------------


def _message(line: str) -> str:
    """A log line without its time stamp (and klog's pid and source), to group repeats."""
    m = re.match(r"^[IWEF]\d{4} [\d:.]+\s+\d+ (.*)$", line)
    if m:
        return m.group(1)
    return re.sub(r"^\S+ \S+ ", "", line)


def fmt_rss(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in values.items())


def overheads(run: Run, kind: str) -> list[float]:
    plain = {s.round: s.ready_ms for s in run.of("plain")}
    return [s.ready_ms - plain[s.round] for s in run.of(kind)]


def measured(run: Run, kind: str, figure: str) -> list[float]:
    """The per-pod values of a Sample figure a driver pod has (hook_ms, prepare_ms, ...)."""
    values = (getattr(s, figure) for s in run.of(kind))
    return [v for v in values if v is not None]


def print_row(label: str, values: list[float]) -> None:
    print(
        f"  {label:28} {percentile(values, 50):8.0f} {statistics.fmean(values):8.0f} "
        f"{max(values):8.0f}  ms"
    )


def table(run: Run) -> list[str]:
    def p50_mean(kind: str, figure: str) -> str:
        values = measured(run, kind, figure)
        if not values:
            return "-"
        return f"{percentile(values, 50):.1f} ms (mean {statistics.fmean(values):.1f})"

    def hook(kind: str) -> str:
        return p50_mean(kind, "hook_ms")

    def prepare(kind: str) -> str:
        return p50_mean(kind, "prepare_ms")

    def over(kind: str) -> str:
        values = overheads(run, kind)
        return f"{percentile(values, 50):+.0f} ms"

    def mib(values: dict[str, int], kind: str) -> str:
        return f"{values[kind] / 1024:.1f} MiB"

    return [
        "| | multinet | dranet |",
        "|---|---|---|",
        f"| RunPodSandbox hook, p50 (mean) | {hook('multinet')} | {hook('dranet')} |",
        f"| NodePrepareResources (kubelet's timing), p50 (mean) | {prepare('multinet')} "
        f"| {prepare('dranet')} |",
        f"| pod start overhead vs plain, p50 | {over('multinet')} | {over('dranet')} |",
        f"| RSS idle | {mib(run.rss_idle, 'multinet')} | {mib(run.rss_idle, 'dranet')} |",
        f"| RSS after the rounds | {mib(run.rss_after, 'multinet')} "
        f"| {mib(run.rss_after, 'dranet')} |",
    ]


def report(run: Run, count: int, command: str) -> None:
    print(
        f"multinet beside dranet {DRANET_VERSION}: {count} rounds (plain, multinet, dranet pod, "
        f"order rotating), one host-device NIC and one address per pod"
    )
    print(f"machine: {os.cpu_count()} cores, kernel {os.uname().release}; command: {command}")
    print()
    for line in table(run):
        print(line)
    print()
    print(f"  {'create -> Ready (watch)':28} {'p50':>8} {'mean':>8} {'max':>8}")
    for kind in KINDS:
        print_row(kind, measured(run, kind, "ready_ms"))
    for kind in KINDS:
        print_row(f"create -> scheduled, {kind}", measured(run, kind, "scheduled_ms"))
    for kind in ("multinet", "dranet"):
        print_row(f"{kind} - plain (paired)", overheads(run, kind))
    for kind in KINDS:
        values = [s.api_ready_s for s in run.of(kind)]
        print(
            f"  api creation -> Ready, {kind}: p50 {percentile(values, 50):.0f} s (1 s resolution)"
        )
    for kind, figure, label in (
        ("multinet", "hook_ms", "hook per pod (ms)"),
        ("dranet", "hook_ms", "hook per pod (ms)"),
        ("multinet", "prepare_ms", "NodePrepareResources per pod (ms, kubelet)"),
        ("dranet", "prepare_ms", "NodePrepareResources per pod (ms, kubelet)"),
    ):
        per_pod = " ".join(f"{v:.1f}" for v in measured(run, kind, figure))
        print(f"  {kind} {label}: {per_pod}")
    cross = [s.metric_ms for s in run.of("dranet") if s.metric_ms is not None]
    if cross:
        print(
            f"  dranet hook from its /metrics (_sum delta per pod): p50 {percentile(cross, 50):.1f}"
            f" ms, mean {statistics.fmean(cross):.1f} ms over {len(cross)} pods"
        )
    print(f"  RSS idle: {fmt_rss(run.rss_idle)}; after: {fmt_rss(run.rss_after)}")
    print(f"  Warning Events in the namespace: {len(run.warnings)}")
    for line in run.warnings[:10]:
        print(f"    {line[:240]}")
    print(f"  multinet ResourceSlice writes during the rounds: {run.slice_writes:.0f}")
    for kind, lines in run.agent_noise.items():
        print(f"  {kind} agent warning/error log lines during the rounds: {len(lines)}")
        for message, n in Counter(_message(line) for line in lines).most_common(5):
            print(f"    {n} x {message[:220]}")


# -- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=120.0, help="per pod step, seconds")
    args = parser.parse_args()
    # SIGTERM (e.g. make interrupted) must still run the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = " ".join(["bench/dranet.py", *sys.argv[1:]])

    binary = build_dranet()
    cluster = up(say=say)
    if cluster.nodes:
        raise SystemExit(
            "bench/dranet.py needs the 1-node local cluster (multinet as host processes)"
        )
    deployment.deploy(cluster, say=say)
    config.load_kube_config(str(cluster.kubeconfig))
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    tag = secrets.token_hex(3)
    namespace, network, dn_class = f"dranet-{tag}", f"bench-mnbm-{tag}", f"bench-mnbd-{tag}"
    node = cluster.node_name
    with nics(), nri_link(cluster), dranet_running(cluster, binary) as dranet_pid:
        try:
            custom.create_cluster_custom_object(
                "multinetwork.networking.k8s.io",
                "v1alpha1",
                "podnetworks",
                podnetwork_body(network),
            )
            custom.create_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", deviceclass_body(dn_class)
            )
            core.create_namespace({"metadata": {"name": namespace}})
            cluster.kubectl("create", "serviceaccount", "default", "-n", namespace, check=False)
            # Through kubectl, which sends compact JSON: the opaque config is stored byte for byte
            # as sent, and a server-side apply of a claim's status (both drivers write one)
            # re-encodes it compactly, so JSON with spaces (this Python client's) reads to the
            # apiserver as a changed status.allocation and the write is refused (422).
            for kind, device_class in (("multinet", network), ("dranet", dn_class)):
                body = json.dumps(template_body(kind, device_class))
                cluster.kubectl("create", "-n", namespace, "-f", "-", input=body)
            wait_until("PodNetwork Ready", 60, lambda: network_ready(custom, network))
            for kind, driver in (("multinet", MULTINET_DRIVER), ("dranet", DRANET_DRIVER)):
                nic = NICS[kind][0]
                wait_until(
                    f"{nic} published by {driver}",
                    60,
                    partial(published, custom, driver, node, nic),
                )
            for driver in (MULTINET_DRIVER, DRANET_DRIVER):
                say(f"{driver} publishes: {', '.join(published_ifnames(custom, driver))}")
            agent_pid = cluster.processes.pid(deployment.AGENT)
            assert agent_pid is not None
            bench = Bench(
                cluster,
                core,
                custom,
                namespace,
                {"multinet": network, "dranet": dn_class},
                args.timeout,
                {"multinet": agent_pid, "dranet": dranet_pid},
            )
            run = rounds(bench, args.rounds)
            report(run, args.rounds, command)
        finally:
            say("cleaning up")
            _cleanup(core, custom, namespace, network, dn_class)
    return 0


def _cleanup(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    network: str,
    device_class: str,
) -> None:
    """Namespace first (pods -> NICs home, claims unprepared), then the network and the class;
    dranet, the NRI link and the NICs go as their context managers exit. Each step bounded."""
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
    for group, version, plural, name in (
        ("multinetwork.networking.k8s.io", "v1alpha1", "podnetworks", network),
        ("resource.k8s.io", "v1", "deviceclasses", device_class),
    ):
        try:
            custom.delete_cluster_custom_object(group, version, plural, name)
        except Exception as exc:
            say(f"cleanup: {plural} {name}: {exc}")


if __name__ == "__main__":
    sys.exit(main())

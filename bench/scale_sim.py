"""Scale by simulation: the real apiserver, scheduler and multinet controller with many simulated
nodes, each with a publisher running multinet's own slice code over a synthetic inventory.

Not part of ``make test`` or ``make bench``: ``make bench-scale`` (``ARGS="--quick"`` for a small
run). Needs the local cluster up (``make cluster-up``); refuses to start otherwise.

What runs, all in this one asyncio process on one shared API client (admin kubeconfig; the real
agent uses a node-bound token, which only changes admission, not the calls):

- ``--nodes`` Node objects ``mnsim-0000``.. labelled ``multinet.dev/scale-sim=true``, status Ready
  with large allocatable (no kubelet heartbeats them: the node lifecycle controller later marks
  them NotReady and taints them, so every pod tolerates all taints);
- per node, the agent's ``PublishLoop`` + ``PodNetworkWatcher`` (its one PodNetwork watch) +
  ``SlicePublisher``, fed a fixed ``HostSnapshot`` of ``--nics`` hardware NICs (PCI address,
  driver, speed) that never changes;
- ``--networks`` PodNetworks ``mnsim-net-NNN`` in host-device mode; NIC ``j`` of node ``n`` is
  named ``sNNNnJJ`` for network ``NNN = (n * nics + j) % networks`` and network ``NNN`` selects
  ``sNNNn*``, so each node's NICs are spread over many networks and every DeviceClass CEL selector
  (the controller's, unchanged) has work to do;
- ``--claims`` ResourceClaims, claim ``i`` asking for one device of class ``mnsim-net-(i % N)``,
  each with a pod (nodeSelector on the simulated nodes, tolerating every taint) that the real
  kube-scheduler allocates and binds; then the same count against ``mnsim-plain``, a DeviceClass
  with no selector. Pods stay Pending on their node (there is no kubelet).

Figures (one table at the end):

  slices published/s   nodes' first complete publish (PublishLoop.published), start of all
                       publishers -> the last node, as slices per second
  networks Ready       first PodNetwork create -> all Ready=True and all DeviceClasses exist,
                       then -> every node's slice binds all its NICs (``slices settled``)
  allocation           first claim create -> every claim allocated and every pod bound,
                       claims per second, with the CEL classes and with the plain class
  at rest              ``--rest-seconds`` with nothing changing, per simulated node per minute:
                       requests the publishers made (client side, by writes / reads / watch
                       opens), and the apiserver's ``apiserver_request_total`` deltas for the
                       resources the agents use (server side, every client), plus the open
                       PodNetwork watches (``apiserver_longrunning_requests``) per node

Everything the bench creates is deleted in a ``finally`` (Ctrl-C included); ``--cleanup-only``
deletes leftovers of an interrupted run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import os
import platform
import re
import signal
import ssl
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from localcluster import Cluster
from localcluster import multinet as deployment
from localcluster.layout import SCHEDULER_PORT

from multinet.agent.publish import PublishLoop
from multinet.api import names
from multinet.devices.model import Hardware, HostSnapshot, Link
from multinet.devices.slots import Sharing
from multinet.kube.client import api_client, load_configuration
from multinet.kube.podnetworks import PodNetworkWatcher
from multinet.kube.slices import SlicePublisher

PREFIX = "mnsim"
SIM_LABEL = "multinet.dev/scale-sim"
NAMESPACE = f"{PREFIX}-claims"
PLAIN_CLASS = f"{PREFIX}-plain"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
MERGE_PATCH = "application/merge-patch+json"
#: Concurrent requests of the bench's own create/delete bursts (the publishers are not limited).
BURST = 48

#: The simulated node whose task is making a request, for the client-side counts.
CURRENT_NODE: contextvars.ContextVar[str] = contextvars.ContextVar("sim_node", default="")


def say(text: str) -> None:
    print(f"[scale-sim] {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def node_name(n: int) -> str:
    return f"{PREFIX}-{n:04d}"


def network_name(k: int) -> str:
    return f"{PREFIX}-net-{k:03d}"


def nic_name(network: int, j: int) -> str:
    return f"s{network:03d}n{j:02d}"


# -- client-side request counts ------------------------------------------------------------------


@dataclass
class Counts:
    """Requests made by the simulated nodes' tasks, by (class, resource)."""

    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)

    def snapshot(self) -> Counter[tuple[str, str]]:
        return Counter(self.by_kind)


_RESOURCE = re.compile(r"/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/([a-z]+)")


def classify(method: str, url: str, query: Iterable[tuple[str, Any]] | None) -> tuple[str, str]:
    match = _RESOURCE.search(url)
    resource = match.group(1) if match else "?"
    if method != "GET":
        return "write", resource
    watching = any(k == "watch" and str(v).lower() == "true" for k, v in query or ())
    return ("watch" if watching else "read"), resource


def count_requests(api: client.ApiClient, counts: Counts) -> None:
    """Wrap the client's one request method so every call from a node's task is counted."""
    rest = api.rest_client
    original = rest.request

    async def counted(method: str, url: str, query_params: Any = None, *a: Any, **kw: Any) -> Any:
        if CURRENT_NODE.get():
            counts.by_kind[classify(method, url, query_params)] += 1
        return await original(method, url, query_params, *a, **kw)

    rest.request = counted  # type: ignore[method-assign]


# -- the synthetic node ----------------------------------------------------------------------------


def inventory(n: int, nics: int, networks: int) -> HostSnapshot:
    links = []
    for j in range(nics):
        k = (n * nics + j) % networks
        bus, fn = divmod(j, 8)
        links.append(
            Link(
                index=j + 2,
                ifname=nic_name(k, j),
                mac=f"02:5a:{n >> 8:02x}:{n & 0xFF:02x}:{j >> 8:02x}:{j & 0xFF:02x}",
                perm_mac=f"02:5b:{n >> 8:02x}:{n & 0xFF:02x}:{j >> 8:02x}:{j & 0xFF:02x}",
                mtu=9000,
                up=True,
                oper_state="up",
                hw=Hardware(
                    pci_address=f"0000:{0x10 + bus:02x}:00.{fn}",
                    pcie_root="pci0000:00",
                    vendor="8086",
                    device="1592",
                    driver="ice",
                    numa_node=bus % 2,
                    speed=100000,
                ),
            )
        )
    return HostSnapshot(links=tuple(links))


class FixedInventory:
    """``SnapshotSource`` whose host never changes: the simulated node's NICs."""

    def __init__(self, snapshot: HostSnapshot) -> None:
        self._snapshot = snapshot

    @property
    def current(self) -> HostSnapshot:
        return self._snapshot

    async def changes(self) -> AsyncIterator[HostSnapshot]:
        await asyncio.Event().wait()  # a fixed host sends no notifications
        yield self._snapshot


class QuietWatcher(PodNetworkWatcher):
    """The agent's watcher; no conflicts can occur here (disjoint patterns), so no Events."""

    async def report_conflicts(self, conflicts: Any) -> int:
        assert not conflicts, f"unexpected device conflicts: {conflicts[:3]}"
        return 0


@dataclass
class SimNode:
    name: str
    loop: PublishLoop
    watcher: PodNetworkWatcher
    publisher: SlicePublisher
    nics: int
    published_at: float | None = None

    def settled(self) -> bool:
        last = self.loop.last
        return last is not None and sum(1 for d in last.devices if d.network) == self.nics

    async def run(self) -> None:
        CURRENT_NODE.set(self.name)  # tasks created below copy this context

        async def mark() -> None:
            await self.loop.published.wait()
            self.published_at = time.monotonic()

        await asyncio.gather(self.watcher.run(), self.loop.run(), mark())


# -- API helpers -----------------------------------------------------------------------------------


async def bounded(
    call: Callable[[Any], Awaitable[Any]], items: Iterable[Any], limit: int = BURST
) -> list[Any]:
    """``call(item)`` for every item, at most ``limit`` at a time."""
    gate = asyncio.Semaphore(limit)

    async def one(item: Any) -> Any:
        async with gate:
            for attempt in range(3):
                try:
                    return await call(item)
                except aiohttp.ClientConnectionError:  # not sent: the same call again is safe
                    if attempt == 2:
                        raise
                    await asyncio.sleep(1)

    return await asyncio.gather(*(one(i) for i in items))


async def ignore_404(call: Awaitable[Any]) -> None:
    try:
        await call
    except client.ApiException as exc:
        if exc.status != 404:
            raise


async def raw_list(call: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> dict[str, Any]:
    resp = await call(*args, _preload_content=False, **kw)
    try:
        doc: dict[str, Any] = json.loads(await resp.read())
    finally:
        resp.release()
    return doc


def node_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {SIM_LABEL: "true", "kubernetes.io/hostname": name}},
    }


def node_status(now: str) -> dict[str, Any]:
    room = {"cpu": "1000", "memory": "4000Gi", "pods": "1000"}
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "simulated by bench/scale_sim.py",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    return {"status": {"capacity": room, "allocatable": room, "conditions": [ready]}}


def podnetwork_body(k: int) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": network_name(k), "labels": {SIM_LABEL: "true"}},
        "spec": {
            "provider": names.DRIVER,
            "parameters": {
                "interfaces": {"names": [f"s{k:03d}n*"]},
                "mode": "host-device",
                "interfaceName": "net1",
                "ipam": {"type": "none"},
            },
        },
    }


def claim_body(name: str, device_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "labels": {SIM_LABEL: "true"}},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": device_class}}]}
        },
    }


def pod_body(name: str, claim: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {SIM_LABEL: "true"}},
        "spec": {
            "nodeSelector": {SIM_LABEL: "true"},
            "tolerations": [{"operator": "Exists"}],
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": PAUSE_IMAGE, "resources": {"claims": [{"name": "nic"}]}}
            ],
            "resourceClaims": [{"name": "nic", "resourceClaimName": claim}],
        },
    }


def is_ready(pnw: dict[str, Any]) -> bool:
    conds = (pnw.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


# -- apiserver metrics -----------------------------------------------------------------------------

_METRIC = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WATCHED = ("resourceslices", "podnetworks", "nodes", "events")


async def server_metrics(api: client.ApiClient) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """(apiserver_request_total by (resource, verb), open WATCHes by resource)."""
    # The admin kubeconfig authenticates by client certificate: no header to add.
    url = f"{api.configuration.host}/metrics"
    resp = await api.rest_client.request("GET", url, _preload_content=False)
    try:
        text = (await resp.read()).decode()
    finally:
        resp.release()
    requests: Counter[tuple[str, str]] = Counter()
    watches: Counter[str] = Counter()
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m or m.group(1) not in ("apiserver_request_total", "apiserver_longrunning_requests"):
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        resource = labels.get("resource", "")
        if resource not in WATCHED or labels.get("subresource"):
            continue
        value = float(m.group(3))
        if m.group(1) == "apiserver_request_total":
            requests[(resource, labels.get("verb", ""))] += int(value)
        elif labels.get("verb") == "WATCH":
            watches[resource] += int(value)
    return requests, watches


def real_agent_slice_writes() -> float | None:
    """The real node's agent's ``multinet_agent_slice_writes_total`` (None if it does not answer):
    it shares the apiserver's counters, and rewrites its slice whenever the host's links change."""
    url = f"http://127.0.0.1:{deployment.AGENT_METRICS_PORT}/metrics"
    try:
        # Blocking, but twice per run and local: not worth a thread.
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("multinet_agent_slice_writes_total "):
            return float(line.split()[1])
    return None


_SCHED = re.compile(
    r"^(scheduler_scheduling_algorithm_duration_seconds_(?:sum|count)"
    r'|scheduler_plugin_execution_duration_seconds_(?:sum|count)\{extension_point="(?:Filter|PreBind)"'
    r',plugin="DynamicResources",status="Success"\})\s(\S+)$'
)


def scheduler_metrics(cluster: Cluster) -> dict[str, float]:
    """The scheduler's algorithm time and its DynamicResources Filter/PreBind time (the plugin
    histogram is sampled: about one scheduling cycle in ten is timed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # its self-signed serving cert
    pki = cluster.layout.pki
    ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    url = f"https://127.0.0.1:{SCHEDULER_PORT}/metrics"
    out: dict[str, float] = {}
    try:
        # Blocking, but twice per allocation run and local: not worth a thread.
        with urllib.request.urlopen(url, timeout=10, context=ctx) as reply:
            text = reply.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        m = _SCHED.match(line)
        if m:
            key = m.group(1).split("{")[0].removeprefix("scheduler_")
            if "Filter" in m.group(1):
                key += ":Filter"
            elif "PreBind" in m.group(1):
                key += ":PreBind"
            out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


# -- the bench -------------------------------------------------------------------------------------


@dataclass
class Figures:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, value: str) -> None:
        self.rows.append((what, value))
        say(f"{what}: {value}")

    def table(self) -> str:
        width = max((len(w) for w, _ in self.rows), default=10)
        lines = [f"| {'figure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {w:<{width}} | {v} |" for w, v in self.rows]
        return "\n".join(lines)


class Bench:
    def __init__(self, args: argparse.Namespace, cluster: Cluster) -> None:
        self.args = args
        self.cluster = cluster
        self.figures = Figures()
        self.counts = Counts()
        self.nodes: list[SimNode] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.admin: client.ApiClient
        self.sim: client.ApiClient

    async def open(self) -> None:
        kubeconfig = str(self.cluster.kubeconfig)
        self.admin = await api_client(kubeconfig)
        cfg = await load_configuration(kubeconfig)
        # One connection per open watch plus room for the publishes: aiohttp queues the rest.
        cfg.connection_pool_maxsize = self.args.nodes + 256
        self.sim = client.ApiClient(configuration=cfg)
        count_requests(self.sim, self.counts)
        self.core: Any = client.CoreV1Api(self.admin)
        self.custom: Any = client.CustomObjectsApi(self.admin)
        self.resource: Any = client.ResourceV1Api(self.admin)

    async def close(self) -> None:
        await self.sim.close()
        await self.admin.close()

    # -- phase 1: nodes and their slices ---------------------------------------------------------

    async def create_nodes(self) -> None:
        n = self.args.nodes
        t0 = time.monotonic()
        await bounded(lambda i: self.core.create_node(node_body(node_name(i))), range(n))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await bounded(
            lambda i: self.core.patch_node_status(
                node_name(i), node_status(now), _content_type=MERGE_PATCH
            ),
            range(n),
        )
        say(f"{n} Nodes created and Ready in {time.monotonic() - t0:.1f} s")

    async def start_publishers(self) -> None:
        a = self.args
        for i in range(a.nodes):
            name = node_name(i)
            watcher = QuietWatcher(self.sim, node_name=name)
            publisher = SlicePublisher(self.sim, name)
            loop = PublishLoop(
                inventory=FixedInventory(inventory(i, a.nics, a.networks)),
                networks=watcher,
                publisher=publisher,
                sharing=Sharing.CONSUMABLE_CAPACITY,
            )
            self.nodes.append(SimNode(name, loop, watcher, publisher, a.nics))
        t0, cpu0 = time.monotonic(), time.process_time()
        for node in self.nodes:
            self.tasks.append(asyncio.create_task(node.run(), name=f"sim-{node.name}"))
        await self.wait("every node's first slices", self.all_published, a.timeout)
        took = sorted((n.published_at or t0) - t0 for n in self.nodes)
        wall, cpu = took[-1], time.process_time() - cpu0
        slices = sum(1 for n in self.nodes if n.loop.last is not None)  # one slice per node here
        requests = sum(self.counts.snapshot().values())
        self.figures.add(
            "slices published/s (first publish, all nodes)",
            f"{slices / wall:.1f} ({slices} slices of {a.nics} devices in {wall:.1f} s; per node"
            f" p50 {took[len(took) // 2]:.1f} s; {requests / len(self.nodes):.1f} requests/node;"
            f" this process {100 * cpu / wall:.0f}% CPU)",
        )

    def all_published(self) -> bool:
        self.check_tasks()
        return all(n.published_at is not None for n in self.nodes)

    def check_tasks(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception():
                raise RuntimeError(f"{task.get_name()} failed") from task.exception()

    async def wait(
        self, what: str, done: Callable[[], bool | Awaitable[bool]], limit: float
    ) -> float:
        t0 = time.monotonic()
        last_note = t0
        while True:
            value = done()
            if not isinstance(value, bool):
                value = await value
            if value:
                return time.monotonic() - t0
            now = time.monotonic()
            if now - t0 > limit:
                raise TimeoutError(f"{what}: not reached after {limit:g} s")
            if now - last_note > 30:
                say(f"still waiting for {what} ({now - t0:.0f} s)")
                last_note = now
            await asyncio.sleep(0.5)

    # -- phase 2: networks -------------------------------------------------------------------------

    async def ready_networks(self) -> tuple[int, int]:
        doc = await raw_list(
            self.custom.list_cluster_custom_object,
            names.GROUP,
            names.VERSION,
            names.PLURAL,
            label_selector=f"{SIM_LABEL}=true",
        )
        ready = sum(1 for p in doc.get("items") or [] if is_ready(p))
        classes = await raw_list(
            self.resource.list_device_class,
            label_selector="app.kubernetes.io/managed-by=multinet-controller",
        )
        prefix = f"{PREFIX}-net-"
        made = sum(
            1 for c in classes.get("items") or [] if c["metadata"]["name"].startswith(prefix)
        )
        return ready, made

    async def create_networks(self) -> None:
        n: int = self.args.networks
        before = self.counts.snapshot()
        t0, cpu0 = time.monotonic(), time.process_time()
        await bounded(
            lambda k: self.custom.create_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, podnetwork_body(k)
            ),
            range(n),
        )
        created = time.monotonic() - t0

        async def all_ready() -> bool:
            ready, made = await self.ready_networks()
            return ready == n and made == n

        await self.wait("all PodNetworks Ready and DeviceClasses", all_ready, self.args.timeout)
        ready_at = time.monotonic() - t0
        self.figures.add(
            f"{n} networks: create -> all Ready and DeviceClasses",
            f"{ready_at:.1f} s (creates took {created:.1f} s)",
        )

        def settled() -> bool:
            self.check_tasks()
            return all(node.settled() for node in self.nodes)

        await self.wait("every slice binding all its NICs", settled, self.args.timeout)
        settled_at = time.monotonic() - t0
        await self.quiet()
        writes = sum(v for (c, r), v in (self.counts.snapshot() - before).items() if c == "write")
        self.figures.add(
            "networks: create -> every node's slice binds its NICs",
            f"{settled_at:.1f} s ({writes} publisher writes, {writes / len(self.nodes):.1f}/node;"
            f" this process {100 * (time.process_time() - cpu0) / settled_at:.0f}% CPU)",
        )

    async def quiet(self, seconds: float = 3.0) -> None:
        """Until the publishers made no request for ``seconds``."""
        last = self.counts.snapshot()
        calm_since = time.monotonic()
        while time.monotonic() - calm_since < seconds:
            await asyncio.sleep(0.5)
            now = self.counts.snapshot()
            if now != last:
                last, calm_since = now, time.monotonic()

    # -- phase 3: at rest --------------------------------------------------------------------------

    async def at_rest(self) -> None:
        seconds = self.args.rest_seconds
        nodes = len(self.nodes)
        client_before = self.counts.snapshot()
        server_before, _ = await server_metrics(self.admin)
        agent_before = real_agent_slice_writes()
        say(f"at rest for {seconds:g} s")
        await asyncio.sleep(seconds)
        self.check_tasks()
        client_delta = self.counts.snapshot() - client_before
        server_after, watches = await server_metrics(self.admin)
        agent_after = real_agent_slice_writes()
        server_delta = server_after - server_before
        per = 60.0 / seconds / nodes
        by_class = Counter[str]()
        for (cls, _resource), v in client_delta.items():
            by_class[cls] += v
        self.figures.add(
            "at rest, publishers, requests/node/min",
            ", ".join(f"{c} {by_class[c] * per:.3f}" for c in ("write", "read", "watch"))
            + f" (raw: {dict(client_delta) or 'none'})",
        )
        shown = {f"{r} {v}": round(c * per, 3) for (r, v), c in sorted(server_delta.items()) if c}
        self.figures.add(
            "at rest, apiserver (all clients), requests/node/min",
            ", ".join(f"{k} {v}" for k, v in shown.items()) or "0",
        )
        if agent_before is not None and agent_after is not None:
            self.figures.add(
                "at rest, the real node's agent (host links changing)",
                f"{agent_after - agent_before:g} slice writes in {seconds:g} s",
            )
        self.figures.add(
            "open PodNetwork watches per simulated node",
            f"{watches['podnetworks'] / nodes:.3f} ({watches['podnetworks']} open in total,"
            " the controller's and the real agent's included)",
        )

    # -- phase 4: claims ---------------------------------------------------------------------------

    async def ensure_namespace(self) -> None:
        with contextlib.suppress(client.ApiException):
            await self.core.create_namespace(
                {"metadata": {"name": NAMESPACE, "labels": {SIM_LABEL: "true"}}}
            )

        async def has_sa() -> bool:
            try:
                await self.core.read_namespaced_service_account("default", NAMESPACE)
                return True
            except client.ApiException:
                return False

        await self.wait("the namespace's default ServiceAccount", has_sa, 60)

    async def allocate(self, label: str, classes: list[str]) -> None:
        n = self.args.claims
        sched0 = scheduler_metrics(self.cluster)
        t0 = time.monotonic()
        await bounded(
            lambda i: self.resource.create_namespaced_resource_claim(
                NAMESPACE, claim_body(f"c{i:05d}", classes[i % len(classes)])
            ),
            range(n),
        )
        await bounded(
            lambda i: self.core.create_namespaced_pod(
                NAMESPACE, pod_body(f"p{i:05d}", f"c{i:05d}")
            ),
            range(n),
        )
        created = time.monotonic() - t0
        say(f"{label}: {n} claims and pods created in {created:.1f} s")

        async def done() -> bool:
            # One unbound pod is enough to say "not yet": a full list of thousands of pods
            # every poll would load the apiserver we are measuring.
            pods = await raw_list(
                self.core.list_namespaced_pod, NAMESPACE, field_selector="spec.nodeName=", limit=1
            )
            return not pods.get("items")

        await self.wait(f"{label}: every pod bound", done, self.args.timeout)
        claims = await raw_list(self.resource.list_namespaced_resource_claim, NAMESPACE)
        items = claims.get("items") or []
        allocated = sum(1 for c in items if (c.get("status") or {}).get("allocation"))
        wall = time.monotonic() - t0
        self.figures.add(
            f"allocation, {label}",
            f"{n / wall:.1f} claims/s ({allocated}/{n} allocated, every pod bound, {wall:.1f} s"
            f" from the first create; creates took {created:.1f} s)",
        )
        after = scheduler_metrics(self.cluster)
        sched = {k: v - sched0.get(k, 0.0) for k, v in after.items()}
        attempts = sched.get("scheduling_algorithm_duration_seconds_count", 0.0)
        if attempts:
            algo = sched["scheduling_algorithm_duration_seconds_sum"] / attempts
            filt = sched.get("plugin_execution_duration_seconds_sum:Filter", 0.0)
            prebind = sched.get("plugin_execution_duration_seconds_sum:PreBind", 0.0)
            timed = max(1.0, sched.get("plugin_execution_duration_seconds_count:PreBind", 0.0))
            self.figures.add(
                f"scheduler, {label}",
                f"{attempts:.0f} attempts, algorithm mean {1000 * algo:.1f} ms/attempt;"
                f" DynamicResources (sampled) Filter {filt:.2f} s, PreBind {prebind:.2f} s"
                f" (mean {1000 * prebind / timed:.0f} ms: the claim status write)",
            )
        if allocated != n:
            raise RuntimeError(f"{label}: only {allocated} of {n} claims allocated")

    async def delete_claims(self) -> None:
        await self.core.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
        await self.resource.delete_collection_namespaced_resource_claim(NAMESPACE)

        async def gone() -> bool:
            pods = await raw_list(self.core.list_namespaced_pod, NAMESPACE, limit=1)
            claims = await raw_list(
                self.resource.list_namespaced_resource_claim, NAMESPACE, limit=1
            )
            return not (pods.get("items") or claims.get("items"))

        await self.wait("claims and pods deleted", gone, self.args.timeout)

    async def claims_phases(self) -> None:
        await self.ensure_namespace()
        await self.resource.create_device_class(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": PLAIN_CLASS, "labels": {SIM_LABEL: "true"}},
                "spec": {},
            }
        )
        cel = [network_name(k) for k in range(self.args.networks)]
        await self.allocate("CEL DeviceClasses (one per network)", cel)
        await self.delete_claims()
        await self.allocate("plain DeviceClass (no selector)", [PLAIN_CLASS])
        await self.delete_claims()

    # -- clean up ----------------------------------------------------------------------------------

    async def stop_publishers(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def delete_events(self) -> None:
        """The Events about the bench's objects (the node lifecycle controller's about the
        simulated Nodes, the multinet controller's about the PodNetworks), rather than leaving
        thousands to expire with their TTL."""
        events = await raw_list(self.core.list_event_for_all_namespaces)
        ours = [
            (e["metadata"]["namespace"], e["metadata"]["name"])
            for e in events.get("items") or []
            if str((e.get("involvedObject") or {}).get("name", "")).startswith(PREFIX)
        ]
        await bounded(
            lambda ref: ignore_404(self.core.delete_namespaced_event(ref[1], ref[0])), ours
        )
        if ours:
            say(f"deleted {len(ours)} Events about the bench's objects")

    async def cleanup(self) -> None:
        """Delete everything with the bench's names or label, in an order that keeps the
        controller's work small (claims before networks, sim slices before networks)."""
        say("cleaning up")
        await self.stop_publishers()
        sel = f"{SIM_LABEL}=true"
        with contextlib.suppress(client.ApiException):
            await self.core.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
            await self.resource.delete_collection_namespaced_resource_claim(NAMESPACE)
        await ignore_404(self.core.delete_namespace(NAMESPACE))
        nodes = await raw_list(self.core.list_node, label_selector=sel)
        sim_nodes = [n["metadata"]["name"] for n in nodes.get("items") or []]
        await bounded(
            lambda name: self.resource.delete_collection_resource_slice(
                field_selector=f"spec.nodeName={name}"
            ),
            sim_nodes,
        )
        await self.core.delete_collection_node(label_selector=sel)
        await self.custom.delete_collection_cluster_custom_object(
            names.GROUP, names.VERSION, names.PLURAL, label_selector=sel
        )
        await ignore_404(self.resource.delete_device_class(PLAIN_CLASS))

        async def leftovers() -> dict[str, int]:
            out = {
                "nodes": len((await raw_list(self.core.list_node, label_selector=sel))["items"]),
                "podnetworks": len(
                    (
                        await raw_list(
                            self.custom.list_cluster_custom_object,
                            names.GROUP,
                            names.VERSION,
                            names.PLURAL,
                            label_selector=sel,
                        )
                    )["items"]
                ),
            }
            classes = await raw_list(self.resource.list_device_class)
            out["deviceclasses"] = sum(
                1 for c in classes["items"] if c["metadata"]["name"].startswith(PREFIX)
            )
            slices = await raw_list(self.resource.list_resource_slice)
            out["resourceslices"] = sum(
                1
                for s in slices["items"]
                if str((s.get("spec") or {}).get("nodeName", "")).startswith(PREFIX)
            )
            try:
                await self.core.read_namespace(NAMESPACE)
                out["namespace"] = 1
            except client.ApiException:
                out["namespace"] = 0
            return {k: v for k, v in out.items() if v}

        async def clean() -> bool:
            return not await leftovers()

        try:
            await self.wait("the bench's objects deleted", clean, 600)
            await self.delete_events()  # last: deleting the Nodes and networks makes Events too
            say("clean: no simulated Nodes, slices, PodNetworks, DeviceClasses or claims left")
        except TimeoutError:
            say(f"NOT clean after 600 s: {await leftovers()}")
            raise


def machine(version: str) -> str:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024 // 1024
    return (
        f"{os.cpu_count()} cores, {mem} GiB, kernel {platform.release()}, Kubernetes {version},"
        f" Python {platform.python_version()}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--nics", type=int, default=64, help="NICs per node (at most 128: one slice)")
    p.add_argument("--networks", type=int, default=500)
    p.add_argument("--claims", type=int, default=10000)
    p.add_argument("--rest-seconds", type=float, default=60.0)
    p.add_argument("--timeout", type=float, default=3600.0, help="per phase, seconds")
    p.add_argument("--quick", action="store_true", help="50 nodes, 20 networks, 200 claims")
    p.add_argument("--skip-claims", action="store_true", help="stop after the at-rest phase")
    p.add_argument("--cleanup-only", action="store_true", help="delete leftovers and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.networks, args.claims = 50, 20, 200
    if not 0 < args.nics <= 99 or args.networks > 999 or args.nodes > 9999:
        p.error("--nics 1..99, --networks up to 999, --nodes up to 9999 (the names have room)")
    return args


async def run(args: argparse.Namespace, cluster: Cluster) -> int:
    # SIGTERM cleans up as Ctrl-C does (asyncio.run turns SIGINT into this task's cancellation).
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    bench = Bench(args, cluster)
    await bench.open()
    try:
        if args.cleanup_only:
            await bench.cleanup()
            return 0
        version = await client.VersionApi(bench.admin).get_code()
        say(f"machine: {machine(version.git_version)}")
        say(
            f"{args.nodes} nodes x {args.nics} NICs, {args.networks} networks, {args.claims} claims"
        )
        try:
            await bench.create_nodes()
            await bench.start_publishers()
            await bench.create_networks()
            await bench.at_rest()
            if not args.skip_claims:
                await bench.claims_phases()
        finally:
            await bench.cleanup()
        print(
            f"\nscale simulation: {args.nodes} nodes x {args.nics} NICs, {args.networks} networks,"
            f" {args.claims} claims, rest {args.rest_seconds:g} s\n"
            f"machine: {machine(version.git_version)}\n"
        )
        print(bench.figures.table())
        return 0
    finally:
        await bench.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = Cluster.load()
    if not cluster.is_up() or not cluster.processes.alive(deployment.CONTROLLER):
        say(
            "the local cluster is not up (or the multinet controller is not running): "
            "run `make cluster-up` first; this bench does not start or stop the cluster"
        )
        return 2
    try:
        return asyncio.run(run(args, cluster))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; the clean-up ran (it says above whether it finished)")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Node agent entry point: wires the adapters together in one asyncio loop.

Start-up order matters:
1. the checkpoint (what we prepared and attached before a restart; whatever it had to set
   aside becomes a Warning Event on this Node),
2. the inventory and the PodNetwork watcher; whether the apiserver serves consumable capacity
   (a dry-run probe, ``kube.features``: it decides how shared macvlan NICs are published); then
   the first publish (so NodePrepareResources can resolve the device names kubelet sends us),
3. the kubelet plugin (registration + DRA), the NRI plugin (whose Synchronize reconciles the
   checkpoint with the pods that exist), the status reporter and /healthz, /readyz, /metrics.
Shutdown (SIGTERM/SIGINT) reverses it; the sockets are unlinked so kubelet sees us go.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient

from multinet.agent.attach import Attacher
from multinet.agent.contracts import EventSink
from multinet.agent.movers import ModeMover
from multinet.agent.nri_hooks import NriHooks
from multinet.agent.pins import NetnsPins
from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.agent.publish import PublishLoop
from multinet.agent.release import Releaser, host_devices_in_pods
from multinet.agent.report import StatusReporter
from multinet.agent.settings import AgentSettings, settings_from_args
from multinet.checkpoint import Checkpoint, Quarantined
from multinet.cni.mover import CniMover
from multinet.devices.facts import from_facts
from multinet.devices.model import Link
from multinet.errors import MultinetError
from multinet.kube.client import api_client
from multinet.kube.events import EventRecorder, node_ref
from multinet.kube.features import SharingDetector
from multinet.kube.ipam import Reservations
from multinet.kube.lookups import ApiLookups
from multinet.kube.podnetworks import PodNetworkWatcher
from multinet.kube.slices import SlicePublisher
from multinet.kube.status import StatusWriter
from multinet.kubelet.device_health import (
    NOT_WATCHED_MESSAGE,
    NOT_WATCHED_REASON,
    DeviceHealthServicer,
    stream_not_opened,
)
from multinet.kubelet.server import KubeletPlugin
from multinet.netlink import plancheck
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.hoststate import read_host_state
from multinet.netlink.inventory import Inventory
from multinet.nri.plugin import NRIPlugin, PluginSettings
from multinet.probes import HealthServer

log = logging.getLogger("multinet.agent")


class PublishedDevices:
    """`DeviceDirectory` over the publish loop's latest resolution: what kubelet can allocate."""

    def __init__(self, loop: PublishLoop) -> None:
        self._loop = loop

    def lookup(self, device: str) -> DirectoryEntry | None:
        resolution = self._loop.last
        if resolution is None:
            return None
        for candidate in resolution.devices:
            if candidate.name == device:
                return DirectoryEntry(ifname=candidate.ifname, network=candidate.network)
        return None


def _devices_in_pods(checkpoint: Checkpoint) -> set[str]:
    """Their device names: still advertised while away from the host."""
    return {plan.device for plan, _ in host_devices_in_pods(checkpoint)}


def _links_in_pods(checkpoint: Checkpoint) -> dict[str, Link]:
    """Their recorded host links, so they stay advertised after a restart too."""
    links: dict[str, Link] = {}
    for plan, attachment in host_devices_in_pods(checkpoint):
        link = from_facts(attachment.link) if attachment.link is not None else None
        if link is not None:
            links[plan.device] = link
    return links


@dataclass(frozen=True)
class _Parts:
    """The agent's long-lived pieces, wired together; `serve` starts and stops them."""

    networks: PodNetworkWatcher
    sharing: SharingDetector
    publish: PublishLoop
    reporter: StatusReporter
    nri: NRIPlugin
    kubelet: KubeletPlugin


def _wire(
    settings: AgentSettings,
    api: ApiClient,
    checkpoint: Checkpoint,
    mover: ModeMover,
    inventory: Inventory,
    pins: NetnsPins,
    releaser: Releaser,
    events: EventSink,
) -> _Parts:
    """Construct (no I/O) everything between the inventory and kubelet/containerd."""
    networks = PodNetworkWatcher(api, node_name=settings.node_name)
    publish = PublishLoop(
        inventory=inventory,
        networks=networks,
        publisher=SlicePublisher(api, settings.node_name),
        away=lambda: _devices_in_pods(checkpoint),
        away_links=lambda: _links_in_pods(checkpoint),
    )
    reporter = StatusReporter(StatusWriter(api), events=events)
    attacher = Attacher(
        store=checkpoint,
        mover=mover,
        reporter=reporter,
        pins=pins,
        published=publish.link_of,
        events=events,
    )
    releaser.wait_for_records(attacher.settle)
    hooks = NriHooks(attacher=attacher, releaser=releaser)
    nri = NRIPlugin(
        hooks,
        PluginSettings(
            socket_path=str(settings.nri_socket),
            name=settings.nri_plugin_name,
            index=settings.nri_plugin_index,
        ),
    )
    preparer = ClaimPreparer(
        node_name=settings.node_name,
        checkpoint=checkpoint,
        lookups=ApiLookups(api, cached=networks.body),
        devices=PublishedDevices(publish),
        reservations=Reservations(api),
        read_host=read_host_state,
        reclaim=releaser.reclaim_orphans,
        returner=releaser,
        check_plan=plancheck.check_async,
    )
    kubelet = KubeletPlugin(
        preparer=preparer,
        kubelet_root=settings.kubelet_root,
        health=DeviceHealthServicer(publish, pool=settings.node_name),
    )
    sharing = SharingDetector(api, settings.node_name)
    return _Parts(networks, sharing, publish, reporter, nri, kubelet)


async def _say_if_health_unwatched(kubelet: KubeletPlugin, node: str, events: EventSink) -> None:
    """Once: a Normal Event on the Node when the kubelet does not watch device health (a
    kubelet before 1.36): a degradation users can see, not an error."""
    if kubelet.health is None:
        return
    if await stream_not_opened(kubelet.health, kubelet.registration.wait_registered()):
        log.info(NOT_WATCHED_MESSAGE)
        events.post(node_ref(node), "Normal", NOT_WATCHED_REASON, NOT_WATCHED_MESSAGE)


async def _run(
    settings: AgentSettings,
    parts: _Parts,
    health: HealthServer,
    stop: asyncio.Event,
    tasks: list[asyncio.Task[None]],
    events: EventSink,
) -> None:
    """Start the parts in order (see the module docstring) and run until `stop` is set."""

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_stop_on_failure(stop))
        tasks.append(task)

    health.add_readiness_check("slices-published", parts.publish.published.is_set)
    health.add_readiness_check("kubelet-registered", lambda: _registered(parts.kubelet))
    health.add_readiness_check("nri-connected", lambda: parts.nri.connected)
    await health.start()

    spawn(parts.networks.run(), "podnetworks")
    parts.publish.use_sharing(await parts.sharing.detect())
    spawn(parts.sharing.settle(parts.publish.use_sharing), "sharing-probe")
    spawn(parts.publish.run(), "publish")
    spawn(parts.reporter.run(), "report")
    # Answer kubelet only once it can resolve device names it allocated from our slices.
    await _first(parts.publish.published.wait(), stop)
    if stop.is_set():
        return
    await parts.kubelet.start()
    spawn(_say_if_health_unwatched(parts.kubelet, settings.node_name, events), "health-notice")
    spawn(parts.nri.run(), "nri")
    log.info(
        "node agent running",
        extra={"node": settings.node_name, "stateDir": str(settings.state_dir)},
    )
    await stop.wait()


async def serve(settings: AgentSettings, stop: asyncio.Event) -> None:
    checkpoint = Checkpoint.open(settings.state_dir)
    api = await api_client(settings.kubeconfig)
    mover = ModeMover(
        NetlinkMover(),
        CniMover(
            cache_dir=settings.state_dir / "cni",
            bin_dirs=settings.cni_bin_dirs,
            timeout=settings.cni_timeout,
        ),
    )
    inventory = Inventory(
        debounce_seconds=settings.debounce_seconds, resync_seconds=settings.resync_seconds
    )
    health = HealthServer(settings.metrics_address, settings.metrics_port)
    tasks: list[asyncio.Task[None]] = []
    parts: _Parts | None = None
    releaser: Releaser | None = None
    events = EventRecorder(api, host=settings.node_name)
    report_quarantined(events, checkpoint.quarantined, settings.node_name)
    try:
        await inventory.start()
        pins = NetnsPins(settings.state_dir / "pins")
        releaser = Releaser(store=checkpoint, mover=mover, pins=pins, events=events)
        parts = _wire(settings, api, checkpoint, mover, inventory, pins, releaser, events)
        await _run(settings, parts, health, stop, tasks, events)
    finally:
        log.info("node agent stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if parts is not None:
            await parts.kubelet.stop()
        if releaser is not None:
            await releaser.close()
        await events.drain()
        await health.stop()
        await inventory.close()
        mover.close()
        await api.close()


QUARANTINE_EVENTS = 20  # a flood of Events helps nobody; the log names every entry


def report_quarantined(events: EventSink, quarantined: Sequence[Quarantined], node: str) -> None:
    """A Warning Event on this Node for each thing the checkpoint set aside at start-up: a human
    has to look at it, and `kubectl describe node` is where they look."""
    for lost in quarantined[:QUARANTINE_EVENTS]:
        reason = "CheckpointUnreadable" if lost.section == "file" else "CheckpointEntryQuarantined"
        events.post(node_ref(node), "Warning", reason, lost.describe())
    if len(quarantined) > QUARANTINE_EVENTS:
        more = len(quarantined) - QUARANTINE_EVENTS
        events.post(
            node_ref(node),
            "Warning",
            "CheckpointEntryQuarantined",
            f"and {more} more checkpoint entries quarantined; the node agent's log names them",
        )


def _registered(kubelet: KubeletPlugin | None) -> bool:
    return kubelet is not None and kubelet.registration.status.registered is True


def _stop_on_failure(stop: asyncio.Event) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s failed: %s", task.get_name(), exc, exc_info=exc)
            stop.set()

    return done


async def _first(waiting: Awaitable[object], stop: asyncio.Event) -> None:
    """Until `waiting` completes or `stop` is set, whichever comes first."""
    tasks = [
        asyncio.ensure_future(waiting),
        asyncio.ensure_future(stop.wait()),
    ]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def run_agent(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    try:
        asyncio.run(main())
    except MultinetError as exc:
        log.error("node agent cannot run: %s", exc)
        return 1
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0

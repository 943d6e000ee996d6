"""What a pod waits for: the agent's NRI RunPodSandbox end to end, beside a raw-netlink floor.

containerd calls the NRI plugins' RunPodSandbox once the sandbox's netns exists and the cluster
network's CNI ran; the pod's containers start only when the plugin has answered. This bench
makes that call as containerd does and times it from the request sent to the reply received:

  runtime side  this script on the main thread and its own event loop, with multinet.nri's mux
                and ttrpc: it listens on a temp NRI socket, answers the plugin's RegisterPlugin,
                sends Configure (request timeout 2 s, containerd's default) and an empty
                Synchronize, then one pod event at a time with a 2 s deadline
  agent side    the real pieces wired as multinet.agent.main wires them, on a thread with its
                own event loop (as in the agent's process): NRIPlugin -> NriHooks -> Attacher ->
                ModeMover(NetlinkMover, CniMover), a Checkpoint on disk (fsync'd, group commit)
                and NetnsPins in a temp state dir, Releaser for StopPodSandbox. Stand-ins: the
                status reporter only counts (the real one queues with put_nowait and writes to
                the API after the answer), no Events; the agent's log at info goes to /dev/null
                through its text formatter (warnings also to stderr)

One host-device plan: a bench-made veth NIC moves into the pod's netns renamed net1 with MTU
1400, then MAC + up, one address (198.51.100.2/24), one route (203.0.113.0/24 via .1). Per
round, interleaved (order alternating) so background load hits every path alike:

  floor  hand-packed netlink on raw sockets doing the same kernel writes, one request/ack at a
         time, ifindex known, no state read, no checks, no bookkeeping
  run    RunPodSandbox for a pod whose claim was prepared beforehand (the PreparedClaim written
         through Checkpoint.update as NodePrepareResources does, not timed)
  empty  RunPodSandbox for a pod without claims: the protocol and dispatch alone
  stop   StopPodSandbox of the `run` pod (the NIC goes home), timed on its own

Not timed: `ip netns add` (a fresh netns per path and round), the prepare, the floor's NIC going
home (our detach), `ip netns del`, RemovePodSandbox and the claim's unprepare.
The agent's steps are timed in place (subclasses adding a perf_counter around the real method,
and a wrapper around the checkpoint's file write) to show where the time beyond the floor goes.
Also printed: checkpoint writes per RunPodSandbox and StopPodSandbox (`Checkpoint.writes`) and
the file's size; `--claims N` first puts N other pods' claims and attachments into the
checkpoint, for the file size of a busier node (50 pods: ~110 KB).

Usage: bench/nri_hook.py [--rounds N] [--method state-change|dedicated] [--claims N] [--dir D]
(needs root). containerd before 2.3 sends pod events as StateChange (the default here); newer
NRI runtimes call RunPodSandbox/StopPodSandbox/RemovePodSandbox: both reach the same handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from attach_latency import floor_attach, percentile, sh  # bench/ is on sys.path when run

import multinet.checkpoint as checkpoint_module
from multinet.agent.attach import Attacher
from multinet.agent.contracts import AttachOutcome, PodInfo
from multinet.agent.movers import ModeMover
from multinet.agent.nri_hooks import NriHooks
from multinet.agent.pins import NetnsPins
from multinet.agent.release import Releaser
from multinet.checkpoint import FILENAME, Checkpoint
from multinet.cni.mover import CniMover
from multinet.devices.model import Link
from multinet.logs import TextFormatter
from multinet.netlink import restore
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.hoststate import read_host_state, read_host_state_sync
from multinet.nri import NRIPlugin, PluginSettings, PodSandbox, mux, ttrpc
from multinet.nri._pb import nri_pb2
from multinet.plans import (
    AgentState,
    Attachment,
    AttachPlan,
    ClaimRef,
    HostState,
    PreparedClaim,
    Route,
)
from multinet.status import DeviceOutcome

T = TypeVar("T")

PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
REQUEST_TIMEOUT = 2.0  # containerd's plugin_request_timeout default, seconds
DEVICE = "bench-nic"
POD_ADDRESS = "198.51.100.2/24"
POD_ROUTE = Route(destination="203.0.113.0/24", gateway="198.51.100.1")
WARMUP = 3

# The floor (raw netlink doing the plan's kernel writes), sh, percentile: bench/attach_latency.py


def fresh_netns(made: list[str]) -> str:
    """A new named netns (its name appended to `made`), as its path."""
    name = f"mnh{secrets.token_hex(3)}"
    made.append(name)  # before it exists: an interrupted `ip netns add` is cleaned up too
    sh(f"ip netns add {name}")
    return f"/var/run/netns/{name}"


def drop_netns(made: list[str], path: str) -> None:
    name = os.path.basename(path)
    sh(f"ip netns del {name}")
    made.remove(name)


def ifindex_of(ifname: str) -> int:
    with open(f"/sys/class/net/{ifname}/ifindex") as f:
        return int(f.read())


def bench_plan(claim: ClaimRef, nic: str, host: HostState) -> AttachPlan:
    """What NodePrepareResources makes of the claim: rename, MTU, MAC, one address, one route."""
    return AttachPlan(
        claim=claim,
        request="nic",
        pool="bench-node",
        device=DEVICE,
        network="bench",
        mode="host-device",
        host_ifname=nic,
        pod_ifname="net1",
        addresses=(POD_ADDRESS,),
        mtu=1400,
        mac="02:aa:bb:cc:dd:01",
        routes=(POD_ROUTE,),
        host=host,
    )


def filler_state(claims: int) -> tuple[dict[str, PreparedClaim], dict[str, Attachment]]:
    """Other pods' claims and attachments, so the checkpoint has the size of a busier node."""
    prepared: dict[str, PreparedClaim] = {}
    attachments: dict[str, Attachment] = {}
    for i in range(claims):
        ref = ClaimRef(namespace="bench", name=f"other-{i}-net", uid=str(uuid.uuid4()))
        host = HostState(
            ifname=f"fill{i}", ifindex=1000 + i, mtu=1500, mac="02:00:00:00:00:02", up=True
        )
        plan = AttachPlan(
            claim=ref,
            request="nic",
            pool="bench-node",
            device=f"fill-{i}",
            network="bench",
            mode="host-device",
            host_ifname=f"fill{i}",
            pod_ifname="net1",
            addresses=(f"198.51.100.{10 + i % 240}/24",),
            mtu=1400,
            routes=(POD_ROUTE,),
            host=host,
        )
        pod_uid = str(uuid.uuid4())
        prepared[ref.uid] = PreparedClaim(claim=ref, pod_uids=(pod_uid,), plans=(plan,))
        attachments[plan.key] = Attachment(
            plan_key=plan.key,
            pod_uid=pod_uid,
            pod=f"bench/other-{i}",
            netns=f"/var/run/netns/cni-filler-{i}",
            phase="attached",
            pod_ifindex=2,
            host=host,
        )
    return prepared, attachments


# -- timing the agent's steps in place ---------------------------------------------------------


class Probe:
    """Durations (seconds) of the agent's steps, appended by whichever thread ran them."""

    def __init__(self) -> None:
        self._samples: defaultdict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def add(self, step: str, seconds: float) -> None:
        with self._lock:
            self._samples[step].append(seconds)

    @contextlib.contextmanager
    def timing(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(step, time.perf_counter() - started)

    def mark(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._samples.items()}

    def since(self, mark: dict[str, int]) -> dict[str, list[float]]:
        """What each step took since `mark`, in call order."""
        with self._lock:
            return {k: v[mark.get(k, 0) :] for k, v in self._samples.items()}


class TimedCheckpoint(Checkpoint):
    """The real Checkpoint (what `Checkpoint.open` gives for an empty state dir), its record()
    and forget() timed as the hooks await them."""

    def __init__(self, path: Path, probe: Probe) -> None:
        super().__init__(path, AgentState())
        self.probe = probe

    async def record(self, attachments: Iterable[Attachment]) -> None:
        with self.probe.timing("record"):
            await super().record(attachments)

    async def forget(self, keys: Iterable[str]) -> None:
        with self.probe.timing("forget"):
            await super().forget(keys)


def time_file_writes(probe: Probe) -> Callable[[], None]:
    """Times the checkpoint's file write (serialise, write, fsync, rename, dir fsync) in its
    worker thread; returns the undo."""
    original = checkpoint_module._serialise_and_write

    def timed(path: Path, state: AgentState) -> None:
        with probe.timing("write"):
            original(path, state)

    checkpoint_module._serialise_and_write = timed

    def undo() -> None:
        checkpoint_module._serialise_and_write = original

    return undo


class TimedPins(NetnsPins):
    def __init__(self, directory: Path, probe: Probe) -> None:
        super().__init__(directory)
        self.probe = probe

    def pin(self, key: str, netns: str) -> None:
        with self.probe.timing("pin"):
            super().pin(key, netns)


class TimedNetlink(NetlinkMover):
    """NetlinkMover with the blocking netlink work timed inside its worker thread."""

    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        def timed(*inner: object) -> T:
            with self.probe.timing("netlink"):
                return fn(*inner)

        return await super()._run(timed, *args)


class TimedMover(ModeMover):
    def __init__(self, netlink: NetlinkMover, cni: CniMover, probe: Probe) -> None:
        super().__init__(netlink, cni)
        self.probe = probe

    async def attach(self, plan: AttachPlan, netns: str) -> AttachOutcome:
        with self.probe.timing("attach"):
            return await super().attach(plan, netns)


class TimedHooks(NriHooks):
    def __init__(
        self, *, attacher: Attacher, releaser: Releaser, probe: Probe, checkpoint: Checkpoint
    ) -> None:
        super().__init__(attacher=attacher, releaser=releaser)
        self.probe = probe
        self.checkpoint = checkpoint

    async def on_run_pod_sandbox(self, pod: PodSandbox) -> None:
        writes = self.checkpoint.writes
        with self.probe.timing("hook"):
            await super().on_run_pod_sandbox(pod)
        self.probe.add("hook-writes", self.checkpoint.writes - writes)

    async def on_stop_pod_sandbox(self, pod: PodSandbox) -> None:
        with self.probe.timing("stop-hook"):
            await super().on_stop_pod_sandbox(pod)


class CountedReports:
    """Stands in for StatusReporter, whose report() only queues (the API write comes later)."""

    def __init__(self) -> None:
        self.reports = 0

    def report(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        self.reports += 1


# -- the agent: its own thread and event loop --------------------------------------------------


class Agent:
    """The node agent's NRI side, wired as multinet.agent.main wires it."""

    def __init__(self, state_dir: Path, socket_path: Path, link: Link, probe: Probe) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="agent", daemon=True)
        self.checkpoint = TimedCheckpoint(state_dir / FILENAME, probe)
        self.pins = TimedPins(state_dir / "pins", probe)
        self.mover = TimedMover(TimedNetlink(probe), CniMover(cache_dir=state_dir / "cni"), probe)
        self.reports = CountedReports()
        releaser = Releaser(store=self.checkpoint, mover=self.mover, pins=self.pins)
        self.attacher = Attacher(
            store=self.checkpoint,
            mover=self.mover,
            reporter=self.reports,
            pins=self.pins,
            published=lambda device: link if device == DEVICE else None,
        )
        releaser.wait_for_records(self.attacher.settle)
        hooks = TimedHooks(
            attacher=self.attacher, releaser=releaser, probe=probe, checkpoint=self.checkpoint
        )
        self.plugin = NRIPlugin(
            hooks, PluginSettings(socket_path=str(socket_path), name="multinet", index="10")
        )
        self._serving: asyncio.Task[None] | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the agent's loop; await its result from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def start(self) -> None:
        self._thread.start()
        self.loop.call_soon_threadsafe(self._start_plugin)

    def _start_plugin(self) -> None:
        self._serving = self.loop.create_task(self.plugin.run(), name="nri")

    async def _stop_plugin(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        await self.loop.shutdown_default_executor()

    async def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call(self._stop_plugin()), 10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        self.mover.close()
        if not self._thread.is_alive():
            self.loop.close()

    async def prepare(self, claim: ClaimRef, pod_uid: str, nic: str) -> None:
        """What NodePrepareResources leaves behind: the claim's plan in the checkpoint."""
        plan = bench_plan(claim, nic, await read_host_state(nic))
        async with self.checkpoint.update() as draft:
            draft.claims[claim.uid] = PreparedClaim(claim=claim, pod_uids=(pod_uid,), plans=(plan,))

    async def unprepare(self, claim: ClaimRef) -> None:
        async with self.checkpoint.update() as draft:
            draft.claims.pop(claim.uid, None)

    async def fill(self, claims: int) -> None:
        prepared, attachments = filler_state(claims)
        async with self.checkpoint.update() as draft:
            draft.claims.update(prepared)
            draft.attachments.update(attachments)


# -- the runtime's side of the NRI socket ------------------------------------------------------

_STATE_CHANGE = {
    "run": nri_pb2.RUN_POD_SANDBOX,
    "stop": nri_pb2.STOP_POD_SANDBOX,
    "remove": nri_pb2.REMOVE_POD_SANDBOX,
}
_DEDICATED: dict[str, tuple[str, Callable[[nri_pb2.PodSandbox], bytes]]] = {
    "run": ("RunPodSandbox", lambda p: nri_pb2.RunPodSandboxRequest(pod=p).SerializeToString()),
    "stop": ("StopPodSandbox", lambda p: nri_pb2.StopPodSandboxRequest(pod=p).SerializeToString()),
    "remove": (
        "RemovePodSandbox",
        lambda p: nri_pb2.RemovePodSandboxRequest(pod=p).SerializeToString(),
    ),
}


@dataclass
class Runtime:
    """containerd's end: listens, lets the plugin register, configures, synchronizes, and sends
    pod events to the plugin's service."""

    path: Path
    method: str  # "state-change" or "dedicated"
    plugin: str = ""
    _accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
    _server: asyncio.Server | None = None
    _parts: list[Any] = field(default_factory=list)
    _client: ttrpc.Client | None = None

    async def listen(self) -> None:
        self._accepted = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._accepted is not None
        if self._accepted.done():  # one plugin connection is all this bench serves
            writer.close()
            return
        self._accepted.set_result((reader, writer))

    async def handshake(self) -> None:
        assert self._accepted is not None
        reader, writer = await asyncio.wait_for(self._accepted, 10)
        conn = mux.Mux(reader, writer)
        registered = asyncio.Event()

        async def register(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
            req = nri_pb2.RegisterPluginRequest.FromString(payload)
            self.plugin = f"{req.plugin_idx}-{req.plugin_name}"
            registered.set()
            return nri_pb2.Empty().SerializeToString()

        server = ttrpc.Server(
            lambda d: conn.send(mux.RUNTIME_CONN, d),
            {(RUNTIME_SERVICE, "RegisterPlugin"): register},
        )
        client = ttrpc.Client(lambda d: conn.send(mux.PLUGIN_CONN, d))
        conn.register(mux.PLUGIN_CONN, client.feed)
        conn.register(mux.RUNTIME_CONN, server.feed)
        reading = asyncio.create_task(conn.run(), name="runtime-mux")
        self._parts = [conn, server, reading]
        self._client = client
        await asyncio.wait_for(registered.wait(), 5)
        cfg = nri_pb2.ConfigureRequest(
            runtime_name="nri-hook-bench",
            runtime_version="0",
            registration_timeout=5000,
            request_timeout=int(REQUEST_TIMEOUT * 1000),
        )
        out = nri_pb2.ConfigureResponse.FromString(
            await client.call(PLUGIN_SERVICE, "Configure", cfg.SerializeToString(), budget=5)
        )
        if out.events & 0x7 != 0x7:
            raise RuntimeError(f"plugin subscribed to events {out.events:#x}, not the pod events")
        sync = nri_pb2.SynchronizeRequest(more=False)
        await client.call(PLUGIN_SERVICE, "Synchronize", sync.SerializeToString(), budget=5)

    async def pod_event(self, event: str, pod: nri_pb2.PodSandbox) -> float:
        """Send one pod event; seconds from the request sent to its reply received."""
        assert self._client is not None
        if self.method == "state-change":
            method = "StateChange"
            payload = nri_pb2.StateChangeEvent(event=_STATE_CHANGE[event], pod=pod)
            data = payload.SerializeToString()
        else:
            method, encode = _DEDICATED[event]
            data = encode(pod)
        started = time.perf_counter()
        await self._client.call(PLUGIN_SERVICE, method, data, budget=REQUEST_TIMEOUT)
        return time.perf_counter() - started

    async def close(self) -> None:
        if self._client is not None:
            self._client.close(ConnectionError("bench runtime closed"))
        if self._parts:
            conn, server, reading = self._parts
            reading.cancel()
            await asyncio.wait({reading})
            await server.close()
            await conn.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def pod_msg(uid: str, name: str, netns_path: str) -> nri_pb2.PodSandbox:
    """A pod sandbox as containerd describes it to plugins."""
    pid = 4242
    msg = nri_pb2.PodSandbox(
        id=secrets.token_hex(32),
        name=name,
        uid=uid,
        namespace="bench",
        runtime_handler="runc",
        pid=pid,
    )
    msg.labels.update(
        {
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": "bench",
            "io.kubernetes.pod.uid": uid,
            "app": "bench",
        }
    )
    msg.annotations.update(
        {"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2024-01-01T00:00:00Z"}
    )
    msg.linux.namespaces.add(type="network", path=netns_path)
    msg.linux.namespaces.add(type="ipc", path=f"/proc/{pid}/ns/ipc")
    msg.linux.namespaces.add(type="uts", path=f"/proc/{pid}/ns/uts")
    msg.ips.append("10.244.0.17")
    return msg


# -- the rounds --------------------------------------------------------------------------------


@dataclass
class Results:
    timings: dict[str, list[float]] = field(
        default_factory=lambda: {"floor": [], "run": [], "empty": [], "stop": []}
    )
    steps: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    run_writes: list[int] = field(default_factory=list)  # started while the hook ran
    after_writes: list[int] = field(default_factory=list)  # after the answer
    stop_writes: list[int] = field(default_factory=list)
    checkpoint_bytes: int = 0


@dataclass
class Bench:
    nic: str
    baseline: HostState
    agent: Agent
    runtime: Runtime
    probe: Probe
    host_sock: socket.socket
    made: list[str]
    results: Results = field(default_factory=Results)
    pods: int = 0

    def floor(self, keep: bool) -> None:
        path = fresh_netns(self.made)
        claim = ClaimRef(namespace="bench", name="floor", uid="floor")
        plan = bench_plan(claim, self.nic, self.baseline)
        ifindex = ifindex_of(self.nic)
        started = time.perf_counter()
        floor_attach(self.host_sock, ifindex, path, plan)
        elapsed = time.perf_counter() - started
        restore.detach(plan, path, host=self.baseline)
        drop_netns(self.made, path)
        if keep:
            self.results.timings["floor"].append(elapsed * 1e3)

    async def run(self, keep: bool) -> None:
        self.pods += 1
        name = f"pod-{self.pods}"
        claim = ClaimRef(namespace="bench", name=f"{name}-nic", uid=str(uuid.uuid4()))
        pod_uid = str(uuid.uuid4())
        await self.agent.call(self.agent.prepare(claim, pod_uid, self.nic))
        path = fresh_netns(self.made)
        pod = pod_msg(pod_uid, name, path)
        cp = self.agent.checkpoint
        mark, writes = self.probe.mark(), cp.writes
        run = await self.runtime.pod_event("run", pod)
        run_writes = int(self.probe.since(mark).get("hook-writes", [0])[-1])
        # The attachment is recorded after the answer: wait for it (not timed), then check.
        await self.agent.call(self.agent.attacher.settle())
        after = cp.writes - writes - run_writes
        run_steps = self.probe.since(mark)
        self._check_attached(pod_uid, path)
        size = cp.path.stat().st_size
        mark, writes = self.probe.mark(), cp.writes
        stop = await self.runtime.pod_event("stop", pod)
        stop_writes, stop_steps = cp.writes - writes, self.probe.since(mark)
        self._check_home(claim)
        drop_netns(self.made, path)
        await self.runtime.pod_event("remove", pod)
        await self.agent.call(self.agent.unprepare(claim))
        if not keep:
            return
        res = self.results
        res.timings["run"].append(run * 1e3)
        res.timings["stop"].append(stop * 1e3)
        res.run_writes.append(run_writes)
        res.after_writes.append(after)
        res.stop_writes.append(stop_writes)
        res.checkpoint_bytes = size
        self._keep_steps(run * 1e3, run_steps, stop_steps)

    def _check_attached(self, pod_uid: str, path: str) -> None:
        atts = [a for a in self.agent.checkpoint.state.attachments.values() if a.pod_uid == pod_uid]
        if (
            len(atts) != 1
            or atts[0].phase != "attached"
            or atts[0].netns != path
            or os.path.exists(f"/sys/class/net/{self.nic}")
        ):
            raise RuntimeError(f"RunPodSandbox answered but the NIC is not attached: {atts}")

    def _check_home(self, claim: ClaimRef) -> None:
        key = f"{claim.uid}/nic/{DEVICE}"
        if key in self.agent.checkpoint.state.attachments or not os.path.exists(
            f"/sys/class/net/{self.nic}"
        ):
            raise RuntimeError(f"StopPodSandbox answered but {self.nic} is not home")

    def _keep_steps(
        self, total: float, run: dict[str, list[float]], stop: dict[str, list[float]]
    ) -> None:
        ms = {k: [v * 1e3 for v in vs] for k, vs in run.items() if k != "hook-writes"}
        if len(ms.get("record", [])) != 1 or len(ms.get("write", [])) != 1:
            raise RuntimeError(f"expected 1 record and 1 file write per RunPodSandbox: {ms}")
        hook = ms["hook"][0]
        steps = self.results.steps
        steps["outside"].append(total - hook)
        steps["hook"].append(hook)
        steps["pin"].append(sum(ms.get("pin", [])))
        steps["attach"].append(ms["attach"][0])
        steps["netlink"].append(ms["netlink"][0])
        steps["record-attached"].append(ms["record"][0])
        steps["write-attached"].append(ms["write"][0])
        named = sum(ms.get("pin", [])) + ms["attach"][0]
        steps["hook-rest"].append(hook - named)
        stop_ms = {k: [v * 1e3 for v in vs] for k, vs in stop.items()}
        steps["stop-hook"].append(sum(stop_ms.get("stop-hook", [])))
        steps["stop-netlink"].append(sum(stop_ms.get("netlink", [])))
        steps["stop-forget"].append(sum(stop_ms.get("forget", [])))
        steps["stop-write"].append(sum(stop_ms.get("write", [])))

    async def empty(self, keep: bool) -> None:
        self.pods += 1
        pod = pod_msg(str(uuid.uuid4()), f"pod-{self.pods}", "/var/run/netns/mnh-no-claims")
        elapsed = await self.runtime.pod_event("run", pod)
        await self.runtime.pod_event("stop", pod)
        await self.runtime.pod_event("remove", pod)
        if keep:
            self.results.timings["empty"].append(elapsed * 1e3)

    async def rounds(self, n: int) -> None:
        for i in range(WARMUP + n):
            keep = i >= WARMUP
            order = ("floor", "run", "empty") if i % 2 == 0 else ("empty", "run", "floor")
            for path in order:
                if path == "floor":
                    self.floor(keep)
                elif path == "run":
                    await self.run(keep)
                else:
                    await self.empty(keep)
            if keep and (i + 1 - WARMUP) % 50 == 0:
                print(f"  {i + 1 - WARMUP}/{n} rounds", file=sys.stderr)


# -- report ------------------------------------------------------------------------------------


def report(res: Results, rounds: int, method: str, claims: int) -> None:
    t = res.timings
    floor50, floor99 = percentile(t["floor"], 50), percentile(t["floor"], 99)
    print(
        f"NRI {'StateChange' if method == 'state-change' else 'RunPodSandbox'} -> reply, one "
        f"host-device NIC (move+rename+MTU, MAC+up, 1 address, 1 route), {rounds} rounds, ms"
    )
    print(f"{'path':8} {'p50':>8} {'p99':>8} {'mean':>8} {'p50/floor':>10} {'p99/floor':>10}")
    for label, values in t.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        ratios = f" {p50 / floor50:10.2f} {p99 / floor99:10.2f}" if label != "stop" else ""
        print(f"{label:8} {p50:8.2f} {p99:8.2f} {statistics.fmean(values):8.2f}{ratios}")
    print(f"run over the floor at p50: {percentile(t['run'], 50) - floor50:.2f} ms")

    def counts(values: list[int]) -> str:
        lo, hi = min(values), max(values)
        return f"{lo}" if lo == hi else f"{lo}..{hi} (mean {statistics.fmean(values):.2f})"

    print(
        f"checkpoint writes per RunPodSandbox: {counts(res.run_writes)} before its answer, "
        f"{counts(res.after_writes)} after it; per StopPodSandbox: "
        f"{counts(res.stop_writes)}; file {res.checkpoint_bytes} bytes"
        + (f" ({claims} other claims)" if claims else "")
    )
    steps = res.steps

    def row(text: str, key: str, depth: int = 0) -> None:
        values = steps[key]
        label = "  " * depth + text
        print(f"  {label:<52} {statistics.fmean(values):8.2f} {percentile(values, 50):8.2f}")

    print(f"{'where a RunPodSandbox goes, ms per round':<54} {'mean':>8} {'p50':>8}")
    row("outside the hook: ttrpc+mux, dispatch, loop hops", "outside")
    row("the hook (NriHooks.on_run_pod_sandbox)", "hook")
    row("netns pin (bind mount)", "pin", 1)
    row("mover.attach", "attach", 1)
    row("of which the netlink work (worker thread)", "netlink", 2)
    row("rest (lookups, link facts, report, log)", "hook-rest", 1)
    row("after the answer: checkpoint record 'attached'", "record-attached")
    row("of which the file write (worker thread)", "write-attached", 1)
    print(f"{'StopPodSandbox, ms per round':<54} {'mean':>8} {'p50':>8}")
    row("the hook (NriHooks.on_stop_pod_sandbox)", "stop-hook")
    row("netlink work (detach, worker thread)", "stop-netlink", 1)
    row("checkpoint forget", "stop-forget", 1)
    row("of which the file write (worker thread)", "stop-write", 2)

    def mean(key: str) -> float:
        return statistics.fmean(steps[key])

    netlink_extra = mean("netlink") - statistics.fmean(t["floor"])
    hop = mean("attach") - mean("netlink")
    rest = mean("pin") + mean("hook-rest")
    print(
        f"run - floor, means: {statistics.fmean(t['run']) - statistics.fmean(t['floor']):.2f} ms"
        f" = netlink work beyond the floor's {netlink_extra:.2f}"
        f" + worker-thread hop {hop:.2f} + pin and rest {rest:.2f}"
        f" + outside the hook {mean('outside'):.2f}"
    )


# -- set-up and clean-up -----------------------------------------------------------------------


def setup_logging() -> None:
    """The agent's default (info, text formatter) into /dev/null; warnings also to stderr."""
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as we run)
    sink.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    visible = logging.StreamHandler(sys.stderr)
    visible.setLevel(logging.WARNING)
    visible.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [sink, visible]
    root.setLevel(logging.INFO)


def nic_link(nic: str, peer: str, host: HostState) -> Link:
    """The NIC as the inventory would have published it (recorded with the attachment)."""
    return Link(
        index=host.ifindex,
        ifname=nic,
        kind="veth",
        mac=host.mac,
        mtu=host.mtu,
        up=host.up,
        oper_state="up",
        peer=ifindex_of(peer),
        ipv4=tuple(a for a in host.addresses if ":" not in a),
    )


async def bench(
    args: argparse.Namespace, nic: str, peer: str, state_dir: Path, made: list[str]
) -> Results:
    probe = Probe()
    undo = time_file_writes(probe)
    baseline = read_host_state_sync(nic)
    runtime = Runtime(state_dir / "nri.sock", args.method)
    agent = Agent(state_dir, state_dir / "nri.sock", nic_link(nic, peer, baseline), probe)
    host_sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        await runtime.listen()
        agent.start()
        await runtime.handshake()
        if args.claims:
            await agent.call(agent.fill(args.claims))
        b = Bench(nic, baseline, agent, runtime, probe, host_sock, made)
        await b.rounds(args.rounds)
        return b.results
    finally:
        await agent.stop()
        await runtime.close()
        host_sock.close()
        undo()


def clean_up(state_dir: Path, made: list[str], nic: str) -> None:
    """Every pin, netns, link and file the bench made, whatever state it stopped in."""
    pins = state_dir / "pins"
    if pins.is_dir():
        NetnsPins(pins).prune(())
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", nic], capture_output=True)
    with open("/proc/self/mountinfo") as f:
        mounted = [line.split()[4] for line in f if line.split()[4].startswith(str(state_dir))]
    if mounted:
        print(f"left {state_dir} in place: still mounted there: {mounted}", file=sys.stderr)
        return
    shutil.rmtree(state_dir, ignore_errors=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--method",
        choices=("state-change", "dedicated"),
        default="state-change",
        help="how pod events are sent: StateChange (containerd < 2.3) or RunPodSandbox etc.",
    )
    parser.add_argument(
        "--claims", type=int, default=0, help="other pods' claims in the checkpoint (its size)"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("/var/tmp"), help="where the state dir goes"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    setup_logging()
    tag = secrets.token_hex(3)
    nic, peer = f"mnhn{tag}", f"mnhp{tag}"
    made: list[str] = []
    state_dir = Path(tempfile.mkdtemp(prefix="multinet-nri-bench-", dir=args.dir))
    try:
        sh(f"ip link add {nic} type veth peer name {peer}")
        sh(f"ip link set {peer} up && ip link set {nic} up")
        sh(f"ip addr add 203.0.113.{10 + secrets.randbelow(240)}/24 dev {nic}")
        results = asyncio.run(bench(args, nic, peer, state_dir, made))
    finally:
        clean_up(state_dir, made, nic)
    report(results, args.rounds, args.method, args.claims)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent side of bench/nri_hook.py: the node agent's NRI pieces in a process of their own.

containerd and the NRI plugin are two processes; so are the bench's two sides. bench/nri_hook.py
(the runtime: it listens on the NRI socket and times each call) starts this script with

  nri_hook_agent.py --control-fd FD --socket S --state-dir D --nic NIC --peer PEER

and drives it over the control socket FD (JSON lines, one request and one answer at a time,
never while a call is being timed). Here, on this process's main thread and its one event loop
as in `multinet.agent.main`: NRIPlugin -> NriHooks -> Attacher -> ModeMover(NetlinkMover,
CniMover), a Checkpoint on disk (fsync'd, group commit) and NetnsPins in the state dir, Releaser
for StopPodSandbox. Stand-ins: the status reporter only counts (the real one queues with
put_nowait and writes to the API after the answer), no Events; the log at info goes to
/dev/null through the agent's text formatter (warnings also to stderr).

The agent's steps are timed in place (subclasses adding a perf_counter around the real method,
wrappers around the checkpoint's file write and the mux's send) and sent back on request: where
the time beyond the floor goes, and whether a checkpoint write began before the answer was
written.

Control requests ({"op": ..., ...} -> {"ok": result} or {"error": text}):
  prepare    {claim: {namespace, name, uid}, pod_uid}: the claim's plan into the checkpoint, as
             NodePrepareResources leaves it
  unprepare  {uid}: the claim out of the checkpoint
  fill       {claims}: other pods' claims and attachments, for the file size of a busier node
  mark       start counting steps and checkpoint writes
  settled    {pod_uid}: once the writes after the answer are done: the steps since `mark` (in
             seconds; "t-" steps are points in time: answers written, file writes begun), the
             writes since `mark`, the pod's attachments, the checkpoint's size
  stop       stop serving and exit
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from nri_hook import DEVICE, POD_ROUTE, bench_plan, ifindex_of, setup_logging

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
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.hoststate import read_host_state, read_host_state_sync
from multinet.nri import NRIPlugin, PluginSettings, PodSandbox, mux
from multinet.plans import (
    AgentState,
    Attachment,
    AttachPlan,
    ClaimRef,
    HostState,
    PreparedClaim,
)
from multinet.status import DeviceOutcome

T = TypeVar("T")


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

    def stamp(self, event: str) -> None:
        """When `event` happened (perf_counter: CLOCK_MONOTONIC, the same in every process)."""
        self.add(event, time.perf_counter())

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


def time_file_writes(probe: Probe) -> None:
    """Times the checkpoint's file write (serialise, write, fsync, rename, dir fsync) in its
    worker thread, and notes when each began ("t-write"), for this process's lifetime."""
    original = checkpoint_module._serialise_and_write

    def timed(path: Path, state: AgentState) -> None:
        probe.stamp("t-write")
        with probe.timing("write"):
            original(path, state)

    checkpoint_module._serialise_and_write = timed


def note_answers(probe: Probe) -> None:
    """Notes when each answer to the runtime has been written to the socket ("t-answer": the
    plugin's ttrpc server sends it on the mux's plugin connection), for this process's
    lifetime."""
    original = mux.Mux.send

    async def send(self: mux.Mux, conn_id: int, data: bytes) -> None:
        await original(self, conn_id, data)
        if conn_id == mux.PLUGIN_CONN:
            probe.stamp("t-answer")

    mux.Mux.send = send  # type: ignore[method-assign]


class TimedPins(NetnsPins):
    def __init__(self, directory: Path, probe: Probe) -> None:
        super().__init__(directory)
        self.probe = probe

    def pin(self, key: str, netns: str) -> None:
        with self.probe.timing("pin"):
            super().pin(key, netns)


class TimedNetlink(NetlinkMover):
    """NetlinkMover with the blocking netlink work timed where it runs."""

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
    def __init__(self, *, attacher: Attacher, releaser: Releaser, probe: Probe) -> None:
        super().__init__(attacher=attacher, releaser=releaser)
        self.probe = probe

    async def on_run_pod_sandbox(self, pod: PodSandbox) -> None:
        with self.probe.timing("hook"):
            await super().on_run_pod_sandbox(pod)

    async def on_stop_pod_sandbox(self, pod: PodSandbox) -> None:
        with self.probe.timing("stop-hook"):
            await super().on_stop_pod_sandbox(pod)


class CountedReports:
    """Stands in for StatusReporter, whose report() only queues (the API write comes later)."""

    def __init__(self) -> None:
        self.reports = 0

    def report(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        self.reports += 1


# -- the agent ---------------------------------------------------------------------------------


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


class Agent:
    """The node agent's NRI side, wired as multinet.agent.main wires it."""

    def __init__(self, state_dir: Path, socket_path: Path, link: Link, probe: Probe) -> None:
        self.probe = probe
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
        hooks = TimedHooks(attacher=self.attacher, releaser=releaser, probe=probe)
        self.plugin = NRIPlugin(
            hooks, PluginSettings(socket_path=str(socket_path), name="multinet", index="10")
        )
        self._mark: dict[str, int] = {}
        self._writes = 0

    async def prepare(self, claim: ClaimRef, pod_uid: str, nic: str) -> None:
        """What NodePrepareResources leaves behind: the claim's plan in the checkpoint."""
        plan = bench_plan(claim, nic, await read_host_state(nic))
        async with self.checkpoint.update() as draft:
            draft.claims[claim.uid] = PreparedClaim(claim=claim, pod_uids=(pod_uid,), plans=(plan,))

    async def unprepare(self, uid: str) -> None:
        async with self.checkpoint.update() as draft:
            draft.claims.pop(uid, None)

    async def fill(self, claims: int) -> None:
        prepared, attachments = filler_state(claims)
        async with self.checkpoint.update() as draft:
            draft.claims.update(prepared)
            draft.attachments.update(attachments)

    def mark(self) -> None:
        self._mark, self._writes = self.probe.mark(), self.checkpoint.writes

    async def settled(self, pod_uid: str) -> dict[str, Any]:
        await self.attacher.settle()
        atts = self.checkpoint.state.attachments.values()
        return {
            "steps": self.probe.since(self._mark),
            "writes": self.checkpoint.writes - self._writes,
            "attachments": [
                {"key": a.plan_key, "phase": a.phase, "netns": a.netns}
                for a in atts
                if a.pod_uid == pod_uid
            ],
            "bytes": self.checkpoint.path.stat().st_size if self.checkpoint.path.exists() else 0,
        }

    async def handle(self, req: dict[str, Any], nic: str) -> object:
        op = req["op"]
        if op == "prepare":
            await self.prepare(ClaimRef(**req["claim"]), req["pod_uid"], nic)
        elif op == "unprepare":
            await self.unprepare(req["uid"])
        elif op == "fill":
            await self.fill(req["claims"])
        elif op == "mark":
            self.mark()
        elif op == "settled":
            return await self.settled(req["pod_uid"])
        elif op != "stop":
            raise ValueError(f"unknown control request {op!r}")
        return None


async def control(agent: Agent, fd: int, nic: str) -> None:
    """Answer the runtime side's requests until it says stop or goes away."""
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    try:
        while line := await reader.readline():
            req = json.loads(line)
            try:
                reply: dict[str, object] = {"ok": await agent.handle(req, nic)}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            if req["op"] == "stop":
                return
    finally:
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    probe = Probe()
    time_file_writes(probe)
    note_answers(probe)
    link = nic_link(args.nic, args.peer, read_host_state_sync(args.nic))
    agent = Agent(args.state_dir, args.socket, link, probe)
    serving = asyncio.create_task(agent.plugin.run(), name="nri")
    try:
        await control(agent, args.control_fd, args.nic)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        agent.mover.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--socket", type=Path, required=True, help="the runtime's NRI socket")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--nic", required=True)
    parser.add_argument("--peer", required=True)
    args = parser.parse_args()
    setup_logging()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

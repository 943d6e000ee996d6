"""What RunPodSandbox leaves for after its answer waits for that answer.

The runtime's pod waits for the answer, not for the bookkeeping: the attachment's checkpoint
write and the claim status report must not run between the hook's end and the answer, where
they would compete with it for the event loop, the GIL (the write's thread) and a CPU. Driven
through the real ttrpc server (whose `answered()` they wait for) with the real Attacher,
Checkpoint and StatusReporter; the mover, the netns pins and the API writer are stand-ins.
Outside of an NRI call nothing waits: the record and the report follow at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from multinet.agent.attach import Attacher
from multinet.agent.contracts import PodInfo
from multinet.agent.pins import NetnsPins
from multinet.agent.report import StatusReporter
from multinet.checkpoint import Checkpoint
from multinet.nri import ttrpc
from multinet.nri._pb import ttrpc_pb2
from multinet.plans import AgentState, Attachment, AttachPlan, ClaimRef, HostState, PreparedClaim
from multinet.status import DeviceOutcome

CLAIM = ClaimRef(namespace="ns", name="c1", uid="uid-c1")
POD = PodInfo(uid="pod-1", namespace="ns", name="p1", netns="/var/run/netns/pod-1")
HOST = HostState(ifname="eth9", ifindex=9, mtu=1500, mac="02:00:00:00:00:09", up=True)


@dataclass(frozen=True)
class Moved:
    ifindex: int = 2
    ifname: str = "net1"
    mac: str = "02:00:00:00:00:09"
    addresses: tuple[str, ...] = ("198.51.100.2/24",)
    host: HostState | None = HOST


class Mover:
    """Stands in for the InterfaceMover: attaches at once, nothing else is asked of it."""

    async def attach(self, plan: AttachPlan, netns: str) -> Moved:
        await asyncio.sleep(0)
        return Moved()

    async def detach(self, plan: AttachPlan, netns: str, host: HostState | None) -> None:
        raise AssertionError("not expected")

    async def recover(self, plan: AttachPlan, attachment: Attachment) -> str:
        raise AssertionError("not expected")

    async def check(self, plan: AttachPlan) -> None:
        pass


class Pins(NetnsPins):
    """No bind mounts (no root, no netns here)."""

    def pin(self, key: str, netns: str) -> None:
        pass


class Recorded(Checkpoint):
    def __init__(self, path: Path, events: list[str]) -> None:
        plan = AttachPlan(
            claim=CLAIM,
            request="nic",
            pool="node-a",
            device="eth9",
            network="net-a",
            mode="host-device",
            host_ifname="eth9",
            pod_ifname="net1",
            addresses=("198.51.100.2/24",),
            host=HOST,
        )
        prepared = PreparedClaim(claim=CLAIM, pod_uids=(POD.uid,), plans=(plan,))
        super().__init__(path, AgentState(claims={CLAIM.uid: prepared}))
        self.events = events

    async def record(self, attachments: Iterable[Attachment]) -> None:
        self.events.append("record")
        await super().record(attachments)


class Writer:
    """Stands in for kube.status.StatusWriter."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def write_claim(self, claim: ClaimRef, outcomes: list[DeviceOutcome]) -> None:
        self.events.append("claim status")

    async def annotate_pod(self, namespace: str, name: str, outcomes: list[DeviceOutcome]) -> None:
        self.events.append("pod annotation")


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_the_record_and_the_report_wait_for_the_answer(tmp_path: Path) -> None:
    events: list[str] = []
    checkpoint = Recorded(tmp_path / "checkpoint.json", events)
    reporter = StatusReporter(Writer(events))  # type: ignore[arg-type]
    reporting = asyncio.create_task(reporter.run())
    attacher = Attacher(
        store=checkpoint, mover=Mover(), reporter=reporter, pins=Pins(tmp_path / "pins")
    )

    async def run_pod_sandbox(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
        await attacher.run_pod_sandbox(POD)
        await asyncio.sleep(0.05)  # time enough for the bookkeeping to run too early
        events.append("hook done")
        return b""

    async def send(data: bytes) -> None:
        events.append("answered")

    server = ttrpc.Server(send, {("svc", "Run"): run_pod_sandbox})
    req = ttrpc_pb2.Request(service="svc", method="Run", timeout_nano=5_000_000_000)
    try:
        server.feed(ttrpc.encode_message(1, ttrpc.REQUEST, req.SerializeToString()))
        await until(lambda: "pod annotation" in events, "the status report")
        await attacher.settle()
        assert events[:2] == ["hook done", "answered"]
        assert sorted(events[2:]) == ["claim status", "pod annotation", "record"]
        assert list(checkpoint.state.attachments) == [f"{CLAIM.uid}/nic/eth9"]

        # Outside of an NRI call (Synchronize's late attach is inside one; tests are not):
        # nothing waits.
        events.clear()
        await checkpoint.forget(list(checkpoint.state.attachments))
        await attacher.run_pod_sandbox(POD)
        await attacher.settle()
        await until(lambda: "pod annotation" in events, "the status report")
        assert sorted(events) == ["claim status", "pod annotation", "record"]
    finally:
        reporting.cancel()
        await asyncio.gather(reporting, return_exceptions=True)
        await server.close()

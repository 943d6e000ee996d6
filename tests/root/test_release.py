"""Giving NICs back: the agent's prepare, attach and release hooks on real veth "NICs" in real
network namespaces, with a real checkpoint file (claim reads and IPAM are the doubles of
doubles.py).

Cases: a force-deleted pod still holds the NIC when the next claim of the same device is
prepared: the NIC is taken back at once, exact, and the late StopPodSandbox and unprepare of
the old claim find nothing left to do; while the old claim still holds the device, prepare is
refused naming it and the NIC stays in its pod; a recovery the kernel refuses keeps the restore
record and the claim prepared, posts one Warning Event on the claim, and succeeds on a retry once
the fault is gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from doubles import FakeDirectory, FakeLookups, FakeReservations, claim_doc
from helpers import eventually
from netfixtures import Lab, fake_netns_death_physical, has_link, lab, link_view, sh, uid

from multinet.agent.attach import Attacher
from multinet.agent.contracts import PodInfo
from multinet.agent.pins import NetnsPins
from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.agent.release import Releaser
from multinet.checkpoint import Checkpoint
from multinet.errors import ClaimError
from multinet.kube.events import EventType, ObjectRef
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.hoststate import read_host_state
from multinet.plans import ClaimRef
from multinet.status import DeviceOutcome

pytestmark = pytest.mark.root

OLD = ClaimRef(namespace="ns", name="old", uid="uid-old")
NEW = ClaimRef(namespace="ns", name="new", uid="uid-new")


@dataclass
class RecordedEvents:
    """Collects what the agent would post as Events (an observer, not a fault)."""

    posted: list[tuple[str, str, str, str]] = field(default_factory=list)

    def post(self, about: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        self.posted.append((f"{about.kind}/{about.namespace}/{about.name}", type_, reason, message))


class IgnoredReports:
    def report(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        pass


@dataclass
class Agent:
    """The agent's hook objects wired as main.py wires them, for one NIC published as dev-a."""

    checkpoint: Checkpoint
    lookups: FakeLookups
    preparer: ClaimPreparer
    attacher: Attacher
    releaser: Releaser
    events: RecordedEvents
    pins: NetnsPins
    mover: NetlinkMover


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as it:
        yield it


@pytest.fixture
async def agent_for() -> AsyncIterator[dict[str, Agent]]:
    """The agents a test made, by NIC; their retries stop, pins close and workers end after."""
    made: dict[str, Agent] = {}
    yield made
    for agent in made.values():
        await agent.releaser.close()
        agent.pins.prune([])  # every pin, recorded or not (a failed test may leave either)
        agent.mover.close()


def _agent(tmp_path: Path, nic: str, made: dict[str, Agent]) -> Agent:
    checkpoint = Checkpoint.open(tmp_path)
    mover = NetlinkMover()
    pins = NetnsPins(tmp_path / "pins")
    events = RecordedEvents()
    releaser = Releaser(
        store=checkpoint, mover=mover, pins=pins, events=events, retry_first_seconds=0.05
    )
    lookups = FakeLookups({"net-a": {"interfaces": {"names": [nic]}, "interfaceName": "net1"}})
    preparer = ClaimPreparer(
        node_name="node-a",
        checkpoint=checkpoint,
        lookups=lookups,
        devices=FakeDirectory({"dev-a": DirectoryEntry(ifname=nic, network="net-a")}),
        reservations=FakeReservations(),
        read_host=read_host_state,
        reclaim=releaser.reclaim_orphans,
        returner=releaser,
    )
    attacher = Attacher(store=checkpoint, mover=mover, reporter=IgnoredReports(), pins=pins)
    releaser.wait_for_records(attacher.settle)  # as main.py wires them
    made[nic] = Agent(checkpoint, lookups, preparer, attacher, releaser, events, pins, mover)
    return made[nic]


async def _attached_to_old_pod(agent: Agent, net: Lab) -> tuple[PodInfo, str]:
    ns = net.new_netns()
    pod = PodInfo(uid="pod-1", namespace="ns", name="p1", netns=net.netns_path(ns))
    agent.lookups.claims[("ns", "old")] = claim_doc(OLD, "dev-a", pod_uid="pod-1")
    await agent.preparer.prepare(OLD)
    await agent.attacher.run_pod_sandbox(pod)
    assert has_link("net1", ns)
    return pod, ns


async def test_next_claim_takes_the_nic_back_from_a_pod_being_torn_down(
    net: Lab, tmp_path: Path, agent_for: dict[str, Agent]
) -> None:
    nic = net.new_nic(addresses=("198.51.100.31/24",))
    before = link_view(nic)
    agent = _agent(tmp_path, nic, agent_for)
    old_pod, ns = await _attached_to_old_pod(agent, net)

    # The old pod is force-deleted: its claim is gone and the scheduler hands dev-a to a new
    # claim at once, before the runtime has stopped the old sandbox.
    del agent.lookups.claims[("ns", "old")]
    agent.lookups.claims[("ns", "new")] = claim_doc(NEW, "dev-a", pod_uid="pod-2")
    await agent.preparer.prepare(NEW)

    assert link_view(nic) == before
    assert not has_link("net1", ns)
    assert agent.checkpoint.state.attachments == {}
    [plan] = agent.checkpoint.state.claims[NEW.uid].plans
    assert plan.host is not None and plan.host.addresses == ("198.51.100.31/24",)

    # The old sandbox's Stop and the old claim's unprepare arrive late: nothing left to do.
    await agent.releaser.stop_pod_sandbox(old_pod)
    await agent.preparer.unprepare(OLD)
    assert set(agent.checkpoint.state.claims) == {NEW.uid}
    assert link_view(nic) == before
    assert agent.events.posted == []


async def test_a_device_its_old_claim_still_holds_is_not_taken(
    net: Lab, tmp_path: Path, agent_for: dict[str, Agent]
) -> None:
    nic = net.new_nic()
    agent = _agent(tmp_path, nic, agent_for)
    _, ns = await _attached_to_old_pod(agent, net)
    agent.lookups.claims[("ns", "new")] = claim_doc(NEW, "dev-a", pod_uid="pod-2")

    with pytest.raises(ClaimError, match="device dev-a is still allocated to claim ns/old"):
        await agent.preparer.prepare(NEW)
    assert has_link("net1", ns)
    assert NEW.uid not in agent.checkpoint.state.claims


async def test_a_failed_recovery_keeps_the_record_and_retries(
    net: Lab, tmp_path: Path, agent_for: dict[str, Agent]
) -> None:
    """The NIC falls back to the host under its pod-side name (`fake_netns_death_physical`:
    what a physical NIC does when its netns dies) while a stranger took its old name, so the
    kernel refuses the rename home: a real fault, which lasts until the stranger goes."""
    nic = net.new_nic(addresses=("198.51.100.32/24",))
    before = link_view(nic)
    agent = _agent(tmp_path, nic, agent_for)
    pod_name = f"mnq{uid()}"  # lands in the shared host namespace: unique
    agent.lookups.networks["net-a"]["interfaceName"] = pod_name
    ns = net.new_netns()
    pod = PodInfo(uid="pod-1", namespace="ns", name="p1", netns=net.netns_path(ns))
    agent.lookups.claims[("ns", "old")] = claim_doc(OLD, "dev-a", pod_uid="pod-1")
    await agent.preparer.prepare(OLD)
    await agent.attacher.run_pod_sandbox(pod)
    await agent.attacher.settle()  # attachments are recorded after the hook answers
    [key] = agent.checkpoint.state.attachments
    agent.pins.unpin(key)  # as after an agent restart before Synchronize: nothing holds the netns
    fake_netns_death_physical(ns, pod_name)
    net.links.append(pod_name)
    stranger = f"mns{uid()}"
    sh(f"ip link add {stranger} type veth peer name {stranger}p")
    net.links.append(stranger)
    sh(f"ip link set {stranger} name {nic}")  # the stranger now bears the NIC's name

    await agent.releaser.remove_pod_sandbox(pod)

    assert key in agent.checkpoint.state.attachments  # the restore record is kept
    reopened = Checkpoint.open(tmp_path)
    assert key in reopened.state.attachments  # durably
    with pytest.raises(ClaimError, match="still attached"):
        await agent.preparer.unprepare(OLD)
    [(about, type_, reason, message)] = agent.events.posted
    assert (about, type_, reason) == ("ResourceClaim/ns/old", "Warning", "InterfaceRecoveryFailed")
    assert "dev-a" in message and "retries" in message

    sh(f"ip link del {nic}")  # the fault goes away: the next retry brings the NIC home
    await eventually(
        lambda: key not in agent.checkpoint.state.attachments, within=10, what="a retry"
    )
    assert link_view(nic) == before
    assert not has_link(pod_name)
    await agent.preparer.unprepare(OLD)
    assert agent.checkpoint.state.claims == {}
    assert len(agent.events.posted) == 1  # one Event per failing streak, not per retry

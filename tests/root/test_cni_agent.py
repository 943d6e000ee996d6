"""The agent's hooks with a `mode: cni` network: prepare, RunPodSandbox, resync CHECK, Stop.

Real CNI plugins (bridge + host-local from the node's plugin directory), real namespaces, the
agent's own objects wired as main.py wires them; only the apiserver reads are stand-ins.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from doubles import FakeDirectory, FakeLookups, FakeReservations, claim_doc
from netfixtures import Lab, has_link, lab, sh

from multinet.agent.attach import Attacher
from multinet.agent.contracts import PodInfo
from multinet.agent.movers import ModeMover
from multinet.agent.pins import NetnsPins
from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.agent.release import Releaser
from multinet.checkpoint import Checkpoint
from multinet.cni.mover import CniMover
from multinet.kube.events import EventType, ObjectRef
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.hoststate import read_host_state
from multinet.plans import ClaimRef
from multinet.status import DeviceOutcome

pytestmark = pytest.mark.root

CLAIM = ClaimRef(namespace="ns", name="c1", uid="uid-c1")


@dataclass
class Reports:
    outcomes: list[DeviceOutcome] = field(default_factory=list)

    def report(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        self.outcomes += outcomes


@dataclass
class RecordedEvents:
    """Collects what the agent would post as Events (an observer, not a fault)."""

    posted: list[tuple[str, str, str]] = field(default_factory=list)

    def post(self, about: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        self.posted.append((f"{about.kind}/{about.name}", reason, message))


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as it:
        yield it


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"mnbr{secrets.token_hex(3)}"
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)


@dataclass
class Agent:
    preparer: ClaimPreparer
    attacher: Attacher
    releaser: Releaser
    reports: Reports
    events: RecordedEvents
    mover: ModeMover
    pins: NetnsPins
    checkpoint: Checkpoint


@pytest.fixture
async def agent(tmp_path: Path, net: Lab, bridge: str) -> AsyncIterator[Agent]:
    uplink = net.new_nic()
    config = {
        "cniVersion": "1.0.0",
        "name": f"t{secrets.token_hex(3)}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "198.18.100.0/24"}]],
                    "dataDir": str(tmp_path / "leases"),
                },
            },
            {"type": "tuning", "mtu": 1400},
        ],
    }
    network = {"interfaces": {"names": [uplink]}, "interfaceName": "net1", "mode": "cni"}
    lookups = FakeLookups({"net-a": {**network, "cni": {"config": config}}})
    lookups.claims[("ns", "c1")] = claim_doc(CLAIM, "dev-a")
    checkpoint = Checkpoint.open(tmp_path)
    mover = ModeMover(NetlinkMover(), CniMover(cache_dir=tmp_path / "cni"))
    pins = NetnsPins(tmp_path / "pins")
    events = RecordedEvents()
    releaser = Releaser(store=checkpoint, mover=mover, pins=pins, events=events)
    preparer = ClaimPreparer(
        node_name="node-a",
        checkpoint=checkpoint,
        lookups=lookups,
        devices=FakeDirectory({"dev-a": DirectoryEntry(ifname=uplink, network="net-a")}),
        reservations=FakeReservations(),
        read_host=read_host_state,
    )
    reports = Reports()
    attacher = Attacher(store=checkpoint, mover=mover, reporter=reports, pins=pins, events=events)
    releaser.wait_for_records(attacher.settle)  # as main.py wires them
    made = Agent(preparer, attacher, releaser, reports, events, mover, pins, checkpoint)
    yield made
    await releaser.close()
    pins.prune([])  # every pin, recorded or not (a failed test may leave either)
    mover.close()


async def test_a_cni_claim_is_added_checked_and_deleted_by_the_agent(
    agent: Agent, net: Lab, bridge: str, tmp_path: Path
) -> None:
    ns = net.new_netns()
    pod = PodInfo(uid="pod-1", namespace="ns", name="p1", netns=net.netns_path(ns))
    await agent.preparer.prepare(CLAIM)
    await agent.attacher.run_pod_sandbox(pod)

    (link,) = json.loads(sh(f"ip -j -n {ns} addr show net1"))
    assert link["mtu"] == 1400
    (ready,) = agent.reports.outcomes
    assert ready.ready and ready.interface_name == "net1"
    assert ready.ips and ready.ips[0].startswith("198.18.100.")
    assert (tmp_path / "leases").exists()

    # The resync after an NRI reconnect CHECKs the chain: healthy, nothing said.
    await agent.attacher.synchronize([pod])
    assert agent.events.posted == [] and len(agent.reports.outcomes) == 1
    # Broken behind the agent's back: CHECK fails, a Warning Event on the claim names the plugin.
    sh(f"ip -n {ns} link del net1")
    await agent.attacher.synchronize([pod])
    ((about, reason, message),) = agent.events.posted
    assert (about, reason) == ("ResourceClaim/c1", "CNICheckFailed")
    assert "CNI plugin 'bridge' CHECK failed" in message
    assert len(agent.reports.outcomes) == 1  # the claim's Ready condition is left as it was

    await agent.releaser.stop_pod_sandbox(pod)
    assert not agent.checkpoint.state.attachments
    assert not list((tmp_path / "cni").glob("*.json"))  # DEL removed the cache record
    leases = [p.name for p in (tmp_path / "leases").rglob("198.18.100.*")]
    assert leases == []  # host-local released the address
    assert not has_link("net1", ns)

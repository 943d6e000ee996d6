"""The recovery rule of an attach recorded after its answer, proven with a real SIGKILL.

RunPodSandbox pins the pod's netns, moves the NIC and answers; the attachment is written after.
A child process runs the agent's real hooks on a real NIC and kills itself (MULTINET_CRASH_AT=
attach-moved) once the NIC is in the pod and nothing is recorded. A new agent on the same state
directory must then find the NIC through the pin: bring it home exactly when the pod is gone, or
attach it again (and record it) when the pod still runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from doubles import FakeDirectory, FakeLookups, FakeReservations, claim_doc
from netfixtures import Lab, has_link, lab, link_view, sh

from multinet.agent.attach import Attacher
from multinet.agent.contracts import PodInfo
from multinet.agent.pins import NetnsPins
from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.agent.release import Releaser
from multinet.checkpoint import Checkpoint
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.hoststate import read_host_state
from multinet.plans import Attachment, ClaimRef

pytestmark = pytest.mark.root

CLAIM = ClaimRef(namespace="ns", name="c1", uid="uid-c1")
HERE = Path(__file__).parent

# The child: the agent's hooks wired as in main.py, prepare then RunPodSandbox, crashing between
# the move and the record.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from doubles import FakeDirectory, FakeLookups, FakeReservations, claim_doc
    from multinet.agent.attach import Attacher
    from multinet.agent.contracts import PodInfo
    from multinet.agent.pins import NetnsPins
    from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
    from multinet.checkpoint import Checkpoint
    from multinet.netlink.executor import NetlinkMover
    from multinet.netlink.hoststate import read_host_state
    from multinet.plans import ClaimRef

    state, nic, netns = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    class Quiet:
        def report(self, pod, outcomes):
            pass

    async def main():
        claim = ClaimRef(namespace="ns", name="c1", uid="uid-c1")
        lookups = FakeLookups({"net-a": {"interfaces": {"names": [nic]}, "interfaceName": "net1"}})
        lookups.claims[("ns", "c1")] = claim_doc(claim, "dev-a")
        checkpoint = Checkpoint.open(state)
        preparer = ClaimPreparer(
            node_name="node-a", checkpoint=checkpoint, lookups=lookups,
            devices=FakeDirectory({"dev-a": DirectoryEntry(ifname=nic, network="net-a")}),
            reservations=FakeReservations(), read_host=read_host_state,
        )
        await preparer.prepare(claim)
        attacher = Attacher(
            store=checkpoint, mover=NetlinkMover(), reporter=Quiet(), pins=NetnsPins(state / "pins")
        )
        await attacher.run_pod_sandbox(PodInfo("pod-1", "ns", "p1", netns))

    asyncio.run(main())
    """
)


@pytest.fixture
def net() -> Iterator[Lab]:
    with lab() as it:
        yield it


def crash_mid_attach(state: Path, nic: str, netns: str) -> None:
    env = {
        **os.environ,
        "MULTINET_CRASH_AT": "attach-moved",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(state), nic, netns],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr  # SIGKILL, at the crash point


class Quiet:
    def report(self, pod: PodInfo, outcomes: object) -> None:
        pass


Agent = tuple[Releaser, Attacher, NetnsPins]


@pytest.fixture
async def restarted(tmp_path: Path) -> AsyncIterator[Callable[[], Agent]]:
    """What the next agent run builds on the same state directory (after the crash)."""
    made: list[tuple[Releaser, NetnsPins, NetlinkMover]] = []

    def build() -> Agent:
        checkpoint = Checkpoint.open(tmp_path)
        mover = NetlinkMover()
        pins = NetnsPins(tmp_path / "pins")
        releaser = Releaser(store=checkpoint, mover=mover, pins=pins)
        attacher = Attacher(store=checkpoint, mover=mover, reporter=Quiet(), pins=pins)
        releaser.wait_for_records(attacher.settle)
        made.append((releaser, pins, mover))
        return releaser, attacher, pins

    yield build
    for releaser, pins, mover in made:
        await releaser.close()
        pins.prune([])
        mover.close()


def unrecorded_after_crash(tmp_path: Path, net: Lab, nic: str) -> tuple[str, str]:
    ns = net.new_netns()
    crash_mid_attach(tmp_path, nic, net.netns_path(ns))
    assert has_link("net1", ns) and not has_link(nic)  # moved into the pod...
    state = Checkpoint.open(tmp_path).state
    assert state.attachments == {} and CLAIM.uid in state.claims  # ...and nothing recorded
    return ns, net.netns_path(ns)


async def test_the_pod_is_gone_the_nic_comes_home_exact_through_the_pin(
    tmp_path: Path, net: Lab, restarted: Callable[[], Agent]
) -> None:
    nic = net.new_nic(addresses=("198.51.100.41/24",))
    before = link_view(nic)
    ns, _ = unrecorded_after_crash(tmp_path, net, nic)
    sh(f"ip netns del {ns}")  # the runtime tears the sandbox down; only our pin holds the netns
    net.netns.remove(ns)

    releaser, attacher, pins = restarted()
    await releaser.adopt_unrecorded()
    await releaser.release_vanished([])  # Synchronize: no pod runs
    await attacher.synchronize([])
    assert link_view(nic) == before
    assert attacher_state(tmp_path) == {}
    assert len(pins) == 0


async def test_the_pod_still_runs_it_gets_its_nic_again_and_a_record(
    tmp_path: Path, net: Lab, restarted: Callable[[], Agent]
) -> None:
    nic = net.new_nic(addresses=("198.51.100.42/24",))
    ns, path = unrecorded_after_crash(tmp_path, net, nic)
    pod = PodInfo("pod-1", "ns", "p1", path)

    releaser, attacher, pins = restarted()
    await releaser.adopt_unrecorded()
    await releaser.release_vanished([pod])
    await attacher.synchronize([pod])
    await attacher.settle()
    assert has_link("net1", ns) and not has_link(nic)
    (att,) = attacher_state(tmp_path).values()
    assert (att.phase, att.pod_uid, att.netns) == ("attached", "pod-1", path)
    assert len(pins) == 1


def attacher_state(tmp_path: Path) -> dict[str, Attachment]:
    return dict(Checkpoint.open(tmp_path).state.attachments)


async def test_an_attach_whose_record_failed_is_still_brought_home_by_stop(
    tmp_path: Path, net: Lab
) -> None:
    """The write after the answer fails (the checkpoint's path is a directory for a moment: a real
    rename(2) failure); the pod runs unrecorded. Its StopPodSandbox adopts the pin and brings the
    NIC home."""
    nic = net.new_nic(addresses=("198.51.100.43/24",))
    before = link_view(nic)
    ns = net.new_netns()
    pod = PodInfo("pod-1", "ns", "p1", net.netns_path(ns))
    lookups = FakeLookups({"net-a": {"interfaces": {"names": [nic]}, "interfaceName": "net1"}})
    lookups.claims[("ns", "c1")] = claim_doc(CLAIM, "dev-a")
    checkpoint = Checkpoint.open(tmp_path)
    preparer = ClaimPreparer(
        node_name="node-a",
        checkpoint=checkpoint,
        lookups=lookups,
        devices=FakeDirectory({"dev-a": DirectoryEntry(ifname=nic, network="net-a")}),
        reservations=FakeReservations(),
        read_host=read_host_state,
    )
    mover = NetlinkMover()
    pins = NetnsPins(tmp_path / "pins")
    releaser = Releaser(store=checkpoint, mover=mover, pins=pins)
    attacher = Attacher(store=checkpoint, mover=mover, reporter=Quiet(), pins=pins)
    releaser.wait_for_records(attacher.settle)
    try:
        await preparer.prepare(CLAIM)
        checkpoint.path.unlink()
        (checkpoint.path / "blocker").mkdir(parents=True)  # rename over it now fails
        await attacher.run_pod_sandbox(pod)
        await attacher.settle()
        assert has_link("net1", ns) and checkpoint.state.attachments == {}
        (checkpoint.path / "blocker").rmdir()
        checkpoint.path.rmdir()  # the fault goes away

        await releaser.stop_pod_sandbox(pod)
        assert link_view(nic) == before
        assert checkpoint.state.attachments == {} and len(pins) == 0
    finally:
        await releaser.close()
        pins.prune([])
        mover.close()

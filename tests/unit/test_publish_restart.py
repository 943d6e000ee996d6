"""Host-device NICs inside pods stay advertised across an agent restart.

The publish loop keeps a device that is away (in a pod) in the slice with the facts it last saw
on the host. Those facts are recorded with the attachment in the checkpoint, so a new loop (a
restarted agent) that never saw the NIC on the host still publishes it, with the same
attributes and network binding, and drops it again once the attachment is gone.

Cases: restart while away keeps the device identical; a device with no record (a checkpoint
from before records existed) is missing as before, never invented; a record that no longer fits
the model is ignored, and the checkpoint still loads; the device is dropped once it is back.
"""

from __future__ import annotations

from pathlib import Path

from publishdoubles import EmptyPool, Snapshots, StaticNetworks

from multinet.agent.main import _devices_in_pods, _links_in_pods
from multinet.agent.publish import PublishLoop
from multinet.checkpoint import Checkpoint
from multinet.devices.facts import from_facts, to_facts
from multinet.devices.model import Device, Hardware, HostSnapshot, Link
from multinet.plans import Attachment, AttachPlan, ClaimRef, PreparedClaim

ETH0 = Link(index=2, ifname="eth0", mac="02:00:00:00:00:02", up=True, oper_state="up")
NIC = Link(
    index=7,
    ifname="ens5f1",
    mac="0c:42:a1:00:00:07",
    perm_mac="0c:42:a1:00:00:07",
    mtu=9000,
    up=True,
    oper_state="up",
    ipv4=("192.0.2.7/24",),
    hw=Hardware(
        pci_address="0000:3b:00.1", vendor="15b3", device="1017", driver="mlx5_core", speed=25000
    ),
)
HOME = HostSnapshot(links=(ETH0, NIC), default_route_ifindexes=frozenset({2}))
AWAY = HostSnapshot(links=(ETH0,), default_route_ifindexes=frozenset({2}))


def _agent(checkpoint: Checkpoint, snapshot: HostSnapshot) -> PublishLoop:
    """The publish loop wired to the checkpoint as the agent's main wires it."""
    return PublishLoop(
        inventory=Snapshots(snapshot),
        networks=StaticNetworks(),
        publisher=EmptyPool(),
        away=lambda: _devices_in_pods(checkpoint),
        away_links=lambda: _links_in_pods(checkpoint),
    )


def _plan(device: str) -> AttachPlan:
    return AttachPlan(
        claim=ClaimRef(namespace="ns", name="nic", uid="claim-1"),
        request="nic",
        pool="node-a",
        device=device,
        network="blue",
        mode="host-device",
        host_ifname=NIC.ifname,
        pod_ifname="net1",
    )


async def _attach(checkpoint: Checkpoint, plan: AttachPlan, link: Link | None) -> None:
    """What prepare and the attach hook leave in the checkpoint for a NIC now in a pod."""
    async with checkpoint.update() as draft:
        draft.claims[plan.claim.uid] = PreparedClaim(
            claim=plan.claim, pod_uids=("pod-1",), plans=(plan,)
        )
        draft.attachments[plan.key] = Attachment(
            plan_key=plan.key,
            pod_uid="pod-1",
            pod="ns/app",
            netns="/var/run/netns/cni-1",
            phase="attached",
            link=None if link is None else to_facts(link),
        )


def _published(loop: PublishLoop, snapshot: HostSnapshot) -> dict[str, Device]:
    return {d.name: d for d in loop.devices(snapshot).devices}


async def test_a_nic_in_a_pod_is_still_published_after_a_restart(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path)
    before = _agent(checkpoint, HOME)
    (nic,) = (d for d in _published(before, HOME).values() if d.ifname == NIC.ifname)
    assert nic.network == "blue"
    await _attach(checkpoint, _plan(nic.name), before.link_of(nic.name))

    restarted = _agent(Checkpoint.open(tmp_path), AWAY)  # a new process: it never saw the NIC
    plan = await restarted.publish_once()

    assert _published(restarted, AWAY)[nic.name] == nic  # same attributes, still bound to blue
    assert nic.name in {d["name"] for s in plan.to_create for d in s["spec"]["devices"]}


async def test_a_nic_without_a_record_is_not_invented(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path)
    (nic,) = (
        d for d in _published(_agent(checkpoint, HOME), HOME).values() if d.ifname == NIC.ifname
    )
    await _attach(checkpoint, _plan(nic.name), None)  # written before links were recorded

    restarted = _agent(Checkpoint.open(tmp_path), AWAY)
    assert nic.name not in _published(restarted, AWAY)


async def test_a_record_that_no_longer_fits_is_ignored_and_the_checkpoint_loads(
    tmp_path: Path,
) -> None:
    checkpoint = Checkpoint.open(tmp_path)
    plan = _plan("pci-0000-3b-00-1")
    await _attach(checkpoint, plan, NIC)
    async with checkpoint.update() as draft:
        stale = draft.attachments[plan.key]
        draft.attachments[plan.key] = stale.model_copy(update={"link": {"ifname": ["bad"]}})

    reopened = Checkpoint.open(tmp_path)
    assert plan.key in reopened.state.attachments  # not moved aside as corrupt
    assert from_facts({"ifname": ["bad"]}) is None
    assert "pci-0000-3b-00-1" not in _published(_agent(reopened, AWAY), AWAY)


async def test_the_record_is_dropped_once_the_nic_is_back(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path)
    before = _agent(checkpoint, HOME)
    (nic,) = (d for d in _published(before, HOME).values() if d.ifname == NIC.ifname)
    plan = _plan(nic.name)
    await _attach(checkpoint, plan, before.link_of(nic.name))
    after_restart = Checkpoint.open(tmp_path)
    restarted = _agent(after_restart, AWAY)
    assert nic.name in _published(restarted, AWAY)

    await after_restart.forget([plan.key])  # the pod went away, the NIC is back on the host
    assert _published(restarted, HOME)[nic.name] == nic
    unplugged = _published(restarted, AWAY)  # and if it later leaves the host, it is gone
    assert nic.name not in unplugged

"""A claim status the apiserver refuses is a Warning Event on the claim, in the apiserver's
words; the other claims of the pod and its annotation are still written."""

from __future__ import annotations

import asyncio
import json

from multinet.agent.contracts import PodInfo
from multinet.agent.report import StatusReporter
from multinet.kube.errors import ApiError
from multinet.kube.events import ObjectRef
from multinet.plans import AttachPlan, ClaimRef
from multinet.status import DeviceOutcome

POD = PodInfo(uid="pod-1", namespace="ns", name="p1", netns="/var/run/netns/pod-1")
REFUSED = ClaimRef(namespace="ns", name="refused", uid="uid-r")
FINE = ClaimRef(namespace="ns", name="fine", uid="uid-f")
MESSAGE = (
    'ResourceClaim.resource.k8s.io "refused" is invalid: status.allocation: Forbidden: changing '
    "status.allocation or status.reservedFor requires resourceclaims/binding"
)


def outcome(claim: ClaimRef) -> DeviceOutcome:
    plan = AttachPlan(
        claim=claim,
        request="nic",
        pool="node-a",
        device=f"dev-{claim.name}",
        network="net-a",
        mode="host-device",
        host_ifname=f"eth-{claim.name}",
        pod_ifname="net1",
    )
    return DeviceOutcome(plan=plan, ready=True, interface_name="net1")


class RefusingWriterForTests:
    """Refuses the status of REFUSED as the apiserver did (after the real writer's retries)."""

    def __init__(self) -> None:
        self.written: list[str] = []

    async def write_claim(self, claim: ClaimRef, outcomes: list[DeviceOutcome]) -> None:
        if claim == REFUSED:
            body = json.dumps({"kind": "Status", "message": MESSAGE, "code": 422})
            raise ApiError("reporting", 422, reason="Unprocessable Entity", body=body)
        self.written.append(f"claim {claim.name}")

    async def annotate_pod(self, namespace: str, name: str, outcomes: list[DeviceOutcome]) -> None:
        self.written.append(f"pod {namespace}/{name}")


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[ObjectRef, str, str, str]] = []

    def post(self, about: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.posted.append((about, type_, reason, message))


async def test_a_refused_claim_status_is_a_warning_event_on_the_claim() -> None:
    writer, events = RefusingWriterForTests(), Events()
    reporter = StatusReporter(writer, events=events)  # type: ignore[arg-type]
    running = asyncio.create_task(reporter.run())
    reporter.report(POD, [outcome(REFUSED), outcome(FINE)])
    await asyncio.wait_for(reporter._queue.join(), 5)
    running.cancel()
    assert writer.written == ["claim fine", "pod ns/p1"]
    [(about, type_, reason, message)] = events.posted
    assert (about.kind, about.namespace, about.name, type_, reason) == (
        "ResourceClaim",
        "ns",
        "refused",
        "Warning",
        "StatusNotWritten",
    )
    assert message == (
        "status.devices for pod ns/p1 not written (the interface is attached): "
        f"422 Unprocessable Entity: {MESSAGE}"
    )

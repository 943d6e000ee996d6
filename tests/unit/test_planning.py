"""The pure part of prepare: whom addresses are reserved for, and unique pod-side names.

(The plan assembly itself is exercised end to end by tests/root/test_prepare_plans.py.)
"""

from __future__ import annotations

import pytest

from multinet import planning
from multinet.api.allocation import Allocation, PodRef, Result
from multinet.errors import ConfigError
from multinet.plans import AttachPlan, ClaimRef

CLAIM = ClaimRef(namespace="ns", name="c", uid="u-1")


def _plan(device: str, request: str, pod_ifname: str) -> AttachPlan:
    return AttachPlan(
        claim=CLAIM,
        request=request,
        pool="node-a",
        device=device,
        network="blue",
        mode="host-device",
        host_ifname=device,
        pod_ifname=pod_ifname,
    )


def test_the_holder_is_the_first_pod_of_the_claim_and_the_request_without_subrequest() -> None:
    result = Result(request="nic/fast", pool="node-a", device="eth1", share_id=None)
    pods = (PodRef("app", "p-1"), PodRef("other", "p-2"))
    holder = planning.holder(CLAIM, Allocation((result,), (), (), pods), result, "node-a")
    assert (holder.request, holder.device, holder.node) == ("nic", "eth1", "node-a")
    assert (holder.pod_name, holder.pod_uid) == ("app", "p-1")
    alone = planning.holder(CLAIM, Allocation((result,), (), (), ()), result, "node-a")
    assert alone.pod_name is None and alone.pod_uid is None


def test_two_devices_of_a_claim_cannot_share_a_pod_side_name() -> None:
    planning.check_pod_ifnames(CLAIM, [_plan("eth1", "a", "net1"), _plan("eth2", "b", "net2")])
    with pytest.raises(ConfigError, match="net1 is already taken by device eth1 of request a"):
        planning.check_pod_ifnames(CLAIM, [_plan("eth1", "a", "net1"), _plan("eth2", "b", "net1")])

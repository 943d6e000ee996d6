"""End to end: a NIC inside a pod stays in the node's ResourceSlice across an agent restart.

A host-device NIC that moved into a pod is allocated, so the pool must not flap: after the agent
is SIGKILLed and restarted (it never sees the NIC on the host), the device is still published,
with the same attributes and its podNetwork binding, and once the pod is deleted the NIC is back
on the host and in the slice as before.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from helpers import wait_for
from localcluster import Cluster
from localcluster import multinet as deployment
from support import (
    apply,
    claim,
    delete_pod,
    host_link,
    pod,
    podnetwork,
    published_device,
    wait_ready_network,
    wait_running,
)

pytestmark = [pytest.mark.cluster, pytest.mark.root]

DRIVER = "multinet.dev"
POD_NETWORK = "multinetwork.networking.k8s.io/podNetwork"


def _bound_to(cluster: Cluster, ifname: str, network: str) -> dict[str, Any] | None:
    device = published_device(cluster, ifname)
    if device and device["attributes"].get(POD_NETWORK) == {"string": network}:
        return device
    return None


@pytest.fixture
def network(multinet: Cluster) -> Any:
    name = f"e2e-{secrets.token_hex(3)}"
    yield name
    multinet.kubectl("delete", "podnetwork", name, "--ignore-not-found", "--wait=false")


def test_a_nic_in_a_pod_stays_published_across_an_agent_restart(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network: str
) -> None:
    nic = make_nic(prefix="e2r", addresses=("198.51.100.41/24",))
    before = host_link(nic.name)
    apply(multinet, podnetwork(network, interfaces={"names": [nic.name]}, interfaceName="net1"))
    wait_ready_network(multinet, network)
    on_host = wait_for(
        lambda: _bound_to(multinet, nic.name, network),
        timeout=30,
        what=f"{nic.name} published with podNetwork {network}",
    )

    apply(multinet, claim(e2e_namespace, "nic", network), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")
    assert host_link(nic.name) is None  # the NIC is in the pod
    assert published_device(multinet, nic.name) == on_host  # and still advertised, unchanged

    deployment.restart_agent(multinet, kill=True)  # returns once the new agent has published

    after = wait_for(
        lambda: _bound_to(multinet, nic.name, network),
        timeout=5,
        what=f"{nic.name} (in a pod) still published with podNetwork {network} after the restart",
    )
    assert after == on_host
    assert host_link(nic.name) is None

    delete_pod(multinet, e2e_namespace, "app")
    back = wait_for(lambda: host_link(nic.name), timeout=30, what=f"{nic.name} back on the host")
    assert back == before
    wait_for(
        lambda: published_device(multinet, nic.name) == on_host,
        timeout=30,
        what=f"{nic.name} published as before once it is back",
    )

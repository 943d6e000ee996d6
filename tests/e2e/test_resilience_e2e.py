"""The agent rides out restarts of the components it talks to.

Cases: kube-apiserver restarted (the agent's watches and slice publisher recover without an
agent restart: a NIC added and a network disabled afterwards still reach the slice); containerd
restarted while a pod holds a NIC (the NRI plugin reconnects; containerd then sends no
StopPodSandbox for the recovered sandbox, and the agent's hold on the pod netns still brings
the NIC back intact when the pod is deleted).
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

ATTRIBUTE = "multinetwork.networking.k8s.io/podNetwork"


def _bound_network(cluster: Cluster, ifname: str) -> str | None:
    """The podNetwork attribute of the device for `ifname` in this node's slices, or None."""
    device = published_device(cluster, ifname)
    value = (device or {}).get("attributes", {}).get(ATTRIBUTE, {}).get("string")
    return str(value) if value else None


@pytest.fixture
def network(multinet: Cluster) -> Any:
    name = f"e2r-{secrets.token_hex(3)}"
    yield name
    multinet.kubectl("delete", "podnetwork", name, "--ignore-not-found", "--wait=false")


def test_slices_follow_changes_after_an_apiserver_restart(
    multinet: Cluster, make_nic: Any, network: str
) -> None:
    first = make_nic(prefix="e2ra")
    apply(multinet, podnetwork(network, interfaces={"names": ["e2ra*"]}))
    wait_ready_network(multinet, network)
    wait_for(lambda: _bound_network(multinet, first.name) == network, timeout=30, what="bound")

    try:
        multinet.restart_apiserver()
    finally:
        # The controller steps down when it cannot renew its Lease for 10 s (as Kubernetes'
        # own controllers do) and exits for its Deployment to restart it; here nothing
        # supervises the host process, so put it back like `make cluster-up` would.
        deployment.deploy(multinet, say=lambda _: None)

    second = make_nic(prefix="e2ra")
    wait_for(
        lambda: _bound_network(multinet, second.name) == network,
        timeout=60,
        what="a NIC added after the apiserver restart to reach the slice, bound",
    )
    multinet.kubectl(
        "patch", "podnetwork", network, "--type=merge", "-p", '{"spec":{"enabled":false}}'
    )
    wait_for(
        lambda: _bound_network(multinet, first.name) is None,
        timeout=60,
        what="the disabled network's attribute to leave the slice",
    )
    ready, body = deployment.agent_ready()
    assert ready, body


def test_nic_comes_back_after_a_containerd_restart(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network: str
) -> None:
    nic = make_nic(prefix="e2rc", addresses=("198.51.100.71/24",))
    before = host_link(nic.name)
    apply(multinet, podnetwork(network, interfaces={"names": [nic.name]}, interfaceName="net1"))
    wait_ready_network(multinet, network)
    apply(multinet, claim(e2e_namespace, "nic", network), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")

    multinet.restart_containerd()
    wait_for(
        lambda: deployment.agent_ready()[0],
        timeout=30,
        what="the agent's NRI plugin to reconnect (readyz)",
    )

    delete_pod(multinet, e2e_namespace, "app")
    assert wait_for(lambda: host_link(nic.name), timeout=30, what="the NIC back") == before

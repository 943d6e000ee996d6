"""Churn on the local cluster: a pod holding a host-device NIC is force-deleted and its
replacement, with a new claim from the same template, starts at once on the same NIC.

Cases: three rounds of force-delete and immediate replacement: every replacement runs with the
NIC inside and gets no Warning Event but the scheduler's while the old claim is still allocated
(the failure mode this guards against was FailedPrepareDynamicResources,
"interface ... is not on the host", and a kubelet back-off of 12-16 s); after the last pod is
deleted the NIC is home and exactly as it was.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from helpers import wait_for
from localcluster import Cluster
from support import (
    apply,
    claim_template,
    events_for,
    host_link,
    pod_with_template,
    podnetwork,
    wait_ready_network,
    wait_running,
)

pytestmark = [pytest.mark.cluster, pytest.mark.root]

ROUNDS = 3


def test_a_force_deleted_pods_nic_serves_its_replacement_at_once(
    multinet: Cluster, e2e_namespace: str, make_nic: Any
) -> None:
    nic = make_nic(prefix="churn", addresses=("198.51.100.41/24",))
    before = host_link(nic.name)
    network = f"churn-{secrets.token_hex(3)}"
    apply(multinet, podnetwork(network, interfaces={"names": [nic.name]}, interfaceName="net1"))
    try:
        wait_ready_network(multinet, network)
        apply(multinet, claim_template(e2e_namespace, "nic", network))
        apply(multinet, pod_with_template(e2e_namespace, "app-0", "nic"))
        wait_running(multinet, e2e_namespace, "app-0")
        for n in range(1, ROUNDS + 1):
            old, new = f"app-{n - 1}", f"app-{n}"
            multinet.kubectl(
                "delete", "pod", old, "-n", e2e_namespace, "--grace-period=0", "--force"
            )
            apply(multinet, pod_with_template(e2e_namespace, new, "nic"))
            wait_running(multinet, e2e_namespace, new, timeout=60)
            shown = multinet.kubectl(
                "exec", "-n", e2e_namespace, new, "--", "ip", "addr", "show", "net1"
            ).stdout
            assert "198.51.100.41/24" in shown, shown
            # The scheduler may try before the old claim is deallocated ("cannot allocate all
            # claims"): that wait is Kubernetes', not ours. Nothing else may warn.
            warned = events_for(multinet, e2e_namespace, "Pod", new, type_="Warning")
            assert [w for w in warned if not w.startswith("FailedScheduling:")] == []
        multinet.kubectl("delete", "pod", f"app-{ROUNDS}", "-n", e2e_namespace, "--wait=true")
        after = wait_for(
            lambda: host_link(nic.name), timeout=30, what=f"{nic.name} back on the host"
        )
        assert after == before
        wait_for(
            lambda: (
                not json.loads(
                    multinet.kubectl(
                        "get", "resourceclaims", "-n", e2e_namespace, "-o", "json"
                    ).stdout
                )["items"]
            ),
            timeout=60,
            what="every generated claim deleted",
        )
    finally:
        multinet.kubectl("delete", "podnetwork", network, "--ignore-not-found", "--wait=false")

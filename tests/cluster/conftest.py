"""Fixtures for tests against the local cluster that need multinet's own control plane.

``multinet_controller``: the PodNetwork CRD, the controller's namespace and RBAC applied with
kubectl, and ``multinet controller`` running as a host process under its *own* ServiceAccount
(``multinet-system/multinet-controller``), never as admin. A controller already running under the
managed process name (``make cluster-up`` starts one) is reused rather than doubled: two would only
take turns on the leader Lease.
"""

from __future__ import annotations

import json
import pathlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import wait_for
from localcluster import Cluster
from localcluster import multinet as deployment

DEPLOY = pathlib.Path(__file__).parents[2] / "deploy" / "base"
CONTROLLER_PROCESS = "multinet-controller"
CONTROLLER_MANIFESTS = ("namespace.yaml", "crd-podnetwork.yaml", "controller-rbac.yaml")


@dataclass(frozen=True)
class ControllerProcess:
    kubeconfig: pathlib.Path
    started_here: bool
    log: pathlib.Path


def apply_controller_manifests(cluster: Cluster) -> None:
    for name in CONTROLLER_MANIFESTS:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(DEPLOY / name))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/podnetworks.multinetwork.networking.k8s.io",
    )


def _wait_until_reconciling(cluster: Cluster) -> None:
    """A probe PodNetwork turns Ready only once a controller holds the Lease and works."""
    name = f"probe-{secrets.token_hex(3)}"
    probe = {
        "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
        "kind": "PodNetwork",
        "metadata": {"name": name},
        "spec": {"provider": "multinet.dev", "parameters": {"interfaces": {"names": ["probe0"]}}},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(probe))
    try:
        wait_for(
            lambda: (
                "True"
                in cluster.kubectl(
                    "get",
                    "pnw",
                    name,
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                ).stdout
            ),
            timeout=90,
            what="the controller to reconcile a probe PodNetwork (leader Lease acquired)",
        )
    finally:
        cluster.kubectl("delete", "pnw", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def multinet_controller(cluster: Cluster) -> Iterator[ControllerProcess]:
    """The controller, running with its own RBAC identity and leading (holding the Lease)."""
    apply_controller_manifests(cluster)
    log = cluster.log_dir / f"{CONTROLLER_PROCESS}.log"
    started = False
    if cluster.processes.alive(CONTROLLER_PROCESS):
        kubeconfig = cluster.service_account_kubeconfig("multinet-system", "multinet-controller")
    else:
        # Started exactly as `make cluster-up` starts it, checking deletions more often.
        kubeconfig = deployment.start_controller(
            cluster, "--recheck-interval=2", "--log-level=debug"
        )
        started = True
    _wait_until_reconciling(cluster)
    try:
        yield ControllerProcess(kubeconfig, started, log)
    finally:
        if started:
            cluster.stop_process(CONTROLLER_PROCESS)

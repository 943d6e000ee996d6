"""deploy/ against the real apiserver, and the identities multinet runs with.

- deploy/base and deploy/samples render with `kubectl kustomize` and every object passes a
  server-side dry run (schema, field validation, admission) on the local cluster;
- the render puts a namespace on exactly the kinds the apiserver says are namespaced;
- the RBAC objects in the cluster are the rendered ones, and the controller and node agent
  processes run under the rendered service accounts;
- least privilege, with the node agent's REAL identity (the node-bound token localcluster gives
  the agent process): no Secrets, no other node's ResourceSlices and none of another driver (the
  admission policy's message), its own node's slices yes, IP reservations of its own node only
  (create and delete), no deleting nodes or pods; the controller reads no Secrets either.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import manifests
import pytest
import support
import yaml
from localcluster import Cluster
from localcluster import multinet as deployment
from localcluster.layout import bin_dir

pytestmark = [pytest.mark.cluster]

Obj = dict[str, Any]
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
POLICY = "multinet-node-agent-own-slices"


def kubectl(
    kubeconfig: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl as whoever ``kubeconfig`` names; never raises (tests look at the outcome)."""
    return subprocess.run(
        [str(bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def kustomize(directory: Path) -> list[Obj]:
    out = subprocess.run(
        [str(bin_dir() / "kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def dry_run(cluster: Cluster, objects: list[Obj], *namespace: str) -> list[str]:
    """Server-side apply dry run of ``objects`` as admin; the names the apiserver accepted."""
    proc = kubectl(
        cluster.kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--validate=strict",
        "-o",
        "name",
        *namespace,
        "-f",
        "-",
        input=yaml.safe_dump_all(objects),
    )
    assert proc.returncode == 0, proc.stderr
    return sorted(proc.stdout.split())


def names(objects: list[Obj]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


def accepted(lines: list[str]) -> list[str]:
    return sorted(line.split("/", 1)[1] for line in lines)


@pytest.fixture(scope="module")
def agent_kubeconfig(multinet: Cluster) -> Path:
    """The node agent's identity exactly as localcluster.multinet starts the agent with it."""
    return multinet.service_account_kubeconfig(
        deployment.NAMESPACE, deployment.AGENT, bound_node=multinet.node_name
    )


@pytest.fixture(scope="module")
def controller_kubeconfig(multinet: Cluster) -> Path:
    return multinet.service_account_kubeconfig(deployment.NAMESPACE, deployment.CONTROLLER)


# --- render + dry run -------------------------------------------------------------------------
def test_kustomize_render_of_the_base_is_what_the_unit_tests_check() -> None:
    def key(o: Obj) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    real = sorted(kustomize(manifests.BASE), key=key)
    ours = sorted(manifests.render_base(), key=key)
    assert [key(o) for o in real] == [key(o) for o in ours]
    assert real == ours


def test_every_object_of_the_base_passes_a_server_side_dry_run(multinet: Cluster) -> None:
    objects = kustomize(manifests.BASE)
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        *RBAC_KINDS,
        "Deployment",
        "DaemonSet",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= kinds
    assert accepted(dry_run(multinet, objects)) == names(objects)


def test_every_sample_passes_a_server_side_dry_run(multinet: Cluster, e2e_namespace: str) -> None:
    objects = kustomize(manifests.SAMPLES)
    assert {o["kind"] for o in objects} == {
        "PodNetwork",
        "ResourceClaim",
        "ResourceClaimTemplate",
        "Pod",
    }
    assert accepted(dry_run(multinet, objects, "-n", e2e_namespace)) == names(objects)


def test_a_bad_object_fails_the_dry_run(multinet: Cluster) -> None:
    # The check above can fail: an unknown field in a PodNetwork spec is rejected.
    bad = {
        "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
        "kind": "PodNetwork",
        "metadata": {"name": f"mn-bad-{secrets.token_hex(3)}"},
        "spec": {"provider": "multinet.dev", "enabeld": True},
    }
    proc = kubectl(
        multinet.kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=json.dumps(bad),
    )
    assert proc.returncode != 0 and "enabeld" in proc.stderr, proc.stderr


def test_namespaces_exactly_on_the_kinds_the_apiserver_scopes_to_a_namespace(
    multinet: Cluster,
) -> None:
    out = kubectl(multinet.kubeconfig, "api-resources", "--no-headers").stdout
    namespaced = {}
    for line in out.splitlines():
        *_, api_version, is_namespaced, kind = line.split()
        namespaced[(api_version.split("/")[0] if "/" in api_version else "", kind)] = (
            is_namespaced == "true"
        )
    for obj in kustomize(manifests.BASE):
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if namespaced[(group, obj["kind"])]:
            assert obj["metadata"].get("namespace"), f"{where} has no namespace"
        else:
            assert "namespace" not in obj["metadata"], f"{where} is cluster-scoped"


# --- the RBAC the processes use ---------------------------------------------------------------
def test_rbac_in_the_cluster_is_the_rendered_rbac(multinet: Cluster) -> None:
    for obj in kustomize(manifests.BASE):
        if obj["kind"] not in RBAC_KINDS:
            continue
        ns = obj["metadata"].get("namespace")
        live = json.loads(
            multinet.kubectl(
                "get",
                obj["kind"],
                obj["metadata"]["name"],
                *(["-n", ns] if ns else []),
                "-o",
                "json",
            ).stdout
        )
        fields = ("rules",) if obj["kind"].endswith("Role") else ("roleRef", "subjects")
        for field in fields:
            assert live.get(field) == obj.get(field), f"{obj['kind']} {obj['metadata']['name']}"


def _cmdline(cluster: Cluster, name: str) -> list[str]:
    pid = cluster.processes.pid(name)
    assert pid is not None, f"{name} is not running"
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_processes_run_as_the_rendered_service_accounts(
    multinet: Cluster, agent_kubeconfig: Path, controller_kubeconfig: Path
) -> None:
    objects = kustomize(manifests.BASE)
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    for workload, process, kubeconfig in (
        ("DaemonSet", deployment.AGENT, agent_kubeconfig),
        ("Deployment", deployment.CONTROLLER, controller_kubeconfig),
    ):
        obj = manifests.one(objects, workload)
        account = obj["spec"]["template"]["spec"]["serviceAccountName"]
        assert (obj["metadata"]["namespace"], account) in accounts
        assert (deployment.NAMESPACE, process) == (obj["metadata"]["namespace"], account)
        argv = _cmdline(multinet, process)
        assert argv[argv.index("--kubeconfig") + 1] == str(kubeconfig)
        who = json.loads(kubectl(kubeconfig, "auth", "whoami", "-o", "json").stdout)["status"]
        assert (
            who["userInfo"]["username"] == f"system:serviceaccount:{deployment.NAMESPACE}:{account}"
        )
    agent_who = json.loads(kubectl(agent_kubeconfig, "auth", "whoami", "-o", "json").stdout)
    extra = agent_who["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/node-name"] == [multinet.node_name]


# --- least privilege --------------------------------------------------------------------------
def can_i(kubeconfig: Path, *args: str) -> bool:
    proc = kubectl(kubeconfig, "auth", "can-i", *args)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


@pytest.mark.parametrize("who", ["agent", "controller"])
def test_neither_identity_can_read_secrets(
    who: str, agent_kubeconfig: Path, controller_kubeconfig: Path
) -> None:
    kubeconfig = agent_kubeconfig if who == "agent" else controller_kubeconfig
    for verb in ("get", "list", "watch"):
        assert not can_i(kubeconfig, verb, "secrets", "--all-namespaces"), verb
    for args in (("get", "secrets", "-A"), ("get", "secret", "any", "-n", deployment.NAMESPACE)):
        proc = kubectl(kubeconfig, *args)
        assert proc.returncode != 0 and "Forbidden" in proc.stderr, proc.stderr
        assert 'cannot list resource "secrets"' in proc.stderr or (
            'cannot get resource "secrets"' in proc.stderr
        )


def _slice(node: str) -> Obj:
    name = f"mn-deploy-test-{secrets.token_hex(3)}"
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": "multinet.dev",
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [],
        },
    }


def test_agent_cannot_create_another_nodes_slice(multinet: Cluster, agent_kubeconfig: Path) -> None:
    other = f"mn-no-such-node-{secrets.token_hex(3)}"
    body = _slice(other)
    try:
        proc = kubectl(agent_kubeconfig, "create", "-f", "-", input=json.dumps(body))
        assert proc.returncode != 0, "the agent created another node's ResourceSlice"
        assert f"ValidatingAdmissionPolicy '{POLICY}'" in proc.stderr, proc.stderr
        assert (
            f"the multinet node agent of node {multinet.node_name} "
            "may only write ResourceSlices of its own node"
        ) in proc.stderr
        assert "forbidden" in proc.stderr.lower()
    finally:
        multinet.kubectl("delete", "resourceslice", body["metadata"]["name"], check=False)


def test_agent_cannot_delete_another_nodes_slice(multinet: Cluster, agent_kubeconfig: Path) -> None:
    body = _slice(f"mn-no-such-node-{secrets.token_hex(3)}")
    name = body["metadata"]["name"]
    multinet.kubectl("create", "-f", "-", input=json.dumps(body))  # as admin
    try:
        proc = kubectl(agent_kubeconfig, "delete", "resourceslice", name)
        assert proc.returncode != 0, "the agent deleted another node's ResourceSlice"
        assert "may only write ResourceSlices of its own node" in proc.stderr, proc.stderr
        assert multinet.kubectl("get", "resourceslice", name, check=False).returncode == 0
    finally:
        multinet.kubectl("delete", "resourceslice", name, check=False)


def test_agent_cannot_write_a_slice_of_another_driver(
    multinet: Cluster, agent_kubeconfig: Path
) -> None:
    body = _slice(multinet.node_name)
    body["spec"]["driver"] = "dra.net"
    proc = kubectl(
        agent_kubeconfig, "create", "--dry-run=server", "-f", "-", input=json.dumps(body)
    )
    assert proc.returncode != 0, "the agent created a ResourceSlice of another driver"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in proc.stderr, proc.stderr
    assert "may only write ResourceSlices of driver multinet.dev" in proc.stderr


RESERVATION_POLICY = "multinet-node-agent-own-reservations"


def _reservation(node: str) -> Obj:
    return {
        "apiVersion": "multinet.dev/v1alpha1",
        "kind": "IPReservation",
        "metadata": {"name": f"198-51-100-{secrets.randbelow(200) + 10}"},
        "spec": {
            "network": f"mn-deploy-test-{secrets.token_hex(3)}",
            "address": "198.51.100.9",
            "claim": {"namespace": "ns", "name": "c", "uid": secrets.token_hex(8)},
            "node": node,
        },
    }


def test_agent_writes_ip_reservations_of_its_own_node_only(
    multinet: Cluster, agent_kubeconfig: Path
) -> None:
    own = _reservation(multinet.node_name)
    proc = kubectl(agent_kubeconfig, "create", "--dry-run=server", "-f", "-", input=json.dumps(own))
    assert proc.returncode == 0, proc.stderr

    other = _reservation(f"mn-no-such-node-{secrets.token_hex(3)}")
    proc = kubectl(
        agent_kubeconfig, "create", "--dry-run=server", "-f", "-", input=json.dumps(other)
    )
    assert proc.returncode != 0, "the agent reserved an address for another node"
    assert f"ValidatingAdmissionPolicy '{RESERVATION_POLICY}'" in proc.stderr, proc.stderr
    assert (
        f"the multinet node agent of node {multinet.node_name} "
        "may only write IP reservations of its own node"
    ) in proc.stderr

    name = other["metadata"]["name"]
    multinet.kubectl("create", "-f", "-", input=json.dumps(other))  # as admin
    try:
        proc = kubectl(agent_kubeconfig, "delete", "ipreservation", name)
        assert proc.returncode != 0, "the agent deleted another node's IP reservation"
        assert "may only write IP reservations of its own node" in proc.stderr, proc.stderr
        assert multinet.kubectl("get", "ipreservation", name, check=False).returncode == 0
    finally:
        multinet.kubectl("delete", "ipreservation", name, check=False)


def test_agent_can_write_its_own_nodes_slice(multinet: Cluster, agent_kubeconfig: Path) -> None:
    body = _slice(multinet.node_name)
    proc = kubectl(
        agent_kubeconfig,
        "create",
        "--dry-run=server",
        "-o",
        "name",
        "-f",
        "-",
        input=json.dumps(body),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"resourceslice.resource.k8s.io/{body['metadata']['name']}"
    # ... and what it needs for claims, with nothing beyond its driver name.
    assert can_i(agent_kubeconfig, "get", "resourceclaims.resource.k8s.io", "-A")
    driver = ("resourceclaims.resource.k8s.io/multinet.dev", "--subresource=driver", "-A")
    other = ("resourceclaims.resource.k8s.io/other.dev", "--subresource=driver", "-A")
    assert can_i(agent_kubeconfig, "associated-node:patch", *driver)
    assert not can_i(agent_kubeconfig, "associated-node:patch", *other)


def test_agent_cannot_delete_nodes_or_pods(multinet: Cluster, agent_kubeconfig: Path) -> None:
    assert not can_i(agent_kubeconfig, "delete", "nodes")
    assert not can_i(agent_kubeconfig, "delete", "pods", "-A")
    for args in (
        ("delete", "node", multinet.node_name),
        ("delete", "pod", "mn-any", "-n", "kube-system"),
    ):
        # A server-side dry run: were RBAC wrong, nothing would still be deleted.
        proc = kubectl(agent_kubeconfig, *args, "--dry-run=server")
        assert proc.returncode != 0 and "Forbidden" in proc.stderr, proc.stderr
    assert multinet.node_is_ready()


def test_agent_may_annotate_only_pods_on_its_own_node_and_never_relabel_them(
    multinet: Cluster, agent_kubeconfig: Path, e2e_namespace: str
) -> None:
    here = support.pod(e2e_namespace, "on-this-node", None)
    here["spec"]["nodeName"] = multinet.node_name
    nowhere = support.pod(e2e_namespace, "unscheduled", None)
    nowhere["spec"]["nodeSelector"] = {"multinet.dev/no-such-node": "true"}
    support.apply(multinet, here, nowhere)

    def as_agent(*args: str) -> subprocess.CompletedProcess[str]:
        return kubectl(agent_kubeconfig, "-n", e2e_namespace, *args, "--dry-run=server")

    ok = as_agent("annotate", "pod", "on-this-node", "k8s.v1.cni.cncf.io/network-status=[]")
    assert ok.returncode == 0, ok.stderr
    elsewhere = as_agent("annotate", "pod", "unscheduled", "k8s.v1.cni.cncf.io/network-status=[]")
    assert elsewhere.returncode != 0
    assert "ValidatingAdmissionPolicy 'multinet-node-agent-own-pods'" in elsewhere.stderr
    assert (
        f"the multinet node agent of node {multinet.node_name} may only update pods on its own node"
    ) in elsewhere.stderr
    relabel = as_agent("label", "pod", "on-this-node", "app=hijacked")
    assert relabel.returncode != 0
    assert "the multinet node agent may not change pod labels" in relabel.stderr

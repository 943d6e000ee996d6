"""deploy/base as it runs: the agent DaemonSet's pods, their identity, their privileges, and their
life (a deleted agent pod and a rolling update keep every attached NIC and prepared claim)."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import support
from helpers import wait_for
from lab import LabNics
from localcluster import Cluster, configs
from localcluster import multinet as deployment
from localcluster.components import binary
from localcluster.layout import MULTINET_IMAGE

pytestmark = [pytest.mark.cluster, pytest.mark.root]

AGENT_LABEL = "app.kubernetes.io/name=multinet-node-agent"


def _agent_pods(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """{node name: the agent pod on it}."""
    out = cluster.kubectl(
        "get", "pods", "-n", deployment.NAMESPACE, "-l", AGENT_LABEL, "-o", "json"
    ).stdout
    return {p["spec"]["nodeName"]: p for p in json.loads(out)["items"]}


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _within(want: Any, got: Any) -> bool:
    """`want` is `got` with some keys of its mappings left out (the defaults the API adds)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and _within(v, got[k]) for k, v in want.items()
        )
    return bool(want == got)


def _rendered_agent() -> dict[str, Any]:
    objects = deployment.render()
    (ds,) = [o for o in objects if o["kind"] == "DaemonSet"]
    return dict(ds)


def test_every_node_runs_a_ready_agent_pod_with_the_privileges_deploy_base_gives_and_no_more(
    nodes3: Cluster,
) -> None:
    pods = _agent_pods(nodes3)
    assert sorted(pods) == sorted(nodes3.node_names)
    want = _rendered_agent()["spec"]["template"]["spec"]
    (want_container,) = want["containers"]
    for node, pod in pods.items():
        assert _ready(pod), f"agent on {node} is not Ready: {pod['status']}"
        spec = pod["spec"]
        (container,) = spec["containers"]
        assert container["securityContext"] == want_container["securityContext"]
        assert spec.get("hostNetwork") is True
        assert not spec.get("hostPID") and not spec.get("hostIPC")
        # The apiserver fills in defaults (scheme, thresholds): what the manifest says must hold.
        for probe in ("readinessProbe", "livenessProbe"):
            assert _within(want_container[probe], container[probe]), probe
        host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
        want_paths = {v["name"]: v["hostPath"]["path"] for v in want["volumes"]}
        # The overlay's one path change: the nodes' CNI plugins are where Debian puts them.
        want_paths["cni-bin"] = "/usr/lib/cni"
        assert host_paths == want_paths
        mounts = {m["mountPath"]: m.get("mountPropagation") for m in container["volumeMounts"]}
        for m in want_container["volumeMounts"]:
            assert mounts[m["mountPath"]] == m.get("mountPropagation"), m
        # The image the tests built and imported, with the overlay's pull policy only.
        assert container["image"] == MULTINET_IMAGE
        assert container["imagePullPolicy"] == "Never"


def _token_of(cluster: Cluster, pod: str) -> str:
    return cluster.kubectl(
        "exec", "-n", deployment.NAMESPACE, pod, "--",
        "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ).stdout.strip()  # fmt: skip


def _kubectl_as(
    kubeconfig: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=input, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_an_agent_pods_own_token_cannot_write_another_nodes_slices_reservations_or_pods(
    nodes3: Cluster, namespace: str, tmp_path: Path
) -> None:
    node_a, node_b = nodes3.node_names[:2]
    pod_a = _agent_pods(nodes3)[node_a]["metadata"]["name"]
    kubeconfig = tmp_path / "agent-a.kubeconfig"
    kubeconfig.write_text(
        configs.kubeconfig(
            server=nodes3.apiserver_url,
            ca=nodes3.layout.pki / "ca.crt",
            cert=None,
            key=None,
            user="agent-a",
            token=_token_of(nodes3, pod_a),
        )
    )
    who = json.loads(_kubectl_as(kubeconfig, "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"] == [node_a]

    def slice_of(node: str) -> str:
        return json.dumps({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"mn-identity-{secrets.token_hex(3)}"},
            "spec": {"driver": "multinet.dev", "nodeName": node,
                     "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                     "devices": []},
        })  # fmt: skip

    own = _kubectl_as(kubeconfig, "create", "--dry-run=server", "-f", "-", input=slice_of(node_a))
    assert own.returncode == 0, own.stderr
    other = _kubectl_as(kubeconfig, "create", "--dry-run=server", "-f", "-", input=slice_of(node_b))
    assert other.returncode != 0
    assert (
        f"the multinet node agent of node {node_a} may only write ResourceSlices of its own node"
    ) in other.stderr

    reservation = json.dumps({
        "apiVersion": "multinet.dev/v1alpha1", "kind": "IPReservation",
        "metadata": {"name": f"198-51-100-{secrets.randbelow(200) + 10}"},
        "spec": {"network": "mn-identity", "address": "198.51.100.9", "node": node_b,
                 "claim": {"namespace": "ns", "name": "c", "uid": secrets.token_hex(8)}},
    })  # fmt: skip
    denied = _kubectl_as(
        kubeconfig, "create", "--dry-run=server", "--validate=false", "-f", "-", input=reservation
    )
    assert denied.returncode != 0
    assert (
        f"the multinet node agent of node {node_a} may only write IP reservations of its own node"
    ) in denied.stderr

    elsewhere = support.pod(namespace, "on-b", None)
    elsewhere["spec"]["nodeName"] = node_b
    support.apply(nodes3, elsewhere)
    annotate = _kubectl_as(
        kubeconfig, "-n", namespace, "annotate", "pod", "on-b", "--dry-run=server",
        "k8s.v1.cni.cncf.io/network-status=[]",
    )  # fmt: skip
    assert annotate.returncode != 0
    assert (
        f"the multinet node agent of node {node_a} may only update pods on its own node"
    ) in annotate.stderr


def _net1_in(cluster: Cluster, namespace: str, pod: str) -> str:
    return cluster.kubectl(
        "exec", "-n", namespace, pod, "--", "ip", "-o", "link", "show", "net1"
    ).stdout


def _nic_at_home(node: str, nic: str) -> bool:
    link = subprocess.run(
        ["ip", "netns", "exec", node, "ip", "-j", "link", "show", "dev", nic],
        capture_output=True,
        text=True,
    )
    return link.returncode == 0 and [i["ifname"] for i in json.loads(link.stdout)] == [nic]


def _wait_home(node: str, nic: str) -> None:
    wait_for(lambda: _nic_at_home(node, nic), timeout=60, what=f"{nic} back on {node}")


def _attached(cluster: Cluster, namespace: str, lab_nics: LabNics, node: str, pod: str) -> str:
    """A pod on `node` holding that node's only NIC of a fresh network; returns the NIC's name."""
    nic = lab_nics.add(node, suffix=pod[-1])
    network = f"{namespace}-{pod}"
    support.apply(
        cluster,
        support.podnetwork(
            network,
            interfaces={"names": [nic]},
            mode="host-device",
            interfaceName="net1",
            ipam={"type": "pool", "subnet": "198.18.105.0/24"},
        ),
        support.claim_template(namespace, f"nic-{pod}", network),
        support.pod_with_template(namespace, pod, f"nic-{pod}"),
    )
    support.wait_running(cluster, namespace, pod, timeout=180)
    assert "net1" in _net1_in(cluster, namespace, pod)
    return nic


def _checkpointed_claims(cluster: Cluster, node: str) -> set[str]:
    path = cluster.layout.node(node).agent_state / "checkpoint.json"
    return set(json.loads(path.read_text()).get("claims", {})) if path.exists() else set()


def _claim_uid(cluster: Cluster, namespace: str, pod: str) -> str:
    claims = json.loads(
        cluster.kubectl("get", "resourceclaims", "-n", namespace, "-o", "json").stdout
    )
    for c in claims["items"]:
        owners = c["metadata"].get("ownerReferences", [])
        if any(o["name"] == pod for o in owners):
            return str(c["metadata"]["uid"])
    raise AssertionError(f"no claim of {pod}")


def test_a_deleted_agent_pod_comes_back_from_its_hostpath_checkpoint_and_still_brings_nics_home(
    nodes3: Cluster, namespace: str, lab_nics: LabNics
) -> None:
    node = nodes3.node_names[0]
    nic = _attached(nodes3, namespace, lab_nics, node, "held")
    uid = _claim_uid(nodes3, namespace, "held")
    assert any(uid in c for c in _checkpointed_claims(nodes3, node))
    old = _agent_pods(nodes3)[node]["metadata"]["name"]
    nodes3.kubectl("delete", "pod", "-n", deployment.NAMESPACE, old, "--wait=true")

    def replaced() -> dict[str, Any] | None:
        pod = _agent_pods(nodes3).get(node)
        return pod if pod and pod["metadata"]["name"] != old and _ready(pod) else None

    wait_for(replaced, timeout=120, what=f"a new Ready agent pod on {node}")
    assert "net1" in _net1_in(nodes3, namespace, "held")  # the NIC stayed in its pod
    assert any(uid in c for c in _checkpointed_claims(nodes3, node))
    support.delete_pod(nodes3, namespace, "held")
    _wait_home(node, nic)
    wait_for(
        lambda: not any(uid in c for c in _checkpointed_claims(nodes3, node)),
        timeout=60,
        what="the claim unprepared and gone from the checkpoint",
    )


ROLLOUT_TAG = "0.1.0-rollout"


def _set_agent_image(cluster: Cluster, ref: str) -> None:
    cluster.kubectl(
        "set", "image", "-n", deployment.NAMESPACE, f"daemonset/{deployment.AGENT}",
        f"node-agent={ref}",
    )  # fmt: skip
    deployment.wait_workloads(cluster)


def test_a_rolling_update_of_the_daemonset_keeps_every_attached_nic_and_prepared_claim(
    nodes3: Cluster, namespace: str, lab_nics: LabNics
) -> None:
    pods = {node: f"ru{i}" for i, node in enumerate(nodes3.node_names)}
    nics = {node: _attached(nodes3, namespace, lab_nics, node, pod) for node, pod in pods.items()}
    uids = {node: _claim_uid(nodes3, namespace, pod) for node, pod in pods.items()}
    base, _, _ = MULTINET_IMAGE.rpartition(":")
    new_ref = f"{base}:{ROLLOUT_TAG}"
    deployment.tag_image(nodes3, MULTINET_IMAGE, new_ref)
    before = {p["metadata"]["uid"] for p in _agent_pods(nodes3).values()}
    try:
        _set_agent_image(nodes3, new_ref)
        after = _agent_pods(nodes3)
        assert not before & {p["metadata"]["uid"] for p in after.values()}, "not every pod rolled"
        assert all(p["spec"]["containers"][0]["image"] == new_ref for p in after.values())
        for node, pod in pods.items():
            assert "net1" in _net1_in(nodes3, namespace, pod), f"{pod} lost net1"
            assert any(uids[node] in c for c in _checkpointed_claims(nodes3, node))
        nodes3.kubectl("delete", "pods", "-n", namespace, *pods.values(), "--wait=true")
        for node, nic in nics.items():
            _wait_home(node, nic)
    finally:
        _set_agent_image(nodes3, MULTINET_IMAGE)

"""Smoke tests proving the local cluster is real: the node is Ready with the pinned kubelet, a pod
runs our test image and `kubectl exec` reaches it, the real scheduler allocates a DRA claim against
a ResourceSlice we publish, containerd's NRI socket accepts connections, and the API other code
uses (service-account kubeconfigs, managed extra processes) works.

Every object is created under a random name and deleted at the end of its test.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import localcluster
import pytest
import support
from helpers import wait_for
from kubernetes import client as k8s_client
from localcluster import TEST_IMAGE, Cluster
from localcluster.components import binary
from localcluster.layout import POD_SUBNET, versions
from localcluster.processes import proc_start_time

pytestmark = pytest.mark.cluster


def _get(cluster: Cluster, *args: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return data


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"smoke-{secrets.token_hex(3)}"
    support.create_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(name: str, *, claims: list[dict[str, str]] | None = None) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "main",
        "image": TEST_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sleep", "3600"],
    }
    spec: dict[str, object] = {"containers": [container], "terminationGracePeriodSeconds": 0}
    if claims:
        spec["resourceClaims"] = claims
        container["resources"] = {"claims": [{"name": c["name"]} for c in claims]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_node_is_ready_and_reports_the_pinned_kubelet(
    cluster: Cluster, k8s_api: k8s_client.ApiClient
) -> None:
    node = k8s_client.CoreV1Api(k8s_api).read_node(cluster.node_name)
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True", node.status.conditions
    assert node.status.node_info.kubelet_version == versions()["KUBERNETES_VERSION"]
    internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    assert internal == [cluster.node_ip]
    assert not internal[0].startswith("127.")


def test_pod_runs_the_test_image_and_exec_works(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_pod("shell")))
    wait_for(
        lambda: _get(cluster, "pod", "shell", "-n", namespace)["status"]["phase"] == "Running",  # type: ignore[index]
        timeout=90,
        what="pod shell Running",
    )
    links = cluster.kubectl("exec", "-n", namespace, "shell", "--", "ip", "-o", "link").stdout
    assert " lo:" in links and " eth0@" in links, links
    addrs = cluster.kubectl("exec", "-n", namespace, "shell", "--", "ip", "-4", "-o", "addr").stdout
    assert f"inet {POD_SUBNET.split('.')[0]}.{POD_SUBNET.split('.')[1]}." in addrs, addrs


def test_scheduler_allocates_a_claim_from_our_resource_slice(
    cluster: Cluster, namespace: str
) -> None:
    suffix = secrets.token_hex(3)
    driver = f"smoke-{suffix}.multinet.dev"
    device_class = f"smoke-{suffix}"
    slice_name = f"smoke-{suffix}"
    objects = [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": slice_name},
            "spec": {
                "driver": driver,
                "nodeName": cluster.node_name,
                "pool": {"name": cluster.node_name, "generation": 1, "resourceSliceCount": 1},
                "devices": [
                    {"name": "nic0", "attributes": {"kind": {"string": "veth"}}},
                    {"name": "nic1", "attributes": {"kind": {"string": "macvlan"}}},
                ],
            },
        },
    ]
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "nic"},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "nic",
                        "exactly": {
                            "deviceClassName": device_class,
                            "selectors": [
                                {
                                    "cel": {
                                        "expression": f'device.attributes["{driver}"].kind'
                                        ' == "macvlan"'
                                    }
                                }
                            ],
                        },
                    }
                ]
            }
        },
    }
    try:
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(claim))
        pod = _pod("uses-claim", claims=[{"name": "nic", "resourceClaimName": "nic"}])
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))

        def allocation() -> dict[str, Any] | None:
            claim = _get(cluster, "resourceclaim", "nic", "-n", namespace)
            status = cast("dict[str, Any]", claim.get("status") or {})
            found: dict[str, Any] | None = status.get("allocation")
            return found

        alloc = wait_for(allocation, timeout=60, what="status.allocation of claim nic")
        results = alloc["devices"]["results"]
        assert [(r["driver"], r["pool"], r["device"]) for r in results] == [
            (driver, cluster.node_name, "nic1")
        ]
        node = wait_for(
            lambda: _get(cluster, "pod", "uses-claim", "-n", namespace)["spec"].get("nodeName"),  # type: ignore[attr-defined]
            timeout=30,
            what="pod uses-claim bound to a node",
        )
        assert node == cluster.node_name
    finally:
        cluster.kubectl(
            "delete",
            "pod",
            "uses-claim",
            "-n",
            namespace,
            "--force",
            "--grace-period=0",
            "--ignore-not-found",
            check=False,
        )
        cluster.kubectl(
            "delete",
            "resourceclaim",
            "nic",
            "-n",
            namespace,
            "--wait=false",
            "--ignore-not-found",
            check=False,
        )
        cluster.kubectl("delete", "resourceslice", slice_name, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "deviceclass", device_class, "--ignore-not-found", check=False)


def test_containerd_nri_socket_accepts_connections(cluster: Cluster) -> None:
    assert cluster.nri_socket == cluster.state_dir / "run" / "nri" / "nri.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(str(cluster.nri_socket))


def test_service_account_kubeconfig_has_its_own_identity(cluster: Cluster) -> None:
    ns, name = f"smoke-sa-{secrets.token_hex(3)}", "probe"
    try:
        kubeconfig = cluster.service_account_kubeconfig(ns, name)
        assert cluster.apiserver_url in kubeconfig.read_text()

        def as_sa(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [binary("kubectl"), f"--kubeconfig={kubeconfig}", *args]
            return subprocess.run(argv, capture_output=True, text=True)

        whoami = as_sa("auth", "whoami", "-o", "json")
        assert whoami.returncode == 0, whoami.stderr
        user = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
        assert user == f"system:serviceaccount:{ns}:{name}"
        denied = as_sa("get", "nodes")
        assert denied.returncode != 0 and "forbidden" in denied.stderr, denied.stderr
    finally:
        cluster.kubectl(
            "delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False
        )


def test_extra_process_is_managed_like_a_component(cluster: Cluster) -> None:
    name = f"smoke-extra-{secrets.token_hex(3)}"
    pid = cluster.start_process(name, ["sh", "-c", "echo hello from extra; exec sleep 300"])
    try:
        assert cluster.processes.pid(name) == pid
        rows = {row[0]: row for row in cluster.status_rows()}
        assert rows[name][2] is True
        wait_for(
            lambda: "hello from extra" in cluster.processes.tail(name),
            timeout=10,
            what=f"{name}'s log line",
        )
    finally:
        cluster.stop_process(name)
    assert cluster.processes.pid(name) is None
    wait_for(lambda: not _alive(pid), timeout=10, what=f"pid {pid} gone")


def _alive(pid: int) -> bool:
    return proc_start_time(pid) is not None


def test_pods_survive_a_containerd_restart(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_pod("survivor")))
    wait_for(
        lambda: _get(cluster, "pod", "survivor", "-n", namespace)["status"]["phase"] == "Running",  # type: ignore[index]
        timeout=90,
        what="pod survivor Running",
    )
    before = cluster.processes.pid("containerd")
    cluster.restart_containerd()
    assert cluster.processes.pid("containerd") not in (None, before)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(str(cluster.nri_socket))
    out = cluster.kubectl("exec", "-n", namespace, "survivor", "--", "cat", "/proc/1/cmdline")
    assert out.stdout.startswith("sleep")
    wait_for(cluster.is_up, timeout=60, what="cluster healthy after the containerd restart")


def test_a_second_state_dir_is_refused_while_the_cluster_runs(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Bridge, kubepods cgroups and ports are host-wide: another state dir's up/down would wreck
    # the running cluster, so both refuse and name the running kubelet.
    (tmp_path / "second").mkdir()
    for action in (localcluster.up, localcluster.down):
        with pytest.raises(localcluster.ClusterError, match="another local cluster runs"):
            action(tmp_path / "second")
    assert cluster.is_up()

"""Building blocks of the end-to-end tests: objects as users write them, and what users check."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

from helpers import wait_for
from localcluster import TEST_IMAGE, Cluster, down, up
from localcluster import multinet as deployment


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))


def podnetwork(name: str, **parameters: Any) -> dict[str, Any]:
    return {
        "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
        "kind": "PodNetwork",
        "metadata": {"name": name},
        "spec": {"provider": "multinet.dev", "parameters": parameters},
    }


def claim(
    namespace: str, name: str, network: str, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": network}}]}
    }
    if config is not None:
        spec["devices"]["config"] = [
            {"requests": ["nic"], "opaque": {"driver": "multinet.dev", "parameters": config}}
        ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(
    namespace: str, name: str, claim_name: str | None, *, host_network: bool = False
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": TEST_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sleep", "3600"],
    }
    # dnsPolicy Default: the local cluster runs no cluster DNS, and ClusterFirst would give every
    # pod a MissingClusterDNS Warning that hides the Warnings the tests look for.
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "dnsPolicy": "Default",
        "containers": [container],
    }
    if claim_name:
        container["resources"] = {"claims": [{"name": "nic"}]}
        spec["resourceClaims"] = [{"name": "nic", "resourceClaimName": claim_name}]
    if host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def claim_template(namespace: str, name: str, network: str) -> dict[str, Any]:
    """A ResourceClaimTemplate asking for one device of `network`, as a Deployment would use."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "spec": {
                "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": network}}]}
            }
        },
    }


def pod_with_template(namespace: str, name: str, template_name: str) -> dict[str, Any]:
    """A pod whose claim is generated from `template_name` (deleted with the pod)."""
    body = pod(namespace, name, None)
    body["spec"]["containers"][0]["resources"] = {"claims": [{"name": "nic"}]}
    body["spec"]["resourceClaims"] = [{"name": "nic", "resourceClaimTemplateName": template_name}]
    return body


def get(cluster: Cluster, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    ns = ["-n", namespace] if namespace else []
    out = cluster.kubectl("get", kind, name, *ns, "-o", "json").stdout
    return dict(json.loads(out))


def device_statuses(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The claim's `status.devices`, once the first entry has its networkData."""

    def ready() -> list[dict[str, Any]] | None:
        devices = get(cluster, "resourceclaim", name, namespace).get("status", {}).get("devices")
        return devices if devices and "networkData" in devices[0] else None

    return wait_for(ready, timeout=30, what=f"claim {namespace}/{name} status.devices")


def wait_ready_network(cluster: Cluster, name: str) -> None:
    def ready() -> bool:
        conds = get(cluster, "podnetwork", name).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    wait_for(ready, timeout=60, what=f"PodNetwork {name} Ready")


def wait_running(cluster: Cluster, namespace: str, name: str, timeout: float = 120) -> None:
    wait_for(
        lambda: get(cluster, "pod", name, namespace).get("status", {}).get("phase") == "Running",
        timeout=timeout,
        what=f"pod {namespace}/{name} Running",
    )


def delete_pod(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=true", "--timeout=90s")


def events_for(
    cluster: Cluster, namespace: str, kind: str, name: str, *, type_: str | None = None
) -> list[str]:
    """Messages of the Events on one object (only Warning ones with `type_="Warning"`)."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    if type_:
        selector += f",type={type_}"
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", selector, "-o", "json"
    ).stdout
    return [
        f"{e.get('reason', '')}: {e.get('message', '')}" if type_ else e.get("message", "")
        for e in json.loads(out).get("items", [])
    ]


def pod_ip_addr(cluster: Cluster, namespace: str, name: str, ifname: str) -> dict[str, Any]:
    out = cluster.kubectl("exec", "-n", namespace, name, "--", "ip", "-o", "addr", "show", ifname)
    return {"text": out.stdout}


def host_link(name: str) -> dict[str, Any] | None:
    """What `ip` shows of a host interface: the facts a restore must bring back."""
    link = subprocess.run(["ip", "-j", "addr", "show", "dev", name], capture_output=True, text=True)
    if link.returncode != 0 or not link.stdout.strip():
        return None
    (info,) = json.loads(link.stdout)
    routes = subprocess.run(
        ["ip", "-j", "route", "show", "dev", name, "proto", "static"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "name": info["ifname"],
        "mtu": info["mtu"],
        "mac": info["address"],
        "up": "UP" in info["flags"],
        "addresses": [
            f"{a['local']}/{a['prefixlen']}"
            for a in info.get("addr_info", [])
            if a.get("scope") != "link"
        ],
        "routes": sorted(r["dst"] for r in json.loads(routes.stdout or "[]")),
    }


def published_device(cluster: Cluster, ifname: str) -> dict[str, Any] | None:
    """This node's multinet.dev ResourceSlice entry for the host interface ``ifname``, if any."""
    out = cluster.kubectl("get", "resourceslices", "-o", "json").stdout
    for item in json.loads(out)["items"]:
        spec = item["spec"]
        if spec.get("driver") != "multinet.dev" or spec.get("nodeName") != cluster.node_name:
            continue
        for device in spec.get("devices", []):
            name = device.get("attributes", {}).get("multinet.dev/ifName", {}).get("string")
            if name == ifname:
                return dict(device)
    return None


def agent_checkpoint(cluster: Cluster) -> dict[str, Any]:
    """The node agent's state file as JSON (empty claims and attachments before its first write)."""
    path = deployment.agent_state_dir(cluster) / "checkpoint.json"
    if not path.exists():
        return {"claims": {}, "attachments": {}}
    return dict(json.loads(path.read_text()))


def kubelet_feature_enabled(cluster: Cluster, node: str, gate: str) -> bool:
    """Whether `node`'s kubelet runs with feature gate `gate` on, from its own metrics
    (`kubernetes_feature_enabled`), as a user would check what their kubelet version does."""
    metrics = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics").stdout
    for line in metrics.splitlines():
        if line.startswith("kubernetes_feature_enabled{") and f'name="{gate}"' in line:
            return line.rsplit(" ", 1)[1].strip() == "1"
    raise AssertionError(f"the kubelet of {node} does not report feature gate {gate}")


def create_namespace(cluster: Cluster, name: str) -> None:
    """A namespace ready for pods. The apiserver refuses a pod ("serviceaccount default not
    found") until the namespace's default service account exists; the controller-manager makes
    it, but after an apiserver restart its informers can sit in a Forbidden backoff for over a
    minute (the restarted apiserver answers before its RBAC caches are warm). So the default
    account is created here, as the controller would: whoever comes second finds it there."""
    cluster.kubectl("create", "namespace", name)
    made = cluster.kubectl("create", "serviceaccount", "default", "-n", name, check=False)
    if made.returncode != 0 and "already exists" not in made.stderr:
        raise AssertionError(f"cannot create service account default in {name}: {made.stderr}")


@contextlib.contextmanager
def shared_cluster(nodes: int = 1) -> Iterator[Cluster]:
    """The local cluster of `nodes` nodes for a test session: a running healthy one of that size
    is reused; otherwise one is started and, unless MULTINET_KEEP_CLUSTER is set or someone ran
    `python -m localcluster up` meanwhile (the <state>/keep marker), stopped at the end, but only
    if no other test session still holds it (each holds a shared flock on <state>/users.lock)."""
    handle = Cluster.load()
    handle.state_dir.mkdir(parents=True, exist_ok=True)
    with handle.layout.users_lock_file.open("a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        started = up(say=lambda m: print(f"[localcluster] {m}", flush=True), nodes=nodes)
        try:
            yield started
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)
            kept = os.environ.get("MULTINET_KEEP_CLUSTER") or started.layout.keep_file.exists()
            if started.started_here and not kept:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another session still uses it; the last one out does not own it
                else:
                    down()

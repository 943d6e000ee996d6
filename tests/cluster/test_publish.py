"""The publish loop (inventory + PodNetwork watcher + slice publisher) against the local cluster.

The loop runs in-process with the node agent's RBAC (its ClusterRole, bound to a test
ServiceAccount), with the real root-netns inventory. It publishes under a test driver name, so a
node agent that `make cluster-up` may run for `multinet.dev` is not disturbed; the DeviceClass of
the test selects that driver and the podNetwork attribute, as the controller's classes do for
ours. The agent's own identity (a token bound to the Node) is refused such a driver by the
ValidatingAdmissionPolicy, which the last case checks together with the own-node rule.

Cases:
- slices appear with our NIC and its attributes, nodeName, pool, generation, resourceSliceCount
  and an ownerReference to the Node; nothing is rewritten while nothing changes
- a NIC hot-plugged / removed reaches the slice within 1 s (latency measured)
- a Ready PodNetwork selecting the NIC adds the podNetwork attribute; disabling it removes it
- a claim through a DeviceClass for the network is allocated by the real scheduler to that NIC
  and not to another NIC on the node
- the agent's identity cannot write slices of another node, nor of another driver
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import wait_for
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio.client.exceptions import ApiException as aApiException
from localcluster import TEST_IMAGE, Cluster

from multinet import slices
from multinet.agent.publish import PublishLoop
from multinet.api import names
from multinet.kube.client import api_client
from multinet.kube.podnetworks import PodNetworkWatcher
from multinet.kube.slices import SlicePublisher
from multinet.netlink.inventory import Inventory

pytestmark = [pytest.mark.cluster, pytest.mark.root]

DEPLOY = Path(__file__).parents[2] / "deploy" / "base"
DRIVER = "publish-test.multinet.dev"
ATTR = names.ATTRIBUTE


@pytest.fixture(scope="module")
def agent_kubeconfig(cluster: Cluster) -> Path:
    """The node agent's identity, its token bound to this Node."""
    for name in ("namespace.yaml", "crd-podnetwork.yaml", "agent-rbac.yaml", "slice-policy.yaml"):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(DEPLOY / name))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/podnetworks.multinetwork.networking.k8s.io",
    )
    path = cluster.service_account_kubeconfig("multinet-system", "multinet-node-agent")
    token = cluster.kubectl(
        "create",
        "token",
        "multinet-node-agent",
        "-n",
        "multinet-system",
        "--duration=2h",
        "--bound-object-kind=Node",
        f"--bound-object-name={cluster.node_name}",
    ).stdout.strip()
    doc = yaml.safe_load(path.read_text())
    doc["users"][0]["user"] = {"token": token}
    out = path.with_name("multinet-node-agent.node-bound.kubeconfig")
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out


@pytest.fixture(scope="module")
def publisher_kubeconfig(cluster: Cluster, agent_kubeconfig: Path) -> Path:
    """The node agent's RBAC under a ServiceAccount the admission policy does not match, so the
    loop may publish under the test driver."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "multinet-publish-test"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "multinet-node-agent",
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": "multinet-publish-test",
                "namespace": "multinet-system",
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(binding))
    return cluster.service_account_kubeconfig("multinet-system", "multinet-publish-test")


@dataclass
class Agent:
    loop: PublishLoop
    publisher: SlicePublisher


@pytest.fixture
async def agent(cluster: Cluster, publisher_kubeconfig: Path) -> AsyncIterator[Agent]:
    api = await api_client(str(publisher_kubeconfig))
    publisher = SlicePublisher(api, cluster.node_name, driver=DRIVER)
    watcher = PodNetworkWatcher(api, node_name=cluster.node_name)
    async with Inventory(debounce_seconds=0.1) as inv:
        loop = PublishLoop(inventory=inv, networks=watcher, publisher=publisher)
        tasks = [asyncio.create_task(watcher.run()), asyncio.create_task(loop.run())]
        await asyncio.wait_for(loop.published.wait(), 30)
        try:
            yield Agent(loop, publisher)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await publisher.delete_all()
            await api.close()


def our_slices(k8s_api: k8s_client.ApiClient, node: str) -> list[dict[str, Any]]:
    resp = k8s_client.ResourceV1Api(k8s_api).list_resource_slice(
        field_selector=f"spec.nodeName={node},spec.driver={DRIVER}", _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


def device_of(items: list[dict[str, Any]], ifname: str) -> dict[str, Any] | None:
    for s in items:
        for d in s["spec"].get("devices") or []:
            attr = (d.get("attributes") or {}).get("multinet.dev/ifName") or {}
            if attr.get("string") == ifname:
                found: dict[str, Any] = d
                return found
    return None


async def poll(pred: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(pred)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}; last {value!r}")
        await asyncio.sleep(0.02)


async def test_slices_carry_the_nic_with_attributes_and_the_node_as_owner(
    cluster: Cluster, k8s_api: k8s_client.ApiClient, agent: Agent, make_nic: Any
) -> None:
    nic = make_nic(prefix="mnpub", addresses=("198.51.100.21/24",), mtu=1400)
    items = await poll(
        lambda: (s := our_slices(k8s_api, cluster.node_name)) and device_of(s, nic.name) and s,
        within=5,
        what="the NIC in a slice",
    )
    device = device_of(items, nic.name)
    assert device is not None and device["name"] == nic.name
    attrs = device["attributes"]
    assert attrs["multinet.dev/mtu"] == {"int": 1400}
    assert attrs["multinet.dev/kind"] == {"string": "veth"}
    assert attrs["multinet.dev/ipv4"] == {"string": "198.51.100.21/24"}
    node_uid = k8s_client.CoreV1Api(k8s_api).read_node(cluster.node_name).metadata.uid
    for s in items:
        assert s["spec"]["nodeName"] == cluster.node_name
        assert s["spec"]["pool"]["name"] == cluster.node_name
        assert s["spec"]["pool"]["resourceSliceCount"] == len(items)
        assert s["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": cluster.node_name,
                "uid": node_uid,
                "controller": True,
            }
        ]
    # Nothing changes -> nothing is written (a resync publishes the same content). Publish once
    # first: the new NIC's late link events (carrier, IPv6 link-local) may still be in flight.
    await agent.loop.publish_once()
    items = our_slices(k8s_api, cluster.node_name)
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in items}
    writes = agent.publisher.writes
    plan = await agent.loop.publish_once()
    assert plan.empty and agent.publisher.writes == writes
    again = our_slices(k8s_api, cluster.node_name)
    assert {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in again} == versions


async def test_hotplug_and_removal_reach_the_slice_within_a_second(
    cluster: Cluster, k8s_api: k8s_client.ApiClient, agent: Agent, make_nic: Any
) -> None:
    started = time.monotonic()
    nic = make_nic(prefix="mnhp")
    await poll(
        lambda: device_of(our_slices(k8s_api, cluster.node_name), nic.name),
        within=1.0,
        what="the hot-plugged NIC in a slice",
    )
    added = time.monotonic() - started
    started = time.monotonic()
    await asyncio.to_thread(cluster_ip, "link", "del", nic.name)
    await poll(
        lambda: not device_of(our_slices(k8s_api, cluster.node_name), nic.name),
        within=1.0,
        what="the removed NIC to leave the slice",
    )
    removed = time.monotonic() - started
    print(f"hotplug->slice {added * 1000:.0f} ms, removal->slice {removed * 1000:.0f} ms")


def cluster_ip(*args: str) -> None:
    import subprocess

    subprocess.run(["ip", *args], check=True, capture_output=True)


class Networks:
    def __init__(self, api: k8s_client.ApiClient) -> None:
        self.objects = k8s_client.CustomObjectsApi(api)
        self.created: list[str] = []

    def create_ready(self, name: str, interfaces: list[str]) -> None:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name},
            "spec": {
                "provider": names.PROVIDER,
                "parameters": {"interfaces": {"names": interfaces}},
            },
        }
        obj = self.objects.create_cluster_custom_object(
            names.GROUP, names.VERSION, names.PLURAL, body
        )
        self.created.append(name)
        # Ready as the controller writes it (a running controller agrees: parameters are valid).
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Valid",
                        "message": "test",
                        "observedGeneration": obj["metadata"]["generation"],
                        "lastTransitionTime": now,
                    }
                ]
            }
        }
        self.objects.patch_cluster_custom_object_status(
            names.GROUP, names.VERSION, names.PLURAL, name, status
        )

    def disable(self, name: str) -> None:
        self.objects.patch_cluster_custom_object(
            names.GROUP, names.VERSION, names.PLURAL, name, {"spec": {"enabled": False}}
        )

    def cleanup(self) -> None:
        for name in self.created:
            with contextlib.suppress(ApiException):
                self.objects.delete_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, name
                )


@pytest.fixture
def networks(k8s_api: k8s_client.ApiClient) -> Iterator[Networks]:
    nets = Networks(k8s_api)
    yield nets
    nets.cleanup()


async def test_ready_network_binds_the_nic_and_disabling_it_unbinds(
    cluster: Cluster,
    k8s_api: k8s_client.ApiClient,
    agent: Agent,
    make_nic: Any,
    networks: Networks,
) -> None:
    nic = make_nic(prefix="mnbind")
    other = make_nic(prefix="mnbind")
    net = f"pub-{secrets.token_hex(3)}"
    await asyncio.to_thread(networks.create_ready, net, [nic.name])

    def attr_of(ifname: str) -> str | None:
        d = device_of(our_slices(k8s_api, cluster.node_name), ifname)
        value: str | None = ((d or {}).get("attributes") or {}).get(ATTR, {}).get("string")
        return value

    await poll(lambda: attr_of(nic.name) == net, within=5, what="the podNetwork attribute")
    assert attr_of(other.name) is None
    await asyncio.to_thread(networks.disable, net)
    await poll(lambda: attr_of(nic.name) is None, within=5, what="the attribute to go away")


async def test_scheduler_allocates_a_claim_of_the_network_to_that_nic_only(
    cluster: Cluster,
    k8s_api: k8s_client.ApiClient,
    agent: Agent,
    make_nic: Any,
    networks: Networks,
) -> None:
    nic = make_nic(prefix="mnsch")
    make_nic(prefix="mnsch")  # a second NIC on the node, in no network
    net = f"sch-{secrets.token_hex(3)}"
    await asyncio.to_thread(networks.create_ready, net, [nic.name])
    await poll(
        lambda: (
            (device_of(our_slices(k8s_api, cluster.node_name), nic.name) or {}).get("attributes")
            or {}
        ).get(ATTR),
        within=5,
        what="binding",
    )
    ns = f"pub-{secrets.token_hex(3)}"
    core = k8s_client.CoreV1Api(k8s_api)
    core.create_namespace({"metadata": {"name": ns}})
    cls = f"{net}-test"
    res: Any = k8s_client.ResourceV1Api(k8s_api)
    res.create_device_class(
        {
            "metadata": {"name": cls},
            "spec": {
                "selectors": [
                    {
                        "cel": {
                            "expression": f'device.driver == "{DRIVER}" && '
                            f'"{names.ATTRIBUTE_DOMAIN}" in device.attributes && '
                            f'device.attributes["{names.ATTRIBUTE_DOMAIN}"]'
                            f'.{names.ATTRIBUTE_NAME} == "{net}"'
                        }
                    }
                ]
            },
        }
    )
    try:
        res.create_namespaced_resource_claim(
            ns,
            {
                "metadata": {"name": "nic"},
                "spec": {
                    "devices": {
                        "requests": [
                            {"name": "nic", "exactly": {"deviceClassName": cls, "count": 1}}
                        ]
                    }
                },
            },
        )
        core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": TEST_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"],
                        }
                    ],
                    "resourceClaims": [{"name": "nic", "resourceClaimName": "nic"}],
                    "terminationGracePeriodSeconds": 0,
                },
            },
        )

        def allocation() -> list[dict[str, Any]] | None:
            claim = res.read_namespaced_resource_claim("nic", ns).to_dict()
            alloc = (claim.get("status") or {}).get("allocation")
            return alloc["devices"]["results"] if alloc else None

        results = wait_for(allocation, timeout=60, what="the scheduler to allocate the claim")
        assert [(r["driver"], r["pool"], r["device"]) for r in results] == [
            (DRIVER, cluster.node_name, nic.name)
        ]
    finally:
        core.delete_namespace(ns)
        with contextlib.suppress(ApiException):
            res.delete_device_class(cls)


async def test_the_agent_identity_cannot_write_slices_of_another_node(
    agent_kubeconfig: Path,
) -> None:
    api = await api_client(str(agent_kubeconfig))
    other = slices.NodeRef(name=f"other-{secrets.token_hex(3)}", uid="00000000-0000-0000-0000-0")
    body = slices.body(other, "multinet.dev", [], generation=1, count=1)
    try:
        with pytest.raises(aApiException) as err:
            # The client sends a dict body as it is; our slices are dicts.
            await aclient.ResourceV1Api(api).create_resource_slice(body)  # type: ignore[arg-type]
        assert err.value.status in (403, 422)
        assert "may only write ResourceSlices of its own node" in str(err.value.body)
    finally:
        await api.close()


async def test_the_agent_identity_cannot_write_slices_of_another_driver(
    cluster: Cluster, agent_kubeconfig: Path
) -> None:
    api = await api_client(str(agent_kubeconfig))
    node = cluster.kubectl("get", "node", cluster.node_name, "-o", "jsonpath={.metadata.uid}")
    own = slices.NodeRef(name=cluster.node_name, uid=node.stdout.strip())
    body = slices.body(own, DRIVER, [], generation=1, count=1)
    try:
        with pytest.raises(aApiException) as err:
            await aclient.ResourceV1Api(api).create_resource_slice(
                body,  # type: ignore[arg-type]
                dry_run="All",
            )
        assert err.value.status in (403, 422)
        assert "may only write ResourceSlices of driver multinet.dev" in str(err.value.body)
    finally:
        await api.close()

"""The kubelet plugin and pool IPAM against the real local cluster.

Cases: two simulated nodes racing for the last pool addresses never get the same one and the
losers get the exhaustion message; a claim moved to another node gets its own reservation there
and the first node's late release leaves it alone; overlapping pools of two networks never hand
out one address twice; a claim nested deeper than the JSON decoder follows is a ConfigError
naming it; the GC removes reservations whose claim is gone and keeps those of a live allocated
claim; the real kubelet registers our plugin (NotifyRegistrationStatus
plugin_registered=True) and reaches the DRA socket; a claim the real scheduler allocated is
prepared into a plan in the checkpoint and unprepared again.

Every object has a random name and is deleted at the end. Tests that need a driver of their own
register under `<random>.multinet.dev`, so a running multinet agent on the node is not disturbed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from helpers import NicFactory, wait_for
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig
from localcluster import TEST_IMAGE, Cluster

from multinet import ipam
from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.api import claimconfig
from multinet.api.parameters import Ipam
from multinet.checkpoint import Checkpoint
from multinet.errors import AllocationError, ConfigError
from multinet.ipam import Holder
from multinet.kube.ipam import Reservations, collect_orphaned_reservations
from multinet.kube.lookups import ApiLookups
from multinet.kubelet.server import KubeletPlugin
from multinet.netlink.hoststate import read_host_state
from multinet.plans import ClaimRef

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).parents[2] / "deploy" / "base"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    for name in ("crd-ipreservation.yaml", "crd-podnetwork.yaml"):
        cluster.kubectl("apply", "--server-side", "-f", str(DEPLOY / name))
    for crd in ("ipreservations.multinet.dev", "podnetworks.multinetwork.networking.k8s.io"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


@pytest.fixture
async def api(cluster: Cluster, crds: None) -> AsyncIterator[aclient.ApiClient]:
    client = await aconfig.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"prep-{secrets.token_hex(3)}"
    support.create_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _delete_reservations(cluster: Cluster, network: str) -> None:
    cluster.kubectl(
        "delete", "ipreservations", f"--field-selector=spec.network={network}", check=False
    )


async def test_two_nodes_racing_for_the_last_addresses_never_share_one(
    cluster: Cluster, api: aclient.ApiClient
) -> None:
    network = f"race-{secrets.token_hex(3)}"
    pool = ipam.pool_from(Ipam.model_validate({"type": "pool", "subnet": "10.99.0.0/29"}))
    node_a, node_b = Reservations(api), Reservations(api)
    try:

        async def reserve(i: int) -> str:
            holder = Holder(
                claim=ClaimRef(namespace="ns", name=f"c{i}", uid=f"{network}-uid-{i}"),
                request="nic",
                device="dev",
                node="node-a" if i % 2 else "node-b",
            )
            reserver = node_a if i % 2 else node_b
            return str(await reserver.reserve_from_pool(network, pool, holder))

        outcomes = await asyncio.gather(*(reserve(i) for i in range(14)), return_exceptions=True)
        won = [o for o in outcomes if isinstance(o, str)]
        lost = [o for o in outcomes if not isinstance(o, str)]
        assert len(won) == 6 and len(set(won)) == 6, outcomes  # a /29 has 6 usable addresses
        assert all(isinstance(e, AllocationError) for e in lost), lost
        assert all(f"network {network}: no free address in 10.99.0.0/29" in str(e) for e in lost)
        listed = json.loads(
            cluster.kubectl(
                "get", "mnip", f"--field-selector=spec.network={network}", "-o", "json"
            ).stdout
        )["items"]
        assert sorted(i["spec"]["address"] for i in listed) == sorted(won)
        assert {i["spec"]["node"] for i in listed} == {"node-a", "node-b"}
    finally:
        _delete_reservations(cluster, network)


async def test_gc_removes_reservations_of_claims_that_are_gone(
    cluster: Cluster, api: aclient.ApiClient, namespace: str
) -> None:
    network = f"gc-{secrets.token_hex(3)}"
    pool = ipam.pool_from(Ipam.model_validate({"type": "pool", "subnet": "10.98.0.0/28"}))
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "live"},
        "spec": {"devices": {"requests": []}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(claim))
    live_uid = json.loads(
        cluster.kubectl("get", "resourceclaim", "live", "-n", namespace, "-o", "json").stdout
    )["metadata"]["uid"]
    reservations = Reservations(api)
    try:
        gone = Holder(ClaimRef(namespace=namespace, name="gone", uid="x-1"), "nic", "", "node-a")
        live = Holder(ClaimRef(namespace=namespace, name="live", uid=live_uid), "nic", "", "n")
        gone_ip = await reservations.reserve_from_pool(network, pool, gone)
        await reservations.reserve_from_pool(network, pool, live)
        deleted = await collect_orphaned_reservations(api)
        assert ipam.reservation_name(gone_ip) in deleted
        left = json.loads(
            cluster.kubectl(
                "get", "mnip", f"--field-selector=spec.network={network}", "-o", "json"
            ).stdout
        )["items"]
        # The live claim exists but holds no allocation: nothing keeps its reservation either.
        assert left == []
    finally:
        _delete_reservations(cluster, network)


async def test_a_claim_moved_to_another_node_gets_its_own_reservation_there(
    cluster: Cluster, api: aclient.ApiClient
) -> None:
    """The claim UID, request and device name match but the node differs (the claim was
    deallocated from A and allocated on B to a device of the same name): B must not reuse A's
    reservation, and A's late unprepare must free only A's address, never the one B uses."""
    network = f"moved-{secrets.token_hex(3)}"
    pool = ipam.pool_from(Ipam.model_validate({"type": "pool", "subnet": "10.95.0.0/29"}))
    claim = ClaimRef(namespace="ns", name="moved", uid=f"{network}-uid")
    on_a = Holder(claim=claim, request="nic", device="eth-x", node="node-a")
    on_b = Holder(claim=claim, request="nic", device="eth-x", node="node-b")
    reservations = Reservations(api)
    try:
        a = str(await reservations.reserve_from_pool(network, pool, on_a))
        b = str(await reservations.reserve_from_pool(network, pool, on_b))
        assert a != b
        await reservations.release([a, b], claim.uid, "node-a")  # A's late unprepare
        left = json.loads(
            cluster.kubectl(
                "get", "mnip", f"--field-selector=spec.network={network}", "-o", "json"
            ).stdout
        )["items"]
        assert [(r["spec"]["address"], r["spec"]["node"]) for r in left] == [(b, "node-b")]
    finally:
        _delete_reservations(cluster, network)


async def test_overlapping_pools_of_two_networks_never_share_an_address(
    cluster: Cluster, api: aclient.ApiClient
) -> None:
    first, second = f"ovl-a-{secrets.token_hex(3)}", f"ovl-b-{secrets.token_hex(3)}"
    pool = ipam.pool_from(Ipam.model_validate({"type": "pool", "subnet": "10.94.0.0/30"}))
    reservations = Reservations(api)

    def holder(network: str, i: int) -> Holder:
        ref = ClaimRef(namespace="ns", name=f"c{i}", uid=f"{network}-{i}")
        return Holder(claim=ref, request="nic", device="dev", node="node-a")

    try:
        taken = {
            str(await reservations.reserve_from_pool(first, pool, holder(first, i)))
            for i in range(2)
        }  # a /30 has two usable addresses
        assert len(taken) == 2
        with pytest.raises(AllocationError, match=f"network {second}: no free address"):
            await reservations.reserve_from_pool(second, pool, holder(second, 0))
        static = ipam.parse_address(sorted(taken)[0])
        with pytest.raises(AllocationError, match=f"already reserved by .* of network {first}"):
            await reservations.reserve_static(second, static, holder(second, 1))
    finally:
        _delete_reservations(cluster, first)
        _delete_reservations(cluster, second)


async def test_a_claim_nested_deeper_than_the_decoder_follows_is_a_config_error(
    cluster: Cluster, api: aclient.ApiClient, namespace: str
) -> None:
    """The apiserver stores an opaque config nested thousands of levels deep; reading the claim
    for prepare cuts the deep subtree, so validation names the field instead of the agent
    crashing with RecursionError."""
    depth = 3000  # json.dumps and json.loads give up near 1000
    deep = "[" * depth + '"eth1"' + "]" * depth
    claim = (
        '{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", '
        f'"metadata": {{"name": "deep", "namespace": "{namespace}"}}, '
        '"spec": {"devices": {'
        '"requests": [{"name": "nic", "exactly": {"deviceClassName": "none"}}], '
        '"config": [{"opaque": {"driver": "multinet.dev", '
        f'"parameters": {{"interfaceName": {deep}}}}}}}]}}}}}}'
    )
    cluster.kubectl("create", "-f", "-", input=claim)
    doc = await ApiLookups(api).get_claim(namespace, "deep")
    assert doc is not None
    [config] = doc["spec"]["devices"]["config"]
    with pytest.raises(ConfigError, match=r"interfaceName: .*\[\[\["):
        claimconfig.parse(config["opaque"]["parameters"])


async def test_the_real_kubelet_registers_our_plugin(cluster: Cluster) -> None:
    driver = f"reg-{secrets.token_hex(3)}.multinet.dev"

    class FakePreparer:  # only registration is under test here
        async def prepare(self, claim: ClaimRef) -> list[Any]:
            return []

        async def unprepare(self, claim: ClaimRef) -> None:
            return None

    plugin = KubeletPlugin(
        preparer=FakePreparer(), kubelet_root=cluster.kubelet_root, driver_name=driver
    )
    await plugin.start()
    try:
        async with asyncio.timeout(60):
            status = await plugin.registration.wait_registered()
        assert status.registered is True and status.error == ""
    finally:
        await plugin.stop()
    assert not plugin.registration_socket.exists()


class FakeDirectory:
    def __init__(self, entries: dict[str, DirectoryEntry]) -> None:
        self.entries = entries

    def lookup(self, device: str) -> DirectoryEntry | None:
        return self.entries.get(device)


async def test_a_claim_the_scheduler_allocated_becomes_a_checkpointed_plan(
    cluster: Cluster,
    api: aclient.ApiClient,
    namespace: str,
    make_nic: NicFactory,
    tmp_path: Path,
) -> None:
    tag = secrets.token_hex(3)
    nic = make_nic(prefix="mnpc", addresses=("198.51.100.20/24",))
    network, pool_name, device_class = f"net-{tag}", f"test-pool-{tag}", f"class-{tag}"
    objects = [
        {
            "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
            "kind": "PodNetwork",
            "metadata": {"name": network},
            "spec": {
                "provider": "multinet.dev",
                "parameters": {
                    "interfaces": {"names": [nic.name]},
                    "interfaceName": "net1",
                    "ipam": {"type": "pool", "subnet": "10.97.0.0/28"},
                },
            },
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {
                "selectors": [
                    {
                        "cel": {
                            # The real agent's devices lack testTag: test for it first.
                            "expression": 'device.driver == "multinet.dev" && '
                            '"testTag" in device.attributes["multinet.dev"] && '
                            f'device.attributes["multinet.dev"].testTag == "{tag}"'
                        }
                    }
                ]
            },
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"test-{tag}"},
            "spec": {
                "driver": "multinet.dev",
                # Not nodeName: the node's slices of our driver are the running agent's, and it
                # deletes those it did not publish when it republishes (it does when this test's
                # network turns Ready). A slice for all nodes is nobody's to delete.
                "allNodes": True,
                "pool": {"name": pool_name, "generation": 1, "resourceSliceCount": 1},
                "devices": [{"name": "dev-a", "attributes": {"testTag": {"string": tag}}}],
            },
        },
    ]
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "nic"},
        "spec": {
            "devices": {
                "requests": [{"name": "nic", "exactly": {"deviceClassName": device_class}}],
                "config": [
                    {
                        "requests": ["nic"],
                        "opaque": {"driver": "multinet.dev", "parameters": {"mtu": 1400}},
                    }
                ],
            }
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "resourceClaims": [{"name": "nic", "resourceClaimName": "nic"}],
            "containers": [
                {
                    "name": "main",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "resources": {"claims": [{"name": "nic"}]},
                }
            ],
        },
    }
    items = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    try:
        cluster.kubectl("apply", "-f", "-", input=items)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(claim))
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))

        def allocated() -> dict[str, Any] | None:
            doc = json.loads(
                cluster.kubectl("get", "resourceclaim", "nic", "-n", namespace, "-o", "json").stdout
            )
            status = doc.get("status") or {}
            return doc if status.get("allocation") and status.get("reservedFor") else None

        doc = wait_for(allocated, timeout=60, what="claim nic allocated and reserved")
        ref = ClaimRef(namespace=namespace, name="nic", uid=doc["metadata"]["uid"])
        checkpoint = Checkpoint.open(tmp_path)
        preparer = ClaimPreparer(
            node_name=pool_name,  # the test's pool stands in for this node's pool
            checkpoint=checkpoint,
            lookups=ApiLookups(api),
            devices=FakeDirectory({"dev-a": DirectoryEntry(ifname=nic.name, network=network)}),
            reservations=Reservations(api),
            read_host=read_host_state,
        )
        devices = await preparer.prepare(ref)
        assert [(d.request_names, d.pool_name, d.device_name) for d in devices] == [
            (("nic",), pool_name, "dev-a")
        ]
        [plan] = Checkpoint.open(tmp_path).state.claims[ref.uid].plans
        assert (plan.network, plan.host_ifname, plan.pod_ifname, plan.mtu) == (
            network,
            nic.name,
            "net1",
            1400,
        )
        [address] = plan.addresses
        assert address.startswith("10.97.0.") and address.endswith("/28")
        assert plan.host is not None and plan.host.addresses == ("198.51.100.20/24",)
        pod_uid = json.loads(
            cluster.kubectl("get", "pod", "p", "-n", namespace, "-o", "json").stdout
        )["metadata"]["uid"]
        assert Checkpoint.open(tmp_path).state.claims[ref.uid].pod_uids == (pod_uid,)
        reserved = json.loads(
            cluster.kubectl(
                "get", "mnip", f"--field-selector=spec.network={network}", "-o", "json"
            ).stdout
        )["items"]
        assert [(r["spec"]["address"], r["spec"]["claim"]["uid"]) for r in reserved] == [
            (address.split("/")[0], ref.uid)
        ]

        # The GC keeps what a live, allocated claim holds.
        assert ipam.reservation_name(ipam.parse_address(address.split("/")[0])) not in (
            await collect_orphaned_reservations(api)
        )

        cluster.kubectl("delete", "pod", "p", "-n", namespace, "--wait=false")
        cluster.kubectl("delete", "resourceclaim", "nic", "-n", namespace, "--wait=false")
        await preparer.unprepare(ref)  # the claim may be gone: no API read needed
        assert Checkpoint.open(tmp_path).state.claims == {}
        left = cluster.kubectl(
            "get", "mnip", f"--field-selector=spec.network={network}", "-o", "name"
        ).stdout
        assert left.strip() == ""
    finally:
        cluster.kubectl("delete", "-f", "-", "--wait=false", input=items, check=False)
        _delete_reservations(cluster, network)

"""The PodNetwork CRD and the controller against the real kube-apiserver of the local cluster.

The controller runs as a host process under its own ServiceAccount (fixture
``multinet_controller``); the tests act as admin, like a cluster operator would. Cases:
- the CRD is accepted; the apiserver rejects a missing or malformed provider and a provider change;
- Ready / AdministrativelyDisabled / ParametersInvalid and back, with observedGeneration, Events;
- a foreign condition written through the status subresource survives the controller's writes;
- the DeviceClass is created, owned, selects by the podNetwork attribute, and is garbage-collected;
- a same-named DeviceClass that is not ours is left alone and reported (NameTaken);
- deletion is held while a claim, allocated by the real scheduler, holds a device of the network;
- PodNetworks of other providers are never touched;
- the controller's identity is not admin.
Every object has a random name and is removed at the end of its test.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import support
from helpers import wait_for
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from localcluster import TEST_IMAGE, Cluster

from multinet.api import names

pytestmark = pytest.mark.cluster

GOOD = {"interfaces": {"names": ["eth9", "mnt*"]}, "mtu": 1500}


class PodNetworks:
    """Admin access to PodNetworks, remembering what it created so teardown removes it."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        self.objects = k8s_client.CustomObjectsApi(api)
        self.created: list[str] = []

    def name(self, prefix: str = "pnw") -> str:
        return f"{prefix}-{secrets.token_hex(3)}"

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name},
            "spec": spec,
        }
        self.created.append(name)
        obj: dict[str, Any] = self.objects.create_cluster_custom_object(
            names.GROUP, names.VERSION, names.PLURAL, body
        )
        return obj

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.objects.get_cluster_custom_object(
            names.GROUP, names.VERSION, names.PLURAL, name
        )
        return obj

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.objects.patch_cluster_custom_object(
            names.GROUP, names.VERSION, names.PLURAL, name, {"spec": spec}
        )
        return obj

    def delete(self, name: str) -> None:
        try:
            self.objects.delete_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        for cond in self.get(name).get("status", {}).get("conditions", []):
            if cond["type"] == type_:
                return dict(cond)
        return None

    def wait_condition(
        self, name: str, type_: str, status: str, reason: str, generation: int | None = None
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            cond = self.condition(name, type_)
            if cond is None or (cond["status"], cond["reason"]) != (status, reason):
                return None
            if generation is not None and cond.get("observedGeneration") != generation:
                return None
            return cond

        found: dict[str, Any] = wait_for(
            matches, timeout=30, what=f"{name}: {type_}={status} reason {reason}"
        )
        return found

    def cleanup(self) -> None:
        for name in self.created:
            self.delete(name)
            # A failed test may leave a claim behind and so our finalizer: drop it so the
            # object goes (after the delete, or the controller would simply add it again).
            with contextlib.suppress(ApiException):
                self.objects.patch_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, name, {"metadata": {"finalizers": []}}
                )


@pytest.fixture
def pnws(k8s_api: k8s_client.ApiClient, multinet_controller: object) -> Iterator[PodNetworks]:
    pn = PodNetworks(k8s_api)
    try:
        yield pn
    finally:
        pn.cleanup()


def _device_class(api: k8s_client.ApiClient, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = k8s_client.CustomObjectsApi(api).get_cluster_custom_object(
            "resource.k8s.io", "v1", "deviceclasses", name
        )
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _events(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the Events about PodNetwork ``name``, oldest first. Timestamps have
    one-second resolution, so order by resourceVersion (etcd's revision at creation)."""
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    )
    items = sorted(
        json.loads(out.stdout)["items"], key=lambda e: int(e["metadata"]["resourceVersion"])
    )
    return [(e["type"], e["reason"]) for e in items]


# --- the CRD and the apiserver ------------------------------------------------------------


def test_crd_is_established_with_short_name(cluster: Cluster, multinet_controller: object) -> None:
    crd = json.loads(
        cluster.kubectl(
            "get", "crd", "podnetworks.multinetwork.networking.k8s.io", "-o", "json"
        ).stdout
    )
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["pnw"]
    cluster.kubectl("get", "pnw")  # the short name resolves


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"enabled": True}, "spec.provider: Required value"),
        ({"provider": "Multinet.DEV"}, "spec.provider: Invalid value"),
        ({"provider": "multinet.dev/"}, "spec.provider: Invalid value"),
        ({"provider": "a" * 250 + ".dev"}, "spec.provider: Too long"),
    ],
)
def test_apiserver_rejects_bad_provider(
    pnws: PodNetworks, spec: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ApiException) as info:
        pnws.create(pnws.name("bad"), spec)
    assert info.value.status == 422
    assert expected in str(info.value.body)


def test_provider_change_is_rejected(pnws: PodNetworks) -> None:
    name = pnws.name("immut")
    pnws.create(name, {"provider": "example.com/net"})
    with pytest.raises(ApiException) as info:
        pnws.patch_spec(name, {"provider": "multinet.dev"})
    assert info.value.status == 422
    assert "provider is immutable" in str(info.value.body)
    assert pnws.get(name)["spec"]["provider"] == "example.com/net"


def test_enabled_defaults_to_true(pnws: PodNetworks) -> None:
    name = pnws.name("dflt")
    assert pnws.create(name, {"provider": "example.com/net"})["spec"]["enabled"] is True


# --- conditions ---------------------------------------------------------------------------


def test_ready_disabled_invalid_and_back(pnws: PodNetworks, cluster: Cluster) -> None:
    name = pnws.name("life")
    pnws.create(name, {"provider": "multinet.dev", "parameters": GOOD})
    first = pnws.wait_condition(name, "Ready", "True", "Ready", generation=1)

    pnws.patch_spec(name, {"enabled": False})
    pnws.wait_condition(name, "Ready", "False", "AdministrativelyDisabled", generation=2)

    pnws.patch_spec(name, {"enabled": True, "parameters": {"interfaces": {"names": []}, "mtu": 20}})
    bad = pnws.wait_condition(name, "Ready", "False", "ParametersInvalid", generation=3)
    assert bad["message"] == (
        "parameters.interfaces.names: must have at least 1 item; "
        "parameters.mtu: must be between 68 and 65535, got 20"
    )

    pnws.patch_spec(name, {"parameters": GOOD})
    back = pnws.wait_condition(name, "Ready", "True", "Ready", generation=4)
    assert back["lastTransitionTime"] >= first["lastTransitionTime"]

    obj = pnws.get(name)
    assert names.FINALIZER in obj["metadata"]["finalizers"]
    want = [
        ("Normal", "Ready"),
        ("Normal", "AdministrativelyDisabled"),
        ("Warning", "ParametersInvalid"),
        ("Normal", "Ready"),
    ]
    wait_for(
        lambda: [e for e in _events(cluster, name) if e[1] != "Owned"] == want,
        timeout=15,
        what="one Event per Ready transition",
    )


def test_printer_columns_show_ready(pnws: PodNetworks, cluster: Cluster) -> None:
    name = pnws.name("cols")
    pnws.create(name, {"provider": "multinet.dev", "parameters": GOOD})
    pnws.wait_condition(name, "Ready", "True", "Ready")
    row = cluster.kubectl("get", "pnw", name, "--no-headers").stdout.split()
    assert row[:4] == [name, "multinet.dev", "true", "True"]


def test_foreign_condition_is_left_alone(pnws: PodNetworks) -> None:
    name = pnws.name("foreign")
    pnws.create(name, {"provider": "multinet.dev", "parameters": GOOD})
    pnws.wait_condition(name, "Ready", "True", "Ready")
    foreign = {
        "type": "example.com/Audited",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": "2024-05-01T10:00:00Z",
        "reason": "Audited",
        "message": "written by another controller",
    }
    obj = pnws.get(name)
    obj["status"]["conditions"].append(foreign)
    pnws.objects.replace_cluster_custom_object_status(
        names.GROUP, names.VERSION, names.PLURAL, name, obj
    )
    pnws.patch_spec(name, {"enabled": False})
    pnws.wait_condition(name, "Ready", "False", "AdministrativelyDisabled", generation=2)
    assert pnws.condition(name, "example.com/Audited") == foreign


# --- the DeviceClass -----------------------------------------------------------------------


def test_device_class_created_owned_and_collected(
    pnws: PodNetworks, k8s_api: k8s_client.ApiClient
) -> None:
    name = pnws.name("dc")
    uid = pnws.create(name, {"provider": "multinet.dev", "parameters": GOOD})["metadata"]["uid"]
    pnws.wait_condition(name, "DeviceClassReady", "True", "Owned")
    dc = _device_class(k8s_api, name)
    assert dc is not None
    (owner,) = dc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "PodNetwork",
        name,
        uid,
        True,
    )
    assert f'.podNetwork == "{name}"' in dc["spec"]["selectors"][0]["cel"]["expression"]

    pnws.delete(name)
    wait_for(lambda: not pnws.exists(name), timeout=30, what="the unused PodNetwork to go")
    wait_for(
        lambda: _device_class(k8s_api, name) is None,
        timeout=60,
        what="the garbage collector to delete the DeviceClass",
    )


def test_device_class_name_taken(pnws: PodNetworks, k8s_api: k8s_client.ApiClient) -> None:
    name = pnws.name("taken")
    objects = k8s_client.CustomObjectsApi(k8s_api)
    mine = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "example.com"'}}]},
    }
    objects.create_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", mine)
    try:
        pnws.create(name, {"provider": "multinet.dev", "parameters": GOOD})
        cond = pnws.wait_condition(name, "DeviceClassReady", "False", "NameTaken")
        assert name in cond["message"]
        pnws.wait_condition(name, "Ready", "True", "Ready")
        dc = _device_class(k8s_api, name)
        assert dc is not None
        assert "ownerReferences" not in dc["metadata"]
        assert dc["spec"] == mine["spec"]
    finally:
        objects.delete_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", name)


# --- the in-use finalizer ------------------------------------------------------------------


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"mnc-{secrets.token_hex(3)}"
    support.create_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def fake_slice(k8s_api: k8s_client.ApiClient) -> Iterator[Callable[[str], tuple[str, str]]]:
    """Publish a ResourceSlice of driver multinet.dev with one device of the given network,
    as the node agent would (allNodes, so kubelet's node-slice cleanup leaves it alone)."""
    objects = k8s_client.CustomObjectsApi(k8s_api)
    made: list[str] = []

    def publish(network: str) -> tuple[str, str]:
        pool = f"test-{secrets.token_hex(3)}"
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": pool},
            "spec": {
                "driver": names.DRIVER,
                "pool": {"name": pool, "generation": 1, "resourceSliceCount": 1},
                "allNodes": True,
                "devices": [
                    {"name": "nic0", "attributes": {names.ATTRIBUTE: {"string": network}}},
                    {"name": "nic1", "attributes": {}},
                ],
            },
        }
        objects.create_cluster_custom_object("resource.k8s.io", "v1", "resourceslices", body)
        made.append(pool)
        return pool, "nic0"

    yield publish
    for pool in made:
        objects.delete_cluster_custom_object("resource.k8s.io", "v1", "resourceslices", pool)


def test_deletion_waits_for_claims(
    pnws: PodNetworks,
    cluster: Cluster,
    k8s_api: k8s_client.ApiClient,
    namespace: str,
    fake_slice: Callable[[str], tuple[str, str]],
) -> None:
    name = pnws.name("inuse")
    pnws.create(name, {"provider": "multinet.dev", "parameters": GOOD})
    pnws.wait_condition(name, "DeviceClassReady", "True", "Owned")
    pool, device = fake_slice(name)
    objects = k8s_client.CustomObjectsApi(k8s_api)
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "nic", "namespace": namespace},
        "spec": {"devices": {"requests": [{"name": "net", "exactly": {"deviceClassName": name}}]}},
    }
    objects.create_namespaced_custom_object(
        "resource.k8s.io", "v1", namespace, "resourceclaims", claim
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "resourceClaims": [{"name": "net", "resourceClaimName": "nic"}],
            "containers": [
                {
                    "name": "main",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "resources": {"claims": [{"name": "net"}]},
                }
            ],
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))

    def allocated() -> dict[str, Any] | None:
        got: dict[str, Any] = objects.get_namespaced_custom_object(
            "resource.k8s.io", "v1", namespace, "resourceclaims", "nic"
        )
        return got if got.get("status", {}).get("allocation") else None

    got = wait_for(allocated, timeout=60, what="the scheduler to allocate the claim")
    (result,) = got["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"], result["device"]) == (names.DRIVER, pool, device)
    # What the node agent writes once the interface is in the pod.
    got["status"]["devices"] = [
        {"driver": names.DRIVER, "pool": pool, "device": device, "data": {"podNetwork": name}}
    ]
    objects.replace_namespaced_custom_object_status(
        "resource.k8s.io", "v1", namespace, "resourceclaims", "nic", got
    )

    pnws.delete(name)
    held = pnws.wait_condition(name, "Ready", "False", "Deleting")
    assert f"{namespace}/nic" in held["message"]
    assert pnws.get(name)["metadata"]["deletionTimestamp"]
    assert _device_class(k8s_api, name) is not None

    cluster.kubectl("delete", "pod", "-n", namespace, "user", "--grace-period=0", "--force")
    cluster.kubectl("delete", "resourceclaim", "-n", namespace, "nic", "--wait=false")
    wait_for(
        lambda: not pnws.exists(name),
        timeout=90,
        what="the PodNetwork to go once the claim is gone",
    )
    wait_for(lambda: _device_class(k8s_api, name) is None, timeout=60, what="DeviceClass collected")


# --- what the controller must never do ------------------------------------------------------


def test_other_providers_are_never_touched(
    pnws: PodNetworks, k8s_api: k8s_client.ApiClient
) -> None:
    other = pnws.name("other")
    created = pnws.create(other, {"provider": "example.com/net", "parameters": {"anything": [1]}})
    # Barrier: a PodNetwork of ours created afterwards being Ready means the controller has
    # processed the earlier watch event of the foreign one.
    ours = pnws.name("barrier")
    pnws.create(ours, {"provider": "multinet.dev", "parameters": GOOD})
    pnws.wait_condition(ours, "Ready", "True", "Ready")
    now = pnws.get(other)
    assert now["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert "finalizers" not in now["metadata"]
    assert "status" not in now
    assert _device_class(k8s_api, other) is None
    pnws.delete(other)
    wait_for(lambda: not pnws.exists(other), timeout=30, what="the foreign PodNetwork to go")


def test_controller_identity_is_not_admin(cluster: Cluster, multinet_controller: object) -> None:
    sa = "system:serviceaccount:multinet-system:multinet-controller"

    def can(*args: str) -> str:
        proc = cluster.kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
        return proc.stdout.strip()

    assert can("patch", "podnetworks.multinetwork.networking.k8s.io") == "yes"
    assert can("delete", "podnetworks.multinetwork.networking.k8s.io") == "no"
    assert can("create", "pods", "-n", "default") == "no"
    assert can("delete", "deviceclasses.resource.k8s.io") == "no"
    assert can("get", "secrets", "-A") == "no"

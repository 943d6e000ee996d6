"""What DRA networking is for, across nodes: the scheduler puts a pod where a free NIC of its
network is, the pool hands out every address once cluster-wide, and pods on different nodes talk
over the secondary network (the lab bridge joins every node's NICs into one L2 segment)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
import support
from helpers import wait_for
from lab import LabNics
from localcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.root]


def _pods(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
    return {p["metadata"]["name"]: p for p in json.loads(out)["items"]}


def _net1_address(cluster: Cluster, namespace: str, pod: str) -> str:
    out = cluster.kubectl(
        "exec", "-n", namespace, pod, "--", "ip", "-o", "-4", "addr", "show", "net1"
    ).stdout
    fields = out.split()
    assert len(fields) > 3, f"{pod} has no IPv4 address on net1: {out!r}"
    return fields[3].split("/")[0]


def _network(cluster: Cluster, name: str, nic: str, subnet: str, mode: str = "host-device") -> None:
    body = support.podnetwork(
        name,
        interfaces={"names": [nic]},
        mode=mode,
        interfaceName="net1",
        ipam={"type": "pool", "subnet": subnet},
    )
    support.apply(cluster, body)
    support.wait_ready_network(cluster, name)


def _wait_devices(cluster: Cluster, network: str, nodes: set[str]) -> None:
    def published() -> bool:
        out = cluster.kubectl(
            "get", "resourceslices", "--field-selector", "spec.driver=multinet.dev", "-o", "json"
        ).stdout
        found = {
            s["spec"]["nodeName"]
            for s in json.loads(out)["items"]
            for d in s["spec"].get("devices", [])
            if d.get("attributes", {}).get("multinetwork.networking.k8s.io/podNetwork", {})
            == {"string": network}
        }
        return found == nodes

    wait_for(published, timeout=60, what=f"devices of {network} on exactly {sorted(nodes)}")


def _start(cluster: Cluster, namespace: str, network: str, names: list[str]) -> None:
    support.apply(
        cluster,
        support.claim_template(namespace, "nic", network),
        *(support.pod_with_template(namespace, n, "nic") for n in names),
    )


def test_a_pod_lands_on_the_only_node_with_a_nic_of_its_network(
    nodes3: Cluster, namespace: str, lab_nics: LabNics
) -> None:
    only = nodes3.node_names[1]
    nic = lab_nics.add(only)
    network = f"{namespace}-b"
    try:
        _network(nodes3, network, nic, "198.18.101.0/24")
        _wait_devices(nodes3, network, {only})
        _start(nodes3, namespace, network, ["app"])
        support.wait_running(nodes3, namespace, "app")
        assert _pods(nodes3, namespace)["app"]["spec"]["nodeName"] == only
    finally:
        nodes3.kubectl("delete", "namespace", namespace, "--wait=true", check=False)
        nodes3.kubectl("delete", "podnetwork", network, "--ignore-not-found", check=False)


def test_one_nic_per_node_gives_one_pod_per_node_the_fourth_waits_with_the_reason(
    nodes3: Cluster, namespace: str, lab_nics: LabNics
) -> None:
    nic = ""
    for node in nodes3.node_names:
        nic = lab_nics.add(node)  # the same name on every node
    network = f"{namespace}-one"
    try:
        _network(nodes3, network, nic, "198.18.102.0/24")
        _wait_devices(nodes3, network, set(nodes3.node_names))
        names = ["p0", "p1", "p2", "p3"]
        _start(nodes3, namespace, network, names)

        def three_running() -> list[str] | None:
            pods = _pods(nodes3, namespace)
            running = [n for n, p in pods.items() if p.get("status", {}).get("phase") == "Running"]
            return running if len(running) == 3 else None

        running = wait_for(three_running, timeout=180, what="three pods Running")
        pods = _pods(nodes3, namespace)
        assert sorted(pods[n]["spec"]["nodeName"] for n in running) == sorted(nodes3.node_names)
        (waiting,) = set(names) - set(running)
        assert pods[waiting]["status"]["phase"] == "Pending"
        assert not pods[waiting]["spec"].get("nodeName")

        def reason() -> list[str]:
            return support.events_for(nodes3, namespace, "Pod", waiting, type_="Warning")

        events = wait_for(reason, timeout=60, what=f"a FailedScheduling Event on {waiting}")
        assert any(
            e.startswith("FailedScheduling:") and "cannot allocate all claims" in e for e in events
        ), events
    finally:
        nodes3.kubectl("delete", "namespace", namespace, "--wait=true", check=False)
        nodes3.kubectl("delete", "podnetwork", network, "--ignore-not-found", check=False)


def test_pods_on_different_nodes_ping_each_other_over_net1_and_the_primary_network(
    nodes3: Cluster, namespace: str, lab_nics: LabNics
) -> None:
    nic = ""
    for node in nodes3.node_names[:2]:
        nic = lab_nics.add(node)
    network = f"{namespace}-ping"
    try:
        _network(nodes3, network, nic, "198.18.103.0/24")
        _wait_devices(nodes3, network, set(nodes3.node_names[:2]))
        _start(nodes3, namespace, network, ["a", "b"])
        support.wait_running(nodes3, namespace, "a")
        support.wait_running(nodes3, namespace, "b")
        pods = _pods(nodes3, namespace)
        assert pods["a"]["spec"]["nodeName"] != pods["b"]["spec"]["nodeName"]
        b = _net1_address(nodes3, namespace, "b")
        out = nodes3.kubectl(
            "exec", "-n", namespace, "a", "--", "ping", "-c", "2", "-W", "2", "-I", "net1", b
        ).stdout
        assert "2 packets received" in out, out
        # The primary network crosses nodes too (each node routes the others' pod ranges).
        b_primary = pods["b"]["status"]["podIP"]
        out = nodes3.kubectl(
            "exec", "-n", namespace, "a", "--", "ping", "-c", "2", "-W", "2", b_primary
        ).stdout
        assert "2 packets received" in out, out
    finally:
        nodes3.kubectl("delete", "namespace", namespace, "--wait=true", check=False)
        nodes3.kubectl("delete", "podnetwork", network, "--ignore-not-found", check=False)


PODS = 30
WAVES = 2


def test_thirty_pods_over_three_nodes_never_share_an_address_across_waves(
    nodes3: Cluster, namespace: str, lab_nics: LabNics
) -> None:
    """macvlan children of one NIC per node, all from one pool: every pod's net1 address (read
    inside the pod, not only from the reservations) is distinct, wave after wave."""
    nic = ""
    for node in nodes3.node_names:
        nic = lab_nics.add(node)
    network = f"{namespace}-pool"
    subnet = ipaddress.IPv4Network("198.18.104.0/24")
    names = [f"w{i:02d}" for i in range(PODS)]
    try:
        _network(nodes3, network, nic, str(subnet), mode="macvlan")
        _wait_devices(nodes3, network, set(nodes3.node_names))
        _start(nodes3, namespace, network, names)
        seen = _all_running_with_distinct_addresses(nodes3, namespace, names, subnet)
        assert len({p["spec"]["nodeName"] for p in _pods(nodes3, namespace).values()}) == 3
        for wave in range(WAVES):
            # Delete half, recreate them at once: addresses freed and taken in the same breath.
            half = names[wave % 2 :: 2]
            nodes3.kubectl("delete", "pods", "-n", namespace, *half, "--wait=false")
            _wait_gone(nodes3, namespace, half)
            support.apply(nodes3, *(support.pod_with_template(namespace, n, "nic") for n in half))
            seen |= _all_running_with_distinct_addresses(nodes3, namespace, names, subnet)
    finally:
        nodes3.kubectl(
            "delete", "namespace", namespace, "--wait=true", "--timeout=300s", check=False
        )
        nodes3.kubectl("delete", "podnetwork", network, "--ignore-not-found", check=False)


def _wait_gone(cluster: Cluster, namespace: str, names: list[str]) -> None:
    wait_for(
        lambda: not set(names) & set(_pods(cluster, namespace)),
        timeout=180,
        what=f"{len(names)} pods gone",
    )


def _all_running_with_distinct_addresses(
    cluster: Cluster, namespace: str, names: list[str], subnet: ipaddress.IPv4Network
) -> set[str]:
    def all_running() -> bool:
        pods = _pods(cluster, namespace)
        return all(pods.get(n, {}).get("status", {}).get("phase") == "Running" for n in names)

    wait_for(all_running, timeout=300, what=f"{len(names)} pods Running")
    addresses = {n: _net1_address(cluster, namespace, n) for n in names}
    duplicates = {a for a in addresses.values() if list(addresses.values()).count(a) > 1}
    assert not duplicates, f"pods share addresses {duplicates}: {addresses}"
    assert all(ipaddress.ip_address(a) in subnet for a in addresses.values()), addresses
    return set(addresses.values())

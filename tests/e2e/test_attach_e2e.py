"""End to end on the local cluster: a pod gets its interface, and the host gets it back intact.

Cases: host-device attach with the configured name, MTU and addresses (claim status, checkpoint,
restore on delete); the agent SIGKILLed and restarted while the pod runs, then the delete still
restores; a pod deleted while the agent is down gets its NIC back through the pin; two pods
sharing one NIC in macvlan mode get distinct pool addresses; a bad claim config is a pod Event
naming the field; a host-network pod asking for a device is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from localcluster import Cluster
from localcluster import multinet as deployment
from support import (
    agent_checkpoint,
    apply,
    claim,
    delete_pod,
    device_statuses,
    events_for,
    get,
    host_link,
    pod,
    podnetwork,
    wait_ready_network,
    wait_running,
)

pytestmark = [pytest.mark.cluster, pytest.mark.root]


def _network(cluster: Cluster, **parameters: Any) -> str:
    name = f"e2e-{secrets.token_hex(3)}"
    apply(cluster, podnetwork(name, **parameters))
    wait_ready_network(cluster, name)
    return name


def test_pod_gets_the_interface_and_the_host_gets_it_back(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    nic = make_nic(prefix="e2e", addresses=("198.51.100.21/24", "198.51.100.22/24"), mtu=1400)
    subprocess.run(
        [
            "ip",
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.51.100.1",
            "dev",
            nic.name,
            "proto",
            "static",
        ],
        check=True,
    )
    before = host_link(nic.name)
    net = _network(multinet, interfaces={"names": [nic.name]}, interfaceName="data0", mtu=1300)
    network_cleanup.append(net)

    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")

    shown = multinet.kubectl(
        "exec", "-n", e2e_namespace, "app", "--", "ip", "addr", "show", "data0"
    )
    assert "198.51.100.21/24" in shown.stdout and "198.51.100.22/24" in shown.stdout
    assert "mtu 1300" in shown.stdout
    assert host_link(nic.name) is None  # the NIC left the host

    (status,) = device_statuses(multinet, e2e_namespace, "nic")
    assert status["data"] == {"podNetwork": net}
    assert status["networkData"]["interfaceName"] == "data0"
    assert set(status["networkData"]["ips"]) == {"198.51.100.21/24", "198.51.100.22/24"}
    assert before is not None
    assert status["networkData"]["hardwareAddress"] == before["mac"]

    claim_uid = get(multinet, "resourceclaim", "nic", e2e_namespace)["metadata"]["uid"]
    prepared = agent_checkpoint(multinet)["claims"][claim_uid]
    assert prepared["plans"][0]["pod_ifname"] == "data0"

    annotation = get(multinet, "pod", "app", e2e_namespace)["metadata"]["annotations"]
    entries = json.loads(annotation["k8s.v1.cni.cncf.io/network-status"])
    assert any(e["interface"] == "data0" and e["name"] == net for e in entries)

    delete_pod(multinet, e2e_namespace, "app")
    after = wait_for(lambda: host_link(nic.name), timeout=30, what=f"{nic.name} back on the host")
    assert after == before
    wait_for(
        lambda: claim_uid not in agent_checkpoint(multinet)["claims"],
        timeout=60,
        what="NodeUnprepareResources to drop the claim from the checkpoint",
    )


def test_restore_after_agent_sigkill_while_pod_runs(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    nic = make_nic(prefix="e2k", addresses=("198.51.100.31/24",))
    before = host_link(nic.name)
    net = _network(multinet, interfaces={"names": [nic.name]}, interfaceName="net1")
    network_cleanup.append(net)
    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")

    deployment.restart_agent(multinet, kill=True)

    delete_pod(multinet, e2e_namespace, "app")
    after = wait_for(lambda: host_link(nic.name), timeout=30, what=f"{nic.name} back on the host")
    assert after == before


def _condition(cluster: Cluster, network: str, kind: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        conds = get(cluster, "podnetwork", network).get("status", {}).get("conditions", [])
        return next((c for c in conds if c["type"] == kind and c["status"] != "Unknown"), None)

    return wait_for(found, timeout=60, what=f"condition {kind} of PodNetwork {network}")


def test_two_pods_share_one_nic_in_macvlan_mode(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    parent = make_nic(prefix="e2m")
    before = host_link(parent.name)
    net = _network(
        multinet,
        interfaces={"names": [parent.name]},
        mode="macvlan",
        interfaceName="net1",
        ipam={"type": "pool", "subnet": "10.250.7.0/29"},
    )
    network_cleanup.append(net)
    for i in (1, 2):
        apply(
            multinet, claim(e2e_namespace, f"nic{i}", net), pod(e2e_namespace, f"app{i}", f"nic{i}")
        )
    for i in (1, 2):
        wait_running(multinet, e2e_namespace, f"app{i}")
    # The form of sharing this cluster serves, as the PodNetwork's Sharing condition reports it:
    # one shared device (a share ID per allocation) or one slot device per pod.
    sharing = _condition(multinet, net, "Sharing")
    assert sharing["status"] == "True", sharing
    assert sharing["reason"] in ("ConsumableCapacity", "SlotDevices"), sharing
    ips, devices = [], []
    for i in (1, 2):
        (status,) = device_statuses(multinet, e2e_namespace, f"nic{i}")
        assert status["data"] == {"podNetwork": net}
        if sharing["reason"] == "ConsumableCapacity":
            assert status.get("shareID")
        devices.append(status["device"])
        (ip,) = status["networkData"]["ips"]
        shown = multinet.kubectl(
            "exec", "-n", e2e_namespace, f"app{i}", "--", "ip", "addr", "show", "net1"
        )
        assert ip in shown.stdout
        ips.append(ip)
    assert len(set(ips)) == 2, ips
    assert all(ip.startswith("10.250.7.") for ip in ips)
    if sharing["reason"] == "SlotDevices":
        assert len(set(devices)) == 2 and all("-s" in d for d in devices), devices
    for i in (1, 2):
        delete_pod(multinet, e2e_namespace, f"app{i}")
    assert host_link(parent.name) == before


def test_bad_claim_config_is_a_pod_event_naming_the_field(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    nic = make_nic(prefix="e2b")
    net = _network(multinet, interfaces={"names": [nic.name]})
    network_cleanup.append(net)
    apply(
        multinet,
        claim(e2e_namespace, "nic", net, config={"interfaceName": "this-name-is-far-too-long"}),
        pod(e2e_namespace, "app", "nic"),
    )
    message = wait_for(
        lambda: next(
            (m for m in events_for(multinet, e2e_namespace, "Pod", "app") if "interfaceName" in m),
            None,
        ),
        timeout=60,
        what="a pod Event about the claim config",
    )
    assert "nic" in message  # names the claim
    assert get(multinet, "pod", "app", e2e_namespace)["status"]["phase"] == "Pending"
    assert host_link(nic.name) is not None


def test_host_network_pod_is_refused_with_a_clear_error(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    nic = make_nic(prefix="e2h", addresses=("198.51.100.41/24",))
    before = host_link(nic.name)
    net = _network(multinet, interfaces={"names": [nic.name]})
    network_cleanup.append(net)
    apply(
        multinet,
        claim(e2e_namespace, "nic", net),
        pod(e2e_namespace, "app", "nic", host_network=True),
    )
    message = wait_for(
        lambda: next(
            (m for m in events_for(multinet, e2e_namespace, "Pod", "app") if "host network" in m),
            None,
        ),
        timeout=90,
        what="a pod Event refusing the host-network pod",
    )
    assert "hostNetwork" in message
    assert host_link(nic.name) == before


def test_pod_deleted_while_the_agent_is_down_gets_its_nic_back(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    """StopPodSandbox is missed and the runtime tears the sandbox down while the agent is dead.
    Without a pin the netns would die with the veth inside (the kernel deletes a virtual device
    with its netns); the agent's pin (a bind mount that outlives the agent) keeps it. Back up,
    the agent brings the NIC home exactly through the pin, forgets the attachment and lets the
    claim be unprepared, so the pod's deletion completes."""
    nic = make_nic(prefix="e2d", addresses=("198.51.100.51/24",))
    before = host_link(nic.name)
    net = _network(multinet, interfaces={"names": [nic.name]}, interfaceName="net1")
    network_cleanup.append(net)
    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")
    claim_uid = get(multinet, "resourceclaim", "nic", e2e_namespace)["metadata"]["uid"]
    [netns] = [
        a["netns"]
        for a in agent_checkpoint(multinet)["attachments"].values()
        if a["pod"] == f"{e2e_namespace}/app"
    ]

    deployment.stop_agent(multinet, kill=True)
    try:
        multinet.kubectl("delete", "pod", "app", "-n", e2e_namespace, "--wait=false")
        wait_for(
            lambda: not Path(netns).exists(),
            timeout=60,
            what="the runtime to tear the pod's netns down",
        )
        assert host_link(nic.peer) is not None  # the pinned netns keeps the veth alive
    finally:
        deployment.start_agent(multinet)
        deployment.wait_agent_ready(multinet)

    after = wait_for(lambda: host_link(nic.name), timeout=60, what=f"{nic.name} back on the host")
    assert after == before
    wait_for(
        lambda: (
            "NotFound"
            in multinet.kubectl("get", "pod", "app", "-n", e2e_namespace, check=False).stderr
        ),
        timeout=120,
        what="the pod to be deleted (its claim unprepared)",
    )
    state = agent_checkpoint(multinet)
    assert claim_uid not in state["claims"]
    assert not [a for a in state["attachments"].values() if a["pod"] == f"{e2e_namespace}/app"]
    pins = deployment.agent_state_dir(multinet) / "pins"
    assert not [p for p in pins.iterdir() if os.path.ismount(p)]


def test_attach_failure_fails_the_sandbox_naming_claim_and_device(
    multinet: Cluster, e2e_namespace: str, make_nic: Any, network_cleanup: list[str]
) -> None:
    """A route whose gateway is not reachable from the pod's addresses: the kernel refuses it
    inside the pod, the sandbox fails with our message, and the NIC is back on the host."""
    nic = make_nic(prefix="e2f", addresses=("198.51.100.61/24",))
    before = host_link(nic.name)
    net = _network(
        multinet,
        interfaces={"names": [nic.name]},
        routes=[{"destination": "203.0.113.0/24", "gateway": "10.99.0.1"}],
    )
    network_cleanup.append(net)
    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    message = wait_for(
        lambda: next(
            (
                m
                for m in events_for(multinet, e2e_namespace, "Pod", "app")
                if "unreachable" in m.lower()
            ),
            None,
        ),
        timeout=90,
        what="a FailedCreatePodSandBox Event with the attach error",
    )
    assert f"claim {e2e_namespace}/nic" in message
    assert nic.name in message  # the device
    assert get(multinet, "pod", "app", e2e_namespace)["status"]["phase"] == "Pending"
    # The kubelet keeps retrying the sandbox (each try moves the NIC in and back): stop it first.
    delete_pod(multinet, e2e_namespace, "app")
    assert host_link(nic.name) == before

"""Claim status and network-status annotation: what users read after an attach.

Cases: a ready device carries data.podNetwork, networkData and a Ready=True condition; a failed
one carries Ready=False with the reason and no networkData; shareID appears only for shared
devices; the annotation keeps other writers' entries and replaces our own for the same interface.
"""

from __future__ import annotations

import json

from multinet.plans import AttachPlan, ClaimRef
from multinet.status import (
    DeviceOutcome,
    claim_status_apply,
    network_status_annotation,
)

CLAIM = ClaimRef(namespace="demo", name="net1", uid="u-1")


def _plan(share_id: str | None = None) -> AttachPlan:
    return AttachPlan(
        claim=CLAIM,
        request="nic",
        pool="node-a",
        device="eth-5a",
        share_id=share_id,
        network="storage",
        mode="macvlan" if share_id else "host-device",
        host_ifname="ens5",
        pod_ifname="net1",
    )


def test_ready_device_status_has_network_data_and_pod_network() -> None:
    outcome = DeviceOutcome(
        plan=_plan(),
        ready=True,
        interface_name="net1",
        mac="02:00:00:00:00:01",
        ips=("10.1.0.5/24", "fd00::5/64"),
    )
    body = claim_status_apply(CLAIM, [outcome])
    (entry,) = body["status"]["devices"]
    assert entry["driver"] == "multinet.dev"
    assert (entry["pool"], entry["device"]) == ("node-a", "eth-5a")
    assert entry["data"] == {"podNetwork": "storage"}
    assert entry["networkData"] == {
        "interfaceName": "net1",
        "ips": ["10.1.0.5/24", "fd00::5/64"],
        "hardwareAddress": "02:00:00:00:00:01",
    }
    assert entry["conditions"][0]["type"] == "Ready"
    assert entry["conditions"][0]["status"] == "True"
    assert "shareID" not in entry
    assert body["metadata"] == {"name": "net1", "namespace": "demo", "uid": "u-1"}


def test_failed_device_status_says_why_and_has_no_network_data() -> None:
    outcome = DeviceOutcome(
        plan=_plan(), ready=False, reason="AttachFailed", message="gateway unreachable"
    )
    (entry,) = claim_status_apply(CLAIM, [outcome])["status"]["devices"]
    assert "networkData" not in entry
    cond = entry["conditions"][0]
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        "AttachFailed",
        "gateway unreachable",
    )


def test_shared_device_status_carries_share_id() -> None:
    outcome = DeviceOutcome(plan=_plan(share_id="s-1"), ready=True, interface_name="net1")
    (entry,) = claim_status_apply(CLAIM, [outcome])["status"]["devices"]
    assert entry["shareID"] == "s-1"


def test_annotation_keeps_foreign_entries_and_replaces_ours() -> None:
    existing = json.dumps(
        [
            {"name": "cbr0", "interface": "eth0", "ips": ["10.88.0.4"], "default": True},
            {"name": "old", "interface": "net1", "ips": ["10.9.9.9"], "driver": "multinet.dev"},
        ]
    )
    outcome = DeviceOutcome(
        plan=_plan(),
        ready=True,
        interface_name="net1",
        mac="02:00:00:00:00:01",
        ips=("10.1.0.5/24",),
    )
    entries = json.loads(network_status_annotation(existing, [outcome]))
    assert entries[0]["interface"] == "eth0"
    assert entries[1] == {
        "name": "storage",
        "interface": "net1",
        "ips": ["10.1.0.5"],
        "mac": "02:00:00:00:00:01",
        "driver": "multinet.dev",
    }
    assert len(entries) == 2


def test_annotation_ignores_unparsable_existing_value() -> None:
    outcome = DeviceOutcome(plan=_plan(), ready=True, interface_name="net1")
    entries = json.loads(network_status_annotation("{not json", [outcome]))
    assert [e["interface"] for e in entries] == ["net1"]

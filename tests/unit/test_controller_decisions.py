"""Pure controller decisions: readiness reasons, the DeviceClass (selector, ownership, NameTaken),
which claims hold a network's devices (claim status data, slice attribute, the network's class)."""

from __future__ import annotations

from typing import Any

from multinet.api import podnetwork
from multinet.controller import decisions

UID = "1111-2222"


def pnw(enabled: bool = True, params: Any = None, gen: int = 3) -> podnetwork.PodNetwork:
    spec: dict[str, Any] = {"provider": "multinet.dev", "enabled": enabled}
    if params is not None:
        spec["parameters"] = params
    return podnetwork.parse(
        {"metadata": {"name": "fast", "uid": UID, "generation": gen}, "spec": spec}
    )


GOOD = {"interfaces": {"names": ["eth1"]}}


def test_ready() -> None:
    d = decisions.readiness(pnw(params=GOOD))
    assert (d.type, d.status, d.reason, d.generation) == ("Ready", "True", "Ready", 3)


def test_disabled_wins_over_invalid() -> None:
    d = decisions.readiness(pnw(enabled=False, params={"bad": 1}))
    assert (d.status, d.reason) == ("False", "AdministrativelyDisabled")


def test_invalid_message_lists_every_error() -> None:
    d = decisions.readiness(pnw(params={"interfaces": {"names": []}, "mtu": 1}))
    assert (d.status, d.reason) == ("False", "ParametersInvalid")
    assert d.message == (
        "parameters.interfaces.names: must have at least 1 item; "
        "parameters.mtu: must be between 68 and 65535, got 1"
    )


def test_missing_parameters_are_invalid() -> None:
    d = decisions.readiness(pnw())
    assert d.message == "parameters: is required (at least interfaces.names)"


def test_deleting_names_first_claims() -> None:
    users = [f"ns/c{i}" for i in range(7)]
    d = decisions.deleting(pnw(), users)
    assert (d.status, d.reason) == ("False", "Deleting")
    assert d.message.endswith(": ns/c0, ns/c1, ns/c2, ns/c3, ns/c4 and 2 more")


def test_device_class_body() -> None:
    body = decisions.device_class_body(pnw())
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "multinetwork.networking.k8s.io/v1alpha1",
            "kind": "PodNetwork",
            "name": "fast",
            "uid": UID,
            "controller": True,
        }
    ]
    assert body["spec"]["selectors"][0]["cel"]["expression"] == (
        'device.driver == "multinet.dev" && "podNetwork" in '
        'device.attributes["multinetwork.networking.k8s.io"] && '
        'device.attributes["multinetwork.networking.k8s.io"].podNetwork == "fast"'
    )


def test_device_class_actions() -> None:
    p = pnw()
    ours = decisions.device_class_body(p)
    assert decisions.device_class_action(None, p) == "create"
    assert decisions.device_class_action(ours, p) == "keep"
    drifted = {**ours, "spec": {"selectors": [{"cel": {"expression": "true"}}]}}
    assert decisions.device_class_action(drifted, p) == "update"
    foreign = {"metadata": {"name": "fast"}, "spec": ours["spec"]}
    assert decisions.device_class_action(foreign, p) == "taken"
    d = decisions.device_class_condition("taken", p)
    assert (d.type, d.status, d.reason) == ("DeviceClassReady", "False", "NameTaken")
    assert decisions.device_class_condition("keep", p).status == "True"


def claim(name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": "other"}}]}
        },
        "status": status,
    }


def result(device: str, request: str = "nic", driver: str = "multinet.dev") -> dict[str, Any]:
    return {"request": request, "driver": driver, "pool": "node1", "device": device}


SLICES = [
    {
        "spec": {
            "driver": "multinet.dev",
            "pool": {"name": "node1"},
            "devices": [
                {
                    "name": "eth1",
                    "attributes": {"multinetwork.networking.k8s.io/podNetwork": {"string": "fast"}},
                },
                {"name": "eth2", "attributes": {}},
            ],
        }
    }
]


def test_claims_using() -> None:
    by_status = claim(
        "a",
        devices=[
            {
                "driver": "multinet.dev",
                "pool": "node1",
                "device": "eth9",
                "data": {"podNetwork": "fast"},
            }
        ],
    )
    by_slice = claim("b", allocation={"devices": {"results": [result("eth1")]}})
    by_class = {
        "metadata": {"namespace": "ns", "name": "c"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "nic", "firstAvailable": [{"name": "x", "deviceClassName": "fast"}]}
                ]
            }
        },
        "status": {"allocation": {"devices": {"results": [result("eth2", request="nic/x")]}}},
    }
    unrelated = claim("d", allocation={"devices": {"results": [result("eth2")]}})
    other_driver = claim(
        "e", allocation={"devices": {"results": [result("eth1", driver="gpu.example.com")]}}
    )
    other_net = claim("f", devices=[{"driver": "multinet.dev", "data": {"podNetwork": "slow"}}])
    unallocated = claim("g")
    claims = [by_class, unrelated, by_slice, other_driver, by_status, other_net, unallocated]
    assert decisions.claims_using("fast", claims, SLICES) == ["ns/a", "ns/b", "ns/c"]
    assert decisions.claims_using("slow", claims, SLICES) == ["ns/f"]

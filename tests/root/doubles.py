"""Stand-ins for the apiserver side of ClaimPreparer in root tests (the cluster tests run the same
code against the real apiserver): the claim and PodNetwork reads and the IPReservation store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from multinet import ipam
from multinet.agent.prepare import DirectoryEntry
from multinet.api import parameters
from multinet.api.fields import IPAddress
from multinet.api.parameters import NetworkParameters
from multinet.errors import AllocationError
from multinet.ipam import Holder
from multinet.plans import ClaimRef

NODE = "node-a"


class FakeDirectory:
    def __init__(self, entries: dict[str, DirectoryEntry]) -> None:
        self.entries = entries

    def lookup(self, device: str) -> DirectoryEntry | None:
        return self.entries.get(device)


class FakeLookups:
    def __init__(self, networks: dict[str, dict[str, Any]]) -> None:
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.networks = networks

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.claims.get((namespace, name))

    async def get_network_parameters(self, network: str) -> NetworkParameters:
        return parameters.parse(self.networks[network])


class FakeReservations:
    """In-memory stand-in for the IPReservation objects, same rules: one holder (claim UID and
    node) per address, across all networks."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, str]] = {}

    async def reserve_from_pool(self, network: str, pool: ipam.Pool, holder: Holder) -> IPAddress:
        who = (holder.claim.uid, holder.node)
        for address in ipam.candidates(pool, holder.claim.uid):
            if self.held.setdefault(str(address), who) == who:
                return address
        raise AllocationError(f"network {network}: no free address in {pool.subnet}")

    async def reserve_static(self, network: str, address: IPAddress, holder: Holder) -> None:
        who = (holder.claim.uid, holder.node)
        if self.held.setdefault(str(address), who) != who:
            raise AllocationError(f"static address {address} is already reserved")

    async def release(self, addresses: Iterable[str], claim_uid: str, node: str) -> None:
        for a in addresses:
            if self.held.get(a) == (claim_uid, node):
                del self.held[a]


def claim_doc(
    ref: ClaimRef,
    device: str,
    *,
    request: str = "nic",
    config: list[dict[str, Any]] | None = None,
    pod_uid: str = "pod-1",
) -> dict[str, Any]:
    """A claim allocated by the scheduler: `device` of this node's pool, reserved for a pod."""
    return {
        "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": request,
                            "driver": "multinet.dev",
                            "pool": NODE,
                            "device": device,
                        },
                        {"request": request, "driver": "other.dev", "pool": NODE, "device": "x"},
                    ],
                    "config": config or [],
                }
            },
            "reservedFor": [{"resource": "pods", "name": "p1", "uid": pod_uid}],
        },
    }

"""Pure: assemble an `AttachPlan` from what prepare gathered (no I/O).

`multinet.agent.prepare` does the reading: the claim from the API, the network's parameters, the
host interface's state, the IPAM reservations, and the take-back of a NIC still in an old pod.
What it then decides from those values lives here, so it is unit-testable without an apiserver
or a kernel: who an address is reserved for, which addresses a pod gets without pool IPAM, the
plan itself, and that two devices of one claim never take the same name inside the pod.
"""

from __future__ import annotations

from collections.abc import Sequence

from multinet.api.allocation import Allocation, Result
from multinet.api.claimconfig import EffectiveConfig
from multinet.errors import ConfigError
from multinet.ipam import Holder
from multinet.plans import AttachPlan, ClaimRef, HostState, Route


def holder(claim: ClaimRef, alloc: Allocation, result: Result, node: str) -> Holder:
    """Whom an address of this result is reserved for: the claim's first pod, when known."""
    pod = alloc.pods[0] if alloc.pods else None
    return Holder(
        claim=claim,
        request=result.request_name,
        device=result.device,
        node=node,
        pod_name=pod.name if pod else None,
        pod_uid=pod.uid if pod else None,
    )


def addresses_without_pool(eff: EffectiveConfig, host: HostState | None) -> tuple[str, ...]:
    """The pod interface's addresses when IPAM is not `pool`: the configured ones, else the
    NIC's own, which travel with it (a macvlan child has none)."""
    if eff.addresses:
        return tuple(str(a) for a in eff.addresses)
    return host.addresses if host is not None else ()


def attach_plan(
    claim: ClaimRef,
    result: Result,
    *,
    network: str,
    host_ifname: str,
    eff: EffectiveConfig,
    host: HostState | None,
    addresses: tuple[str, ...],
    reserved: tuple[str, ...],
) -> AttachPlan:
    """The plan for one allocated device: the effective config applied to the host interface."""
    return AttachPlan(
        claim=claim,
        request=result.request_name,
        pool=result.pool,
        device=result.device,
        share_id=result.share_id,
        network=network,
        mode=eff.mode,
        host_ifname=host_ifname,
        pod_ifname=eff.interface_name or host_ifname,
        addresses=addresses,
        mtu=eff.mtu,
        mac=eff.mac,
        routes=tuple(
            Route(
                destination=str(r.destination),
                gateway=None if r.gateway is None else str(r.gateway),
            )
            for r in eff.routes
        ),
        host=host,
        reserved_addresses=reserved,
    )


def check_pod_ifnames(claim: ClaimRef, plans: Sequence[AttachPlan]) -> None:
    """Two devices of one claim cannot take the same name inside the pod: ConfigError if so."""
    seen: dict[str, AttachPlan] = {}
    for plan in plans:
        other = seen.setdefault(plan.pod_ifname, plan)
        if other is not plan:
            raise ConfigError(
                [
                    f"interfaceName: {plan.pod_ifname} is already taken by device "
                    f"{other.device} of request {other.request}; give each request "
                    "its own interfaceName"
                ],
                subject=f"claim {claim} request {plan.request}",
            )

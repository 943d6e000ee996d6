"""Pure: assemble an `AttachPlan` from what prepare gathered (no I/O).

`multinet.agent.prepare` does the reading: the claim from the API, the network's parameters, the
host interface's state, the IPAM reservations, and the take-back of a NIC still in an old pod.
What it then decides from those values lives here, so it is unit-testable without an apiserver
or a kernel: who an address is reserved for, which addresses a pod gets without pool IPAM, the
plan itself, and that two devices of one claim never take the same name inside the pod.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Sequence

from multinet.api import policy
from multinet.api.allocation import Allocation, PodRef, Result
from multinet.api.claimconfig import EffectiveConfig
from multinet.api.fields import POD_OWN_IFNAMES
from multinet.errors import ConfigError
from multinet.ipam import Holder
from multinet.plans import (
    AttachPlan,
    ClaimRef,
    CniPlan,
    HostState,
    Neighbor,
    PreparedClaim,
    Route,
    Rule,
    Sysctl,
)


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
    pod: PodRef | None = None,
) -> AttachPlan:
    """The plan for one allocated device: the effective config applied to the host interface.

    Raises ConfigError for what only the plan shows: a sysctl naming another interface than the
    claim's, a default route without a gateway."""
    pod_ifname = eff.interface_name or host_ifname
    where = f"claim {claim} request {result.request_name}"
    default_route, routes = _split_default(eff)
    params = eff.network
    return AttachPlan(
        claim=claim,
        request=result.request_name,
        pool=result.pool,
        device=result.device,
        share_id=result.share_id,
        network=network,
        mode=eff.mode,
        host_ifname=host_ifname,
        pod_ifname=pod_ifname,
        addresses=addresses,
        mtu=eff.mtu,
        mac=eff.mac or (stable_mac(claim, pod, result.request_name) if eff.stable_mac else None),
        routes=tuple(_route(r) for r in routes),
        host=host,
        reserved_addresses=reserved,
        rules=tuple(_rule(r) for r in eff.rules),
        neighbors=tuple(Neighbor(address=str(n.address), mac=n.mac) for n in eff.neighbors),
        sysctls=_sysctls(eff, pod_ifname, where),
        features=eff.features,
        default_route=eff.default_route,
        default_gateways=_default_gateways(eff, default_route, addresses, where),
        macvlan_mode=(params.macvlan_mode if params else None) or "bridge",
        cni=_cni(eff, claim, pod),
    )


def _route(route: policy.Route) -> Route:
    return Route(
        destination=str(route.destination),
        gateway=None if route.gateway is None else str(route.gateway),
        metric=route.metric,
        source=None if route.source is None else str(route.source),
        table=route.table,
        scope=None if route.scope is None else policy.SCOPES[route.scope],
        onlink=route.onlink,
    )


def _rule(rule: policy.Rule) -> Rule:
    return Rule(
        priority=rule.priority,
        source=None if rule.from_ is None else str(rule.from_),
        destination=None if rule.to is None else str(rule.to),
        table=rule.table,
        iif=rule.iif,
        oif=rule.oif,
    )


def _split_default(eff: EffectiveConfig) -> tuple[list[policy.Route], list[policy.Route]]:
    """With defaultRoute, main-table default routes via a gateway say which gateway takes over
    the pod's default route: they replace eth0's instead of being added beside it."""
    if not eff.default_route:
        return [], list(eff.routes)
    default = [
        r
        for r in eff.routes
        if r.destination.prefixlen == 0 and r.table_number == policy.MAIN_TABLE and r.gateway
    ]
    return default, [r for r in eff.routes if r not in default]


def _default_gateways(
    eff: EffectiveConfig,
    routes: list[policy.Route],
    addresses: tuple[str, ...],
    where: str,
) -> tuple[str, ...]:
    """The gateway of each family the pod's default route goes through (defaultRoute only)."""
    if not eff.default_route or eff.mode == "cni":  # cni: the chain's result names the gateway
        return ()
    gateways = {r.destination.version: str(r.gateway) for r in routes}
    for cidr in addresses:
        version = ipaddress.ip_interface(cidr).version
        pool = eff.ipam.pool_for(version)
        if pool is not None and pool.gateway is not None:
            gateways.setdefault(version, str(pool.gateway))
    if not gateways:
        raise ConfigError(
            [
                "defaultRoute: needs a gateway: set ipam.gateway (or ipam.subnets[].gateway) "
                "of the PodNetwork, or a route to 0.0.0.0/0 or ::/0 via a gateway"
            ],
            subject=where,
        )
    return tuple(gateways[v] for v in sorted(gateways))


def _sysctls(eff: EffectiveConfig, pod_ifname: str, where: str) -> tuple[Sysctl, ...]:
    out: list[Sysctl] = []
    errors: list[str] = []
    for key, value in eff.sysctls:
        path, ifname = policy.sysctl_path(key)
        if ifname is not None and ifname not in (pod_ifname, *policy.SYSCTL_ALL_INTERFACES):
            errors.append(
                f"sysctls[{key}]: names interface {ifname}, but this claim's interface in the pod "
                f"is {pod_ifname} (a claim may set its own interface's keys, all and default)"
            )
        out.append(Sysctl(path=path, value=value))
    if errors:
        raise ConfigError(errors, subject=where)
    return tuple(out)


def stable_mac(claim: ClaimRef, pod: PodRef | None, request: str) -> str:
    """A locally administered unicast MAC derived from the pod's namespace and name (the claim's
    when no pod is known) and the request: the same pod name gets the same MAC again."""
    owner = pod.name if pod is not None else claim.name
    digest = hashlib.sha256(f"{claim.namespace}/{owner}/{request}".encode()).digest()
    first = (digest[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))


def _cni(eff: EffectiveConfig, claim: ClaimRef, pod: PodRef | None) -> CniPlan | None:
    if eff.mode != "cni" or eff.network is None or eff.network.cni is None:
        return None
    config = eff.network.cni.config
    return CniPlan(
        config=json.loads(config) if isinstance(config, str) else config,
        takes_device=eff.network.cni.takes_device,
        ips=tuple(str(a) for a in eff.addresses),
        pod_name=pod.name if pod is not None else "",
        pod_namespace=claim.namespace,
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


def check_rule_interfaces(claim: ClaimRef, plans: Sequence[AttachPlan]) -> None:
    """A rule's iif/oif must be an interface of the pod: the claim's own, lo or eth0."""
    names = {p.pod_ifname for p in plans} | set(POD_OWN_IFNAMES)
    for plan in plans:
        errors = [
            f"rules[{i}].{side}: {value} is not an interface of the pod; use "
            + ", ".join(sorted(names))
            for i, rule in enumerate(plan.rules)
            for side, value in (("iif", rule.iif), ("oif", rule.oif))
            if value is not None and value not in names
        ]
        if errors:
            raise ConfigError(errors, subject=f"claim {claim} request {plan.request}")


def check_one_default_route(
    claim: ClaimRef, plans: Sequence[AttachPlan], others: Sequence[PreparedClaim]
) -> None:
    """At most one interface of a pod takes its default route: among this claim's plans and
    those of the other claims prepared for the same pod (``others``)."""
    mine = [p for p in plans if p.default_route]
    taken = [(c.claim, p) for c in others for p in c.plans if p.default_route]
    taken += [(claim, p) for p in mine]
    if len(taken) <= 1:
        return
    (owner, first), (_, second) = taken[0], taken[-1]
    raise ConfigError(
        [
            f"defaultRoute: the pod's default route is already taken by claim {owner} "
            f"request {first.request}; at most one claim request of a pod may set defaultRoute"
        ],
        subject=f"claim {claim} request {second.request}",
    )

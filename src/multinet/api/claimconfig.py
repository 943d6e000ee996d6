"""The opaque config for driver ``multinet.dev`` and the effective configuration of one request.

A DeviceClass or a ResourceClaim may carry ``config[].opaque{driver: multinet.dev, parameters}``,
optionally scoped to some requests. The parameters are a ``ClaimConfig``: ``interfaceName``,
``addresses`` (static, CIDR form), ``mac``, ``mtu``, ``routes``; strict, unknown fields rejected.

``effective_config`` layers, lowest first: the PodNetwork's parameters, every DeviceClass config
that applies to the request, every claim config that applies to the request. A field set by a later
layer replaces the earlier value as a whole (lists are not concatenated: a claim that sets
``routes`` says exactly which routes it wants). Errors name the claim, the request and the field:
``claim default/web request nic: config[1].mtu: must be between 68 and 65535, got 20``.

In a pool network a static address must be a host address of the pool's subnet, with its prefix
length, and neither its gateway nor excluded; an MTU below 1280 is refused next to anything IPv6.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from multinet.api import fields, names, parameters, policy, problems
from multinet.api.fields import (
    InterfaceAddress,
    IPInterface,
    Mac,
    Mtu,
    PodIfName,
    StrictModel,
)
from multinet.api.parameters import Ipam, Mode, NetworkParameters
from multinet.api.policy import Ethtool, Neighbor, Route, Rule, Sysctls


class ClaimConfig(StrictModel):
    """``opaque.parameters`` for driver ``multinet.dev``; every field optional."""

    interface_name: PodIfName | None = None
    addresses: Annotated[list[InterfaceAddress], Field(max_length=fields.MAX_ADDRESSES)] | None = (
        None
    )
    mac: Mac | None = None
    mtu: Mtu | None = None
    routes: Annotated[list[Route], Field(max_length=fields.MAX_ROUTES)] | None = None
    rules: Annotated[list[Rule], Field(max_length=policy.MAX_RULES)] | None = None
    neighbors: Annotated[list[Neighbor], Field(max_length=policy.MAX_NEIGHBORS)] | None = None
    sysctls: Sysctls | None = None
    ethtool: Ethtool | None = None
    default_route: bool | None = None
    stable_mac: bool | None = None


#: ClaimConfig fields in the order layers are merged; each replaces the earlier value whole.
LAYERED = (
    "interface_name",
    "mac",
    "mtu",
    "addresses",
    "routes",
    "rules",
    "neighbors",
    "sysctls",
    "ethtool",
    "default_route",
    "stable_mac",
)


@dataclasses.dataclass(frozen=True)
class OpaqueConfig:
    """One config entry as found in a DeviceClass, a claim spec or ``status.allocation``.

    ``index`` is the entry's position in the list it came from, so messages point at it;
    ``requests`` empty means the entry applies to every request of the claim.
    """

    parameters: Any
    index: int
    requests: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EffectiveConfig:
    """What the node agent applies for one (claim, request).

    ``interface_name`` None keeps the device's own name; ``mtu``/``mac`` None keep the device's.
    ``addresses`` are static addresses (reserved like pool addresses when IPAM is ``pool``).
    """

    mode: Mode
    interface_name: str | None
    mtu: int | None
    mac: str | None
    addresses: tuple[IPInterface, ...]
    routes: tuple[Route, ...]
    ipam: Ipam
    rules: tuple[Rule, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    features: tuple[tuple[str, bool], ...] = ()  # ethtool features
    default_route: bool = False
    stable_mac: bool = False
    network: NetworkParameters | None = None  # the PodNetwork's parameters (macvlan mode, cni)


def applies_to(scope: Sequence[str], request: str) -> bool:
    """A config scoped to ``req`` also applies to its subrequests ``req/sub``."""
    if not scope:
        return True
    return request in scope or request.split("/", 1)[0] in scope


def parse(doc: Any, *, prefix: str = "config") -> ClaimConfig:
    """Validate one opaque parameters document; ``ConfigError`` lists every problem."""
    try:
        return ClaimConfig.model_validate({} if doc is None else doc)
    except ValidationError as exc:
        problems.fail(problems.messages(exc, prefix))


class ApiShape(BaseModel):
    """Part of an object the apiserver wrote: the fields we read are type-checked (a wrong shape
    is a ``ConfigError`` naming the field, never an AttributeError), the rest is ignored."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Opaque(ApiShape):
    driver: str = ""
    parameters: Any = None  # validated by ``parse`` only for our driver and matching requests


class AllocatedConfig(ApiShape):
    """One ``status.allocation.devices.config[]`` entry."""

    source: str = ""
    requests: list[str] | None = None
    opaque: Opaque | None = None


_ALLOCATED_CONFIGS: TypeAdapter[list[AllocatedConfig] | None] = TypeAdapter(
    list[AllocatedConfig] | None
)


def split_allocation_configs(
    config: Any, driver: str = names.DRIVER, *, prefix: str = "config"
) -> tuple[list[OpaqueConfig], list[OpaqueConfig]]:
    """``status.allocation.devices.config`` -> (class configs, claim configs) for ``driver``.

    ``config`` may be raw JSON or already validated entries; a wrong shape is a ``ConfigError``
    whose paths start with ``prefix``.
    """
    try:
        entries = _ALLOCATED_CONFIGS.validate_python(config) or []
    except ValidationError as exc:
        problems.fail(problems.messages(exc, prefix))
    from_class: list[OpaqueConfig] = []
    from_claim: list[OpaqueConfig] = []
    for i, entry in enumerate(entries):
        if entry.opaque is None or entry.opaque.driver != driver:
            continue
        item = OpaqueConfig(entry.opaque.parameters, i, tuple(entry.requests or ()))
        (from_class if entry.source == "FromClass" else from_claim).append(item)
    return from_class, from_claim


def _overlay(base: dict[str, Any], cfg: ClaimConfig) -> None:
    for key in LAYERED:
        value = getattr(cfg, key)
        if value is not None:
            base[key] = value


def _cross_check(
    eff: dict[str, Any], network: NetworkParameters, where: dict[str, str]
) -> list[str]:
    """Rules between the merged fields; each message points at the layer that set the field."""
    out = _check_addresses(eff, network, where)
    for key, check in (
        ("routes", lambda v: parameters.check_routes(v, network.ipam, prefix="routes")),
        ("rules", policy.check_rules),
        ("neighbors", policy.check_neighbors),
    ):
        if (layer := where.get(key)) is not None:
            out += [f"{layer}.{msg}" for msg in check(list(eff[key]))]
    if network.mode == "cni":
        out += [
            f"{where[key]}.{fields_alias(key)}: not used when the PodNetwork's mode is cni; "
            "configure it in the CNI config"
            for key in _NOT_IN_CNI
            if key in where
        ]
    if (too_small := _mtu_for_ipv6(eff, network.ipam, where)) is not None:
        out.append(too_small)
    return out


#: Claim config fields a CNI chain has no place for (mac and addresses go to the plugins'
#: runtimeConfig, interfaceName is CNI_IFNAME, defaultRoute is applied after the chain).
_NOT_IN_CNI = ("mtu", "routes", "rules", "neighbors", "sysctls", "ethtool", "stable_mac")


def fields_alias(key: str) -> str:
    """The camelCase name users write for a ClaimConfig field."""
    return str(ClaimConfig.model_fields[key].alias or key)


def _check_addresses(
    eff: dict[str, Any], network: NetworkParameters, where: dict[str, str]
) -> list[str]:
    """No address twice, each a usable static address of its family's pool."""
    out: list[str] = []
    pools = network.ipam.pools()
    seen: set[IPInterface] = set()
    for i, addr in enumerate(eff["addresses"]):
        path = f"{where.get('addresses', 'config')}.addresses[{i}]"
        if addr in seen:
            out.append(f"{path}: {addr} is listed twice")
        seen.add(addr)
        if pools:
            out += [f"{path}: {addr} {why}" for why in _static_in_pool(addr, network.ipam)]
    return out


def _static_in_pool(addr: IPInterface, ipam: Ipam) -> list[str]:
    """What keeps static address ``addr`` from being reserved in the pool (none: usable)."""
    pool = ipam.pool_for(addr.version)
    if pool is None or addr.ip not in pool.subnet:
        subnets = " or ".join(str(p.subnet) for p in ipam.pools())
        return [f"is outside subnet {subnets} of the PodNetwork"]
    subnet = pool.subnet
    out: list[str] = []
    if addr.network.prefixlen != subnet.prefixlen:
        # Another length would give the pod a different on-link network than its neighbours.
        out.append(
            f"must have the prefix length /{subnet.prefixlen} of subnet {subnet} "
            f"of the PodNetwork, got /{addr.network.prefixlen}"
        )
    if why := parameters.not_a_host(addr.ip, subnet):
        out.append(why)
    elif addr.ip == pool.gateway:
        out.append("is the gateway (ipam.gateway) of the PodNetwork")
    else:
        for i, block in enumerate(pool.exclude):
            if block.version == addr.version and addr.ip in block:
                out.append(f"is excluded by ipam.exclude[{i}] ({block}) of the PodNetwork")
                break
    return out


def _mtu_for_ipv6(eff: dict[str, Any], ipam: Ipam, where: dict[str, str]) -> str | None:
    """An MTU below IPv6's minimum together with anything IPv6, pointed at the layer to fix.

    IPv6 refuses to run on a link below 1280 (RFC 8200), so the pod would lose exactly those
    addresses and routes. The PodNetwork's own subnet and routes were checked against its own
    MTU when it was validated; here a layer may have lowered the MTU or added IPv6.
    """
    mtu = eff["mtu"]
    if mtu is None or mtu >= fields.IPV6_MIN_MTU:
        return None
    ipv6: list[tuple[str, str]] = []  # (what, path)
    if (pool6 := ipam.pool_for(6)) is not None:
        ipv6.append((f"subnet {pool6.subnet}", "ipam of the PodNetwork"))
    ipv6 += [
        (f"address {a}", f"{where.get('addresses', 'config')}.addresses[{i}]")
        for i, a in enumerate(eff["addresses"])
        if a.version == 6
    ]
    ipv6 += [
        (
            f"route {r.destination}",
            f"{where['routes']}.routes[{i}]"
            if "routes" in where
            else f"routes[{i}] of the PodNetwork",
        )
        for i, r in enumerate(eff["routes"])
        if r.destination.version == 6
    ]
    if not ipv6:
        return None
    what, path = ipv6[0]
    if "mtu" in where:
        return (
            f"{where['mtu']}.mtu: must be at least {fields.IPV6_MIN_MTU} for IPv6 {what}, got {mtu}"
        )
    return (
        f"{path}: IPv6 needs an MTU of at least {fields.IPV6_MIN_MTU}, "
        f"but the PodNetwork's mtu is {mtu}"
    )


def effective_config(
    network: NetworkParameters,
    class_configs: Sequence[OpaqueConfig],
    claim_configs: Sequence[OpaqueConfig],
    *,
    claim: str,
    request: str,
) -> EffectiveConfig:
    """Merge the layers for ``request`` of ``claim`` ("namespace/name"); raise ``ConfigError``."""
    merged: dict[str, Any] = {
        "interface_name": network.interface_name,
        "mtu": network.mtu,
        "mac": None,
        "addresses": [],
        "routes": list(network.routes),
        "rules": list(network.rules),
        "neighbors": list(network.neighbors),
        "sysctls": dict(network.sysctls),
        "ethtool": network.ethtool,
        "default_route": network.default_route,
        "stable_mac": network.stable_mac,
    }
    where: dict[str, str] = {}
    errors: list[str] = []
    layers = [("class config", c) for c in class_configs] + [("config", c) for c in claim_configs]
    for label, entry in layers:
        if not applies_to(entry.requests, request):
            continue
        prefix = f"{label}[{entry.index}]"
        try:
            cfg = parse(entry.parameters, prefix=prefix)
        except problems.ConfigError as exc:
            errors += exc.errors
            continue
        _overlay(merged, cfg)
        for key in cfg.model_fields_set:
            where[key] = prefix
    if not errors:
        errors = _cross_check(merged, network, where)
    if errors:
        problems.fail(errors, subject=f"claim {claim} request {request}")
    return EffectiveConfig(
        mode=network.mode,
        interface_name=merged["interface_name"],
        mtu=merged["mtu"],
        mac=merged["mac"],
        addresses=tuple(merged["addresses"]),
        routes=tuple(merged["routes"]),
        ipam=network.ipam,
        rules=tuple(merged["rules"]),
        neighbors=tuple(merged["neighbors"]),
        sysctls=tuple(merged["sysctls"].items()),
        features=tuple(merged["ethtool"].features.items()),
        default_route=merged["default_route"],
        stable_mac=merged["stable_mac"],
        network=network,
    )

"""``spec.parameters`` of a PodNetwork whose provider is ``multinet.dev``.

Which host interfaces form the network (``interfaces.names``: exact names and globs), how a pod gets
one (``mode``), the default name inside the pod, MTU, IPAM and routes. ``parse`` validates a raw
document and raises ``ConfigError`` listing *every* problem as ``parameters.<path>: <rule>``; field
rules come from the model, cross-field rules (addresses inside the subnet, families agree, ranges
ordered, the pool has an address to hand out, IPv6 gets an MTU of at least 1280) from
``cross_check`` which runs once every field is individually valid.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError
from pydantic.alias_generators import to_snake

from multinet.api import fields, policy, problems
from multinet.api.fields import (
    Address,
    AddressOrNetwork,
    IPAddress,
    IPNetwork,
    Mtu,
    NamePattern,
    Network,
    PodIfName,
    StrictModel,
)
from multinet.api.policy import Ethtool, Neighbor, Route, Rule, Sysctls

PREFIX = "parameters"

Mode = Literal["host-device", "macvlan", "cni"]
MacvlanMode = Literal["bridge", "private", "vepa", "passthru"]
MAX_SUBNETS = 2  # one per address family
DEFAULT_INTERFACES_PER_PARENT = 64
MAX_INTERFACES_PER_PARENT = 4096


class Interfaces(StrictModel):
    """Host interfaces that belong to the network."""

    names: Annotated[list[NamePattern], Field(min_length=1, max_length=fields.MAX_INTERFACE_NAMES)]


class Subnet(StrictModel):
    """One pool: addresses of ``subnet`` within ``rangeStart``..``rangeEnd``, minus ``exclude``
    and ``gateway``."""

    subnet: Network
    range_start: Address | None = None
    range_end: Address | None = None
    exclude: Annotated[list[AddressOrNetwork], Field(max_length=fields.MAX_EXCLUDE)] = []
    gateway: Address | None = None


class Ipam(StrictModel):
    """``none``: the NIC's own addresses travel with it. ``pool``: an address from ``subnet``
    (one pool, its fields beside it), or one of each family from ``subnets`` (dual stack)."""

    type: Literal["none", "pool"] = "none"
    subnet: Network | None = None
    range_start: Address | None = None
    range_end: Address | None = None
    exclude: Annotated[list[AddressOrNetwork], Field(max_length=fields.MAX_EXCLUDE)] = []
    gateway: Address | None = None
    subnets: Annotated[list[Subnet], Field(max_length=MAX_SUBNETS)] = []

    def pools(self) -> tuple[Subnet, ...]:
        """The pools a claim takes one address from each (none unless type is pool)."""
        if self.type != "pool":
            return ()
        if self.subnets:
            return tuple(self.subnets)
        if self.subnet is None:
            return ()
        return (
            Subnet.model_construct(
                subnet=self.subnet,
                range_start=self.range_start,
                range_end=self.range_end,
                exclude=self.exclude,
                gateway=self.gateway,
            ),
        )

    def pool_for(self, version: int) -> Subnet | None:
        return next((p for p in self.pools() if p.subnet.version == version), None)


class Cni(StrictModel):
    """``mode: cni``: the CNI network config or conflist the agent runs for each claim, exactly
    as a NetworkAttachmentDefinition's ``spec.config`` holds it (as an object or a JSON string)."""

    config: dict[str, Any] | str

    @property
    def takes_device(self) -> bool:
        """The chain's first plugin moves the allocated NIC itself into the pod."""
        return first_plugin_type(self.config) in EXCLUSIVE_CNI_PLUGINS


#: CNI plugins that move the whole NIC into the pod: one claim per NIC, like host-device mode.
EXCLUSIVE_CNI_PLUGINS = frozenset({"host-device", "sriov", "ib-sriov"})


def first_plugin_type(config: dict[str, Any] | str) -> str | None:
    """The ``type`` of a config's first plugin (None when the config does not say)."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    if not isinstance(config, dict):
        return None
    plugins = config.get("plugins")
    first = plugins[0] if isinstance(plugins, list) and plugins else config
    kind = first.get("type") if isinstance(first, dict) else None
    return kind if isinstance(kind, str) else None


class NetworkParameters(StrictModel):
    interfaces: Interfaces
    mode: Mode = "host-device"
    interface_name: PodIfName | None = None
    mtu: Mtu | None = None
    ipam: Ipam = Ipam()
    routes: Annotated[list[Route], Field(max_length=fields.MAX_ROUTES)] = []
    rules: Annotated[list[Rule], Field(max_length=policy.MAX_RULES)] = []
    neighbors: Annotated[list[Neighbor], Field(max_length=policy.MAX_NEIGHBORS)] = []
    sysctls: Sysctls = {}
    ethtool: Ethtool = Ethtool()
    default_route: bool = False
    stable_mac: bool = False
    macvlan_mode: MacvlanMode | None = None
    interfaces_per_parent: Annotated[int, Field(ge=1, le=MAX_INTERFACES_PER_PARENT)] | None = None
    cni: Cni | None = None

    @property
    def shares_parent(self) -> bool:
        """Whether one host NIC serves several claims: macvlan children do, and so do CNI
        chains unless their first plugin takes the NIC itself (host-device, SR-IOV)."""
        if self.mode == "macvlan":
            return True
        return self.mode == "cni" and self.cni is not None and not self.cni.takes_device

    @property
    def parent_capacity(self) -> int:
        """How many claims one parent NIC serves (macvlan, and CNI chains that share it)."""
        if self.interfaces_per_parent is not None:
            return self.interfaces_per_parent
        return 1 if self.macvlan_mode == "passthru" else DEFAULT_INTERFACES_PER_PARENT


def _family(version: int) -> str:
    return f"IPv{version}"


def _inside(path: str, value: IPAddress | IPNetwork, subnet: IPNetwork) -> str | None:
    """None when ``value`` lies in ``subnet``, else the problem."""
    if value.version != subnet.version:
        return (
            f"{path}: {value} is {_family(value.version)} "
            f"but subnet {subnet} is {_family(subnet.version)}"
        )
    inside = (
        value.subnet_of(subnet)  # type: ignore[arg-type]
        if isinstance(value, IPNetwork)
        else value in subnet
    )
    return None if inside else f"{path}: {value} is outside subnet {subnet}"


_MULTICAST: dict[int, IPNetwork] = {
    4: ipaddress.IPv4Network("224.0.0.0/4"),
    6: ipaddress.IPv6Network("ff00::/8"),
}
_LOOPBACK: dict[int, IPNetwork] = {
    4: ipaddress.IPv4Network("127.0.0.0/8"),
    6: ipaddress.IPv6Network("::1/128"),
}


def host_range(subnet: IPNetwork) -> tuple[int, int]:
    """First and last address of ``subnet`` an interface may have, as integers.

    IPv4 leaves out the network and broadcast addresses (not in /31 and /32, RFC 3021), IPv6 the
    all-zeros subnet-router anycast address (not in /128): the rule ``multinet.ipam`` hands
    addresses out by, so what is valid here is what the pool can serve.
    """
    lo, hi = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.version == 4 and subnet.prefixlen < 31:
        return lo + 1, hi - 1
    if subnet.version == 6 and subnet.prefixlen < 128:
        return lo + 1, hi
    return lo, hi


def not_a_host(address: IPAddress, subnet: IPNetwork) -> str | None:
    """Why ``address``, inside ``subnet``, cannot be an interface's or a gateway's; else None."""
    lo, hi = host_range(subnet)
    if int(address) < lo:
        return f"is the network address of {subnet}"
    if int(address) > hi:
        return f"is the broadcast address of {subnet}"
    return None


def usable_count(pool: Subnet, subnet: IPNetwork) -> int:
    """How many addresses the pool can hand out: its host range within rangeStart..rangeEnd,
    minus the exclude blocks and the gateway (fields already checked to lie in ``subnet``)."""
    lo, hi = host_range(subnet)
    if pool.range_start is not None:
        lo = max(lo, int(pool.range_start))
    if pool.range_end is not None:
        hi = min(hi, int(pool.range_end))
    taken = [(int(b.network_address), int(b.broadcast_address)) for b in pool.exclude]
    if pool.gateway is not None:
        taken.append((int(pool.gateway), int(pool.gateway)))
    count = max(0, hi - lo + 1)
    covered = lo - 1  # every address up to here is already subtracted (or outside the range)
    for start, end in sorted(taken):
        first, last = max(start, covered + 1), min(end, hi)
        if first <= last:
            count -= last - first + 1
            covered = last
    return count


def _check_subnet(subnet: IPNetwork, path: str) -> str | None:
    if subnet.prefixlen == 0:
        return f"{path}: must not be /0 (every {_family(subnet.version)} address), got {subnet}"
    for kind, special in (("multicast", _MULTICAST), ("loopback", _LOOPBACK)):
        block = special[subnet.version]
        if subnet.overlaps(block):
            return f"{path}: {subnet} overlaps the {kind} range {block}"
    return None


def check_ipam(ipam: Ipam, prefix: str = "ipam") -> list[str]:
    single = {
        "subnet": ipam.subnet,
        "rangeStart": ipam.range_start,
        "rangeEnd": ipam.range_end,
        "gateway": ipam.gateway,
        "exclude": ipam.exclude or None,
    }
    if ipam.type == "none":
        given = {**single, "subnets": ipam.subnets or None}
        return [
            f"{prefix}.{key}: only allowed when {prefix}.type is pool"
            for key, value in given.items()
            if value is not None
        ]
    if not ipam.subnets:
        if ipam.subnet is None:
            return [f"{prefix}.subnet: is required when {prefix}.type is pool (or subnets)"]
        return check_pool(ipam.pools()[0], prefix)
    out = [
        f"{prefix}.{key}: cannot be combined with {prefix}.subnets; "
        f"give each pool its own entry in {prefix}.subnets"
        for key, value in single.items()
        if value is not None
    ]
    families: dict[int, int] = {}
    for i, pool in enumerate(ipam.subnets):
        version = pool.subnet.version
        if version in families:
            out.append(
                f"{prefix}.subnets[{i}].subnet: a second {_family(version)} pool "
                f"(subnets[{families[version]}] is one); give at most one pool per family"
            )
        families.setdefault(version, i)
        out += check_pool(pool, f"{prefix}.subnets[{i}]")
    return out


def check_pool(pool: Subnet, prefix: str) -> list[str]:
    """The rules of one pool; ``prefix`` is where its fields sit (``ipam``, ``ipam.subnets[1]``)."""
    subnet = pool.subnet
    out: list[str] = []
    if msg := _check_subnet(subnet, f"{prefix}.subnet"):
        out.append(msg)
    optional = {
        "rangeStart": pool.range_start,
        "rangeEnd": pool.range_end,
        "gateway": pool.gateway,
    }
    for key, value in optional.items():
        if value is not None and (msg := _inside(f"{prefix}.{key}", value, subnet)):
            out.append(msg)
    gw = pool.gateway
    inside = gw is not None and gw.version == subnet.version and gw in subnet  # else: told above
    if gw is not None and inside and (why := not_a_host(gw, subnet)):
        out.append(f"{prefix}.gateway: {gw} {why}")
    for i, block in enumerate(pool.exclude):
        if msg := _inside(f"{prefix}.exclude[{i}]", block, subnet):
            out.append(msg)
    start, end = pool.range_start, pool.range_end
    if start and end and start.version == end.version and start > end:  # type: ignore[operator]
        out.append(f"{prefix}.rangeStart: {start} is after rangeEnd {end}")
    if not out and usable_count(pool, subnet) == 0:
        out.append(
            f"{prefix}: leaves no address to hand out: subnet {subnet} without its network "
            "(and broadcast) address, limited to rangeStart..rangeEnd, minus exclude and gateway"
        )
    return out


def check_routes(routes: list[Route], ipam: Ipam | None, prefix: str = "routes") -> list[str]:
    """Each route on its own, no route twice, and a gateway reachable through the pool's subnet
    of its family (unless the route says ``onlink``)."""
    out: list[str] = []
    seen: set[tuple[IPNetwork, int, int | None]] = set()
    for i, route in enumerate(routes):
        path = f"{prefix}[{i}]"
        identity = policy.route_identity(route)
        if identity in seen:
            same = (
                "" if route.table is None and route.metric is None else " in that table and metric"
            )
            out.append(f"{path}.destination: {route.destination} is listed twice{same}")
        seen.add(identity)
        out += policy.check_route_fields(route, path)
        gw = route.gateway
        if gw is None:
            continue
        if gw.version != route.destination.version:
            out.append(
                f"{path}.gateway: {gw} is {_family(gw.version)} but destination "
                f"{route.destination} is {_family(route.destination.version)}"
            )
            continue
        pool = ipam.pool_for(gw.version) if ipam is not None else None
        if pool is None or route.onlink:
            continue
        if msg := _inside(f"{path}.gateway", gw, pool.subnet):
            out.append(msg + " (add onlink: true if it is reachable on the link anyway)")
        elif why := not_a_host(gw, pool.subnet):
            out.append(f"{path}.gateway: {gw} {why}")
    return out


def check_mode(params: NetworkParameters) -> list[str]:
    """Fields that belong to one mode only."""
    out: list[str] = []
    if params.mode != "macvlan" and params.macvlan_mode is not None:
        out.append(f"macvlanMode: only allowed when mode is macvlan (mode is {params.mode})")
    if params.mode == "host-device" and params.interfaces_per_parent is not None:
        out.append("interfacesPerParent: not allowed when mode is host-device (one pod per NIC)")
    if params.macvlan_mode == "passthru" and params.parent_capacity != 1:
        out.append(
            "interfacesPerParent: must be 1 with macvlanMode passthru (the parent takes one "
            f"child only), got {params.parent_capacity}"
        )
    if params.mode == "cni":
        if params.cni is None:
            out.append("cni: is required when mode is cni (cni.config: a CNI config or conflist)")
        out += [
            f"{key}: not used when mode is cni; {instead}"
            for key, instead in _NOT_IN_CNI.items()
            if getattr(params, to_snake(key)) not in (None, False, [], {}, Ipam(), Ethtool())
        ]
    elif params.cni is not None:
        out.append(f"cni: only allowed when mode is cni (mode is {params.mode})")
    return out


#: What a CNI chain does itself, and which plugin does it.
_NOT_IN_CNI = {
    "mtu": "set mtu in the CNI config",
    "ipam": "the CNI config's own ipam section hands out addresses",
    "routes": "the CNI config's ipam routes (or the sbr plugin) set routes",
    "rules": "the sbr plugin adds source-based routing rules",
    "neighbors": "add them with a CNI plugin",
    "sysctls": "the tuning plugin sets sysctls",
    "ethtool": "set offloads with a CNI plugin",
    "stableMac": "the tuning plugin sets a MAC",
}


def cross_check(params: NetworkParameters) -> list[str]:
    """Rules spanning several fields; paths relative to ``parameters``."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(params.interfaces.names):
        if name in seen:
            out.append(f"interfaces.names[{i}]: {problems.show(name)} is listed twice")
        seen.add(name)
    out += check_mode(params)
    out += check_ipam(params.ipam)
    out += check_routes(params.routes, params.ipam)
    out += policy.check_rules(params.rules)
    out += policy.check_neighbors(params.neighbors)
    if params.mtu is not None and params.mtu < fields.IPV6_MIN_MTU:
        # IPv6 refuses to run on a link below 1280 (RFC 8200): the kernel drops the interface's
        # IPv6 addresses and routes, so the pod would come up without them.
        pool6 = params.ipam.pool_for(6)
        ipv6 = [f"subnet {pool6.subnet}"] if pool6 is not None else []
        ipv6 += [f"route {r.destination}" for r in params.routes if r.destination.version == 6]
        if ipv6:
            out.append(
                f"mtu: must be at least {fields.IPV6_MIN_MTU} for IPv6 {ipv6[0]}, got {params.mtu}"
            )
    if params.mode == "cni" and params.cni is not None:
        out += cni_problems(params.cni.config)
    return out


def cni_problems(config: dict[str, Any] | str) -> list[str]:
    """What is wrong with a CNI config; paths start at ``cni.config``."""
    from multinet.cni import config as cni_config  # the CNI package parses its own format

    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as exc:
            return [f"cni.config: is not valid JSON: {exc}"]
    try:
        cni_config.parse_chain(config, name="podnetwork")  # a missing name: the network's
    except problems.ConfigError as exc:
        return list(exc.errors)
    return []


def parse(doc: Any, *, prefix: str = PREFIX) -> NetworkParameters:
    """Validate a raw ``spec.parameters`` document; ``ConfigError`` lists every problem."""
    if doc is None:
        problems.fail([f"{prefix}: is required (at least interfaces.names)"])
    try:
        params = NetworkParameters.model_validate(doc)
    except ValidationError as exc:
        problems.fail(problems.messages(exc, prefix))
    if errors := cross_check(params):
        problems.fail([f"{prefix}.{e}" for e in errors])
    return params

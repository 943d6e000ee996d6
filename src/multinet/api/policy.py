"""Routing policy and interface tuning fields, shared by PodNetwork parameters and claim config.

``routes[]`` (with ``table``, ``scope``, ``source``, ``metric``, ``onlink``), ``rules[]`` (source-
based routing: which table a packet looks up), ``neighbors[]`` (permanent ARP/NDP entries),
``sysctls`` (per-interface and per-namespace ``net.ipv4``/``net.ipv6`` keys) and
``ethtool.features``. The models check each field on its own; ``check_*`` add the rules between
fields. What needs the interface's name inside the pod (a sysctl's ``<if>``, a rule's
``iif``/``oif``) is checked when the claim is planned (``multinet.planning``), where it is known.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator

from multinet.api import ethtoolnames, problems
from multinet.api.fields import Address, IfName, IPNetwork, Mac, Network, StrictModel

MAX_RULES = 16
MAX_NEIGHBORS = 32
MAX_SYSCTLS = 32
MAX_FEATURES = 64
U32_MAX = 2**32 - 1

#: The routing tables ``ip route`` knows by name; 0 is "unspecified" and 255 holds the kernel's
#: local routes, so neither can take a route of ours.
TABLE_NAMES = {253: "default", 254: "main"}
MAIN_TABLE = 254
Scope = Literal["universe", "link", "host"]
#: rtnetlink's RT_SCOPE_* numbers.
SCOPES: dict[str, int] = {"universe": 0, "link": 253, "host": 254}
RULE_PRIORITY_MAX = 32765  # 32766 and 32767 are the kernel's own rules for main and default


def _uint(value: Any, low: int, high: int) -> int:
    if type(value) is not int:
        raise ValueError(f"must be an integer, got {problems.show(value)}")
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}, got {value}")
    return value


def check_table(value: Any) -> int:
    table = _uint(value, 1, U32_MAX)
    if table == 255:
        raise ValueError("must not be 255 (the kernel's local table)")
    return table


Table = Annotated[int, PlainValidator(check_table)]
Metric = Annotated[int, PlainValidator(lambda v: _uint(v, 0, U32_MAX))]
RulePriority = Annotated[int, PlainValidator(lambda v: _uint(v, 1, RULE_PRIORITY_MAX))]


class Route(StrictModel):
    """One route through the pod interface; defaults are what ``ip route add`` does."""

    destination: Network
    gateway: Address | None = None
    table: Table | None = None  # None: main
    scope: Scope | None = None  # None: universe with a gateway, link without
    source: Address | None = None  # the preferred source address (``src``)
    metric: Metric | None = None
    onlink: bool = False  # the gateway is on the link even outside the interface's subnets

    @property
    def table_number(self) -> int:
        return MAIN_TABLE if self.table is None else self.table


class Rule(StrictModel):
    """``ip rule add priority P from A to B iif X oif Y lookup T``: ``from`` or ``to`` is required
    (it also says the address family)."""

    priority: RulePriority
    from_: Annotated[Network | None, Field(alias="from")] = None
    to: Network | None = None
    table: Table
    iif: IfName | None = None
    oif: IfName | None = None


class Neighbor(StrictModel):
    """A permanent neighbour entry (``ip neigh add ADDRESS lladdr MAC nud permanent``)."""

    address: Address
    mac: Mac


# sysctl keys: ``net.ipv4.conf.<if>.<leaf>`` names the interface ``<if>`` (which may hold dots);
# every other ``net.ipv4.*``/``net.ipv6.*`` key belongs to the pod's network namespace.
_LEAF = r"[a-z0-9_]+"
_PER_INTERFACE = re.compile(rf"^net\.(ipv4|ipv6)\.(conf|neigh)\.(.+)\.({_LEAF})$")
_PER_NAMESPACE = re.compile(rf"^net\.(ipv4|ipv6)(\.{_LEAF})+$")
#: Interfaces every namespace has in its per-interface trees, besides the pod's own interface.
SYSCTL_ALL_INTERFACES = ("all", "default")
SYSCTL_VALUE_MAX = 256


def sysctl_path(key: str) -> tuple[tuple[str, ...], str | None]:
    """The /proc/sys/ path components of a valid key, and the interface it names (None when
    the key is namespace-wide)."""
    if match := _PER_INTERFACE.match(key):
        family, tree, ifname, leaf = match.groups()
        return ("net", family, tree, ifname, leaf), ifname
    return tuple(key.split(".")), None


def check_sysctl_key(key: str) -> str | None:
    """Why ``key`` is not a sysctl a claim may set, else None."""
    if _PER_INTERFACE.match(key) or (
        _PER_NAMESPACE.match(key) and not key.startswith(("net.ipv4.conf.", "net.ipv6.conf."))
    ):
        return None
    return (
        "must be a network-namespace sysctl: net.ipv4.conf.<interface>.<name>, "
        "net.ipv6.conf.<interface>.<name>, net.ipv4.neigh.<interface>.<name>, "
        "net.ipv6.neigh.<interface>.<name>, or another net.ipv4.* / net.ipv6.* key"
    )


def check_sysctls(value: Any) -> dict[str, str]:
    """``{key: value}``; values are strings as sysctl(8) writes them (integers are accepted)."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a map of sysctl keys to values, got {problems.show(value)}")
    if len(value) > MAX_SYSCTLS:
        raise ValueError(f"must have at most {MAX_SYSCTLS} keys, got {len(value)}")
    out: dict[str, str] = {}
    for key, raw in value.items():
        if why := check_sysctl_key(key):
            raise problems.problem([key], why)
        text = str(raw) if type(raw) is int else raw
        if not isinstance(text, str) or not text or len(text) > SYSCTL_VALUE_MAX or "\n" in text:
            raise problems.problem(
                [key], f"must be a non-empty one-line string, got {problems.show(raw)}"
            )
        out[key] = text
    return out


Sysctls = Annotated[dict[str, str], PlainValidator(check_sysctls)]


def check_features(value: Any) -> dict[str, bool]:
    """``{feature: on?}`` with names as ``ethtool -k`` prints them."""
    if not isinstance(value, dict):
        example = '{"tx-checksumming": false}'
        raise ValueError(f"must be a map like {example}, got {problems.show(value)}")
    if len(value) > MAX_FEATURES:
        raise ValueError(f"must have at most {MAX_FEATURES} features, got {len(value)}")
    for name, on in value.items():
        if why := ethtoolnames.check_feature_name(name):
            raise problems.problem([name], why)
        if type(on) is not bool:
            raise problems.problem([name], f"must be true or false, got {problems.show(on)}")
    return dict(value)


class Ethtool(StrictModel):
    features: Annotated[dict[str, bool], PlainValidator(check_features)] = {}


def _family(version: int) -> str:
    return f"IPv{version}"


def check_route_fields(route: Route, path: str) -> list[str]:
    """Rules between one route's own fields."""
    out: list[str] = []
    version = route.destination.version
    if route.source is not None and route.source.version != version:
        out.append(
            f"{path}.source: {route.source} is {_family(route.source.version)} but "
            f"destination {route.destination} is {_family(version)}"
        )
    if route.onlink and route.gateway is None:
        out.append(f"{path}.onlink: needs a gateway (onlink says the gateway is on the link)")
    if route.gateway is not None and route.scope in ("link", "host"):
        out.append(
            f"{path}.scope: {route.scope} is only for routes without a gateway "
            "(a route via a gateway has scope universe)"
        )
    return out


def route_identity(route: Route) -> tuple[IPNetwork, int, int | None]:
    """What the kernel refuses to have twice: destination, table and metric."""
    return route.destination, route.table_number, route.metric


def check_rules(rules: list[Rule], prefix: str = "rules") -> list[str]:
    out: list[str] = []
    seen: dict[int, int] = {}
    for i, rule in enumerate(rules):
        path = f"{prefix}[{i}]"
        if rule.from_ is None and rule.to is None:
            out.append(f"{path}: needs from or to (the addresses the rule selects)")
        elif rule.from_ and rule.to and rule.from_.version != rule.to.version:
            out.append(
                f"{path}.to: {rule.to} is {_family(rule.to.version)} but from {rule.from_} "
                f"is {_family(rule.from_.version)}"
            )
        if rule.priority in seen:
            out.append(f"{path}.priority: {rule.priority} is also rules[{seen[rule.priority]}]'s")
        seen.setdefault(rule.priority, i)
    return out


def check_neighbors(neighbors: list[Neighbor], prefix: str = "neighbors") -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, neighbor in enumerate(neighbors):
        if str(neighbor.address) in seen:
            out.append(f"{prefix}[{i}].address: {neighbor.address} is listed twice")
        seen.add(str(neighbor.address))
    return out

"""Throwaway network namespaces and veth "NICs" for the netlink tests, observed with `ip -j`.

Every name carries 6 random hex characters (the host namespace is shared with other test runs)
and everything created is deleted again, also when a test fails. Observation goes through the
`ip` tool, not through our own netlink code, so the tests see what a user would see.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def sh(cmd: str) -> str:
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{cmd}: {done.stderr.strip()}")
    return done.stdout


def ip_json(args: str, netns: str | None = None) -> Any:
    prefix = f"ip -n {netns} -j" if netns else "ip -j"
    out = sh(f"{prefix} {args}")
    return json.loads(out) if out.strip() else []


def uid() -> str:
    return secrets.token_hex(3)


#: Subnet numbers of this run, from a random start (wrapping below in host_subnet).
_subnets = itertools.count(secrets.randbelow(64 * 256))


def host_subnet() -> tuple[str, str]:
    """A fresh /24 prefix ("100.x.y") for a test NIC and a /24 destination prefix ("198.18.y" or
    "198.19.y") for its routes: the shared carrier-grade and benchmark ranges, never the host's
    own network, distinct for each NIC of this run (starting at a random point per run)."""
    n = next(_subnets) % (64 * 256)
    return f"100.{64 + n // 256}.{n % 256}", f"198.{18 + (n // 256) % 2}.{n % 256}"


# What `ip -j addr` shows as flags of an address that someone set or that the kernel keeps for
# good (secondary, dynamic); passing states (tentative, deprecated, dadfailed) are left out.
_ADDRESS_FLAGS = (
    "secondary",
    "dynamic",
    "nodad",
    "optimistic",
    "home",
    "mngtmpaddr",
    "noprefixroute",
    "autojoin",
    "temporary",
)
_KERNEL_ROUTE_PROTOCOLS = {"kernel", "ra", "redirect"}


def eui64_link_local(mac: str) -> str:
    """The IPv6 link-local address the kernel makes from `mac` (address generation eui64)."""
    raw = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([raw[0] ^ 0x02]) + raw[1:3] + b"\xff\xfe" + raw[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui))


def link_view(ifname: str, netns: str | None = None) -> dict[str, Any]:
    """Everything `ip -d link`, `ip addr` and `ip route show table all` show for one link that the
    README promises comes back, minus what the kernel regenerates by itself (the link-local
    address it derives from the MAC, routes it made for addresses or from router adverts) and
    counters/indexes.

    addresses: (address, prefix length, broadcast, secondary, label unless the link's name,
    flags, scope), in `ip addr` order. routes: (destination, gateway, metric, protocol, table,
    type, scope, flags, preferred source, preference, route metrics, nexthops as (gateway, dev,
    weight, flags)), sorted; a multipath route counts when one of its paths uses the link.
    """
    (link,) = ip_json(f"addr show dev {ifname}", netns)
    (details,) = ip_json(f"-d link show dev {ifname}", netns)  # `-d addr` omits addrgenmode
    routes = ip_json("-4 route show table all", netns) + ip_json("-6 route show table all", netns)
    kernel_ll = eui64_link_local(link["address"])
    mine = [
        r
        for r in routes
        if r.get("dev") == ifname or any(h.get("dev") == ifname for h in r.get("nexthops", []))
    ]
    return {
        "name": link["ifname"],
        "mtu": link["mtu"],
        "mac": link["address"],
        "up": "UP" in link["flags"],
        "master": link.get("master"),
        "addrgenmode": details.get("inet6_addr_gen_mode"),
        "addresses": [
            _address_view(a, link["ifname"])
            for a in link.get("addr_info", [])
            if a["local"] != kernel_ll
        ],
        "routes": sorted(
            (_route_view(r) for r in mine if r.get("protocol") not in _KERNEL_ROUTE_PROTOCOLS),
            key=repr,
        ),
    }


def _address_view(a: dict[str, Any], ifname: str) -> tuple[Any, ...]:
    return (
        a["local"],
        a["prefixlen"],
        a.get("broadcast"),
        a.get("secondary", False),
        a.get("label") if a.get("label") != ifname else None,
        tuple(f for f in _ADDRESS_FLAGS[1:] if a.get(f)),
        a.get("scope"),
    )


def _route_view(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["dst"],
        r.get("gateway"),
        r.get("metric"),
        r.get("protocol"),
        r.get("table", "main"),
        r.get("type", "unicast"),
        r.get("scope", "global"),
        _flags(r),
        r.get("prefsrc"),
        r.get("pref"),
        json.dumps(r.get("metrics"), sort_keys=True),
        tuple(
            (h.get("gateway"), h.get("dev"), h.get("weight"), _flags(h))
            for h in r.get("nexthops", [])
        ),
    )


def _flags(route_or_hop: dict[str, Any]) -> tuple[str, ...]:
    """Its flags without those that follow the link's carrier (not part of the route)."""
    return tuple(f for f in route_or_hop.get("flags", []) if f not in ("linkdown", "dead"))


def has_link(ifname: str, netns: str | None = None) -> bool:
    prefix = f"ip -n {netns}" if netns else "ip"
    return (
        subprocess.run(
            f"{prefix} link show dev {ifname}", shell=True, capture_output=True
        ).returncode
        == 0
    )


@dataclass
class Lab:
    """Creates namespaces and veth pairs and removes all of them at the end."""

    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def new_netns(self) -> str:
        name = f"mnt{uid()}"
        sh(f"ip netns add {name}")
        self.netns.append(name)
        return name

    def netns_path(self, name: str) -> str:
        return f"/var/run/netns/{name}"

    def new_nic(self, *, addresses: tuple[str, ...] = (), routes: tuple[str, ...] = ()) -> str:
        """A veth pair standing in for a NIC: returns the end that plays the NIC, up, with
        `addresses` (added with `brd +` like DHCP clients do) and `routes` (`ip route` syntax)."""
        tag = uid()
        nic, peer = f"mnn{tag}", f"mnp{tag}"
        sh(f"ip link add {nic} type veth peer name {peer}")
        self.links += [nic, peer]
        sh(f"ip link set {peer} up && ip link set {nic} up")
        for cidr in addresses:
            brd = "" if ":" in cidr else "brd +"
            sh(f"ip addr add {cidr} {brd} dev {nic}")
        for route in routes:
            sh(f"ip route add {route} dev {nic}")
        return nic

    def cleanup(self) -> None:
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)


@contextmanager
def lab() -> Iterator[Lab]:
    it = Lab()
    try:
        yield it
    finally:
        it.cleanup()


def fake_netns_death_physical(netns: str, pod_ifname: str) -> None:
    """FAKE of a fault veth cannot produce: when a namespace holding a *physical* NIC dies, the
    kernel moves the NIC back to the host namespace, down, under its pod-side name. A veth would
    be deleted instead, so we do the kernel's part by hand and then delete the namespace."""
    sh(f"ip -n {netns} link set dev {pod_ifname} down")
    sh(f"ip -n {netns} link set dev {pod_ifname} netns {os.getpid()}")
    sh(f"ip netns del {netns}")

"""Facts about host links, and the devices we publish for them. Data only, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Version:
    """A semantic version attribute value (``{"version": "1.2.3"}`` in a ResourceSlice)."""

    value: str


#: The value kinds a ResourceSlice attribute may hold: exactly one of int, bool, string, version.
AttrValue = int | bool | str | Version


@dataclass(frozen=True)
class Hardware:
    """What sysfs says about the device behind a link; absent for purely virtual links."""

    pci_address: str | None = None  # "0000:3b:00.0"
    pcie_root: str | None = None  # "pci0000:3a", the root complex above the function
    vendor: str | None = None  # "8086" (sysfs "0x8086" without the prefix)
    device: str | None = None  # "1592"
    driver: str | None = None  # "ice"
    numa_node: int | None = None  # None when the kernel says -1
    speed: int | None = None  # Mb/s; None when unknown (link down, virtual)
    sriov_total_vfs: int | None = None  # None when the function cannot do SR-IOV
    sriov_num_vfs: int | None = None
    is_sriov_vf: bool = False
    dev_port: int = 0  # port index when one PCI function has several netdevs


@dataclass(frozen=True)
class Link:
    """One interface of the host netns as the kernel reports it (RTM_NEWLINK + addresses)."""

    index: int
    ifname: str
    kind: str = ""  # IFLA_INFO_KIND: "veth", "bridge", "macvlan", ...; "" for hardware NICs
    mac: str = ""
    perm_mac: str = ""  # IFLA_PERM_ADDRESS: burnt-in address of hardware NICs; "" if none
    mtu: int = 1500
    up: bool = False  # administratively up (IFF_UP)
    oper_state: str = "unknown"  # lower-case IFLA_OPERSTATE
    loopback: bool = False  # IFF_LOOPBACK
    master: int | None = None  # IFLA_MASTER: the bridge/bond this link is a port of
    peer: int | None = None  # IFLA_LINK: veth peer or macvlan parent index
    peer_netns: bool = False  # IFLA_LINK_NETNSID present: that peer/parent is in another netns
    ipv4: tuple[str, ...] = ()  # CIDR, global scope first
    ipv6: tuple[str, ...] = ()  # CIDR, global scope only (link-local is not an identity)
    hw: Hardware | None = None


@dataclass(frozen=True)
class HostSnapshot:
    """Every link of one netns plus the interfaces that carry a default route."""

    links: tuple[Link, ...]
    default_route_ifindexes: frozenset[int] = frozenset()

    def by_index(self) -> dict[int, Link]:
        return {link.index: link for link in self.links}


@dataclass(frozen=True)
class Capacity:
    """A consumable capacity of a shareable device: ``value`` in total, ``default`` per claim.

    Requests may ask for any amount in [minimum, maximum] (step 1); the scheduler keeps the sum
    of what allocations consumed at or below ``value``.
    """

    value: int
    default: int = 1
    minimum: int = 1
    maximum: int | None = None  # None: up to ``value``


@dataclass(frozen=True)
class Device:
    """One entry of ``ResourceSlice.spec.devices`` before it is rendered to JSON."""

    name: str  # DNS label, unique in the pool
    ifname: str  # the host interface name (also attribute multinet.dev/ifName)
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    capacity: Mapping[str, Capacity] = field(default_factory=dict)
    #: True for the parent of a macvlan-mode network: many claims get a share of it.
    shareable: bool = False
    #: The PodNetwork the device is bound to, None when unbound.
    network: str | None = None
    #: A slot device (``devices.slots``): the name of the shared parent device it stands for.
    parent: str | None = None

"""Device attributes of a host link.

Our own facts live in the driver's domain (``multinet.dev/ifName``, ...); PCI placement also goes
into the standard ``resource.kubernetes.io/pciBusID`` and ``pcieRoot`` so class selectors and
cross-driver constraints (``matchAttribute``) can align NICs with GPUs on the same root complex.

ResourceSlice rules enforced here: a value is exactly one of int | bool | string | version,
strings are at most 64 characters (longer facts are left out rather than truncated into a lie),
names are C identifiers of at most 32 characters below their domain.
"""

from __future__ import annotations

import re

from multinet.api import names
from multinet.devices.model import AttrValue, Link

DOMAIN = names.DRIVER
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
#: The standard attribute carrying the PodNetwork name (multi-network API).
POD_NETWORK = names.ATTRIBUTE

MAX_STRING = 64
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


def ours(name: str) -> str:
    """``ifName`` -> ``multinet.dev/ifName``."""
    return f"{DOMAIN}/{name}"


def valid_name(qualified: str) -> bool:
    domain, _, ident = qualified.rpartition("/")
    return len(domain) <= 63 and bool(_IDENT.match(ident))


def valid_value(value: AttrValue) -> bool:
    return not isinstance(value, str) or len(value) <= MAX_STRING


def link_kind(link: Link) -> str:
    """``kind``: the rtnl kind, or ``physical`` for hardware NICs, ``other`` when unknown."""
    if link.kind:
        return link.kind
    return "physical" if link.hw is not None else "other"


def build(link: Link) -> dict[str, AttrValue]:
    """All attributes the kernel lets us know about ``link``; unknown facts are simply absent."""
    attrs: dict[str, AttrValue] = {
        ours("ifName"): link.ifname,
        ours("mtu"): link.mtu,
        ours("kind"): link_kind(link),
        ours("virtual"): link.hw is None,
        ours("state"): link.oper_state,
    }
    if link.mac:
        attrs[ours("mac")] = link.mac.lower()
    if link.ipv4:
        attrs[ours("ipv4")] = link.ipv4[0]
    if link.ipv6:
        attrs[ours("ipv6")] = link.ipv6[0]
    hw = link.hw
    if hw is not None:
        optional: dict[str, AttrValue | None] = {
            ours("pciAddress"): hw.pci_address,
            ours("pciVendor"): hw.vendor,
            ours("pciDevice"): hw.device,
            ours("driver"): hw.driver,
            ours("numaNode"): hw.numa_node,
            ours("speed"): hw.speed,
            PCI_BUS_ID: hw.pci_address,
            PCIE_ROOT: hw.pcie_root,
        }
        attrs.update({k: v for k, v in optional.items() if v is not None})
        attrs[ours("sriov")] = bool(hw.sriov_total_vfs)
        attrs[ours("isSriovVf")] = hw.is_sriov_vf
        if hw.sriov_total_vfs:
            attrs[ours("sriovVfs")] = hw.sriov_num_vfs or 0
    return {k: v for k, v in attrs.items() if valid_name(k) and valid_value(v)}

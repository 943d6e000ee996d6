"""Stable device names (DNS labels) for host links.

A device name is the identity the scheduler allocates and the checkpoint records, so it must be
the same after an agent restart and after the interface has been inside a pod. What is stable:

1. **PCI address** (``pci-0000-3b-00-0``, plus ``-p<N>`` for the N-th port of one function).
   Hardware NICs keep it whatever the kernel or a pod calls the netdev, whatever MAC a claim set,
   and across reboots. It is also what an administrator sees in ``lspci``. This is the case that
   matters: when a pod's netns dies while the agent is down, a physical NIC comes back to the
   host under its *pod-side* name, and must still be the same device.
2. **Permanent MAC** (``mac-0242ac110002``) for hardware without a PCI address (USB, platform
   NICs): burnt in, unaffected by renames and by MAC changes.
3. **Interface name** for virtual links (veth, macvlan, bridge, ...). They have neither of the
   above, their current MAC may be random, and their name is the identity administrators select
   in a PodNetwork. We restore the host name when the interface comes back from a pod, and a
   virtual link in a netns that dies is destroyed with it, so the name is stable for as long as
   the link exists. Names that are not already DNS labels (upper case, ``_``, ``.``) are
   lower-cased and cleaned, with a short hash of the exact name appended so two distinct
   interfaces never map to one device.

Collisions between the schemes (a veth literally called ``pci-0000-00-03-0``) are resolved in
``assign_names`` deterministically by suffixing the hash of the interface name.

**Slot devices** (a shared macvlan parent published as N once-allocatable devices where the
cluster has no consumable capacity, ``devices.slots``) are named ``<parent>-s<index>``
(``pci-0000-3b-00-1-s0`` .. ``-s63``): as stable as the parent's name, and the index is the slot's
position, not an order of allocation. A parent name too long for the suffix is cut and keeps a
hash of its whole name (``slot_name``), so two long parents never share slot names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from multinet.devices.model import Link

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_INVALID = re.compile(r"[^a-z0-9-]+")
_ZERO_MAC = "00:00:00:00:00:00"


def is_dns_label(name: str) -> bool:
    return bool(_LABEL.match(name))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def from_ifname(ifname: str) -> str:
    """A DNS label for a virtual interface name; injective (lossy cleaning adds a hash)."""
    if is_dns_label(ifname):
        return ifname
    cleaned = _INVALID.sub("-", ifname.lower()).strip("-")[:50] or "if"
    return f"{cleaned}-{_short_hash(ifname)}"


MAX_NAME = 63  # a DNS label


def slot_name(parent: str, index: int, *, salted: bool = False) -> str:
    """The name of slot ``index`` of the shared device ``parent`` (itself a DNS label).

    ``salted`` inserts a hash of the parent's name (``eth1-1a2b3c-s0``): the form ``slots.expand``
    falls back to when the plain name is taken by another device, and the form a parent too long
    for the plain one always gets."""
    suffix = f"-s{index}"
    if not salted and len(parent) + len(suffix) <= MAX_NAME:
        return parent + suffix
    salt = f"-{_short_hash(parent)}"
    return parent[: MAX_NAME - len(suffix) - len(salt)] + salt + suffix


def device_name(link: Link) -> str:
    """The stable name of one link (see the module docstring for the order of preference)."""
    hw = link.hw
    if hw is not None and hw.pci_address:
        name = "pci-" + re.sub(r"[:.]", "-", hw.pci_address.lower())
        return f"{name}-p{hw.dev_port}" if hw.dev_port else name
    if link.perm_mac and link.perm_mac != _ZERO_MAC:
        return "mac-" + link.perm_mac.lower().replace(":", "")
    return from_ifname(link.ifname)


def assign_names(links: Iterable[Link]) -> dict[int, str]:
    """Device name per link index, unique among ``links``.

    The common case is collision-free; a collision (two ports reporting one PCI function and
    port, or a virtual link named like another scheme) keeps the first link (by name) as is and
    suffixes the others with a hash of their interface name, which is as stable as the name.
    """
    names: dict[int, str] = {}
    taken: set[str] = set()
    for link in sorted(links, key=lambda item: item.ifname):
        name = device_name(link)
        if name in taken:
            name = f"{name[:55]}-{_short_hash(link.ifname)}"
        taken.add(name)
        names[link.index] = name
    return names

"""Hardware facts of a netdev from sysfs: PCI placement, driver, NUMA node, speed, SR-IOV.

Only meaningful in the netns sysfs was mounted for (the agent runs in the host netns). Reads are
small and local (no device I/O), but still blocking file I/O: call from the inventory's thread.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from multinet.devices.model import Hardware

SYS_CLASS_NET = Path("/sys/class/net")
_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_PCI_ROOT = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")
_UNKNOWN_SPEEDS = {-1, 0, 0xFFFFFFFF}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # absent, or EINVAL (e.g. speed of a link that is down)
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def hardware(ifname: str, root: Path = SYS_CLASS_NET) -> Hardware | None:
    """Facts for ``ifname``, or None when it has no device behind it (a virtual link)."""
    net = root / ifname
    device = net / "device"
    if not device.exists():
        return None
    real = Path(os.path.realpath(device))
    # virtio and some others put a bus device between the netdev and its PCI function:
    # the PCI function is the nearest ancestor whose name is a PCI address.
    pci_dir = next((p for p in (real, *real.parents) if _PCI_ADDRESS.match(p.name)), None)
    root_complex = next((p.name for p in real.parents if _PCI_ROOT.match(p.name)), None)
    driver_link = device / "driver"
    driver = os.path.basename(os.path.realpath(driver_link)) if driver_link.exists() else None
    speed = _int(net / "speed")
    numa = _int(pci_dir / "numa_node") if pci_dir else None
    vendor = _read(pci_dir / "vendor") if pci_dir else None
    product = _read(pci_dir / "device") if pci_dir else None
    return Hardware(
        pci_address=pci_dir.name if pci_dir else None,
        pcie_root=root_complex,
        vendor=vendor.removeprefix("0x") if vendor else None,
        device=product.removeprefix("0x") if product else None,
        driver=driver,
        numa_node=numa if numa is not None and numa >= 0 else None,
        speed=speed if speed is not None and speed not in _UNKNOWN_SPEEDS else None,
        sriov_total_vfs=_int(pci_dir / "sriov_totalvfs") if pci_dir else None,
        sriov_num_vfs=_int(pci_dir / "sriov_numvfs") if pci_dir else None,
        is_sriov_vf=bool(pci_dir and (pci_dir / "physfn").exists()),
        dev_port=_int(net / "dev_port") or 0,
    )

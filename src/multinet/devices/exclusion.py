"""Interfaces the agent never advertises on its own, and why.

Handing any of these to a pod would break the node or other pods. Facts in (a ``HostSnapshot``),
link index -> reason out; no I/O. The reasons, in the order they are decided (the first wins):

- ``loopback``: the host's own ``lo``.
- ``default route``: an interface a default route of the main table (IPv4 or IPv6, through a
  nexthop object or not) leaves through.
- the whole *lower-device tree* of every default-route interface, recursively: the ports of a
  bridge/bond/team (links whose master it is), the parent of a vlan/macvlan/macvtap/ipvlan or
  tunnel (its ``IFLA_LINK``), and for an Open vSwitch interface the ports of the OVS datapath.
  Moving any of them cuts the node off just the same. Reasons read ``port of default-route
  interface br0`` or, further down, ``port of bond0, below default-route interface vlan10``.
  Upper devices (a bridge the default-route NIC is a port of, a vlan on top of it) are *not*
  excluded for that: they are a separate choice and usually the very thing a network wants.
- ``pod veth``: the host end of a pod's veth pair: a veth whose peer lives in another netns and
  which is a bridge port or carries the ``veth`` name prefix the bridge/ptp CNI plugins use.
- ``CNI bridge``: a bridge that has a pod veth as a port.
- ``known overlay/CNI device (<owner>)``: a name from ``KNOWN_DEVICES``, the devices CNI plugins,
  container engines, kube-proxy and the kernel create for their own plumbing, whatever the kind.

A PodNetwork that names an interface *exactly* (not by glob) overrides all of this: the
administrator said so explicitly (``resolve`` applies that; see ``binding.explicit_names``).
"""

from __future__ import annotations

import fnmatch
from collections import deque

from multinet.devices.model import HostSnapshot, Link

#: (name or shell pattern, who creates it). Matched case-sensitively against the interface name,
#: whatever the link kind: a tunnel and a bridge of the same well-known name are equally taken.
KNOWN_DEVICES: tuple[tuple[str, str], ...] = (
    # bridges of CNI plugins and container engines
    ("cni0", "CNI bridge plugin"),
    ("cbr0", "kubenet"),
    ("docker0", "Docker"),
    ("podman0", "Podman"),
    ("cni-podman*", "Podman"),
    ("nerdctl0", "nerdctl"),
    ("crio0", "CRI-O"),
    ("kube-bridge", "kube-router"),
    ("kube-dummy-if", "kube-router"),
    ("kube-ipvs0", "kube-proxy IPVS"),
    ("nodelocaldns", "NodeLocal DNSCache"),
    # overlays of CNI plugins
    ("flannel.*", "flannel"),
    ("flannel-v6.*", "flannel"),
    ("flannel-wg*", "flannel"),
    ("vxlan.calico", "Calico"),
    ("vxlan-v6.calico", "Calico"),
    ("wireguard.cali", "Calico"),
    ("wg-v6.cali", "Calico"),
    ("bpfin.cali", "Calico"),
    ("bpfout.cali", "Calico"),
    ("cilium_*", "Cilium"),
    ("weave", "Weave Net"),
    ("datapath", "Weave Net"),
    ("vethwe-*", "Weave Net"),
    ("vxlan-6784", "Weave Net"),
    ("antrea-gw0", "Antrea"),
    ("antrea-tun0", "Antrea"),
    ("antrea-egress0", "Antrea"),
    ("ovn-k8s-mp*", "OVN-Kubernetes"),
    ("br-int", "OVN"),
    ("ovs-system", "Open vSwitch"),
    ("genev_sys_*", "Open vSwitch"),
    ("vxlan_sys_*", "Open vSwitch"),
    ("gre_sys", "Open vSwitch"),
    ("stt_sys_*", "Open vSwitch"),
    # fallback devices the kernel creates when a tunnel module loads (tunl0 is Calico's IPIP too)
    ("tunl0", "kernel IPIP / Calico"),
    ("sit0", "kernel fallback tunnel"),
    ("gre0", "kernel fallback tunnel"),
    ("gretap0", "kernel fallback tunnel"),
    ("erspan0", "kernel fallback tunnel"),
    ("ip6tnl0", "kernel fallback tunnel"),
    ("ip6gre0", "kernel fallback tunnel"),
    ("ip_vti0", "kernel fallback tunnel"),
    ("ip6_vti0", "kernel fallback tunnel"),
)

#: Kinds whose IFLA_LINK is a *peer* (the other end of a pair), not a device underneath.
PEER_KINDS = frozenset({"veth", "vxcan", "netkit"})
_OVS = "openvswitch"


def known_device(ifname: str) -> str | None:
    """Who creates interfaces named ``ifname``, when it is one of ``KNOWN_DEVICES``."""
    for pattern, owner in KNOWN_DEVICES:
        if fnmatch.fnmatchcase(ifname, pattern):
            return owner
    return None


def lower_devices(link: Link, links: tuple[Link, ...]) -> list[tuple[Link, str]]:
    """The links directly beneath ``link``, each with how it relates ("port of"/"parent of")."""
    out = [(other, "port of") for other in links if other.master == link.index]
    if link.kind == _OVS:
        # An OVS interface's uplinks are ports of the datapath (ovs-system), not of the
        # interface itself: the bridge a port belongs to is not in rtnetlink at all.
        datapaths = {other.index for other in links if other.kind == _OVS}
        out += [
            (other, "port of the Open vSwitch datapath of")
            for other in links
            if other.master in datapaths and other.master != link.index
        ]
    if link.peer is not None and not link.peer_netns and link.kind not in PEER_KINDS:
        out += [(other, "parent of") for other in links if other.index == link.peer]
    return out


def _default_route_tree(snapshot: HostSnapshot, out: dict[int, str]) -> None:
    """Every default-route interface and everything beneath it, breadth first (the closest
    relation names the reason); a visited set stops on loops a racy snapshot might show."""
    by_index = snapshot.by_index()
    queue: deque[tuple[Link, Link]] = deque()  # (link, the default-route interface above it)
    for index in sorted(snapshot.default_route_ifindexes):
        top = by_index.get(index)
        if top is not None and top.index not in out:
            out[top.index] = "default route"
            queue.append((top, top))
    while queue:
        upper, top = queue.popleft()
        for lower, relation in lower_devices(upper, snapshot.links):
            if lower.index in out:
                continue
            if upper.index == top.index:
                out[lower.index] = f"{relation} default-route interface {top.ifname}"
            else:
                out[lower.index] = (
                    f"{relation} {upper.ifname}, below default-route interface {top.ifname}"
                )
            queue.append((lower, top))


def _is_pod_veth(link: Link, by_index: dict[int, Link]) -> bool:
    if link.kind != "veth" or not link.peer_netns:
        return False
    master = by_index.get(link.master) if link.master is not None else None
    return (master is not None and master.kind == "bridge") or link.ifname.startswith("veth")


def reasons(snapshot: HostSnapshot) -> dict[int, str]:
    """Link index -> why it is excluded, for every excluded link of ``snapshot``."""
    by_index = snapshot.by_index()
    out: dict[int, str] = {}
    for link in snapshot.links:
        if link.loopback or link.ifname == "lo":
            out[link.index] = "loopback"
    _default_route_tree(snapshot, out)
    pod_veths = {link.index for link in snapshot.links if _is_pod_veth(link, by_index)}
    for index in pod_veths:
        out.setdefault(index, "pod veth")
    bridges_with_pods = {by_index[i].master for i in pod_veths if by_index[i].master is not None}
    for link in snapshot.links:
        if link.kind == "bridge" and link.index in bridges_with_pods:
            out.setdefault(link.index, "CNI bridge")
    for link in snapshot.links:
        owner = known_device(link.ifname)
        if owner is not None:
            out.setdefault(link.index, f"known overlay/CNI device ({owner})")
    return out

"""Interfaces the agent never advertises on its own, and why.

Handing any of these to a pod would break the node or other pods:

- ``loopback``: the host's own ``lo``.
- ``default route``: the interface carrying the node's default route (IPv4 or IPv6), its ports
  if it is a bridge/bond, and its parent if it is a macvlan: moving it cuts the node off.
- ``CNI bridge``: a bridge a CNI plugin made for pod traffic (well-known names such as ``cni0``,
  or any bridge that has a pod veth as a port).
- ``pod veth``: the host end of a pod's veth pair: a veth whose peer lives in another netns and
  which is a bridge port or carries the ``veth`` name prefix the bridge/ptp CNI plugins use.

A PodNetwork that names an interface *exactly* (not by glob) overrides all of this: the
administrator said so explicitly.
"""

from __future__ import annotations

from multinet.devices.model import HostSnapshot, Link

#: Bridges CNI plugins and container engines create for pod traffic.
CNI_BRIDGE_NAMES = frozenset({"cni0", "cbr0", "docker0", "kube-bridge", "podman0", "crio0"})


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
    route = snapshot.default_route_ifindexes
    for link in snapshot.links:
        if link.index in route:
            out[link.index] = "default route"
        elif link.master in route:
            out[link.index] = "port of the default-route interface"
    for index in route:
        holder = by_index.get(index)
        if (
            holder is not None
            and holder.peer is not None
            and not holder.peer_netns
            and holder.kind in ("macvlan", "macvtap", "vlan", "ipvlan")
        ):
            out.setdefault(holder.peer, "parent of the default-route interface")
    pod_veths = {link.index for link in snapshot.links if _is_pod_veth(link, by_index)}
    for index in pod_veths:
        out.setdefault(index, "pod veth")
    bridges_with_pods = {by_index[i].master for i in pod_veths if by_index[i].master is not None}
    for link in snapshot.links:
        if link.kind == "bridge" and (
            link.ifname in CNI_BRIDGE_NAMES or link.index in bridges_with_pods
        ):
            out.setdefault(link.index, "CNI bridge")
    return out

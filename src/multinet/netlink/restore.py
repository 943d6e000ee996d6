"""Giving interfaces back to the host: detach, recovery after a pod's namespace died, exact restore.

Time budget: StopPodSandbox has the same ~2 s deadline as RunPodSandbox and the move back is the
expensive part (~16 ms of kernel time). Everything here is best-effort and safe to run twice: each
step reads what the kernel shows and only changes what differs from the recorded `HostState`.
Failures are collected and raised together as one RestoreError at the end.

Only a link proven to be the NIC (`is_same_device`) is ever configured: when the move home fails,
the host link that happens to bear the NIC's old name is someone else's and is left alone.

What comes back: name, MTU, MAC, up/down, the IPv6 address-generation mode, the bridge (or bond)
it was a port of, every address the kernel did not make itself (manual IPv6 link-local ones
included) with its flags, label, scope and broadcast, and every route through it in any table
(type, scope, metric, protocol, preferred source, onlink, TOS, IPv6 preference, route metrics such
as `mtu`, and multipath routes with a path through it, weights included). What the kernel makes by
itself (link-local from the MAC, SLAAC and privacy addresses, routes for addresses, from router
advertisements or redirects) it makes again. Not restored: address lifetimes (addresses come back
permanent), peer addresses, IPv4 routes with an IPv6 gateway (RTA_VIA), routes using nexthop
objects (`ip nexthop`), bridge port options and VLANs, per-interface sysctls, qdiscs. Ethtool
features a plan changed come back as they were.
"""

from __future__ import annotations

import enum
import errno
import ipaddress

from multinet import plans
from multinet.errors import RestoreError
from multinet.netlink import codec, ethtool, hoststate, netns, steps
from multinet.netlink.rtnl import Address, Link, NextHop, Request, RouteEntry, Rtnl, RtnlError

# Errors that mean "already as wanted" for an add or a delete.
_ALREADY = {errno.EEXIST, errno.EADDRNOTAVAIL, errno.ESRCH, errno.ENOENT}


class Recovery(enum.Enum):
    """What `recover_from_dead_netns` found."""

    RESTORED = "restored"  # the NIC was on the host (under its pod-side name or its own): restored
    DEVICE_GONE = "device-gone"  # a virtual device died with the namespace: nothing to restore
    NOTHING_TO_RESTORE = "nothing-to-restore"  # a macvlan child: the kernel deleted it, as intended


def is_same_device(link: Link, state: plans.HostState, plan: plans.AttachPlan) -> bool:
    """Whether `link` is the NIC recorded in `state`: its permanent MAC (physical NICs) or its MAC
    (the host's or the one given in the pod), or, by name, its ifindex (kept across moves unless
    taken). The index alone is not enough: another namespace may use the same number."""
    host_mac = steps.normalize_mac(state.mac)
    if link.perm_mac is not None and steps.normalize_mac(link.perm_mac) == host_mac:
        return True
    macs = {host_mac} | ({steps.normalize_mac(plan.mac)} if plan.mac else set())
    if steps.normalize_mac(link.mac) in macs:
        return True
    return link.index == state.ifindex and link.name in (plan.pod_ifname, state.ifname)


def home_link(
    rt: Rtnl, state: plans.HostState, plan: plans.AttachPlan, *, moved: Link | None = None
) -> tuple[Link, list[str]]:
    """The NIC on the host, proven ours, and the problems found on the way; renamed back to
    `state.ifname` when it is home under its pod-side name and that name is free.

    A move whose rename fails still moves: the kernel moves the link under its current (pod-side)
    name first and renames it afterwards, so a stranger bearing the old name leaves the NIC home
    as e.g. "net1". `moved` is the link just moved (or tried to): then identity is what it had in
    the pod (permanent MAC, else MAC), since a stranger may even hold the NIC's old index.
    Without it, `is_same_device` decides. Raises RestoreError naming the device when no host link
    is proven ours; nothing is touched then."""
    named = rt.get_link(name=state.ifname)
    if named is not None and _is_ours(named, state, plan, moved):
        return named, []
    problems: list[str] = []
    stranger = ""
    if named is not None:
        stranger = (
            f"the host link named {state.ifname} (index {named.index}, MAC {named.mac}) is not "
            f"device {plan.device} (index {state.ifindex}, MAC {state.mac}): left untouched"
        )
    aside = rt.get_link(name=plan.pod_ifname) if plan.pod_ifname != state.ifname else None
    if aside is not None and _is_ours(aside, state, plan, moved):
        if named is not None:
            return aside, [f"{stranger}; the device stays named {plan.pod_ifname}"]
        if aside.up:  # renaming an up link fails with EBUSY
            rt.do(rt.set_link(aside.index, up=False, op=f"set {aside.name} down"))
        rt.do(rt.set_link(aside.index, name=state.ifname, op=f"rename {aside.name} back"))
        back = rt.get_link(index=aside.index)  # a rename keeps the index
        if back is not None:
            return back, problems
    if stranger:
        raise RestoreError(stranger)
    raise RestoreError(f"interface {state.ifname} of device {plan.device} is not on the host")


def _is_ours(
    link: Link, state: plans.HostState, plan: plans.AttachPlan, moved: Link | None
) -> bool:
    if moved is None:
        return is_same_device(link, state, plan)
    if link.perm_mac is not None and moved.perm_mac is not None:
        return steps.normalize_mac(link.perm_mac) == steps.normalize_mac(moved.perm_mac)
    return steps.normalize_mac(link.mac) == steps.normalize_mac(moved.mac)


def ensure_host_state(rt: Rtnl, link: Link, state: plans.HostState) -> list[str]:
    """Bring `link`, proven to be the NIC (`home_link`), to `state`; returns the problems left."""
    name = state.ifname
    problems: list[str] = []
    reqs: list[Request] = []
    want_mac = steps.normalize_mac(state.mac)
    mac_differs = steps.normalize_mac(link.mac) != want_mac
    if mac_differs and link.up:
        # Many NIC drivers refuse a MAC change while up; the flag below brings it back up.
        reqs.append(rt.set_link(link.index, up=False, op=f"set {name} down"))
    if mac_differs or link.mtu != state.mtu:
        reqs.append(
            rt.set_link(
                link.index,
                mac=want_mac if mac_differs else None,
                mtu=state.mtu if link.mtu != state.mtu else None,
                op=f"set {name} MAC/MTU",
            )
        )
    # Before the link comes up: the kernel makes its link-local address on the way up, by this
    # mode, and the move reset the mode to the namespace default.
    mode = state.addr_gen_mode
    if mode is not None and mode != link.addr_gen_mode:
        reqs.append(
            rt.set_link(link.index, addr_gen_mode=mode, op=f"set {name} addrgenmode {mode}")
        )
    master = _master_change(rt, link, state, problems)
    if master is not None:
        reqs.append(rt.set_link(link.index, master=master, op=f"set {name} master {master}"))
    current = [
        hoststate.as_address(a, link.name)
        for a in rt.addresses(link.index)
        if not hoststate.kernel_made(a, link.mac)
    ]
    remove, add = steps.address_changes(current, _wanted_addresses(state))
    reqs += [rt.del_address(link.index, a.cidr) for a in remove]
    reqs += [rt.put_address(link.index, _as_kernel_address(a)) for a in add]
    if link.up != state.up or (mac_differs and link.up):
        reqs.append(rt.set_link(link.index, up=state.up, op=f"set {name} up={state.up}"))
    problems += _failures(rt.batch(reqs))
    if state.up:  # the kernel drops routes of a down link, so there is nothing to do otherwise
        entries = rt.routes(link.index)
        now = [hoststate.as_route(e, link.index) for e in entries]
        drop, missing = steps.route_changes(now, state.routes)
        reqs = [rt.del_route(link.index, e) for e, r in zip(entries, now, strict=True) if r in drop]
        reqs += [
            # A multipath route may have outlived our path (IPv6 keeps the other paths): replace
            # it whole. A single-path route must not overwrite another one with the same key.
            rt.put_route(
                _as_entry(r, link.index),
                oif=None if r.nexthops else link.index,
                replace=bool(r.nexthops),
            )
            for r in missing
        ]
        problems += _failures(rt.batch(reqs))
    return problems + _restore_features(link, state)


def _restore_features(link: Link, state: plans.HostState) -> list[str]:
    """Put back the offloads a plan changed: they travel with the device."""
    if not state.features:
        return []
    _, host_fd = netns.host()
    try:
        now = ethtool.features(host_fd, link.name)
        differ = {n: on for n, on in state.features if n in now and now[n].active != on}
        if differ:
            ethtool.set_features(host_fd, link.name, differ)
    except OSError as exc:
        return [f"restoring ethtool features of {link.name}: {exc}"]
    return []


def detach(plan: plans.AttachPlan, netns_path: str, *, host: plans.HostState | None = None) -> None:
    """Give the plan's interface back to the host (host-device) or delete it (macvlan).

    `host` overrides `plan.host` (the state read at attach time is fresher than the plan's).
    Idempotent: an interface already home only gets its state ensured. If the namespace is gone,
    this does what `recover_from_dead_netns` does. Raises RestoreError listing what failed.
    """
    rt, host_fd = netns.host()
    subject = f"claim {plan.claim} device {plan.device}"
    if plan.mode == "macvlan":
        _delete_macvlan(plan, netns_path, subject)
        return
    state = host or plan.host
    if state is None:
        raise RestoreError(f"{subject}: no recorded host state for {plan.host_ifname}")
    try:
        with netns.opened(netns_path) as fd, netns.socket_in(fd) as pod:
            problems = bring_home(rt, host_fd, pod, plan, state)
    except netns.NetnsGone:
        if recover_from_dead_netns(plan, host=state) is Recovery.DEVICE_GONE:
            raise RestoreError(
                f"{subject}: {state.ifname} was deleted together with the pod's network namespace"
            ) from None
        return
    except OSError as exc:  # the namespace could not be entered: what is on the host is ours
        problems = [str(exc), *_restore_home(rt, plan, state, None)]
    if problems:
        raise RestoreError(f"{subject}: restoring {state.ifname}: " + "; ".join(problems))


def _delete_macvlan(plan: plans.AttachPlan, netns_path: str, subject: str) -> None:
    try:
        with netns.opened(netns_path) as fd, netns.socket_in(fd) as pod:
            child = pod.get_link(name=plan.pod_ifname)
            if child is not None and child.kind == "macvlan":
                pod.do(pod.del_link(child.index, op=f"delete macvlan {plan.pod_ifname}"))
    except netns.NetnsGone:
        return  # the kernel deleted the child together with the namespace
    except OSError as exc:
        raise RestoreError(f"{subject}: {exc}") from exc


def bring_home(
    rt: Rtnl, host_fd: int, pod: Rtnl, plan: plans.AttachPlan, state: plans.HostState
) -> list[str]:
    """Move the plan's interface from the pod (an open socket in its namespace) to the host
    under its host name and MTU, and restore it there; returns what failed.

    The pod is searched first: a NIC found there is not home, whatever link bears its name on
    the host (a stranger may have taken the name, and even the index). Only a host link proven
    ours is then restored (`home_link`); a stranger is left untouched."""
    moved: Link | None = None
    problems: list[str] = []
    try:
        moved = _find_inside(pod, plan, state)
        if moved is not None:
            pod.do(
                pod.set_link(
                    moved.index,
                    netns_fd=host_fd,
                    name=state.ifname,
                    mtu=state.mtu,
                    op=f"move {moved.name} back to the host as {state.ifname}",
                )
            )
    except OSError as exc:
        # It may still have moved, under its pod-side name: `home_link` looks for it there.
        problems.append(str(exc))
    return problems + _restore_home(rt, plan, state, moved)


def _restore_home(
    rt: Rtnl, plan: plans.AttachPlan, state: plans.HostState, moved: Link | None
) -> list[str]:
    try:
        link, found = home_link(rt, state, plan, moved=moved)
        return found + ensure_host_state(rt, link, state)
    except RestoreError as exc:  # no host link is ours
        return [f"{exc}; nothing on the host was changed"]
    except OSError as exc:
        return [str(exc)]


def recover_from_dead_netns(
    plan: plans.AttachPlan, *, host: plans.HostState | None = None
) -> Recovery:
    """After the pod's namespace died without a detach (agent down during StopPodSandbox).

    A physical NIC falls back to the host namespace under its pod-side name (or `devN` if that is
    taken): find it by identity, rename it and restore it. A virtual one (veth) died with the
    namespace: report DEVICE_GONE so the agent drops the attachment instead of retrying forever.
    """
    if plan.mode == "macvlan":
        return Recovery.NOTHING_TO_RESTORE
    state = host or plan.host
    subject = f"claim {plan.claim} device {plan.device}"
    if state is None:
        raise RestoreError(f"{subject}: no recorded host state for {plan.host_ifname}")
    rt, _ = netns.host()
    try:
        home = rt.get_link(name=state.ifname)
        if home is None or not is_same_device(home, state, plan):
            found = next(
                (
                    link
                    for link in rt.links()
                    if (link.name == plan.pod_ifname or link.name.startswith("dev"))
                    and is_same_device(link, state, plan)
                ),
                None,
            )
            if found is None:
                return Recovery.DEVICE_GONE
            if found.up:  # renaming an up link fails with EBUSY
                rt.do(rt.set_link(found.index, up=False, op=f"set {found.name} down"))
            rt.do(rt.set_link(found.index, name=state.ifname, op=f"rename {found.name} back"))
            home = rt.get_link(index=found.index)  # a rename keeps the index
            if home is None:
                raise RtnlError(errno.ENODEV, f"find {state.ifname} after the rename")
        problems = ensure_host_state(rt, home, state)
    except OSError as exc:
        raise RestoreError(f"{subject}: recovering {state.ifname}: {exc}") from exc
    if problems:
        raise RestoreError(f"{subject}: recovering {state.ifname}: " + "; ".join(problems))
    return Recovery.RESTORED


def _find_inside(pod: Rtnl, plan: plans.AttachPlan, state: plans.HostState) -> Link | None:
    """Our interface in the pod: by its pod-side name, else by index; never a stranger."""
    for link in (pod.get_link(name=plan.pod_ifname), pod.get_link(index=state.ifindex)):
        if link is not None and is_same_device(link, state, plan):
            return link
    return None


def _as_entry(route: plans.HostRoute, index: int) -> RouteEntry:
    """The route to send for the NIC now at `index`, the kernel's defaults where the checkpoint
    (an older one) recorded none: `ip route add` scope and the boot protocol."""
    multipath_or_gw = bool(route.gateway or route.nexthops)
    default_scope = codec.RT_SCOPE_UNIVERSE if multipath_or_gw else codec.RT_SCOPE_LINK
    return RouteEntry(
        destination=route.destination,
        gateway=route.gateway,
        metric=route.metric,
        protocol=route.protocol if route.protocol is not None else codec.RTPROT_BOOT,
        source=route.source,
        scope=route.scope if route.scope is not None else default_scope,
        table=route.table,
        type=route.type,
        tos=route.tos,
        flags=codec.RTNH_F_ONLINK if route.onlink else 0,
        pref=route.pref,
        metrics=route.metrics,
        nexthops=tuple(
            NextHop(
                ifindex=index if h.ifindex is None else h.ifindex,
                gateway=h.gateway,
                weight=h.weight,
                flags=codec.RTNH_F_ONLINK if h.onlink else 0,
            )
            for h in route.nexthops
        ),
    )


def _as_kernel_address(addr: plans.HostAddress) -> Address:
    return Address(
        addr.cidr,
        addr.broadcast,
        flags=addr.flags,
        label=addr.label,
        scope=addr.scope,
        proto=addr.proto,
    )


def _wanted_addresses(state: plans.HostState) -> tuple[plans.HostAddress, ...]:
    """The addresses to restore; older checkpoints recorded only CIDR and broadcast."""
    if state.address_details or not state.addresses:
        return state.address_details
    brd = {str(ipaddress.ip_interface(c)): b for c, b in state.broadcasts}
    return tuple(
        plans.HostAddress(cidr=c, broadcast=brd.get(str(ipaddress.ip_interface(c))))
        for c in state.addresses
    )


def _master_change(rt: Rtnl, link: Link, state: plans.HostState, problems: list[str]) -> int | None:
    """The master index to set (0: none), or None when the link already has the right one.
    The recorded index must still name the recorded bridge; else the bridge is looked up by
    name (re-created since), and a bridge gone is a problem, not a reason to stop."""
    if state.master is None:
        return 0 if link.master else None
    master = rt.get_link(index=state.master)
    if master is None or (state.master_name and master.name != state.master_name):
        master = rt.get_link(name=state.master_name) if state.master_name else None
    if master is None:
        problems.append(
            f"master {state.master_name or state.master} of {state.ifname} is gone: "
            "the interface stays outside it"
        )
        return None
    return None if link.master == master.index else master.index


def _failures(results: list[RtnlError | None]) -> list[str]:
    return [str(e) for e in results if e is not None and e.errno not in _ALREADY]

"""Giving interfaces back to the host: detach, recovery after a pod's namespace died, exact restore.

Time budget: StopPodSandbox has the same ~2 s deadline as RunPodSandbox and the move back is the
expensive part (~16 ms of kernel time). Everything here is best-effort and safe to run twice: each
step reads what the kernel shows and only changes what differs from the recorded `HostState`.
Failures are collected and raised together as one RestoreError at the end.
"""

from __future__ import annotations

import enum
import errno
import ipaddress

from multinet import plans
from multinet.errors import RestoreError
from multinet.netlink import netns, steps
from multinet.netlink.rtnl import Link, Request, RouteEntry, Rtnl, RtnlError

# Errors that mean "already as wanted" for an add or a delete.
_ALREADY = {errno.EEXIST, errno.EADDRNOTAVAIL, errno.ESRCH, errno.ENOENT}


class Recovery(enum.Enum):
    """What `recover_from_dead_netns` found."""

    RESTORED = "restored"  # the NIC was on the host (under its pod-side name or its own): restored
    DEVICE_GONE = "device-gone"  # a virtual device died with the namespace: nothing to restore
    NOTHING_TO_RESTORE = "nothing-to-restore"  # a macvlan child: the kernel deleted it, as intended


def read_host_state(rt: Rtnl, link: Link) -> plans.HostState:
    """The host-side state of `link` in the form the checkpoint keeps and restore puts back."""
    addrs = [a for a in rt.addresses(link.index) if not steps.is_kernel_link_local(a.cidr)]
    routes = rt.routes(link.index) if link.up else []
    return plans.HostState(
        ifname=link.name,
        ifindex=link.index,
        mtu=link.mtu,
        mac=steps.normalize_mac(link.mac),
        up=link.up,
        addresses=tuple(a.cidr for a in addrs),
        routes=tuple(_as_route(r) for r in routes),
        broadcasts=tuple((a.cidr, a.broadcast) for a in addrs if a.broadcast),
    )


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


def ensure_host_state(rt: Rtnl, state: plans.HostState) -> list[str]:
    """Bring the host interface named `state.ifname` to `state`; returns the problems left."""
    link = rt.get_link(name=state.ifname)
    if link is None:
        return [f"interface {state.ifname} is not on the host"]
    problems: list[str] = []
    reqs: list[Request] = []
    want_mac = steps.normalize_mac(state.mac)
    mac_differs = steps.normalize_mac(link.mac) != want_mac
    if mac_differs and link.up:
        # Many NIC drivers refuse a MAC change while up; the flag below brings it back up.
        reqs.append(rt.set_link(link.index, up=False, op=f"set {state.ifname} down"))
    if mac_differs or link.mtu != state.mtu:
        reqs.append(
            rt.set_link(
                link.index,
                mac=want_mac if mac_differs else None,
                mtu=state.mtu if link.mtu != state.mtu else None,
                op=f"set {state.ifname} MAC/MTU",
            )
        )
    current = [a.cidr for a in rt.addresses(link.index)]
    remove, add = steps.address_changes(current, state.addresses)
    brd = {str(ipaddress.ip_interface(c)): b for c, b in state.broadcasts}
    reqs += [rt.del_address(link.index, c) for c in remove]
    reqs += [rt.add_address(link.index, c, brd.get(c)) for c in add]
    if link.up != state.up or (mac_differs and link.up):
        reqs.append(rt.set_link(link.index, up=state.up, op=f"set {state.ifname} up={state.up}"))
    problems += _failures(rt.batch(reqs))
    if state.up:  # the kernel drops routes of a down link, so there is nothing to do otherwise
        entries = rt.routes(link.index)
        now = [_as_route(r) for r in entries]
        drop, missing = steps.route_changes(now, state.routes)
        drop_keys = {steps.route_key(r) for r in drop}
        reqs = [
            rt.del_route(link.index, e)
            for e in entries
            if steps.route_key(_as_route(e)) in drop_keys
        ]
        reqs += [
            rt.add_route(
                link.index,
                r.destination,
                r.gateway,
                metric=r.metric,
                protocol=r.protocol,
                source=r.source,
            )
            for r in missing
        ]
        problems += _failures(rt.batch(reqs))
    return problems


def detach(plan: plans.AttachPlan, netns_path: str, *, host: plans.HostState | None = None) -> None:
    """Give the plan's interface back to the host (host-device) or delete it (macvlan).

    `host` overrides `plan.host` (the state read at attach time is fresher than the plan's).
    Idempotent: an interface already home only gets its state ensured. If the namespace is gone,
    this does what `recover_from_dead_netns` does. Raises RestoreError listing what failed.
    """
    rt, host_fd = netns.host()
    subject = f"claim {plan.claim} device {plan.device}"
    if plan.mode == "macvlan":
        try:
            with netns.opened(netns_path) as fd, netns.socket_in(fd) as pod:
                child = pod.get_link(name=plan.pod_ifname)
                if child is not None and child.kind == "macvlan":
                    pod.do(pod.del_link(child.index, op=f"delete macvlan {plan.pod_ifname}"))
        except netns.NetnsGone:
            return  # the kernel deleted the child together with the namespace
        except OSError as exc:
            raise RestoreError(f"{subject}: {exc}") from exc
        return
    state = host or plan.host
    if state is None:
        raise RestoreError(f"{subject}: no recorded host state for {plan.host_ifname}")
    problems: list[str] = []
    try:
        with netns.opened(netns_path) as fd, netns.socket_in(fd) as pod:
            inside = _find_inside(pod, plan, state)
            if inside is not None:
                pod.do(
                    pod.set_link(
                        inside.index,
                        netns_fd=host_fd,
                        name=state.ifname,
                        mtu=state.mtu,
                        op=f"move {inside.name} back to the host as {state.ifname}",
                    )
                )
    except netns.NetnsGone:
        if recover_from_dead_netns(plan, host=state) is Recovery.DEVICE_GONE:
            raise RestoreError(
                f"{subject}: {state.ifname} was deleted together with the pod's network namespace"
            ) from None
        return
    except OSError as exc:
        problems.append(str(exc))
    try:
        problems += ensure_host_state(rt, state)
    except OSError as exc:
        problems.append(str(exc))
    if problems:
        raise RestoreError(f"{subject}: restoring {state.ifname}: " + "; ".join(problems))


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
        problems = ensure_host_state(rt, state)
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


def _as_route(entry: RouteEntry) -> plans.Route:
    return plans.Route(
        destination=entry.destination,
        gateway=entry.gateway,
        metric=entry.metric,
        protocol=entry.protocol,
        source=entry.source,
    )


def _failures(results: list[RtnlError | None]) -> list[str]:
    return [str(e) for e in results if e is not None and e.errno not in _ALREADY]

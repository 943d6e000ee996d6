"""Executing an attach plan inside a pod's network namespace: all or nothing.

Time budget: this runs inside NRI RunPodSandbox (~2 s deadline) on a worker thread. The kernel's
netns move (~16 ms, an RCU synchronisation) dominates; we add few round trips around it:

host-device: 1. read the host state (link, addresses, routes: what undo and detach put back)
             2. ONE setlink on the host: move into the pod netns + rename + MTU (the kernel does the
                move first, closing the link, so no separate "down" or rename is needed), asking
                (Linux 5.13+) that it keep its index there
             3. only if the pod had that index (or the kernel is older): look the interface up in
                the pod
             4. ONE write inside the pod: MAC + up, the addresses, the routes (batched, acked each)
macvlan:     ONE newlink on the host creating the child directly in the pod netns (name, MAC,
             MTU), then a look-up of the child in the pod and step 4.

On any failure the work is undone (the NIC moved back under its original name and restored, the
macvlan child deleted) and AttachError names the claim, the device, the step and the kernel's
reason. Not safe to run twice for the same plan without a detach in between (the host NIC is gone).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from multinet import plans
from multinet.errors import AttachError
from multinet.netlink import codec, ethtool, hoststate, netns, restore, steps, sysctls
from multinet.netlink.rtnl import Link, Request, Rtnl, RtnlError, Rule

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


@dataclass(frozen=True, slots=True)
class AttachResult:
    """The interface as the pod sees it, plus (host-device) the host state to restore later."""

    ifindex: int
    ifname: str
    mac: str
    addresses: tuple[str, ...]
    host: plans.HostState | None = None


def attach(plan: plans.AttachPlan, netns_path: str) -> AttachResult:
    """Configure the plan's interface in the namespace at `netns_path` or leave no trace."""
    subject = f"claim {plan.claim} device {plan.device}"
    problems = check_plan(plan)
    if problems:
        raise AttachError(f"{subject}: invalid plan: " + "; ".join(problems))
    rt, host_fd = netns.host()
    try:
        with netns.opened(netns_path) as pod_fd, netns.socket_in(pod_fd) as pod:
            if plan.mode == "host-device":
                return _host_device(plan, rt, host_fd, pod, pod_fd, subject)
            return _macvlan(plan, rt, pod, pod_fd, subject)
    except AttachError:
        raise
    except Exception as exc:  # namespace gone, no socket there, or a host-side read failed
        raise AttachError(f"{subject}: {exc}") from exc


def check_plan(plan: plans.AttachPlan) -> list[str]:
    """What would make the kernel reject the plan half-way, found before touching anything."""
    problems = []
    if not 1 <= len(plan.pod_ifname) <= 15 or "/" in plan.pod_ifname or " " in plan.pod_ifname:
        problems.append(f"pod_ifname {plan.pod_ifname!r}: 1-15 characters, no '/' or space")
    for i, cidr in enumerate(plan.addresses):
        try:
            ipaddress.ip_interface(cidr)
        except ValueError:
            problems.append(f"addresses[{i}] {cidr!r}: not an address in CIDR form")
    for i, route in enumerate(plan.routes):
        try:
            steps.route_key(route)
        except ValueError:
            problems.append(f"routes[{i}] {route.destination} via {route.gateway}: not valid")
    if plan.mac is not None and not _MAC.fullmatch(plan.mac):
        problems.append(f"mac {plan.mac!r}: six hex pairs separated by ':'")
    if plan.mtu is not None and not 68 <= plan.mtu <= 65535:
        problems.append(f"mtu {plan.mtu}: must be between 68 and 65535")
    return problems


def _host_device(
    plan: plans.AttachPlan, rt: Rtnl, host_fd: int, pod: Rtnl, pod_fd: int, subject: str
) -> AttachResult:
    link = rt.get_link(name=plan.host_ifname)
    if link is None:
        raise AttachError(f"{subject}: interface {plan.host_ifname} is not on the host")
    before = hoststate.read_link(rt, link)
    try:
        index = _move(rt, link, plan, pod, pod_fd)
        # Offloads stay with the device wherever it goes: what they were goes home with it.
        before = before.model_copy(update={"features": _features_now(plan, pod_fd)})
        _configure_inside(pod, pod_fd, index, plan, mac=plan.mac)
    except Exception as exc:
        undo = restore.bring_home(rt, host_fd, pod, plan, before)  # the steps of a detach
        raise AttachError(_failure(subject, exc, undo)) from exc
    mac = steps.normalize_mac(plan.mac or link.mac)  # a move keeps the MAC
    return AttachResult(index, plan.pod_ifname, mac, plan.addresses, host=before)


def _move(rt: Rtnl, link: Link, plan: plans.AttachPlan, pod: Rtnl, pod_fd: int) -> int:
    """Move the NIC into the pod, renamed and resized, in one setlink; returns its index there.
    A moved link keeps its index unless the pod has a link with it. Kernels that take the
    index to use (`_MOVE_TAKES_INDEX`) are asked to keep it, so the answer alone tells and the
    pod need not be asked; if the pod has that index they refuse (EBUSY) before doing anything,
    and the move is made again without it."""
    op = f"move {link.name} into the pod as {plan.pod_ifname}"
    if _MOVE_TAKES_INDEX:
        request = rt.set_link(
            link.index,
            netns_fd=pod_fd,
            new_index=link.index,
            name=plan.pod_ifname,
            mtu=plan.mtu,
            op=op,
        )
        try:
            rt.do(request)
            return link.index
        except RtnlError as exc:
            # EBUSY from a later step of the same message (the NIC moved): not ours to retry.
            if exc.errno != errno.EBUSY or rt.get_link(index=link.index) is None:
                raise
    rt.do(rt.set_link(link.index, netns_fd=pod_fd, name=plan.pod_ifname, mtu=plan.mtu, op=op))
    return _lookup(pod, plan.pod_ifname).index


def _macvlan(
    plan: plans.AttachPlan, rt: Rtnl, pod: Rtnl, pod_fd: int, subject: str
) -> AttachResult:
    parent = rt.get_link(name=plan.host_ifname)
    if parent is None:
        raise AttachError(f"{subject}: parent interface {plan.host_ifname} is not on the host")
    try:
        rt.do(
            rt.new_macvlan(
                parent.index,
                name=plan.pod_ifname,
                netns_fd=pod_fd,
                mac=plan.mac,
                mtu=plan.mtu,
                mode=plan.macvlan_mode,
            )
        )
    except RtnlError as exc:  # nothing was created
        raise AttachError(_failure(subject, exc, [])) from exc
    child: Link | None = None
    try:
        child = _lookup(pod, plan.pod_ifname)
        _configure_inside(pod, pod_fd, child.index, plan, mac=None)
    except Exception as exc:
        undo: list[str] = []
        try:
            child = child or pod.get_link(name=plan.pod_ifname)
            if child is not None and child.kind == "macvlan":
                pod.do(pod.del_link(child.index, op=f"delete macvlan {plan.pod_ifname}"))
        except OSError as undo_exc:
            undo.append(str(undo_exc))
        raise AttachError(_failure(subject, exc, undo)) from exc
    mac = steps.normalize_mac(plan.mac or child.mac)
    return AttachResult(child.index, plan.pod_ifname, mac, plan.addresses)


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return release >= (major, minor)


# IFLA_NEW_IFINDEX on a move: Linux 5.13 and later; earlier kernels ignore the attribute (the
# link could then get another index unnoticed), so only these are asked.
_MOVE_TAKES_INDEX = _kernel_at_least(5, 13)


def _lookup(pod: Rtnl, name: str) -> Link:
    link = pod.get_link(name=name)
    if link is None:
        raise RtnlError(errno.ENODEV, f"find {name} in the pod")
    return link


def _features_now(plan: plans.AttachPlan, pod_fd: int) -> tuple[tuple[str, bool], ...]:
    """The changeable offloads of the NIC before the plan sets some (none when it sets none)."""
    if not plan.features:
        return ()
    now = ethtool.features(pod_fd, plan.pod_ifname)
    return tuple((name, f.active) for name, f in sorted(now.items()) if f.changeable)


def _configure_inside(
    pod: Rtnl, pod_fd: int, index: int, plan: plans.AttachPlan, *, mac: str | None
) -> None:
    """Sysctls and offloads while the link is still down (accept_ra, arp_ignore... act on the
    way up), then in one batch: MAC and up (the kernel sets the address before the flag),
    addresses, neighbours, routes (a gateway must be reachable through an address, and the link
    must be up), rules, and last the pod's default route."""
    if plan.sysctls:
        sysctls.apply(pod_fd, [(s.path, s.value) for s in plan.sysctls])
    if plan.features:
        ethtool.set_features(pod_fd, plan.pod_ifname, dict(plan.features))
    reqs = [pod.set_link(index, mac=mac, up=True, op=f"set {plan.pod_ifname} MAC and up")]
    # NODAD: the pod's IPv6 addresses are usable at once instead of after duplicate detection.
    reqs += [pod.add_address(index, cidr, nodad=True) for cidr in plan.addresses]
    reqs += [pod.add_neighbor(index, n.address, n.mac) for n in plan.neighbors]
    reqs += [
        pod.add_route(
            index,
            r.destination,
            r.gateway,
            metric=r.metric,
            protocol=r.protocol,
            source=r.source,
            table=r.table if r.table is not None else codec.RT_TABLE_MAIN,
            scope=r.scope,
            onlink=r.onlink,
        )
        for r in plan.routes
    ]
    reqs += [pod.add_rule(_rule(r)) for r in plan.rules]
    reqs += default_route_requests(pod, index, plan.default_gateways)
    for err in pod.batch(reqs):
        if err is not None:
            raise err


def _rule(rule: plans.Rule) -> Rule:
    return Rule(
        priority=rule.priority,
        table=rule.table,
        src=rule.source,
        dst=rule.destination,
        iif=rule.iif,
        oif=rule.oif,
    )


def default_route_requests(pod: Rtnl, index: int, gateways: Sequence[str]) -> list[Request]:
    """Make each gateway the pod's default route of its family: it takes the place of the
    first default route the cluster network set (same metric, so the kernel replaces it), and
    any other default of that family goes, so the primary network keeps only its subnet route."""
    reqs: list[Request] = []
    for gateway in gateways:
        family = codec.family(gateway)
        current = pod.default_routes(family)
        metric = current[0].route.metric if current else None
        reqs += [pod.del_route(d.oif or 0, d.route) for d in current[1:]]
        reqs.append(pod.replace_default_route(family, index, gateway, metric=metric))
    return reqs


def _failure(subject: str, exc: BaseException, undo: list[str]) -> str:
    text = f"{subject}: {exc}"
    if undo:
        text += "; giving the interface back also failed: " + "; ".join(undo)
    return text

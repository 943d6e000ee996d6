"""`mode: cni` plans executed: the network's CNI chain run for the claim, in the agent's hooks.

RunPodSandbox runs ADD with the claim's interface name (CNI_IFNAME) in the pod's namespace,
giving the plugins the allocated host interface (`master` for macvlan/ipvlan, `device` for
host-device; see `invocation`), the claim's MAC and static addresses where a plugin declares the
`mac`/`ips` capability. With `defaultRoute`, the chain's gateway then becomes the pod's default
route. StopPodSandbox (and recovery after the namespace died) runs DEL from the cache record that
ADD wrote under the state directory, so an agent restarted in between still cleans up; the resync
after an NRI (re)connect runs CHECK.

Time: ADD runs inside the runtime's NRI deadline (~2 s); `timeout` bounds the whole chain.
Work on one plan is serialised by the caller (`agent.movers.ModeMover`).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from multinet import plans
from multinet.cni import runner
from multinet.cni.config import parse_chain
from multinet.cni.errors import CniError
from multinet.cni.invocation import PodRef, RuntimeArgs
from multinet.cni.result import Outcome
from multinet.errors import AttachError, RestoreError
from multinet.netlink import attach as attaching
from multinet.netlink import hoststate, netns, restore
from multinet.netlink.attach import AttachResult

#: Where the node's CNI plugins usually are: the upstream tarball's and Debian's directories.
DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
DEFAULT_TIMEOUT = 1.5  # seconds for a whole chain; the runtime's NRI deadline is ~2 s


def container_id(plan: plans.AttachPlan) -> str:
    """CNI_CONTAINERID for a plan: stable from ADD to DEL, distinct per claim request and device
    (IPAM plugins such as host-local key their leases by it and the interface name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"multinet-{plan.key}")


class CniMover:
    """Runs the CNI chain of `mode: cni` plans."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        bin_dirs: tuple[str, ...] = DEFAULT_BIN_DIRS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._cache_dir = cache_dir
        self._bin_dirs = bin_dirs
        self._timeout = timeout

    async def attach(self, plan: plans.AttachPlan, netns_path: str) -> AttachResult:
        """Raises CniError (an AttachError) with nothing left behind."""
        spec = _spec(plan)
        subject = f"claim {plan.claim} device {plan.device}"
        host = await hoststate.read_host_state(plan.host_ifname) if spec.takes_device else None
        _, outcome = await runner.add(
            parse_chain(spec.config, name=plan.network),
            key=plan.key,
            bin_dirs=self._bin_dirs,
            container_id=container_id(plan),
            netns=netns_path,
            ifname=plan.pod_ifname,
            device=plan.host_ifname,
            pod=PodRef(namespace=spec.pod_namespace, name=spec.pod_name, uid=plan.claim.uid),
            cache_dir=self._cache_dir,
            timeout=self._timeout,
            runtime=RuntimeArgs(mac=plan.mac, ips=spec.ips),
        )
        try:
            index = await asyncio.to_thread(_finish_inside, plan, netns_path, outcome)
        except (OSError, ValueError) as exc:
            await self.detach(plan, netns_path, host)
            raise AttachError(f"{subject}: after the CNI chain: {exc}") from exc
        return AttachResult(index, plan.pod_ifname, outcome.mac, outcome.ips, host=host)

    async def detach(
        self, plan: plans.AttachPlan, netns_path: str, host: plans.HostState | None
    ) -> None:
        """DEL from the cache record, then (a chain that took the NIC) the NIC restored to its
        recorded host state. RestoreError names the plugin or what could not be restored."""
        subject = f"claim {plan.claim} device {plan.device}"
        try:
            await runner.delete(
                key=plan.key,
                cache_dir=self._cache_dir,
                bin_dirs=self._bin_dirs,
                timeout=self._timeout,
                netns_now=netns_path or None,  # the agent's pin outlives the runtime's path
            )
        except CniError as exc:
            raise RestoreError(f"{subject}: {exc}") from exc
        if host is not None and plan.moves_nic:
            problems = await asyncio.to_thread(_restore_host, plan, host)
            if problems:
                raise RestoreError(f"{subject}: restoring {host.ifname}: " + "; ".join(problems))

    async def recover(self, plan: plans.AttachPlan, host: plans.HostState | None) -> str:
        """The namespace is gone: DEL lets the plugins release what they keep outside it (a
        physical NIC the chain took fell back to the host: it is restored)."""
        await self.detach(plan, "", host)
        return "cni-deleted"

    async def check(self, plan: plans.AttachPlan) -> None:
        """CHECK of the attachment's chain; CniError when a plugin finds it broken."""
        await runner.check(
            key=plan.key, cache_dir=self._cache_dir, bin_dirs=self._bin_dirs, timeout=self._timeout
        )


def _spec(plan: plans.AttachPlan) -> plans.CniPlan:
    if plan.cni is None:
        raise AttachError(f"claim {plan.claim} device {plan.device}: plan has no CNI config")
    return plan.cni


def _finish_inside(plan: plans.AttachPlan, netns_path: str, outcome: Outcome) -> int:
    """The interface's index in the pod, and (defaultRoute) the chain's gateways as the pod's
    default routes."""
    gateways = tuple(g for g in (outcome.gateway4, outcome.gateway6) if g)
    with netns.opened(netns_path) as fd, netns.socket_in(fd) as pod:
        link = pod.get_link(name=plan.pod_ifname)
        if link is None:
            raise FileNotFoundError(f"the chain left no interface {plan.pod_ifname} in the pod")
        if plan.default_route:
            if not gateways:
                raise ValueError(
                    "defaultRoute: the CNI result names no gateway (set one in the config's ipam)"
                )
            for err in pod.batch(attaching.default_route_requests(pod, link.index, gateways)):
                if err is not None:
                    raise err
        return link.index


def _restore_host(plan: plans.AttachPlan, host: plans.HostState) -> list[str]:
    """The NIC back in its recorded state after the chain's DEL gave it back (a CNI plugin
    restores its name at most: addresses, routes, MTU and the rest are ours to put back)."""
    rt, _ = netns.host()
    try:
        link, problems = restore.home_link(rt, host, plan)
        return problems + restore.ensure_host_state(rt, link, host)
    except (RestoreError, OSError) as exc:
        return [str(exc)]

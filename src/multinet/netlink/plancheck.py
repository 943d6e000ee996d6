"""Checks of a plan against this node's kernel, while the claim is prepared (not at attach).

A sysctl the kernel does not have, an offload the NIC does not have or cannot change: found in
NodePrepareResources, they fail the prepare with the field named, so the user sees it on the
pod's events before any sandbox starts instead of as a failed RunPodSandbox. What only the pod
can show (a namespace-wide key the pod's namespace lacks, a macvlan child's fixed offloads) is
still caught at attach.

Blocking (reads /proc/sys and asks the ethtool family): `check_async` runs it on a worker
thread, and only for a plan with sysctls or ethtool features.
"""

from __future__ import annotations

import asyncio
import difflib
import os

from multinet import plans
from multinet.errors import ConfigError
from multinet.netlink import ethtool, netns

_PROC_SYS = "/proc/sys"


def needed(plan: plans.AttachPlan) -> bool:
    """Whether the plan asks for anything `check` looks at (most plans do not: no worker thread
    then)."""
    return bool(plan.sysctls or plan.features)


async def check_async(plan: plans.AttachPlan) -> None:
    """`check` off the event loop (it reads /proc/sys and asks the kernel over ethtool netlink),
    only for a plan that needs it."""
    if needed(plan):
        await asyncio.to_thread(check, plan)


def check(plan: plans.AttachPlan) -> None:
    """ConfigError naming every sysctl key and ethtool feature this node cannot apply."""
    problems = [*_sysctl_problems(plan), *_feature_problems(plan)]
    if problems:
        raise ConfigError(problems, subject=f"claim {plan.claim} request {plan.request}")


def _sysctl_problems(plan: plans.AttachPlan) -> list[str]:
    out = []
    for sysctl in plan.sysctls:
        # The interface is not in the pod yet; its keys are those of "default" until it is.
        path = tuple("default" if p == plan.pod_ifname else p for p in sysctl.path)
        if not os.path.exists(os.path.join(_PROC_SYS, *path)):
            out.append(f"sysctls[{sysctl.key}]: no such sysctl in this node's kernel")
    return out


def _feature_problems(plan: plans.AttachPlan) -> list[str]:
    """Unknown names for every mode; fixed ones only where the NIC itself goes to the pod (a
    macvlan child's or a CNI interface's own offloads are not the parent's)."""
    if not plan.features:
        return []
    _, host_fd = netns.host()
    try:
        state = ethtool.features(host_fd, plan.host_ifname)
    except OSError as exc:
        return [f"ethtool.features: cannot read the features of {plan.host_ifname}: {exc}"]
    out = []
    for name, on in plan.features:
        found = ethtool.members(name, state)
        if not found:
            close = difflib.get_close_matches(name, [*state, *ethtool.LEGACY], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(f"ethtool.features.{name}: not a feature this node's kernel knows{hint}")
        elif plan.mode == "host-device" and all(
            not state[f].changeable and state[f].active != on for f in found
        ):
            now = "on" if state[found[0]].active else "off"
            out.append(
                f"ethtool.features.{name}: fixed {now} on {plan.host_ifname}; it cannot be changed"
            )
    return out

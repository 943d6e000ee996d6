"""The NRI `PodHandler` of the agent: protocol pods in, the attach and release hooks out.

Time budget: every method runs under the NRI deadline policy of `multinet.nri.dispatch`
(answered before ~2 s). Nothing here waits on the API; see attach.py and release.py.
"""

from __future__ import annotations

import logging

from multinet.agent.attach import Attacher
from multinet.agent.contracts import PodInfo
from multinet.agent.release import Releaser
from multinet.nri.pods import PodSandbox

log = logging.getLogger(__name__)


def pod_info(pod: PodSandbox) -> PodInfo:
    return PodInfo(uid=pod.uid, namespace=pod.namespace, name=pod.name, netns=pod.netns or None)


class NriHooks:
    def __init__(self, *, attacher: Attacher, releaser: Releaser) -> None:
        self._attacher = attacher
        self._releaser = releaser

    async def on_synchronize(self, pods: list[PodSandbox]) -> None:
        log.debug("NRI Synchronize", extra={"pods": [f"{p.ref} {p.netns}" for p in pods]})
        live = [pod_info(p) for p in pods]
        await self._releaser.adopt_unrecorded()
        await self._releaser.release_vanished(live)
        await self._attacher.synchronize(live)

    async def on_run_pod_sandbox(self, pod: PodSandbox) -> None:
        log.debug(
            "NRI RunPodSandbox", extra={"pod": pod.ref, "podUID": pod.uid, "netns": pod.netns}
        )
        await self._attacher.run_pod_sandbox(pod_info(pod))

    async def on_stop_pod_sandbox(self, pod: PodSandbox) -> None:
        log.debug(
            "NRI StopPodSandbox", extra={"pod": pod.ref, "podUID": pod.uid, "netns": pod.netns}
        )
        await self._releaser.stop_pod_sandbox(pod_info(pod))

    async def on_remove_pod_sandbox(self, pod: PodSandbox) -> None:
        log.debug(
            "NRI RemovePodSandbox", extra={"pod": pod.ref, "podUID": pod.uid, "netns": pod.netns}
        )
        await self._releaser.remove_pod_sandbox(pod_info(pod))

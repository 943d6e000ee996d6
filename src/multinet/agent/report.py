"""After the hook has answered: write the claim status and the pod's network-status annotation.

The NRI hooks only queue outcomes (`report()` never waits); one background task drains the
queue, groups outcomes per claim and writes them with server-side apply. A pod's later report
for the same claim replaces the earlier one, which is what server-side apply gives us anyway.
A report made while answering an NRI call is written once the runtime has that answer
(`nri.answered`): building and sending the API request would otherwise run on the event loop
between the hook's end and its answer. A status not written after the writer's retries (the
apiserver refused it, or stayed unreachable) is a Warning Event `StatusNotWritten` on the claim,
in the apiserver's words: the interface is attached, but whoever reads the claim's status would
find nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from multinet.agent.contracts import EventSink, PodInfo
from multinet.kube.errors import ApiError
from multinet.kube.events import NoEvents, claim_ref
from multinet.kube.status import StatusWriter, refusal
from multinet.nri import answered
from multinet.plans import ClaimRef
from multinet.status import DeviceOutcome

log = logging.getLogger(__name__)


class StatusReporter:
    def __init__(self, writer: StatusWriter, *, events: EventSink | None = None) -> None:
        self._writer = writer
        self._events = events or NoEvents()
        self._queue: asyncio.Queue[tuple[PodInfo, list[DeviceOutcome], asyncio.Future[None]]] = (
            asyncio.Queue()
        )

    def report(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        if outcomes:
            self._queue.put_nowait((pod, outcomes, answered()))

    async def run(self) -> None:
        while True:
            pod, outcomes, answer = await self._queue.get()
            try:
                await answer
                await self._write(pod, outcomes)
            except Exception:
                log.exception("status report failed", extra={"pod": pod.ref, "podUID": pod.uid})
            finally:
                self._queue.task_done()

    async def _write(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        per_claim: dict[ClaimRef, list[DeviceOutcome]] = defaultdict(list)
        for outcome in outcomes:
            per_claim[outcome.plan.claim].append(outcome)
        for claim, items in per_claim.items():
            try:
                await self._writer.write_claim(claim, items)
            except ApiError as exc:
                self._events.post(
                    claim_ref(claim.namespace, claim.name, claim.uid),
                    "Warning",
                    "StatusNotWritten",
                    f"status.devices for pod {pod.ref} not written (the interface is attached): "
                    f"{refusal(exc)}"[:1024],
                )
        if any(o.ready for o in outcomes):
            with contextlib.suppress(ApiError):  # logged by the writer, in the apiserver's words
                await self._writer.annotate_pod(pod.namespace, pod.name, outcomes)

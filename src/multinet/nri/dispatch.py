"""Runs the agent's pod handlers under the runtime's deadline, in per-pod order.

Why this exists: each NRI call carries a deadline (~2 s, containerd's `plugin_request_timeout`). A
plugin that answers late is DISCONNECTED and the pod starts anyway, unconfigured. So the answer must
be on time even when a handler is not.

Deadline policy (every pod event):
- The handler runs in its own task. The call waits for it at most
  `min(time left until the call's deadline, cap) - margin` seconds (cap = the runtime's configured
  request timeout, at most `PluginSettings.event_budget`; margin = `PluginSettings.safety_margin`).
- Done in time: an exception becomes an error reply carrying the exception's message. For
  RunPodSandbox this fails the pod sandbox and the message reaches the user (pod events); the
  runtime then sends Stop and Remove. For Stop/Remove the runtime only logs it.
- Not done in time: the call is answered with an error NOW ("... not finished within X s"), and
  the handler is NOT cancelled: it keeps running in the background (interrupting netlink work
  halfway would leave a plan half-applied), its outcome is logged. Because events for one sandbox
  are serialised (below), the Stop/Remove that follow a failed RunPodSandbox see its final effects.
- Events for the same sandbox id run strictly one after another, in arrival order; different
  sandboxes run concurrently (a burst of pods must not queue behind each other's kernel time).
- Synchronize: the handler gets the same budget, but on expiry the call is answered with SUCCESS
  (an error would only make the runtime drop the plugin and resend the same pods) and the handler
  continues; pod events arriving meanwhile wait for it first. Its failures are logged, not sent.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from typing import Protocol

from multinet.nri.pods import PodSandbox

log = logging.getLogger(__name__)


class PodEvent(enum.StrEnum):
    RUN = "RunPodSandbox"
    STOP = "StopPodSandbox"
    REMOVE = "RemovePodSandbox"


class PodHandler(Protocol):
    """What the node agent implements: coroutines, run under the deadline policy above."""

    async def on_synchronize(self, pods: list[PodSandbox]) -> None:
        """All pod sandboxes the runtime knows, once per (re)connection."""

    async def on_run_pod_sandbox(self, pod: PodSandbox) -> None:
        """Netns exists and CNI ran. Raise to fail the sandbox; the message reaches the user."""

    async def on_stop_pod_sandbox(self, pod: PodSandbox) -> None:
        """Pause container stopped; netns still there (last chance to move devices back)."""

    async def on_remove_pod_sandbox(self, pod: PodSandbox) -> None:
        """Netns already gone; clean up state."""


class HandlerTimeout(Exception):
    """The handler did not finish within the budget; it continues in the background."""


class Dispatcher:
    """Owns the handler tasks. Survives reconnections: the handler state is the agent's."""

    def __init__(self, handler: PodHandler) -> None:
        self._handler = handler
        self._by_sandbox: dict[str, asyncio.Task[None]] = {}
        self._sync: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[None]] = set()

    def _call(self, event: PodEvent, pod: PodSandbox) -> Awaitable[None]:
        if event is PodEvent.RUN:
            return self._handler.on_run_pod_sandbox(pod)
        if event is PodEvent.STOP:
            return self._handler.on_stop_pod_sandbox(pod)
        return self._handler.on_remove_pod_sandbox(pod)

    async def pod_event(self, event: PodEvent, pod: PodSandbox, budget: float) -> None:
        """Run the handler for `event`; raise its exception, or HandlerTimeout after `budget` s."""
        earlier = [t for t in (self._sync, self._by_sandbox.get(pod.id)) if t is not None]

        async def run() -> None:
            pending = [t for t in earlier if not t.done()]
            if pending:
                await asyncio.wait(pending)  # their outcomes are reported by their own callers
            await self._call(event, pod)

        task = asyncio.get_running_loop().create_task(run(), name=f"nri-{event}-{pod.id[:12]}")
        self._by_sandbox[pod.id] = task
        task.add_done_callback(lambda t: self._finished(t, pod.id, f"{event} {pod.ref}"))
        await self._await(task, budget, f"{event} for pod {pod.ref} (uid {pod.uid})")

    async def synchronize(self, pods: list[PodSandbox], budget: float) -> None:
        """Run on_synchronize; never raises for the handler's sake (see the module policy)."""
        task = asyncio.get_running_loop().create_task(
            self._handler.on_synchronize(pods), name="nri-synchronize"
        )
        self._sync = task
        task.add_done_callback(lambda t: self._finished(t, None, "Synchronize"))
        try:
            await self._await(task, budget, f"Synchronize of {len(pods)} pods")
        except HandlerTimeout as exc:
            log.warning("%s; answering success, pod events wait for it", exc)
        except Exception:
            log.exception("Synchronize handler failed for %d pods", len(pods))

    async def _await(self, task: asyncio.Task[None], budget: float, what: str) -> None:
        try:
            done, _ = await asyncio.wait({task}, timeout=max(budget, 0.0))
        except asyncio.CancelledError:  # the connection went away: the handler carries on
            self._abandoned.add(task)
            raise
        if not done:
            self._abandoned.add(task)
            raise HandlerTimeout(
                f"{what} not finished within {budget:.2f}s (NRI deadline); "
                "it continues in the background"
            )
        task.result()

    def _finished(self, task: asyncio.Task[None], sandbox: str | None, what: str) -> None:
        if sandbox is not None and self._by_sandbox.get(sandbox) is task:
            del self._by_sandbox[sandbox]
        if self._sync is task:
            self._sync = None
        late = task in self._abandoned
        self._abandoned.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # always retrieved, so asyncio never warns about it
        if late:
            if exc is None:
                log.warning("%s finished after its NRI deadline", what)
            else:
                log.error("%s failed after its NRI deadline: %s", what, exc, exc_info=exc)

    async def drain(self, grace: float) -> None:
        """Give running handlers `grace` s to finish, then cancel them (plugin shutdown)."""
        tasks = [*self._by_sandbox.values(), *([self._sync] if self._sync else [])]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

"""The seams between the agent's hooks and its adapters (checkpoint, netlink, reporter).

The hooks in attach.py and release.py are written against these small interfaces, so the
wiring in main.py decides which adapter serves each one, and the hooks read as the story
of a pod without netlink or file details.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from multinet.kube.events import EventType, ObjectRef
from multinet.plans import AgentState, Attachment, AttachPlan, HostState
from multinet.status import DeviceOutcome


@dataclass(frozen=True)
class PodInfo:
    """The pod facts the hooks need, whatever protocol brought them."""

    uid: str
    namespace: str
    name: str
    netns: str | None  # None for host-network pods

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


class AttachOutcome(Protocol):
    """What an executed plan looks like inside the pod."""

    @property
    def ifindex(self) -> int: ...
    @property
    def ifname(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def addresses(self) -> tuple[str, ...]: ...
    @property
    def host(self) -> HostState | None: ...


class InterfaceMover(Protocol):
    async def attach(self, plan: AttachPlan, netns: str) -> AttachOutcome: ...

    async def detach(self, plan: AttachPlan, netns: str, host: HostState | None) -> None: ...

    async def recover(self, plan: AttachPlan, attachment: Attachment) -> str:
        """The pod's netns is gone: restore what came back, return what happened (for logs)."""
        ...

    async def check(self, plan: AttachPlan) -> None:
        """Is the attachment still as attached? AttachError when not (CNI CHECK)."""
        ...


class StateStore(Protocol):
    @property
    def state(self) -> AgentState: ...

    def plan(self, key: str) -> AttachPlan | None: ...

    async def record(self, attachments: Iterable[Attachment]) -> None:
        """Set these attachments and persist before returning."""
        ...

    async def forget(self, keys: Iterable[str]) -> None:
        """Drop these attachments and persist before returning."""
        ...


class Reporter(Protocol):
    def report(self, pod: PodInfo, outcomes: list[DeviceOutcome]) -> None:
        """Queue a status report; never blocks the hook."""
        ...


class EventSink(Protocol):
    """Satisfied by multinet.kube.events.EventRecorder (and NoEvents)."""

    def post(self, about: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        """Queue an Event; never blocks or fails the caller."""
        ...

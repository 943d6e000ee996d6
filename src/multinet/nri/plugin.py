"""The NRI plugin: connect to the runtime, register, stay connected, route pod events to the agent.

Contract (docs/architecture.md, protocols 4.3-4.4):
- `NRIPlugin.run()` connects to `settings.socket_path`, sends RegisterPlugin(name, two-digit
  index) at once (the runtime allows 5 s), answers Configure with events 0x7 (Run/Stop/Remove-
  PodSandbox), collects the pods of every Synchronize chunk (answering more=true until the last)
  and hands them to `on_synchronize` once. Only then `connected` is set. Pod events arrive as
  StateChange (containerd < 2.3) or as the dedicated Run/Stop/RemovePodSandbox methods (NRI >=
  0.12): both reach the same `PodHandler` methods. Any other method: Unimplemented (code 12).
- When the connection drops (containerd restart, a protocol error, registration refused) the plugin
  reconnects with exponential backoff (`backoff_initial` doubling up to `backoff_max`), forever,
  until `run()` is cancelled. The handler object and its running tasks survive reconnections.
- Malformed input never escapes as an exception: the session ends with a logged `ProtocolError`, the
  socket is closed, and `run()` reconnects.
- Bounded: the ttrpc server runs at most `max_concurrent_requests` handlers at once and accepts at
  most `max_pending_requests` (see `multinet.nri.ttrpc`). Synchronize collects at most
  `max_sync_pods` pods and `max_sync_bytes` bytes of requests over all its chunks; past either,
  the chunk is answered RESOURCE_EXHAUSTED naming the limit, an ERROR is logged, what was
  collected is dropped and the session ends (without a complete Synchronize there is nothing to
  serve), to be retried on the next connection.

Time budget: see `multinet.nri.dispatch` for the per-event deadline policy. Registration through the
end of Synchronize must finish within `startup_timeout`, or the attempt is abandoned and retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from google.protobuf.message import Message as _PbMessage

from multinet.errors import ConfigError, ProtocolError
from multinet.nri import mux, ttrpc
from multinet.nri._pb import nri_pb2
from multinet.nri.dispatch import Dispatcher, HandlerTimeout, PodEvent, PodHandler
from multinet.nri.pods import PodSandbox, pod_from_proto
from multinet.retry import Backoff, Retry

log = logging.getLogger(__name__)

RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
# Bit (e - 1) subscribes event e: RUN_POD_SANDBOX=1, STOP_POD_SANDBOX=2, REMOVE_POD_SANDBOX=3.
EVENTS_MASK = 0x7
_STATE_CHANGE_EVENTS = {1: PodEvent.RUN, 2: PodEvent.STOP, 3: PodEvent.REMOVE}
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_INDEX = re.compile(r"^[0-9]{2}$")

M = TypeVar("M", bound=_PbMessage)


@dataclass(frozen=True)
class PluginSettings:
    """How to reach the runtime and how to behave. Times in seconds."""

    socket_path: str = "/var/run/nri/nri.sock"
    name: str = "multinet"
    index: str = "10"  # two digits; plugins are called in ascending index order
    startup_timeout: float = 10.0  # RegisterPlugin sent -> Synchronize done, else retry
    event_budget: float = 2.0  # longest a handler may hold a call (containerd's default deadline)
    safety_margin: float = 0.25  # answer this long before the deadline (scheduling, socket I/O)
    backoff_initial: float = 0.2
    backoff_max: float = 5.0  # a restarted containerd is found within this long
    drain_timeout: float = 2.0  # on shutdown, wait this long for running handlers before cancelling
    # What a peer can make the plugin hold. A node runs ~110 pods by default (a few hundred at
    # most); a burst of pod starts is one request per pod, each answered within event_budget.
    max_concurrent_requests: int = 64  # handlers running at once; more wait for a slot
    max_pending_requests: int = (
        256  # accepted at once (running + waiting); more: RESOURCE_EXHAUSTED
    )
    max_sync_pods: int = 5000  # pods over all Synchronize chunks of one connection
    max_sync_bytes: int = 64 * 1024 * 1024  # request bytes over all Synchronize chunks

    def __post_init__(self) -> None:
        errors = []
        if not _NAME.match(self.name):
            errors.append(f"name: {self.name!r} must match [A-Za-z0-9_.+-]+")
        if not _INDEX.match(self.index):
            errors.append(f"index: {self.index!r} must be exactly two digits, e.g. '10'")
        if not self.socket_path:
            errors.append("socket_path: must not be empty")
        if self.safety_margin >= self.event_budget:
            errors.append("safety_margin: must be smaller than event_budget")
        if not 0 < self.max_concurrent_requests <= self.max_pending_requests:
            errors.append(
                "max_concurrent_requests: must be positive and at most max_pending_requests"
            )
        for name in ("max_sync_pods", "max_sync_bytes"):
            if getattr(self, name) <= 0:
                errors.append(f"{name}: must be positive")
        if errors:
            raise ConfigError(errors, subject="NRI plugin settings")


@dataclass
class _Session:
    """State of one connection: pods of the Synchronize chunks so far, the runtime's timeout."""

    pods: list[PodSandbox] = field(default_factory=list)
    sync_bytes: int = 0  # request bytes of the Synchronize chunks so far
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    failed: ttrpc.TtrpcError | None = None  # Synchronize refused: end the session
    request_timeout: float = 0.0  # seconds, from Configure; 0 = unknown


def _parse(cls: type[M], payload: bytes) -> M:
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except Exception as exc:
        raise ttrpc.TtrpcError(
            ttrpc.INVALID_ARGUMENT, f"cannot decode {cls.__name__}: {exc}"
        ) from exc
    return msg


class NRIPlugin:
    """An external NRI plugin serving one `PodHandler`. Start it with `await plugin.run()`."""

    def __init__(self, handler: PodHandler, settings: PluginSettings | None = None) -> None:
        self.settings = settings or PluginSettings()
        self._dispatcher = Dispatcher(handler)
        self._connected = asyncio.Event()
        self.registrations = 0  # successful registrations so far (reconnects = registrations - 1)
        self.runtime = ""  # "name version" of the runtime, from the last Configure

    @property
    def connected(self) -> bool:
        """Registered and synchronized with the runtime right now (readiness)."""
        return self._connected.is_set()

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; returns only by cancellation."""
        retry = Retry(Backoff(self.settings.backoff_initial, self.settings.backoff_max))
        failures = 0
        try:
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(self.settings.socket_path)
                except OSError as exc:
                    failures += 1
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    log.log(level, "cannot reach NRI socket %s: %s", self.settings.socket_path, exc)
                else:
                    if await self.serve(reader, writer):
                        retry.reset()
                        failures = 0
                await asyncio.sleep(retry.failed())
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Let running handlers finish (up to `drain_timeout`), cancel the rest. `run()` does this
        when cancelled; call it yourself after driving connections with `serve()`."""
        await self._dispatcher.drain(self.settings.drain_timeout)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one connection until it closes. Never raises on bad input. True if registered."""
        conn = mux.Mux(reader, writer)
        session = _Session()
        server = ttrpc.Server(
            lambda data: conn.send(mux.PLUGIN_CONN, data),
            self._handlers(session),
            max_concurrent=self.settings.max_concurrent_requests,
            max_pending=self.settings.max_pending_requests,
        )
        client = ttrpc.Client(lambda data: conn.send(mux.RUNTIME_CONN, data))
        conn.register(mux.PLUGIN_CONN, server.feed)
        conn.register(mux.RUNTIME_CONN, client.feed)
        reading = asyncio.create_task(conn.run(), name="nri-mux-reader")
        registered = False
        reason: BaseException | str = "closed by the runtime"
        try:
            registered = await self._start(client, session, reading)
            if registered:
                await reading
        except (ProtocolError, ttrpc.TtrpcError, ConnectionError, OSError, TimeoutError) as exc:
            reason = exc
        except Exception as exc:  # a bug of ours: end this session, keep the plugin alive
            log.exception("NRI session failed unexpectedly")
            reason = exc
        finally:
            self._connected.clear()
            client.close(ConnectionError("NRI session ended"))
            reading.cancel()
            await asyncio.wait({reading})
            await server.close()
            await conn.close()
        log.warning("NRI connection ended: %s", reason)
        return registered

    async def _start(
        self, client: ttrpc.Client, session: _Session, reading: asyncio.Task[None]
    ) -> bool:
        async def register() -> None:
            req = nri_pb2.RegisterPluginRequest(
                plugin_name=self.settings.name, plugin_idx=self.settings.index
            )
            payload = req.SerializeToString()
            timeout = self.settings.startup_timeout
            await client.call(RUNTIME_SERVICE, "RegisterPlugin", payload, budget=timeout)
            await session.synced.wait()
            if session.failed is not None:  # refused by our own Synchronize handler
                raise ttrpc.TtrpcError(session.failed.code, session.failed.message)

        registering = asyncio.create_task(register(), name="nri-register")
        try:
            done, _ = await asyncio.wait(
                {registering, reading},
                timeout=self.settings.startup_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            registering.cancel()
            await asyncio.wait({registering})
        if registering in done:
            registering.result()  # raises if registration was refused
            self.registrations += 1
            self._connected.set()
            log.info(
                "NRI plugin %s-%s registered with %s (%d pods)",
                self.settings.index,
                self.settings.name,
                self.runtime,
                len(session.pods),
            )
            return True
        if reading in done:
            reading.result()  # raises the ProtocolError, if that is why it ended
            return False
        raise TimeoutError(
            f"NRI registration not completed within {self.settings.startup_timeout}s"
        )

    def _budget(self, session: _Session, ctx: ttrpc.CallContext) -> float:
        cap = self.settings.event_budget
        if session.request_timeout > 0:
            cap = min(cap, session.request_timeout)
        if ctx.deadline is not None:
            cap = min(cap, ctx.deadline - asyncio.get_running_loop().time())
        return cap - self.settings.safety_margin

    def _handlers(self, session: _Session) -> dict[tuple[str, str], ttrpc.Handler]:
        def bound(
            method: Callable[[_Session, bytes, ttrpc.CallContext], Awaitable[bytes]],
        ) -> ttrpc.Handler:
            return functools.partial(method, session)

        def dedicated(event: PodEvent, cls: type[_PodRequest]) -> ttrpc.Handler:
            async def handle(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
                pod = pod_from_proto(_parse(cls, payload).pod)
                return await self._pod_event(session, event, pod, ctx)

            return handle

        return {
            (PLUGIN_SERVICE, "Configure"): bound(self._configure),
            (PLUGIN_SERVICE, "Synchronize"): bound(self._synchronize),
            (PLUGIN_SERVICE, "StateChange"): bound(self._state_change),
            (PLUGIN_SERVICE, "RunPodSandbox"): dedicated(
                PodEvent.RUN, nri_pb2.RunPodSandboxRequest
            ),
            (PLUGIN_SERVICE, "StopPodSandbox"): dedicated(
                PodEvent.STOP, nri_pb2.StopPodSandboxRequest
            ),
            (PLUGIN_SERVICE, "RemovePodSandbox"): dedicated(
                PodEvent.REMOVE, nri_pb2.RemovePodSandboxRequest
            ),
        }

    async def _configure(self, session: _Session, payload: bytes, ctx: ttrpc.CallContext) -> bytes:
        req = _parse(nri_pb2.ConfigureRequest, payload)
        session.request_timeout = req.request_timeout / 1000
        self.runtime = f"{req.runtime_name} {req.runtime_version}".strip()
        return nri_pb2.ConfigureResponse(events=EVENTS_MASK).SerializeToString()

    async def _synchronize(
        self, session: _Session, payload: bytes, ctx: ttrpc.CallContext
    ) -> bytes:
        req = self._sync_chunk(session, payload)
        session.pods.extend(pod_from_proto(p) for p in req.pods)
        if req.more:
            return nri_pb2.SynchronizeResponse(more=True).SerializeToString()
        await self._dispatcher.synchronize(list(session.pods), self._budget(session, ctx))
        session.synced.set()
        return nri_pb2.SynchronizeResponse(more=False).SerializeToString()

    def _sync_chunk(self, session: _Session, payload: bytes) -> nri_pb2.SynchronizeRequest:
        """One Synchronize chunk, parsed, unless it takes the Synchronize past a limit."""
        session.sync_bytes += len(payload)
        if session.sync_bytes > self.settings.max_sync_bytes:
            self._refuse_sync(
                session,
                f"Synchronize requests total {session.sync_bytes} bytes so far, more than "
                f"the {self.settings.max_sync_bytes} allowed (max_sync_bytes)",
            )
        req = _parse(nri_pb2.SynchronizeRequest, payload)
        pods = len(session.pods) + len(req.pods)
        if pods > self.settings.max_sync_pods:
            self._refuse_sync(
                session,
                f"Synchronize lists {pods} pods so far, more than the "
                f"{self.settings.max_sync_pods} allowed (max_sync_pods)",
            )
        return req

    def _refuse_sync(self, session: _Session, problem: str) -> NoReturn:
        session.pods.clear()  # the point of the cap: do not keep holding them
        log.error("NRI %s; refusing it and ending the connection", problem)
        session.failed = ttrpc.TtrpcError(ttrpc.RESOURCE_EXHAUSTED, problem)
        session.synced.set()
        raise session.failed

    async def _state_change(
        self, session: _Session, payload: bytes, ctx: ttrpc.CallContext
    ) -> bytes:
        req = _parse(nri_pb2.StateChangeEvent, payload)
        event = _STATE_CHANGE_EVENTS.get(req.event)
        if event is None:  # not subscribed; a runtime may still send it: acknowledge
            return b""
        return await self._pod_event(session, event, pod_from_proto(req.pod), ctx)

    async def _pod_event(
        self, session: _Session, event: PodEvent, pod: PodSandbox, ctx: ttrpc.CallContext
    ) -> bytes:
        try:
            await self._dispatcher.pod_event(event, pod, self._budget(session, ctx))
        except HandlerTimeout as exc:
            log.error("%s", exc, extra={"pod": pod.ref, "podUID": pod.uid})
            raise ttrpc.TtrpcError(ttrpc.DEADLINE_EXCEEDED, str(exc)) from exc
        except Exception as exc:
            log.warning("%s failed: %s", event, exc, extra={"pod": pod.ref, "podUID": pod.uid})
            raise ttrpc.TtrpcError(ttrpc.UNKNOWN, str(exc) or type(exc).__name__) from exc
        return b""  # Empty / *PodSandboxResponse: no fields


_PodRequest = (
    nri_pb2.RunPodSandboxRequest | nri_pb2.StopPodSandboxRequest | nri_pb2.RemovePodSandboxRequest
)

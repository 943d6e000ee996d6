"""One gRPC server on a unix socket (grpclib, pure-Python asyncio), stopped the way grpcio's is.

grpclib instead of grpcio: the agent serves a handful of small calls to one local client (the
kubelet, a grpc-go client), and grpcio's C core cost ~8.5 MB at import plus threads of its own
that wake several times a second at idle; grpclib runs on the agent's event loop.

grpclib's own `Server.close()` cancels every call at once and leaves the client connections open
(and on Python 3.12+ the asyncio `Server.wait_closed()` it awaits waits for the clients to hang
up). `stop(grace)` does what grpcio's `server.stop(grace)` did, as the kubelet saw it:

1. the socket file goes at once (no new connection; the kubelet's plugin watcher sees a removed
   registration socket as a deregistration), and a call that still arrives on an open
   connection is refused with UNAVAILABLE;
2. calls in flight get `grace` seconds to answer;
3. then the calls still running are cancelled and answer UNAVAILABLE "Cancelling all calls"
   (grpcio's words), and every client connection is closed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

if TYPE_CHECKING:
    from grpclib._typing import IServable, IServerMethodFunc
    from grpclib.protocol import H2Protocol

Request = TypeVar("Request")
Reply = TypeVar("Reply")


async def unary(
    stream: Stream[Request, Reply], answer: Callable[[Request], Awaitable[Reply]]
) -> None:
    """Serves a unary call: one request in, `answer(request)` out."""
    request = await stream.recv_message()
    if request is None:  # the client half-closed without sending the request
        raise GRPCError(Status.INTERNAL, "no request message")
    await stream.send_message(await answer(request))


class UnixServer(Server):
    """`serve(path)`, `stop(grace)`: serves `servables` (generated `<Service>Base` subclasses)."""

    def __init__(self, servables: Collection[IServable]) -> None:
        super().__init__(servables)
        self._path: Path | None = None
        self._stopping = False  # new calls are refused
        self._cancelling = False  # the grace is over: running calls are being cancelled
        self._calls: set[asyncio.Task[Any]] = set()
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        listen(self, RecvRequest, self._on_request)

    async def serve(self, path: Path) -> None:
        await self.start(path=str(path))
        self._path = path

    def _protocol_factory(self) -> H2Protocol:
        # grpclib's factory of each accepted connection: kept to close them in stop().
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        return protocol

    async def _on_request(self, event: RecvRequest) -> None:
        if self._stopping:
            raise GRPCError(Status.UNAVAILABLE, "the server is stopping")
        event.method_func = self._tracked(event.method_func)

    def _tracked(self, handler: IServerMethodFunc) -> IServerMethodFunc:
        async def call(stream: Stream[Any, Any]) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._calls.add(task)
            try:
                await handler(stream)
            except asyncio.CancelledError:
                if not self._cancelling:
                    raise  # the client cancelled; grpclib ends the call
                # stop() after the grace: the client gets an answer, not a dropped stream.
                raise GRPCError(Status.UNAVAILABLE, "Cancelling all calls") from None
            finally:
                self._calls.discard(task)

        return call

    async def stop(self, grace: float) -> None:
        """See the module docstring. Idempotent; nothing to do before `serve()`."""
        if self._path is None:
            return
        path, self._path = self._path, None
        self._stopping = True
        path.unlink(missing_ok=True)
        if self._calls and grace > 0:
            await asyncio.wait(set(self._calls), timeout=grace)
        running = set(self._calls)
        self._cancelling = True
        self.close()  # stops listening; cancels the calls still running
        if running:
            await asyncio.wait(running)  # their answers are written
        for protocol in list(self._protocols):
            # A connection accepted in this very loop iteration has no `connection` yet.
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()
        await self.wait_closed()

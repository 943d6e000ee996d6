"""ttrpc, the lightweight RPC containerd speaks over each mux ConnID: unary only.

Protocol: docs/architecture.md, protocols 4.2.

Message: 10-byte header `length u32 BE (body only) | stream_id u32 BE | type u8 | flags u8`,
then the body: a `ttrpc.Request` (type 1) or `ttrpc.Response` (type 2). Bodies are at most 4 MiB.

Contract:
- `MessageDecoder` is pure: bytes in, whole messages out; anything malformed (oversized body,
  unknown message type, an undecodable Request/Response) raises `ProtocolError`, never another
  exception. The connection's owner closes it then: a byte stream cannot be resynchronised.
- `Server` dispatches requests by (service, method) to async handlers, one task per request, and
  answers every request exactly once: the handler's bytes, `TtrpcError(code, msg)` as that status,
  any other exception as UNKNOWN with its message, UNIMPLEMENTED (12) for unknown methods,
  INVALID_ARGUMENT for a payload the handler cannot parse, DEADLINE_EXCEEDED when the caller's
  `timeout_nano` runs out first (the handler is cancelled then: the caller has given up).
- What a peer can make the server hold is bounded. At most `max_concurrent` handlers run at once;
  further requests WAIT for a slot, in arrival order, within their own deadline (a burst of pod
  starts is normal and should be served, a little later, not failed). At most `max_pending`
  requests are accepted at once (running + waiting); one more is answered at once with
  RESOURCE_EXHAUSTED (8, "retry later"), logged at WARNING once per overload. A peer that keeps
  sending while it does not even read those answers (another `max_pending` of them pile up)
  is a `ProtocolError`: the connection is closed.
- `Client` numbers its streams 1, 3, 5, ... and resolves one future per stream; a response for an
  unknown stream (e.g. after a local timeout) is dropped.
- `answered()`, called by a handler (or a task it started), gives an awaitable done once that
  call's answer has been written to the connection, or the call was given up (cancelled with
  its connection); done already outside of a call. Work the caller need not wait for awaits it
  (in another task: the answer waits for the handler), so that it does not compete with the
  answer for the event loop, the GIL or a CPU.

Time budget: codec work is O(bytes); the server adds one task spawn per request. Handlers carry the
real time budget, see `multinet.nri.plugin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from multinet.errors import MultinetError, ProtocolError
from multinet.nri._pb import ttrpc_pb2

log = logging.getLogger(__name__)

HEADER = struct.Struct(">IIBB")
MAX_BODY = 4 * 1024 * 1024

REQUEST, RESPONSE, DATA = 1, 2, 3

# google.rpc.Code values we use.
OK = 0
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
UNAVAILABLE = 14


class TtrpcError(MultinetError):
    """A call answered with a non-OK status (client side), or a status a handler wants sent."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"ttrpc status {code}: {message}")


@dataclass(frozen=True)
class Message:
    stream_id: int
    type: int
    flags: int
    body: bytes


def encode_message(stream_id: int, msg_type: int, body: bytes, flags: int = 0) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"ttrpc body of {len(body)} bytes exceeds {MAX_BODY}")
    return HEADER.pack(len(body), stream_id, msg_type, flags) + body


class MessageDecoder:
    """Sans-I/O decoder of one ConnID's byte stream into ttrpc messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            length, stream_id, msg_type, flags = HEADER.unpack_from(self._buf)
            if length > MAX_BODY:
                raise ProtocolError(f"ttrpc message on stream {stream_id}: body {length} > 4 MiB")
            if msg_type not in (REQUEST, RESPONSE, DATA):
                raise ProtocolError(f"ttrpc message on stream {stream_id}: unknown type {msg_type}")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append(Message(stream_id, msg_type, flags, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return out


def parse_request(body: bytes) -> ttrpc_pb2.Request:
    req = ttrpc_pb2.Request()
    try:
        req.ParseFromString(body)
    except Exception as exc:  # protobuf raises DecodeError and, for odd input, others
        raise ProtocolError(f"undecodable ttrpc Request ({len(body)} bytes): {exc}") from exc
    return req


def parse_response(body: bytes) -> ttrpc_pb2.Response:
    resp = ttrpc_pb2.Response()
    try:
        resp.ParseFromString(body)
    except Exception as exc:
        raise ProtocolError(f"undecodable ttrpc Response ({len(body)} bytes): {exc}") from exc
    return resp


@dataclass(frozen=True)
class CallContext:
    """What a handler knows about its call. `deadline` is in `loop.time()` seconds, or None."""

    service: str
    method: str
    stream_id: int
    deadline: float | None
    metadata: dict[str, str] = field(default_factory=dict)


Handler = Callable[[bytes, CallContext], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]

# The call being served, as its handler and the tasks it starts see it (they copy the context):
# done once its answer is written or the call is given up.
_answer: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "ttrpc_answer", default=None
)


def answered() -> asyncio.Future[None]:
    """The answer to the call this code runs for (see the module docstring), bound now: await it
    later, from any task; done already outside of a call. Awaiting a done one does not yield."""
    answer = _answer.get()
    if answer is None:
        answer = asyncio.get_running_loop().create_future()
        answer.set_result(None)
    return asyncio.shield(answer)  # a waiter cancelled must not cancel it for the others


class Server:
    """ttrpc server side of one ConnID. Feed it bytes; it answers through `send`.

    `max_concurrent` handlers run at once, `max_pending` requests are accepted at once (see the
    module docstring)."""

    def __init__(
        self,
        send: Send,
        handlers: Mapping[tuple[str, str], Handler],
        *,
        max_concurrent: int = 64,
        max_pending: int = 256,
    ) -> None:
        if not 0 < max_concurrent <= max_pending:
            raise ValueError(f"need 0 < max_concurrent ({max_concurrent}) <= max_pending")
        self._send = send
        self._handlers = dict(handlers)
        self._decoder = MessageDecoder()
        self._tasks: dict[int, asyncio.Task[None]] = {}  # accepted requests, by stream
        self._refusals: dict[int, asyncio.Task[None]] = {}  # RESOURCE_EXHAUSTED being sent
        self._slots = asyncio.Semaphore(max_concurrent)
        self.max_pending = max_pending
        self.refused = 0  # requests answered RESOURCE_EXHAUSTED so far
        self._overloaded = False  # logged for the current overload already

    def feed(self, data: bytes) -> None:
        for msg in self._decoder.feed(data):
            if msg.type != REQUEST:
                raise ProtocolError(f"ttrpc server got message type {msg.type}, expected a Request")
            if msg.stream_id in self._tasks or msg.stream_id in self._refusals:
                raise ProtocolError(f"ttrpc request reuses stream {msg.stream_id} still in flight")
            req = parse_request(msg.body)
            loop = asyncio.get_running_loop()
            ctx = CallContext(
                service=req.service,
                method=req.method,
                stream_id=msg.stream_id,
                deadline=loop.time() + req.timeout_nano / 1e9 if req.timeout_nano > 0 else None,
                metadata={kv.key: kv.value for kv in req.metadata},
            )
            if len(self._tasks) >= self.max_pending:
                self._refuse(ctx)
                continue
            task = loop.create_task(self._serve(ctx, req.payload), name=f"ttrpc-{req.method}")
            self._tasks[msg.stream_id] = task
            task.add_done_callback(functools.partial(self._forget, self._tasks, msg.stream_id))

    def _refuse(self, ctx: CallContext) -> None:
        if len(self._refusals) >= self.max_pending:
            raise ProtocolError(
                f"ttrpc peer keeps sending requests beyond {self.max_pending} in flight without "
                "reading the answers"
            )
        self.refused += 1
        if not self._overloaded:
            self._overloaded = True
            log.warning(
                "ttrpc: %d requests in flight, the most accepted at once; answering further "
                "requests RESOURCE_EXHAUSTED until some finish",
                self.max_pending,
                extra={"method": ctx.method},
            )
        resp = ttrpc_pb2.Response()
        resp.status.code = RESOURCE_EXHAUSTED
        resp.status.message = (
            f"{ctx.method}: {self.max_pending} requests already in flight; retry later"
        )
        task = asyncio.get_running_loop().create_task(self._reply(ctx, resp), name="ttrpc-refuse")
        self._refusals[ctx.stream_id] = task
        task.add_done_callback(functools.partial(self._forget, self._refusals, ctx.stream_id))

    def _forget(
        self, tasks: dict[int, asyncio.Task[None]], stream_id: int, _task: asyncio.Task[None]
    ) -> None:
        tasks.pop(stream_id, None)
        if not self._tasks:
            self._overloaded = False

    async def _serve(self, ctx: CallContext, payload: bytes) -> None:
        answer = asyncio.get_running_loop().create_future()
        _answer.set(answer)  # this task's own context, copied by the tasks the handler starts
        try:
            await self._reply(ctx, await self._handle(ctx, payload))
        finally:
            answer.set_result(None)

    async def _handle(self, ctx: CallContext, payload: bytes) -> ttrpc_pb2.Response:
        handler = self._handlers.get((ctx.service, ctx.method))
        resp = ttrpc_pb2.Response()
        if handler is None:
            resp.status.code = UNIMPLEMENTED
            resp.status.message = f"{ctx.service}/{ctx.method} is not implemented"
            return resp
        try:
            async with asyncio.timeout_at(ctx.deadline):
                async with self._slots:  # waits here while max_concurrent handlers run
                    resp.payload = await handler(payload, ctx)
        except TtrpcError as exc:
            resp.status.code, resp.status.message = exc.code, exc.message
        except TimeoutError:
            resp.status.code = DEADLINE_EXCEEDED
            resp.status.message = f"{ctx.method}: deadline exceeded"
        except Exception as exc:
            log.exception("ttrpc handler %s/%s failed", ctx.service, ctx.method)
            resp.status.code = UNKNOWN
            resp.status.message = str(exc) or type(exc).__name__
        return resp

    async def _reply(self, ctx: CallContext, resp: ttrpc_pb2.Response) -> None:
        try:
            await self._send(encode_message(ctx.stream_id, RESPONSE, resp.SerializeToString()))
        except (ConnectionError, OSError) as exc:
            log.info("ttrpc reply to %s dropped, connection gone: %s", ctx.method, exc)

    async def close(self) -> None:
        """Cancel in-flight handlers (their callers are gone with the connection)."""
        tasks = [*self._tasks.values(), *self._refusals.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Client:
    """ttrpc client side of one ConnID."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._decoder = MessageDecoder()
        self._next_stream = 1
        self._pending: dict[int, asyncio.Future[ttrpc_pb2.Response]] = {}
        self._closed: BaseException | None = None

    async def call(
        self, service: str, method: str, payload: bytes, *, budget: float | None = None
    ) -> bytes:
        """One unary call, `budget` seconds at most (sent as timeout_nano).

        Raises TtrpcError on a non-OK status, TimeoutError, ConnectionError.
        """
        if self._closed is not None:
            raise ConnectionError(f"ttrpc connection closed: {self._closed}")
        stream_id = self._next_stream
        self._next_stream += 2
        req = ttrpc_pb2.Request(service=service, method=method, payload=payload)
        if budget is not None:
            req.timeout_nano = int(budget * 1e9)
        fut: asyncio.Future[ttrpc_pb2.Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = fut
        try:
            await self._send(encode_message(stream_id, REQUEST, req.SerializeToString()))
            async with asyncio.timeout(budget):
                resp = await fut
        finally:
            self._pending.pop(stream_id, None)
        if resp.status.code != OK:
            raise TtrpcError(resp.status.code, resp.status.message)
        return resp.payload

    def feed(self, data: bytes) -> None:
        for msg in self._decoder.feed(data):
            if msg.type != RESPONSE:
                raise ProtocolError(f"ttrpc client got message type {msg.type}, expected Response")
            resp = parse_response(msg.body)
            fut = self._pending.get(msg.stream_id)
            if fut is None or fut.done():
                log.debug("ttrpc response for unknown stream %d dropped", msg.stream_id)
                continue
            fut.set_result(resp)

    def close(self, reason: BaseException) -> None:
        """Fail every pending call: the connection is gone."""
        self._closed = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"ttrpc connection closed: {reason}"))

"""An asyncio client for a pubsub WebSocket endpoint (apisix-pubsub-rs, or APISIX's core.pubsub).

One background task reads every frame the server sends. A reply whose sequence belongs to a
request still waiting completes that request; anything else (a push: sequence 0, or the sequence
of an earlier request such as a subscription) goes to the push queue that `Client.pushes()`
drains. Requests may be pipelined freely: each gets its own sequence number.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from . import pubsub_pb2

#: Every command of the proto's `PubSubReq.req` oneof, in field order.
COMMANDS: tuple[str, ...] = tuple(
    f.name for f in pubsub_pb2.PubSubReq.DESCRIPTOR.oneofs_by_name["req"].fields
)
#: Every reply of the proto's `PubSubResp.resp` oneof, in field order.
REPLIES: tuple[str, ...] = tuple(
    f.name for f in pubsub_pb2.PubSubResp.DESCRIPTOR.oneofs_by_name["resp"].fields
)

#: Close codes after which the connection counts as ended cleanly.
CLEAN_CLOSE_CODES = frozenset({1000, 1001})

_END = object()  # marks the end of the push queue


class PubSubError(Exception):
    """Base class of every error this client raises."""


class ErrorReply(PubSubError):
    """The server answered a request with `error_resp`."""

    def __init__(self, code: int, message: str, sequence: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.sequence = sequence


class ConnectError(PubSubError):
    """The WebSocket could not be opened: refused, bad URL, or a handshake the server declined."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of a declined handshake (400 from a pubsub location that was not
        #: sent a WebSocket upgrade, 404 for a wrong path), or None.
        self.status = status


class ConnectionClosed(PubSubError):
    """The connection ended while a request waited, or not cleanly while pushes were read."""

    def __init__(self, code: int | None, reason: str) -> None:
        text = f"connection closed (code {code})" if code is not None else "connection closed"
        super().__init__(f"{text}: {reason}" if reason else text)
        #: The close code the server sent (1006 when the connection dropped without one).
        self.code = code
        self.reason = reason


class ProtocolError(PubSubError):
    """The server sent something that is not a `PubSubResp` in a binary frame."""


@dataclass(frozen=True)
class Reply:
    """One `PubSubResp`: a reply to a request, or a push."""

    sequence: int
    #: The name of the reply field that is set (`"pong_resp"`), or None for a reply field this
    #: client's proto does not know.
    kind: str | None
    #: The message in that field (`pubsub_pb2.PongResp` ...), or None with `kind`.
    message: Message | None
    #: `time.monotonic()` when the frame arrived.
    received_at: float

    def to_dict(self) -> dict[str, Any]:
        """The reply's fields as plain Python values: ints (int64 exact), bytes, str, lists, dicts.

        Every field is present, proto3 defaults included.
        """
        return message_to_dict(self.message) if self.message is not None else {}


def message_to_dict(message: Message) -> dict[str, Any]:
    """Every field of `message` as plain Python values, nested messages as dicts."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                out[field.name] = [message_to_dict(v) for v in value]
            else:
                out[field.name] = message_to_dict(value)
        elif field.is_repeated:
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def build_request(sequence: int, command: str, params: Mapping[str, Any]) -> bytes:
    """Encodes a `PubSubReq` with `command` set from `params` (field name -> Python value).

    With `parse_reply`, the codec without the transport, for those who bring their own.
    """
    return _request_message(sequence, command, params).SerializeToString()


def parse_reply(data: bytes) -> Reply:
    """Decodes one `PubSubResp`; raises `ProtocolError` for bytes that are not one."""
    resp = pubsub_pb2.PubSubResp()
    try:
        resp.ParseFromString(data)
    except DecodeError as e:
        raise ProtocolError(f"the server sent a frame that is not a PubSubResp: {e}") from None
    kind = resp.WhichOneof("resp")
    return Reply(
        sequence=resp.sequence,
        kind=kind,
        message=getattr(resp, kind) if kind else None,
        received_at=time.monotonic(),
    )


def _request_message(
    sequence: int, command: str, params: Mapping[str, Any]
) -> pubsub_pb2.PubSubReq:
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    req = pubsub_pb2.PubSubReq(sequence=sequence)
    body = getattr(req, command)
    body.SetInParent()  # a command without fields is still set
    fields = body.DESCRIPTOR.fields_by_name
    try:
        body.MergeFrom(
            type(body)(
                **{  # a str stands for bytes (as UTF-8), as in ping("x")
                    name: value.encode()
                    if isinstance(value, str)
                    and name in fields
                    and fields[name].type == FieldDescriptor.TYPE_BYTES
                    else value
                    for name, value in params.items()
                }
            )
        )
    except ValueError as e:  # protobuf says "Protocol message X has no "y" field."
        raise ValueError(f"{command}: {e}") from None
    return req


class Client:
    """A connected client. Make one with `connect()`; use it from one event loop."""

    def __init__(
        self, ws: ClientConnection, *, request_timeout: float | None, push_buffer: int
    ) -> None:
        self._ws = ws
        self._request_timeout = request_timeout
        self._sequences = itertools.count(1)  # 0 is left to pushes
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._abandoned: set[int] = set()  # timed-out requests whose late reply is dropped
        self._pushes: asyncio.Queue[Any] = asyncio.Queue()
        self._push_buffer = push_buffer
        self._room = asyncio.Event()
        self._closing = False
        self._failure: PubSubError | None = None
        self._reader = asyncio.create_task(self._read(), name="apisix_pubsub reader")

    # -- requests -----------------------------------------------------------------------------

    async def ping(self, state: bytes | str = b"") -> bytes:
        """Sends `cmd_ping` and returns the state of the `pong_resp` (the same bytes)."""
        reply = await self.request("cmd_ping", state=state)
        if not isinstance(reply.message, pubsub_pb2.PongResp):
            raise ProtocolError(f"cmd_ping answered with {reply.kind}")
        return reply.message.state

    async def request(self, command: str, /, **params: Any) -> Reply:
        """Sends `command` (a field name of `PubSubReq`, e.g. `"cmd_kafka_list_offset"`) with
        `params` as its fields, and returns the reply.

        Values are what protobuf's Python classes take: int for integers (int64 exact), str for
        string, bytes or str (sent as UTF-8) for bytes. Raises `ErrorReply` on `error_resp`,
        `TimeoutError` when no reply comes within the client's `request_timeout` (for another
        bound, wrap the call in `asyncio.timeout()`), `ConnectionClosed` when the connection
        ends first, `ValueError` or `TypeError` for a command or params the proto does not have.
        """
        if self._failure is not None:
            raise self._failure
        req = _request_message(0, command, params)  # misuse raises before a sequence is taken
        sequence = req.sequence = next(self._sequences)
        data = req.SerializeToString()
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = waiter
        try:
            await self._ws.send(data)
        except WsConnectionClosed:
            self._pending.pop(sequence, None)
            raise self._failure or _closed(self._ws) from None
        try:
            return await asyncio.wait_for(waiter, self._request_timeout)
        except (TimeoutError, asyncio.CancelledError):
            if self._pending.pop(sequence, None) is not None:
                self._abandoned.add(sequence)
            raise

    # -- pushes -------------------------------------------------------------------------------

    async def pushes(self) -> AsyncIterator[Reply]:
        """Every push (a `PubSubResp` that answers no waiting request), in arrival order.

        Ends when the connection closes cleanly (1000 or 1001), after the pushes that arrived
        before; raises `ConnectionClosed` or `ProtocolError` when it ends otherwise. Pushes wait
        in a buffer of `push_buffer` messages; while it is full the client stops reading, so
        replies wait too (the server then holds or refuses further pushes). Several iterators
        share one queue: each push goes to one of them.
        """
        while True:
            item = await self._pushes.get()
            if item is _END:
                self._pushes.put_nowait(_END)  # for any other iterator
                if self._failure is not None:
                    raise self._failure
                return
            self._room.set()
            yield item

    # -- closing ------------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Sends a close frame with `code` and `reason` and waits for the server's close."""
        self._closing = True
        self._room.set()
        await self._ws.close(code, reason)
        await self._reader

    @property
    def close_code(self) -> int | None:
        """The close code the server sent, once the connection has ended (else None)."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        """The reason in the server's close frame, once the connection has ended."""
        return self._ws.close_reason

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the reader ---------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                if isinstance(data, str):
                    raise ProtocolError("the server sent a text frame")
                await self._deliver(parse_reply(data))
        except ProtocolError as e:
            self._failure = e
            await self._ws.close(1002, str(e)[:100])
        except WsConnectionClosed:
            pass
        finally:
            if self._failure is None and not (
                self._closing or self._ws.close_code in CLEAN_CLOSE_CODES
            ):
                self._failure = _closed(self._ws)
            ended = self._failure or _closed(self._ws)
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ended)
            self._pending.clear()
            self._pushes.put_nowait(_END)

    async def _deliver(self, reply: Reply) -> None:
        waiter = self._pending.pop(reply.sequence, None)
        if waiter is not None:
            if waiter.done():
                return
            if isinstance(reply.message, pubsub_pb2.ErrorResp):
                error = reply.message
                waiter.set_exception(ErrorReply(error.code, error.message, reply.sequence))
            else:
                waiter.set_result(reply)
            return
        if reply.sequence in self._abandoned:
            self._abandoned.discard(reply.sequence)
            return
        while self._pushes.qsize() >= self._push_buffer and not self._closing:
            self._room.clear()
            await self._room.wait()
        self._pushes.put_nowait(reply)


def _closed(ws: ClientConnection) -> ConnectionClosed:
    return ConnectionClosed(ws.close_code, ws.close_reason or "")


class connect:
    """Opens a connection: `client = await connect(url)` or `async with connect(url) as client:`.

    `headers` go with the handshake (e.g. an `Authorization` header for the gateway);
    `open_timeout` bounds the TCP connect and handshake, `request_timeout` each request (None:
    wait forever); `max_message_size` is the largest message accepted from the server;
    `push_buffer` the number of pushes held until read. Other keyword arguments go to
    `websockets.asyncio.client.connect` (e.g. `ping_interval`, `ssl`, `proxy`).

    Raises `ConnectError` when the connection cannot be opened, `TimeoutError` after
    `open_timeout`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        open_timeout: float | None = 10.0,
        request_timeout: float | None = 10.0,
        max_message_size: int | None = 16 * 1024 * 1024,
        push_buffer: int = 1024,
        **websocket_options: Any,
    ) -> None:
        if push_buffer < 1:
            raise ValueError("push_buffer must be at least 1")
        self._url = url
        self._request_timeout = request_timeout
        self._push_buffer = push_buffer
        self._options = {
            "additional_headers": dict(headers or {}),
            "open_timeout": open_timeout,
            "max_size": max_message_size,
            "compression": None,  # the demo locations do not compress (compression = false)
            **websocket_options,
        }
        self._client: Client | None = None

    async def _open(self) -> Client:
        try:
            ws = await ws_connect(self._url, **self._options)
        except InvalidStatus as e:
            status = e.response.status_code
            raise ConnectError(f"{self._url}: the server answered HTTP {status}", status) from None
        except InvalidURI as e:
            raise ConnectError(f"{self._url}: not a WebSocket URL ({e})") from None
        except InvalidHandshake as e:
            raise ConnectError(f"{self._url}: {e}") from None
        except OSError as e:
            raise ConnectError(f"{self._url}: cannot connect: {e.strerror or e}") from None
        return Client(ws, request_timeout=self._request_timeout, push_buffer=self._push_buffer)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._client is not None
        await self._client.close()

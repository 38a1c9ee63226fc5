"""A client for pubsub WebSocket endpoints: apisix-pubsub-rs and Apache APISIX's core.pubsub.

    import asyncio, apisix_pubsub

    async def main():
        async with apisix_pubsub.connect("ws://127.0.0.1:9080/pubsub") as client:
            print(await client.ping(b"hello"))  # b'hello'
            reply = await client.request("cmd_kafka_list_offset", topic="t", timestamp=-1)
            print(reply.kind, reply.to_dict())  # kafka_list_offset_resp {'offset': 42}
            async for push in client.pushes():  # what the server sends unasked
                print(push.sequence, push.kind, push.to_dict())

    asyncio.run(main())

The message classes (`apisix_pubsub.pubsub_pb2`) are generated from the project's
proto/pubsub.proto when the package is built.
"""

from . import pubsub_pb2
from .client import (
    CLEAN_CLOSE_CODES,
    COMMANDS,
    REPLIES,
    Client,
    ConnectError,
    ConnectionClosed,
    ErrorReply,
    ProtocolError,
    PubSubError,
    Reply,
    build_request,
    connect,
    message_to_dict,
    parse_reply,
)

__all__ = [
    "CLEAN_CLOSE_CODES",
    "COMMANDS",
    "REPLIES",
    "Client",
    "ConnectError",
    "ConnectionClosed",
    "ErrorReply",
    "ProtocolError",
    "PubSubError",
    "Reply",
    "build_request",
    "connect",
    "message_to_dict",
    "parse_reply",
    "pubsub_pb2",
]

"""The asyncio client against a real nginx serving the module (the `server` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import apisix_pubsub
import pytest
from apisix_pubsub import ConnectError, ConnectionClosed, ErrorReply


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_ping_returns_the_state_as_sent(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws()) as client:
            assert await client.ping(b"hello") == b"hello"
            assert (
                await client.ping("text is sent as UTF-8: é") == "text is sent as UTF-8: é".encode()
            )
            assert await client.ping(bytes(range(256))) == bytes(range(256))
            assert await client.ping() == b""

    run(scenario)


def test_a_command_and_its_reply(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws()) as client:
            reply = await client.request(
                "cmd_kafka_list_offset", topic="t", partition=0, timestamp=-1
            )
            assert (reply.sequence, reply.kind, reply.to_dict()) == (
                1,
                "kafka_list_offset_resp",
                {"offset": 42},
            )
            assert isinstance(reply.message, apisix_pubsub.pubsub_pb2.KafkaListOffsetResp)

    run(scenario)


def test_error_resp_is_raised_and_the_connection_goes_on(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws()) as client:
            with pytest.raises(ErrorReply) as bad:
                await client.request("cmd_kafka_list_offset", topic="t", partition=-1)
            assert (bad.value.code, bad.value.message, bad.value.sequence) == (
                0,
                "bad partition",
                1,
            )
            with pytest.raises(ErrorReply, match="^unknown command: cmd_kafka_fetch$"):
                await client.request("cmd_kafka_fetch", topic="t")
            assert await client.ping(b"still here") == b"still here"

    run(scenario)


@pytest.mark.parametrize(
    "value", [-(2**63), -(2**53) - 1, -1, 0, 2**31, 2**32, 2**53 + 1, 2**63 - 1]
)
def test_int64_values_are_exact_both_ways(server, value):
    async def scenario():
        async with apisix_pubsub.connect(server.ws("/test")) as client:
            reply = await client.request("cmd_kafka_list_offset", topic="echo", timestamp=value)
            assert reply.to_dict() == {"offset": value}

    run(scenario)


def test_bytes_and_repeated_messages_in_a_reply(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws("/test")) as client:
            reply = await client.request("cmd_kafka_fetch", topic="k", offset=2**40)
            assert reply.to_dict() == {
                "messages": [{"offset": 2**40, "timestamp": -1, "key": b"k", "value": b"\0\xff\n"}]
            }

    run(scenario)


def test_pipelined_requests_get_their_own_replies(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws("/test")) as client:
            slow = client.request("cmd_kafka_list_offset", topic="sleep", timestamp=200)
            pings = [client.ping(f"p{i}") for i in range(200)]
            offsets = [
                client.request("cmd_kafka_list_offset", topic="echo", timestamp=i)
                for i in range(50)
            ]
            results = await asyncio.gather(slow, *pings, *offsets)
            assert results[0].to_dict() == {"offset": 200}
            assert results[1:201] == [f"p{i}".encode() for i in range(200)]
            assert [r.to_dict()["offset"] for r in results[201:]] == list(range(50))
            # The server answers in request order, the slow request first.
            assert results[0].received_at <= results[201].received_at

    run(scenario)


def test_a_request_times_out_and_its_late_reply_is_not_a_push(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws("/test"), request_timeout=0.2) as client:
            with pytest.raises(TimeoutError):
                await client.request("cmd_kafka_list_offset", topic="sleep", timestamp=500)
            pushes = client.pushes()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(pushes), 0.6)  # the late reply arrives meanwhile
            assert await client.ping(b"after") == b"after"

    run(scenario)


def test_a_clean_close_ends_pushes_and_keeps_the_code(server):
    async def scenario():
        client = await apisix_pubsub.connect(server.ws())
        assert await client.ping(b"x") == b"x"
        await client.close(4000, "done")
        assert client.close_code == 4000  # the server echoes the status
        assert [push async for push in client.pushes()] == []
        with pytest.raises(ConnectionClosed):
            await client.ping(b"after close")

    run(scenario)


def test_a_message_over_the_server_limit_ends_with_1009(server):
    async def scenario():
        client = await apisix_pubsub.connect(server.ws())
        with pytest.raises(ConnectionClosed) as closed:
            await client.ping(b"x" * 70000)  # the default max_payload_len is 65535
        assert closed.value.code == 1009
        assert client.close_code == 1009
        with pytest.raises(ConnectionClosed):
            async for _ in client.pushes():
                pass

    run(scenario)


def test_handshake_headers(server):
    async def scenario():
        with pytest.raises(ConnectError) as refused:
            await apisix_pubsub.connect(server.ws("/auth"))
        assert refused.value.status == 401
        async with apisix_pubsub.connect(
            server.ws("/auth"), headers={"Authorization": "Bearer test"}
        ) as client:
            assert await client.ping(b"in") == b"in"

    run(scenario)


def test_connect_errors(server):
    async def scenario():
        with pytest.raises(ConnectError) as not_ws:
            await apisix_pubsub.connect(server.ws("/"))  # the browser page, not a WebSocket
        assert not_ws.value.status == 200
        with pytest.raises(ConnectError, match="not a WebSocket URL"):
            await apisix_pubsub.connect(server.http("/pubsub"))
        closed_port = server.port + 1 if server.port < 65535 else server.port - 1
        with pytest.raises(ConnectError):
            await apisix_pubsub.connect(f"ws://127.0.0.1:{closed_port}/pubsub", open_timeout=2)

    run(scenario)


def test_misuse_is_refused_before_anything_is_sent(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws()) as client:
            with pytest.raises(ValueError, match="unknown command 'cmd_nope'"):
                await client.request("cmd_nope")
            with pytest.raises(ValueError, match='no "nope" field'):
                await client.request("cmd_ping", nope=1)
            with pytest.raises(TypeError):
                await client.request("cmd_kafka_list_offset", partition="zero")
            with pytest.raises(ValueError):
                await client.request("cmd_kafka_list_offset", partition=2**31)
            reply = await client.request("cmd_ping", state=b"first on the wire")
            assert reply.sequence == 1

    run(scenario)


def test_a_reply_that_answers_no_request_is_a_push(server):
    # Today's server already sends one: undecodable bytes get error_resp "wrong command" with
    # sequence 0. The raw frame goes through the client's socket, past its encoder.
    async def scenario():
        async with apisix_pubsub.connect(server.ws()) as client:
            await client._ws.send(b"\x08")  # sequence: a varint tag, no value
            assert await client.ping(b"reply") == b"reply"
            push = await asyncio.wait_for(anext(client.pushes()), 5)
            assert (push.sequence, push.kind, push.to_dict()) == (
                0,
                "error_resp",
                {"code": 0, "message": "wrong command"},
            )

    run(scenario)


def test_a_full_push_buffer_holds_replies_until_pushes_are_read(server):
    async def scenario():
        async with apisix_pubsub.connect(server.ws(), push_buffer=2) as client:
            for _ in range(4):
                await client._ws.send(b"\x08")  # sequence: a varint tag, no value
            ping = asyncio.ensure_future(client.ping(b"held"))
            await asyncio.sleep(0.3)
            assert not ping.done()  # 2 pushes buffered, the reader waits to queue the third
            pushes = client.pushes()
            for _ in range(4):
                assert (await asyncio.wait_for(anext(pushes), 5)).kind == "error_resp"
            assert await asyncio.wait_for(ping, 5) == b"held"

    run(scenario)


def test_pushes_from_a_pushing_peer_keep_their_order_between_replies(server):
    # /raw-push is lua-resty-websocket with the module's codec: a server that pushes today.
    async def scenario():
        async with apisix_pubsub.connect(server.ws("/raw-push")) as client:
            assert await asyncio.gather(client.ping(b"a"), client.ping(b"b")) == [b"a", b"b"]
            pushes = client.pushes()
            got = [await asyncio.wait_for(anext(pushes), 5) for _ in range(4)]
            assert [(p.sequence, p.to_dict()["state"]) for p in got] == [
                (0, b"first"),
                (7, b"second"),
                (0, b"between"),
                (0, b"between"),
            ]
        assert client.close_code == 1000

    run(scenario)


@pytest.fixture
def push_server(server):
    if not server.has_push():
        pytest.skip("the server has no push yet: apisix_pubsub_rs instances lack send()")
    return server


def test_a_push_while_idle_arrives_through_pushes(push_server):
    async def scenario():
        async with apisix_pubsub.connect(push_server.ws("/push")) as client:
            push = await asyncio.wait_for(anext(client.pushes()), 5)
            assert (push.sequence, push.kind, push.to_dict()) == (
                0,
                "pong_resp",
                {"state": b"pushed"},
            )
            assert await client.ping(b"and a reply") == b"and a reply"

    run(scenario)


def test_pushes_between_pipelined_replies_keep_their_order(push_server):
    async def scenario():
        async with apisix_pubsub.connect(push_server.ws("/test")) as client:
            before = client.ping(b"before")
            pushing = client.request(
                "cmd_kafka_list_offset", topic="push", partition=3, timestamp=7
            )
            after = client.ping(b"after")
            replies = await asyncio.gather(before, pushing, after)
            assert replies[0] == b"before" and replies[2] == b"after"
            assert replies[1].to_dict() == {"offset": 3}
            pushes = client.pushes()
            got = [await asyncio.wait_for(anext(pushes), 5) for _ in range(3)]
            assert [(p.sequence, p.to_dict()) for p in got] == [
                (7, {"state": f"push {i}".encode()}) for i in (1, 2, 3)
            ]

    run(scenario)

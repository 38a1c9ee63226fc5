"""The Prometheus exposition of the `server` fixture's nginx (/metrics, as README's "Metrics"
serves it), read by prometheus_client's own text parser after real traffic from the Python
client.
"""

from __future__ import annotations

import asyncio
import urllib.request

import apisix_pubsub
import pytest
from apisix_pubsub import ErrorReply
from prometheus_client.parser import text_string_to_metric_families


def scrape(server) -> dict:
    with urllib.request.urlopen(server.http("/metrics"), timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family, **labels) -> float:
    for sample in family.samples:
        if sample.labels == labels and not sample.name.endswith(("_bucket", "_sum", "_created")):
            return sample.value
    raise AssertionError(f"no sample of {family.name} with labels {labels}")


def test_the_exposition_parses_and_counts_the_traffic(server):
    before = scrape(server)

    async def traffic():
        async with apisix_pubsub.connect(server.ws()) as client:
            for state in (b"a", b"bb", b"ccc"):
                assert await client.ping(state) == state
            await client.request("cmd_kafka_list_offset", topic="t", partition=0, timestamp=-1)
            with pytest.raises(ErrorReply):
                await client.request("cmd_kafka_list_offset", topic="t", partition=-1, timestamp=-1)
            with pytest.raises(ErrorReply):
                await client.request("cmd_kafka_fetch", topic="t", partition=0, offset=0)

    asyncio.run(asyncio.wait_for(traffic(), 30))
    after = scrape(server)

    # prometheus_client names counter families without `_total`; every family has its type.
    kinds = {name: family.type for name, family in after.items()}
    for name, kind in {
        "apisix_pubsub_connections_open": "gauge",
        "apisix_pubsub_connections_accepted": "counter",
        "apisix_pubsub_connections_ended": "counter",
        "apisix_pubsub_commands": "counter",
        "apisix_pubsub_error_replies": "counter",
        "apisix_pubsub_queue_high_water_bytes": "gauge",
        "apisix_pubsub_handler_seconds": "histogram",
    }.items():
        assert kinds.get(name) == kind, (name, kinds.get(name))
    assert all(family.documentation for family in after.values())

    def moved(name, **labels):
        return value(after[name], **labels) - value(before[name], **labels)

    assert moved("apisix_pubsub_commands", command="cmd_ping") == 3
    assert moved("apisix_pubsub_commands", command="cmd_kafka_list_offset") == 2
    assert moved("apisix_pubsub_commands", command="cmd_kafka_fetch") == 1
    assert moved("apisix_pubsub_replies") == 6
    assert moved("apisix_pubsub_error_replies", kind="handler_error") == 1
    assert moved("apisix_pubsub_error_replies", kind="unknown_command") == 1
    assert moved("apisix_pubsub_connections_accepted") == 1

    # The handler histogram: cumulative buckets, +Inf equal to the count, which moved by the two
    # commands a Lua handler served (pings are answered inside the library).
    hist = after["apisix_pubsub_handler_seconds"]
    buckets = [s for s in hist.samples if s.name.endswith("_bucket") and s.labels["command"] == "cmd_kafka_list_offset"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    count = next(s.value for s in hist.samples if s.name.endswith("_count") and s.labels["command"] == "cmd_kafka_list_offset")
    assert counts[-1] == count >= 2

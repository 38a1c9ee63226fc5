"""permessage-deflate interop against the real nginx of the `server` fixture, location
/compressed (`compression = true`): Python `websockets` with its default compression, Node's
`ws` (clients/web/node_modules) and headless Chromium each negotiate it and exchange pings of
16 B to 1 MiB. The same pings to the uncompressed demo location stay uncompressed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INTEROP_JS = HERE / "compression_interop.js"
SIZES = [16, 100, 1024, 60_000, 200_000, 1 << 20]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ping(seq: int, state: bytes) -> bytes:
    inner = b"\x0a" + _varint(len(state)) + state
    return b"\x08" + _varint(seq) + b"\x82\x02" + _varint(len(inner)) + inner


def _fields(b: bytes) -> dict[int, object]:
    out: dict[int, object] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        n, shift = 0, 0
        while True:
            c = b[i]
            i += 1
            n |= (c & 127) << shift
            shift += 7
            if not c & 128:
                return n

    while i < len(b):
        tag = varint()
        if tag & 7 == 0:
            out[tag >> 3] = varint()
        elif tag & 7 == 2:
            n = varint()
            out[tag >> 3] = b[i : i + n]
            i += n
        else:
            raise ValueError(f"unexpected wire type {tag & 7}")
    return out


def _json(n: int) -> bytes:
    parts, i, length = [], 0, 0
    while length < n:
        i += 1
        rec = f'{{"id":{i},"topic":"orders","price":{i * 7 % 1000}.{i % 100},"side":"{"sell" if i % 2 else "buy"}"}},'
        parts.append(rec)
        length += len(rec)
    return "".join(parts)[:n].encode()


async def _python_exchange(url: str) -> tuple[str | None, list[str]]:
    from websockets.asyncio.client import connect

    results = []
    # compression="deflate" is websockets' default: no option given.
    async with connect(url, max_size=4 << 20) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        for seq, n in enumerate(SIZES, 1):
            state = _json(n)
            await ws.send(_ping(seq, state))
            resp = _fields(await ws.recv())
            pong = _fields(resp[32])
            results.append(f"{n}:{resp[1] == seq and pong.get(1, b'') == state}")
    return extensions, results


EXPECTED = [f"{n}:True" for n in SIZES]


def test_python_websockets_negotiates_and_exchanges_compressed_messages(server):
    extensions, results = asyncio.run(_python_exchange(server.ws("/compressed")))
    assert extensions is not None and extensions.startswith("permessage-deflate")
    assert "server_no_context_takeover" in extensions
    assert results == EXPECTED


def test_python_websockets_gets_no_extension_where_compression_is_off(server):
    extensions, results = asyncio.run(_python_exchange(server.ws("/uncompressed")))
    assert extensions is None
    assert results == EXPECTED


def test_node_ws_negotiates_and_exchanges_compressed_messages(server):
    node = shutil.which("node")
    modules = HERE / "web" / "node_modules"
    if not node or not (modules / "ws").is_dir():
        pytest.fail("node and clients/web/node_modules/ws are needed: run `make web-deps`")
    out = subprocess.run(
        [node, str(INTEROP_JS), server.ws("/compressed"), *map(str, SIZES)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={"NODE_PATH": str(modules), "PATH": "/usr/bin:/bin"},
    ).stdout
    r = json.loads(out)
    assert r["extensions"].startswith("permessage-deflate"), r
    assert [s.replace("true", "True") for s in r["results"]] == EXPECTED
    assert r["code"] == 1000


def test_chromium_negotiates_and_exchanges_compressed_messages(server, browser):
    browser.get(server.http("/"))
    browser.set_script_timeout(120)
    script = INTEROP_JS.read_text() + """
        const done = arguments[arguments.length - 1];
        compressionInterop(WebSocket, arguments[0], arguments[1]).then(done, (e) => done({ error: String(e) }));
    """
    r = browser.execute_async_script(script, server.ws("/compressed"), SIZES)
    assert "error" not in r, r
    assert r["extensions"].startswith("permessage-deflate"), r
    assert [s.replace("true", "True") for s in r["results"]] == EXPECTED
    assert r["code"] == 1000

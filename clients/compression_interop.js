// permessage-deflate interop, the same code for Node's `ws` and a browser's WebSocket: connects
// to `url` (a location with `compression = true`), sends a cmd_ping of each size (JSON-like
// text), and checks that each reply is the pong with the same state. Resolves to
// { extensions, results: ["<size>:<ok>"...] }. The protobuf is written by hand (PubSubReq
// { sequence = 1, cmd_ping = 32 { state = 1 } }): no library to load in either place.
"use strict";

async function compressionInterop(WebSocketImpl, url, sizes) {
  const varint = (n) => {
    const out = [];
    while (n > 127) { out.push((n & 127) | 128); n = Math.floor(n / 128); }
    out.push(n);
    return out;
  };
  const concat = (parts) => {
    const len = parts.reduce((a, p) => a + p.length, 0);
    const out = new Uint8Array(len);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const ping = (seq, state) => {
    const inner = concat([Uint8Array.of(0x0a, ...varint(state.length)), state]);
    return concat([Uint8Array.of(0x08, ...varint(seq), 0x82, 0x02, ...varint(inner.length)), inner]);
  };
  // The fields of one message: [number, value] (varints as numbers, lengths as byte arrays).
  const fields = (b) => {
    const out = [];
    let i = 0;
    const readVarint = () => { let n = 0, mul = 1, c; do { c = b[i++]; n += (c & 127) * mul; mul *= 128; } while (c & 128); return n; };
    while (i < b.length) {
      const tag = readVarint();
      if ((tag & 7) === 0) out.push([tag >>> 3, readVarint()]);
      else if ((tag & 7) === 2) { const n = readVarint(); out.push([tag >>> 3, b.subarray(i, i + n)]); i += n; }
      else throw new Error("unexpected wire type " + (tag & 7));
    }
    return out;
  };
  const json = (n) => {
    let s = "", i = 0;
    while (s.length < n) { i++; s += `{"id":${i},"topic":"orders","price":${(i * 7) % 1000}.${i % 100},"side":"${i % 2 ? "sell" : "buy"}"},`; }
    return new TextEncoder().encode(s.slice(0, n));
  };
  const ws = new WebSocketImpl(url);
  ws.binaryType = "arraybuffer";
  const queue = [];
  let waiting = null;
  const closed = new Promise((resolve) => ws.addEventListener("close", (e) => resolve(e.code)));
  ws.addEventListener("message", (e) => {
    const data = new Uint8Array(e.data);
    if (waiting) { const w = waiting; waiting = null; w(data); } else queue.push(data);
  });
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve);
    ws.addEventListener("error", () => reject(new Error("websocket error")));
  });
  const next = () => queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => { waiting = r; });
  const results = [];
  for (let k = 0; k < sizes.length; k++) {
    const state = json(sizes[k]);
    ws.send(ping(k + 1, state));
    const resp = fields(await next());
    const seq = resp.find((f) => f[0] === 1);
    const pong = resp.find((f) => f[0] === 32);
    const got = pong ? (fields(pong[1]).find((f) => f[0] === 1) || [1, new Uint8Array(0)])[1] : null;
    const same = got !== null && got.length === state.length && got.every((v, j) => v === state[j]);
    results.push(`${sizes[k]}:${seq && seq[1] === k + 1 && same}`);
  }
  const extensions = ws.extensions;
  ws.close(1000);
  const code = await closed;
  return { extensions, results, code };
}

if (typeof module !== "undefined") {
  module.exports = compressionInterop;
  if (require.main === module) {
    // node compression_interop.js <url> <size>... : prints the result as JSON.
    const WebSocket = require(process.env.WS_MODULE || "ws");
    const [url, ...sizes] = process.argv.slice(2);
    compressionInterop(WebSocket, url, sizes.map(Number)).then(
      (r) => console.log(JSON.stringify(r)),
      (e) => { console.error(e.stack || String(e)); process.exit(1); },
    );
  }
}

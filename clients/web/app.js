// The page's client. protobufjs reads /pubsub.proto (the repository's proto, served by nginx) and
// encodes PubSubReq / decodes PubSubResp; long.js keeps 64-bit integers exact. A reply whose
// sequence matches a request still waiting answers it (shown with the round-trip time); any other
// PubSubResp is a push. Every reply, push and error is appended as a line of text to #log.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // What a client should make of each close code (docs/protocol.md has the details).
  const CLOSE_CODES = {
    1000: "normal close",
    1001: "going away: the server is reloading or stopping; reconnect",
    1002: "protocol error: the client sent a frame the server refuses",
    1006: "dropped without a close frame",
    1007: "invalid UTF-8 in a text frame",
    1008: "timed out in the middle of a frame or message",
    1009: "message too big for the server's limit",
  };
  const INT64 = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);
  const INT32 = new Set(["int32", "uint32", "sint32", "fixed32", "sfixed32"]);
  const BYTES_PREFIX = /^(hex:|base64:|text:|@)/;

  let PubSubReq = null;
  let PubSubResp = null;
  let ws = null;
  let nextSequence = 1;
  const pending = new Map(); // sequence as a decimal string -> { command, sentAt }

  function log(kind, text) {
    const line = document.createElement("div");
    line.className = kind;
    line.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
    $("log").appendChild(line);
    line.scrollIntoView({ block: "nearest" });
  }

  // Bytes are written as on the command line: text (UTF-8), hex:..., base64:..., text:...
  function parseBytes(text) {
    if (text.startsWith("hex:")) {
      const hex = text.slice(4);
      if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error(`bad hex: ${hex}`);
      return Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
    }
    if (text.startsWith("base64:")) return Uint8Array.from(atob(text.slice(7)), (c) => c.charCodeAt(0));
    return new TextEncoder().encode(text.startsWith("text:") ? text.slice(5) : text);
  }

  function formatBytes(bytes) {
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      return BYTES_PREFIX.test(text) ? "text:" + text : text;
    } catch (e) {
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      return "base64:" + btoa(binary);
    }
  }

  // A message as `field=value ...`, int64 as exact digits, nested messages in braces.
  function format(type, message) {
    return type.fieldsArray.map((field) => {
      const value = message[field.name];
      const one = (v) => {
        if (field.resolvedType && field.resolvedType.fieldsArray) {
          return "{" + format(field.resolvedType, v) + "}";
        }
        if (field.type === "bytes") return JSON.stringify(formatBytes(v));
        if (field.type === "string") return JSON.stringify(v);
        return String(v);
      };
      return `${field.name}=${field.repeated ? "[" + (value || []).map(one).join(", ") + "]" : one(value)}`;
    }).join(" ");
  }

  function parseField(field, text) {
    if (INT64.has(field.type) || INT32.has(field.type)) {
      const digits = text.startsWith("#") ? text.slice(1) : text;
      if (!/^-?\d+$/.test(digits)) throw new Error(`${field.name}: "${text}" is not an integer`);
      return INT64.has(field.type) ? digits : Number(digits); // protobufjs takes int64 as a string
    }
    if (field.type === "bytes") return parseBytes(text);
    if (field.type === "bool") return text === "true" || text === "1";
    if (field.type === "double" || field.type === "float") return Number(text);
    return text;
  }

  function commandType(name) {
    return PubSubReq.fields[name].resolvedType;
  }

  function showFields() {
    const type = commandType($("command").value);
    const span = $("fields");
    span.textContent = "";
    for (const field of type.fieldsArray) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "text";
      input.size = 12;
      input.dataset.field = field.name;
      input.value = { topic: "t", partition: "0", timestamp: "-1" }[field.name] || "";
      label.append(`${field.name} `, input, " ");
      const type = document.createElement("small");
      type.textContent = field.type;
      label.append(type);
      span.append(label);
    }
  }

  function send(command, params) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      log("error", "error: not connected");
      return;
    }
    const sequence = String(nextSequence++);
    let bytes;
    try {
      const request = PubSubReq.fromObject({ sequence, [command]: params });
      bytes = PubSubReq.encode(request).finish();
    } catch (e) {
      log("error", `error: ${command}: ${e.message}`);
      return;
    }
    pending.set(sequence, { command, sentAt: performance.now() });
    ws.send(bytes);
    const fields = format(commandType(command), PubSubReq.decode(bytes)[command]);
    log("sent", `→ seq ${sequence} ${command} ${fields}`);
  }

  function receive(event) {
    if (typeof event.data === "string") {
      log("error", `error: the server sent a text frame: ${event.data.slice(0, 200)}`);
      return;
    }
    let reply;
    try {
      reply = PubSubResp.decode(new Uint8Array(event.data));
    } catch (e) {
      log("error", `error: a frame that is not a PubSubResp: ${e.message}`);
      return;
    }
    const sequence = reply.sequence.toString();
    const kind = reply.resp;
    const body = kind
      ? format(PubSubResp.fields[kind].resolvedType, reply[kind])
      : "(a reply this page's proto does not know)";
    const request = pending.get(sequence);
    if (request) {
      pending.delete(sequence);
      const rtt = `${(performance.now() - request.sentAt).toFixed(2)} ms`;
      if (kind === "error_resp") {
        const error = reply.error_resp;
        log("error", `✗ seq ${sequence} error_resp to ${request.command}: ${error.message} (code ${error.code}, ${rtt})`);
      } else {
        log("reply", `← seq ${sequence} ${kind} ${body} (${rtt})`);
      }
    } else {
      log(kind === "error_resp" ? "error" : "push", `⇐ push seq ${sequence} ${kind} ${body}`);
    }
  }

  function setConnected(open) {
    for (const id of ["ping", "send", "disconnect"]) $(id).disabled = !open;
    $("connect").disabled = open;
    $("status").textContent = open ? "connected" : "not connected";
    $("status").className = open ? "open" : "closed";
  }

  function connect(onOpen) {
    const url = $("url").value;
    log("note", `connecting to ${url}`);
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      setConnected(true);
      log("note", `connected to ${url}`);
      if (onOpen) onOpen();
    };
    ws.onmessage = receive;
    ws.onerror = () => log("error", `error: WebSocket error on ${url}`);
    ws.onclose = (event) => {
      setConnected(false);
      const meaning = CLOSE_CODES[event.code] || "";
      const why = (meaning ? ` (${meaning})` : "") + (event.reason ? `: ${event.reason}` : "");
      log(event.code === 1000 ? "note" : "error", `closed: code ${event.code}${why}`);
      for (const [sequence, request] of pending) {
        log("error", `✗ seq ${sequence} ${request.command}: no reply before the close`);
      }
      pending.clear();
      ws = null;
    };
  }

  function ping(state) {
    try {
      send("cmd_ping", { state: parseBytes(state) });
    } catch (e) {
      log("error", `error: ${e.message}`);
    }
  }

  function sendForm() {
    const command = $("command").value;
    const type = commandType(command);
    const params = {};
    try {
      for (const input of $("fields").querySelectorAll("input")) {
        const name = input.dataset.field;
        if (input.value !== "") params[name] = parseField(type.fields[name], input.value);
      }
    } catch (e) {
      log("error", `error: ${e.message}`);
      return;
    }
    send(command, params);
  }

  // The server's counters, from its Prometheus exposition (the demo serves it on /metrics): the
  // series an operator looks at first, non-zero labelled ones only, refreshed every second.
  const SHOWN = [
    "connections_open", "connections_accepted_total", "connections_ended_total", "commands_total",
    "replies_total", "error_replies_total", "pushes_sent_total", "pushes_refused_total",
    "received_bytes_total", "sent_bytes_total", "queue_high_water_bytes", "handler_seconds_count",
  ];
  const SERIES = /^apisix_pubsub_([a-z_]+)(\{[^}]*\})? (\S+)$/;

  async function showMetrics() {
    let text;
    try {
      const response = await fetch("/metrics", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      text = await response.text();
    } catch (e) {
      $("metrics-status").textContent = `(/metrics: ${e.message})`;
      return;
    }
    const rows = [];
    for (const line of text.split("\n")) {
      const m = SERIES.exec(line);
      if (!m || !SHOWN.includes(m[1])) continue;
      const labels = m[2] ? m[2].replace(/"/g, "") : "";
      if (labels && Number(m[3]) === 0) continue;
      rows.push([m[1] + labels, m[3]]);
    }
    rows.sort((a, b) => SHOWN.indexOf(a[0].split("{")[0]) - SHOWN.indexOf(b[0].split("{")[0]));
    const body = $("metrics").tBodies[0];
    body.textContent = "";
    for (const [name, value] of rows) {
      const row = body.insertRow();
      row.dataset.series = name;
      row.insertCell().textContent = name;
      const cell = row.insertCell();
      cell.className = "value";
      cell.textContent = value;
    }
    $("metrics-status").textContent = `(from /metrics, ${new Date().toISOString().slice(11, 19)})`;
  }

  async function start() {
    showMetrics();
    setInterval(showMetrics, 1000);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    $("url").value = `${scheme}//${location.host}/pubsub`;
    try {
      // keepCase: the proto's field names as written (cmd_ping), as on the wire contract.
      const root = await new protobuf.Root().load("/pubsub.proto", { keepCase: true });
      PubSubReq = root.lookupType("PubSubReq");
      PubSubResp = root.lookupType("PubSubResp");
    } catch (e) {
      log("error", `error: cannot load /pubsub.proto: ${e.message}`);
      return;
    }
    for (const field of PubSubReq.oneofs.req.fieldsArray) {
      $("command").append(new Option(field.name, field.name));
    }
    const commands = PubSubReq.oneofs.req.fieldsArray.map((field) => field.name);
    $("command").value = commands.includes("cmd_kafka_list_offset") ? "cmd_kafka_list_offset" : commands[0];
    showFields();
    $("command").onchange = showFields;
    $("connect").onclick = () => connect();
    $("disconnect").onclick = () => ws && ws.close(1000, "closed from the page");
    $("ping").onclick = () => ping($("ping-state").value);
    $("send").onclick = sendForm;
    $("clear").onclick = () => { $("log").textContent = ""; };
    const query = new URLSearchParams(location.search);
    if (query.has("ping")) {
      $("ping-state").value = query.get("ping");
      connect(() => ping(query.get("ping")));
    }
  }

  start();
})();

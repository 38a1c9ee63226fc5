-- One pubsub connection: the API of APISIX's core.pubsub (new / on / wait), server push (send,
-- message) and the loop that serves it. The loop (the reader) reads what the socket gives, lets
-- the Rust session (src/session.rs) turn it into commands, calls the handlers and queues their
-- replies; the connection's writer thread (lua/apisix_pubsub_rs/writer.lua) sends everything
-- queued. Everything that may yield (the handshake, reads, writes, handlers) happens in Lua.

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")
local schemas = require("apisix_pubsub_rs.schema")
local codec = require("apisix_pubsub_rs.codec")
local writer = require("apisix_pubsub_rs.writer")
local metrics = require("apisix_pubsub_rs.metrics")
local exit = ngx and require("apisix_pubsub_rs.exit")

local C = native.C
local KIND = native.kind
-- Outside nginx (plain LuaJIT, for decode_req / encode_resp) there is no ngx and no connection.
local ngx = ngx
local ngx_log = ngx and ngx.log
local ERR = ngx and ngx.ERR
local WARN = ngx and ngx.WARN
local worker_exiting = ngx and ngx.worker.exiting
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local ffi_istype = ffi.istype
local semaphore = ngx and require("ngx.semaphore")
local type = type
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable

local K_NEED_MORE, K_COMMAND, K_EMPTY, K_UNDECODABLE = KIND.NEED_MORE, KIND.COMMAND, KIND.EMPTY, KIND.UNDECODABLE
local K_TEXT, K_CLOSED, K_FAILED, K_ENDED = KIND.TEXT, KIND.CLOSED, KIND.FAILED, KIND.ENDED
local PUSH = native.push
local INFO = ngx and ngx.INFO
local getmetatable = getmetatable
-- Metrics (src/metrics.rs): what only Lua sees is sampled through these calls.
local END, ERRKIND = native.metrics_end, native.metrics_error

local SESSION_T = ffi.typeof("apisix_pubsub_rs_session *")
local debug_getinfo = debug.getinfo
local int64_for_lua = codec.int64_for_lua
-- The handlers that declare a second parameter (or take `...`): only they are given the request's
-- sequence, whose conversion from int64 costs a handler call about a third more instructions.
local takes_sequence = setmetatable({}, { __mode = "k" })
local build_params, encode_reply, release_held = codec.build_params, codec.encode_reply, codec.release_held
local release_since = codec.release_since
local hold, to_int64 = codec.hold, codec.to_int64
-- Messages of pubsub.message at least this long are queued by reference (see send).
local SHARE_MIN = 256

-- A push may be written by send() itself, and a read's replies by the reader, when the
-- connection's writer is idle (src/ffi/socket.rs says when and why): for that, the running request
-- and two of nginx's functions, found once per worker. Outside nginx, or where they are not found, every
-- byte goes through the writer thread.
local get_request = ngx and require("resty.core.base").get_request
local NGX_UNIX_SEND, NGX_CLEANUP_ADD
do
    pcall(ffi.cdef, [[
        ssize_t ngx_unix_send(void *c, unsigned char *buf, size_t size);
        void *ngx_http_cleanup_add(void *r, size_t size);
    ]])
    local ok, send, cleanup = pcall(function()
        return ffi.cast("void *", ffi.C.ngx_unix_send), ffi.cast("void *", ffi.C.ngx_http_cleanup_add)
    end)
    if ok and get_request then
        NGX_UNIX_SEND, NGX_CLEANUP_ADD = send, cleanup
    end
end

local _M = {
    version = native.version,
    _COMMANDS = schemas.builtin().command_names,
    _REPLIES = schemas.builtin().reply_names,
    decode_req = codec.decode_req,
    encode_resp = codec.encode_resp,
    metrics = metrics.metrics,
    prometheus = metrics.prometheus,
    configure = metrics.configure,
}

--- Compiles the proto file at `path` (APISIX's `pubsub.proto`, or one's own) and lays it over the
-- built-in schema: its commands and replies are then served beside the built-in ones, by
-- connections made from now on and by decode_req / encode_resp, with no rebuild.
-- @return true | nil, err (naming the file and line; the schema in force stays)
function _M.load_proto(path)
    if type(path) ~= "string" then
        error("bad path: a string expected, got " .. type(path), 2)
    end
    local schema, err = schemas.load(path)
    if not schema then
        return nil, err
    end
    _M._COMMANDS, _M._REPLIES = schema.command_names, schema.reply_names
    return true
end
local mt = { __index = _M }

-- nil, or the words of a bad option: a positive integer (below 2^53) is expected.
local function positive_integer(opts, name)
    local v = opts[name]
    if v == nil then
        return nil
    end
    if type(v) ~= "number" or v % 1 ~= 0 or v < 1 or v >= 2^53 then
        return nil, "bad option " .. name .. ": a positive integer expected, got " .. tostring(v)
    end
    return v
end

-- The default of opts.max_queue_bytes: 1 MiB of queued output per connection.
local MAX_QUEUE_DEFAULT = 1024 * 1024

local function default_ping(params)
    return { pong_resp = { state = params.state } }
end

-- The handlers of an instance on which on() was never called; never written to.
local DEFAULT_HANDLERS = { cmd_ping = default_ping }

-- permessage-deflate: the keys of a `compression` table, the range of each (a boolean when
-- none), and what `compression = true` means (from Rust's defaults, src/deflate/negotiate.rs).
local DEFLATE_DEFAULT = native.deflate_default
local pairs = pairs
local agreed_len = ffi.new("size_t[1]")
local COMPRESSION_KEYS = {
    server_max_window_bits = { 9, 15 },
    client_max_window_bits = { 9, 15 },
    server_no_context_takeover = false,
    client_no_context_takeover = false,
    threshold = { 0, 2^53 - 1 },
    level = { 0, 9 },
    large_level = { 0, 9 },
}

-- The DeflateConfig of opts.compression, nil for no compression, or nil and the words of a bad one.
local function compression_config(v)
    if v == nil or v == false then
        return nil
    end
    if v ~= true and type(v) ~= "table" then
        return nil, "bad option compression: true, false or a table expected, got " .. type(v)
    end
    local t = v == true and {} or v
    for k, val in pairs(t) do
        local range = COMPRESSION_KEYS[k]
        if range == nil then
            return nil, "bad option compression: unknown key " .. tostring(k)
        end
        if range then
            if type(val) ~= "number" or val % 1 ~= 0 or val < range[1] or val > range[2] then
                return nil, ("bad option compression.%s: an integer in %d..%d expected, got %s"):format(
                    k, range[1], range[2], tostring(val))
            end
        elseif type(val) ~= "boolean" then
            return nil, "bad option compression." .. k .. ": a boolean expected, got " .. tostring(val)
        end
    end
    local cfg = ffi.new("apisix_pubsub_rs_deflate")
    for k, range in pairs(COMPRESSION_KEYS) do
        local val = t[k]
        if val == nil then
            val = DEFLATE_DEFAULT[k:upper()]
        elseif not range then
            val = val and 1 or 0
        end
        cfg[k] = val
    end
    return cfg
end

--- Performs the WebSocket handshake and makes a pubsub instance.
-- @tparam[opt] table opts `max_payload_len` (default 65535), `max_message_len` (default
--   `max_payload_len`), `timeout` (ms, default `lua_socket_read_timeout`), `fragment_size`
--   (split replies into frames of at most this many bytes; default: one frame per reply),
--   `compression` (permessage-deflate: false, the default, as APISIX never compresses; true for
--   the documented defaults; or a table of `server_max_window_bits`, `client_max_window_bits`,
--   `server_no_context_takeover`, `client_no_context_takeover`, `threshold`, `level`,
--   `large_level`; see README)
-- @return instance | nil, err
function _M.new(opts)
    if opts ~= nil and type(opts) ~= "table" then
        return nil, "bad argument: opts must be a table, got " .. type(opts)
    end
    opts = opts or {}
    local max_payload, err = positive_integer(opts, "max_payload_len")
    if err then
        return nil, err
    end
    max_payload = max_payload or 65535
    local max_message
    max_message, err = positive_integer(opts, "max_message_len")
    if err then
        return nil, err
    end
    max_message = max_message or max_payload
    if max_message < max_payload then
        return nil, "bad option max_message_len: must be at least max_payload_len (" .. max_payload .. ")"
    end
    local timeout
    timeout, err = positive_integer(opts, "timeout")
    if err then
        return nil, err
    end
    local fragment
    fragment, err = positive_integer(opts, "fragment_size")
    if err then
        return nil, err
    end
    local max_queue
    max_queue, err = positive_integer(opts, "max_queue_bytes")
    if err then
        return nil, err
    end
    local on_full = opts.on_full
    if on_full ~= nil and on_full ~= "error" and on_full ~= "close" then
        return nil, "bad option on_full: \"error\" or \"close\" expected, got " .. tostring(on_full)
    end
    local direct = opts.direct_writes
    if direct ~= nil and type(direct) ~= "boolean" then
        return nil, "bad option direct_writes: a boolean expected, got " .. type(direct)
    end
    local unknown = opts.unknown_command
    if unknown ~= nil and unknown ~= "named" and unknown ~= "plain" then
        return nil, "bad option unknown_command: \"named\" or \"plain\" expected, got " .. tostring(unknown)
    end

    local deflate_cfg
    deflate_cfg, err = compression_config(opts.compression)
    if err then
        return nil, err
    end

    local schema = schemas.current()
    local sess = C.session_new(schema.handle, max_payload, max_message, fragment or 0,
                               max_queue or MAX_QUEUE_DEFAULT)
    if sess == nil then
        return nil, "failed to create a session"
    end
    sess = ffi_gc(sess, C.session_free)

    -- The session answers the offers (src/ffi/session.rs session_deflate) before the 101 goes out.
    local compressed = false
    local negotiate = deflate_cfg and function(offers)
        local agreed = C.session_deflate(sess, deflate_cfg, offers, #offers, agreed_len)
        if agreed == nil then
            return nil
        end
        compressed = true
        return ffi_string(agreed, agreed_len[0])
    end
    local sock
    sock, err = require("apisix_pubsub_rs.handshake").accept(negotiate)
    if not sock then
        return nil, err
    end
    if timeout then
        sock:settimeout(timeout)
    end
    C.metrics_accepted()
    -- Until on() registers a handler of its own, cmd_ping gets the default handler's pong
    -- ({pong_resp = {state = params.state}}) straight from Rust, without a parameter table.
    C.session_echo_ping(sess, 1)
    -- An instance lives as long as its connection, so it stays small. The handler table is the
    -- shared default until on() copies it; `held` is made by codec.hold when a reply first holds
    -- a value, and is false when replies are cut into fragments (which copy every value); `io`
    -- is what the reader, the writer and the pushers share.
    local held
    if fragment then
        held = false
    end
    return setmetatable({
        sock = sock,
        sess = sess,
        cmd_handler = DEFAULT_HANDLERS,
        compressed = compressed,   -- permessage-deflate: replies copy their values (to compress them)
        held = held,
        io = {
            wake = semaphore.new(),     -- the writer waits on it for output
            drained = semaphore.new(),  -- the reader waits on it for the writer
            close_on_full = on_full == "close",
            direct = direct ~= false,   -- writes at once where the connection allows (see wait)
            plain_unknown = unknown == "plain", -- "unknown command" without the name (APISIX >= 3.0)
            ended = false,              -- send() returns "closed" from then on
            reason = nil,               -- what wait() returns when a push ended the connection
            schema = schema,            -- the session's, whatever is loaded later
            -- The session's reply encoder, as long as the session: fetched once, so that a push
            -- or a reply makes no garbage for it (an FFI pointer result is a new cdata each time).
            encoder = C.session_encoder(sess),
        },
    }, mt)
end

--- Registers the handler of a command, replacing any earlier one.
-- `handler(params, sequence)` returns a reply table such as `{pong_resp = {state = "x"}}`, or
-- `nil, err`; `sequence` is the request's (a number, or a "#<digits>" string beyond 32 bits).
-- @tparam string command a command of pubsub.proto, e.g. "cmd_ping"
-- @tparam function handler
function _M.on(self, command, handler)
    if type(self) ~= "table" or not self.cmd_handler then
        error("bad self: call it as pubsub:on(command, handler)", 2)
    end
    if type(command) ~= "string" then
        error("bad command: a string expected, got " .. type(command), 2)
    end
    local schema = (self.io and self.io.schema) or schemas.current()
    if not schema.commands[command] then
        error("unknown command '" .. command .. "': pubsub.proto defines " .. schema.command_list, 2)
    end
    if type(handler) ~= "function" then
        error("bad handler for " .. command .. ": a function expected, got " .. type(handler), 2)
    end
    local handlers = self.cmd_handler
    if handlers == DEFAULT_HANDLERS then
        handlers = { cmd_ping = default_ping }
        self.cmd_handler = handlers
    end
    handlers[command] = handler
    local info = debug_getinfo(handler, "u")
    takes_sequence[handler] = (info.nparams >= 2 or info.isvararg) or nil
    if command == "cmd_ping" and ffi_istype(SESSION_T, self.sess) then
        C.session_echo_ping(self.sess, handler == default_ping and 1 or 0)
    end
end

-- What pubsub.message returns: an encoded PubSubResp to send to many connections.
local message_mt = { __index = {}, __metatable = "apisix_pubsub_rs.message" }

--- Encodes a reply once, for sending to many connections with `instance:send(msg)`: each
-- connection queues the same bytes, none copies them (unless it fragments its messages).
-- @tparam table reply a reply table, as a handler returns
-- @param[opt] sequence as for `send` (default 0)
-- @return message | nil, err ("failed to encode ...")
function _M.message(reply, sequence)
    if type(reply) ~= "table" then
        error("bad reply: a table expected, got " .. type(reply), 2)
    end
    local seq = to_int64(sequence)
    if seq == nil then
        error("bad sequence: an integer, a decimal or \"#\" string or int64 cdata expected, got "
            .. type(sequence), 2)
    end
    local bytes, err = codec.encode_resp(seq, reply)
    if not bytes then
        return nil, "failed to encode the message: " .. err
    end
    return setmetatable({ bytes = bytes }, message_mt)
end

-- The frame of a message of pubsub.message (header and payload), made when a connection first
-- sends it by reference, and kept with it.
local header_buf = ffi.new("uint8_t[10]")
local function framed_of(msg)
    local bytes = msg.bytes
    local n = tonumber(C.frame_header(#bytes, header_buf))
    local framed = ffi_string(header_buf, n) .. bytes
    msg.framed = framed
    return framed
end

-- The words of a refused push, and, for a full queue with on_full = "close", the end of the
-- connection.
local function refused(self, rc)
    if rc == PUSH.QUEUE_FULL then
        local io = self.io
        if io.close_on_full and not io.ended then
            io.ended = true
            io.reason = "queue full"
            ngx_log(WARN, "pubsub connection closed: its push queue is full")
            C.session_close(self.sess, 1008, "queue full", 10)
            writer.wake(self)
        end
        return nil, "queue full"
    elseif rc == PUSH.CLOSED then
        self.io.ended = true
        return nil, "closed"
    end
    return nil, "failed to push: internal error"
end

-- permessage-deflate: pushes `msg` compressed once for every connection of `key` (the message
-- keeps the compressed bytes, or false when they were no smaller) and held by reference.
local deflated_len = ffi.new("size_t[1]")
local function push_shared(self, msg, key)
    local cache = msg.deflated
    if not cache then
        cache = {}
        msg.deflated = cache
    end
    local z = cache[key]
    if z == nil then
        local bytes = msg.bytes
        local p = C.deflate_shared(key, bytes, #bytes, deflated_len)
        z = p ~= nil and ffi_string(p, deflated_len[0])
        cache[key] = z
    end
    local payload = z or msg.bytes
    -- Fragmenting connections copy (their values are not held); the others hold the one string.
    local id = -1
    if self.held ~= false then
        id = hold(self, payload)
    end
    local rc = C.session_push_shared(self.sess, payload, #payload, id, z and 1 or 0)
    if rc ~= PUSH.OK and id > 0 then
        -- Refused, or written at once (PUSH.SENT): the value is not held any more.
        release_held(self.held, id)
    end
    return rc
end

-- For apisix_pubsub_rs.channels, whose fan-out (src/ffi/fanout.rs) pushes to many connections at
-- once: what follows a push it made to this connection with status `rc` (not SENT): the writer
-- woken for a push queued, or what send returns for a refused one.
function _M._after_fanout(self, rc)
    if rc == PUSH.OK then
        writer.wake(self)
        return true
    end
    return refused(self, rc)
end

-- The fan-out copies messages shorter than this into each queue, as send does; send holds longer
-- ones by reference.
_M._fanout_copy_max = SHARE_MIN

--- Queues a reply pushed to the client: it goes out after everything queued before this call
-- and before everything queued after it. Never blocks; callable from any Lua context of the
-- worker that holds the instance (a handler, a light thread, a timer, another request).
-- @param reply a reply table, as a handler returns, or a message of `pubsub.message`
-- @param[opt] sequence the push's sequence (default 0), as for `encode_resp`; not with a message
-- @return true | nil, err ("closed", "queue full", "failed to encode ...")
function _M.send(self, reply, sequence)
    if type(self) ~= "table" or not self.io then
        error("bad self: call it as pubsub:send(reply [, sequence])", 2)
    end
    local is_message = getmetatable(reply) == "apisix_pubsub_rs.message"
    if not is_message and type(reply) ~= "table" then
        error("bad reply: a table or a message expected, got " .. type(reply), 2)
    end
    local seq = to_int64(sequence)
    if seq == nil or (is_message and sequence ~= nil) then
        error("bad sequence: " .. (is_message and "a message carries its own" or
            "an integer, a decimal or \"#\" string or int64 cdata expected, got " .. type(sequence)), 2)
    end
    local io, sess = self.io, self.sess
    if io.ended then
        C.metrics_push_closed()
        return nil, "closed"
    end
    local held = self.held
    local rc
    -- (a number: an int64 cdata would be a new table key each time)
    local key = is_message and self.compressed and tonumber(C.session_shared_key(sess, #reply.bytes))
    if key and key >= 0 then
        rc = push_shared(self, reply, key)
    elseif is_message then
        local bytes = reply.bytes
        -- A short message is copied into the queue, as short reply values are: its write is then
        -- one string straight from the queue, cheaper than a reference at that size. A longer one
        -- is held by reference, as a whole frame made once for every connection (a connection
        -- that compresses or fragments needs the payload instead): its write is that one string.
        if held ~= false and not self.compressed and #bytes >= SHARE_MIN then
            local framed = reply.framed or framed_of(reply)
            local id = hold(self, framed)
            rc = C.session_push_framed(sess, framed, #framed, id)
            if rc ~= PUSH.OK then
                -- Refused, or written at once (PUSH.SENT): the value is not held any more.
                release_held(self.held, id)
            end
        else
            -- Copied: short, fragmented, or compressed by this connection (which queues its own
            -- compressed bytes, so a value held for it would never be released).
            rc = C.session_push_message(sess, bytes, #bytes, -1)
        end
    else
        local held_before = held and held.n or 0
        C.session_push_begin(sess, seq)
        local err = encode_reply(io.schema, io.encoder, reply, held ~= false and not self.compressed and self or nil)
        if err then
            C.session_abandon(sess)
            rc = PUSH.FAILED
        else
            rc = C.session_push_finish(sess)
        end
        if rc ~= PUSH.OK and rc ~= PUSH.SENT then
            release_since(self, held_before)
            if rc == PUSH.FAILED then
                return nil, "failed to encode the push: " .. (err or codec.last_error())
            end
        end
    end
    if rc == PUSH.SENT then
        -- Written at once: nothing for the writer.
        return true
    elseif rc ~= PUSH.OK then
        return refused(self, rc)
    end
    writer.wake(self)
    return true
end

-- Scratch space shared by every connection of the worker. Safe because each use is over before
-- anything can yield: the event is read between session_step and the handler call, the length
-- between an FFI call and the next.
local event = ffi.new("apisix_pubsub_rs_event")
local waiting_len = ffi.new("size_t[1]")

-- Reads stay at or under 64 KiB: LuaJIT's allocator maps larger strings with mmap and unmaps them
-- when collected, which costs more than the extra calls. (Writes are sized by the session.)
local READ_MAX = 65536

-- Hands the command in `ev` to its handler and queues the one reply it gets.
local function serve_command(self, ev)
    local sess, schema = self.sess, self.io.schema
    local f = schema.fields[ev.command]
    local name = f.name
    local handler = self.cmd_handler[name]
    if not handler then
        ngx_log(ERR, "pubsub callback handler not registered for the command, command: ", name)
        local msg = self.io.plain_unknown and "unknown command" or "unknown command: " .. name
        C.metrics_error(ERRKIND.UNKNOWN_COMMAND)
        C.session_reply_error(sess, msg, #msg)
        return
    end
    local params = build_params(schema, ev, f.target)
    local ok, resp, err
    if takes_sequence[handler] then
        ok, resp, err = pcall(handler, params, int64_for_lua(ev.sequence))
    else
        ok, resp, err = pcall(handler, params)
    end
    if not ok then
        ngx_log(ERR, "pubsub handler of command ", name, " raised an error: ", tostring(resp))
        local msg = tostring(resp)
        C.metrics_error(ERRKIND.HANDLER_RAISED)
        C.session_reply_error(sess, msg, #msg)
        return
    end
    if not resp then
        local msg = err == nil and "" or tostring(err)
        C.metrics_error(ERRKIND.HANDLER_ERROR)
        C.session_reply_error(sess, msg, #msg)
        return
    end
    C.session_reply_begin(sess)
    local held = self.held
    local held_before = held and held.n or 0
    local encode_err = encode_reply(schema, self.io.encoder, resp, held ~= false and not self.compressed and self or nil)
    if not encode_err and C.session_reply_finish(sess) ~= 0 then
        encode_err = "unbalanced reply"
    end
    if encode_err then
        -- The reply is dropped, and with it the values it held.
        release_since(self, held_before)
        ngx_log(ERR, "failed to encode response message, err: ", encode_err)
        local msg = "failed to encode response message"
        C.metrics_error(ERRKIND.ENCODE_FAILURE)
        C.session_reply_error(sess, msg, #msg)
    end
end

local function fatal(reason)
    ngx_log(ERR, "fatal error in pubsub websocket server, err: ", reason)
    return reason
end

-- The connections the worker serves now (wait() running), for the worker's exit.
local serving = setmetatable({}, { __mode = "k" })

-- Worker exit (quit, reload). An exiting worker stays until its requests end, and a reader
-- blocked on an idle client would hold it until its read timeout (60 s by default). So at the
-- exit (apisix_pubsub_rs.exit) every connection is sent a close 1001 (going away), and the
-- reader ends as soon as the client answers it. A client that does not answer still holds the
-- worker until the read timeout.
local function close_all_for_exit()
    for conn in pairs(serving) do
        local io = conn.io
        if not io.ended then
            io.ended = true
            io.exiting = true
            C.session_close(conn.sess, 1001, "", 0)
            writer.wake(conn)
        end
    end
end

local function watch_worker_exit()
    local ok, err = exit.on_exit("connections", close_all_for_exit)
    if not ok then
        ngx_log(WARN, "pubsub: failed to arm the exit watch (an exiting worker waits for its connections' reads): ", err)
    end
end

-- Ends the connection: no push is taken from now on, the writer sends what is queued (where the
-- socket still takes it) and stops; pushes that could not be sent are counted in the log.
-- `reason` (native.metrics_end) and the peer's close `code` are for the metrics.
local function finish(self, result, reason, code)
    local io = self.io
    serving[self] = nil
    if io.exiting then
        reason = END.WORKER_EXITING
    end
    C.metrics_ended(reason, code or 0)
    io.ended = true
    C.session_refuse_pushes(self.sess)
    -- The writer sends what is left as it sent the rest (at once where the socket takes it, so a
    -- stalled client's connection holds no write's worth in nginx's send buffer at its end);
    -- then nothing writes to the socket but nginx.
    writer.stop(self)
    io.attached = false
    C.session_detach_socket(self.sess)
    local dropped = tonumber(C.session_unsent_pushes(self.sess))
    if dropped > 0 then
        ngx_log(INFO, "pubsub connection ended with ", dropped, " pushes not sent")
    end
    return result or io.reason
end

--- Serves the connection until it ends.
-- @return nothing on a clean end, or the error string of a fatal one
function _M.wait(self)
    if type(self) ~= "table" or not self.io then
        error("bad self: call it as pubsub:wait()", 2)
    end
    local sess, ev, sock, io = self.sess, event, self.sock, self.io
    -- Writes at once where the connection allows (src/ffi/socket.rs): pushes by send, replies here.
    local direct = io.direct and NGX_UNIX_SEND and
        C.session_attach_socket(sess, get_request(), NGX_UNIX_SEND, NGX_CLEANUP_ADD) == 1
    io.attached = direct
    serving[self] = true
    watch_worker_exit()
    writer.start(self)
    while true do
        -- Serve every complete frame buffered, flushing when a write's worth is queued.
        while true do
            local k = C.session_step(sess, ev)
            if k == K_NEED_MORE then
                break
            elseif k == K_COMMAND then
                serve_command(self, ev)
                -- A write's worth is queued: the writer may start on it while handlers run.
                if C.session_whole_writes(sess) > 0 then
                    writer.wake(self)
                end
            elseif k == K_EMPTY then
                ngx_log(WARN, "pubsub server receives empty command")
            elseif k == K_UNDECODABLE then
                ngx_log(ERR, "pubsub server receives undecodable data, err: ", ffi_string(ev.note, ev.note_len))
            elseif k == K_TEXT then
                ngx_log(WARN, "pubsub server receive non-binary data, type: text, data: ",
                    ffi_string(ev.note, ev.note_len))
            elseif k == K_CLOSED or k == K_ENDED then
                -- The closing handshake: a failed echo is no error. (A session ends before a
                -- step only when a push closed it: its queue was full.)
                return finish(self, nil, k == K_CLOSED and END.PEER_CLOSE or END.QUEUE_FULL, ev.code)
            elseif k == K_FAILED then
                local reason = ffi_string(ev.note, ev.note_len)
                return finish(self, fatal(reason), END.PROTOCOL_ERROR)
            else
                C.session_close(sess, 1011, "", 0)
                return finish(self, fatal("internal error in the pubsub session"), END.INTERNAL)
            end
        end

        -- What is due goes to the writer. More than a write's worth is written before the next
        -- read, so a client that does not read stalls its own reads, not the worker's memory;
        -- less is left to the writer, which sends it while the next read waits for the client.
        local due = C.session_write_due(sess)
        if io.failed or (due > 0 and C.session_pending(sess) > C.session_write_size(sess)) then
            local ok, err = writer.drain(self)
            if not ok then
                -- The peer went away while we wrote: nothing to report at error level.
                return finish(self, "failed to send: " .. err, END.SEND_ERROR)
            end
        elseif due > 0 then
            -- Less than a write's worth: written now when the writer is idle and it is all that is
            -- queued, else by the writer while the next read waits for the client.
            if not (direct and due == C.session_pending(sess) and C.session_write_now(sess) == PUSH.SENT) then
                writer.wake(self)
            end
        end
        if worker_exiting() then
            C.session_close(sess, 1001, "", 0)
            return finish(self, nil, END.WORKER_EXITING)
        end

        -- Read on while the frame being received cannot be complete yet: a frame larger than
        -- nginx's socket buffer (lua_socket_buffer_size, 4 KiB by default) comes in many pieces.
        local data, err
        repeat
            data, err = sock:receiveany(READ_MAX)
        until not data or C.session_feed(sess, data, #data) ~= 1
        if not data and err == "timeout" then
            if C.session_mid_message(sess) ~= 0 then
                -- A stalled peer holds buffers: end it.
                C.session_close(sess, 1008, "timeout", 7)
                return finish(self, "timeout in the middle of a frame", END.TIMEOUT)
            end
        elseif not data then
            if io.exiting then
                -- Closed for the worker's exit: the client went without answering; no error.
                return finish(self, nil, END.WORKER_EXITING)
            end
            if io.reason then
                -- A push closed the connection and the peer went: the reason is the push's.
                return finish(self, nil, END.QUEUE_FULL)
            end
            local what = C.session_waiting(sess, waiting_len)
            return finish(self, fatal("failed to receive " .. ffi_string(what, waiting_len[0]) .. ": " .. err),
                END.RECEIVE_ERROR)
        end
    end
end

return _M

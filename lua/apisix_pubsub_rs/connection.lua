-- One pubsub connection: the API of APISIX's core.pubsub (new / on / wait) and the loop that
-- serves it. The loop reads what the socket gives, lets the Rust session (src/session.rs) turn it
-- into commands, calls the handlers and has the replies written (lua/apisix_pubsub_rs/writer.lua).
-- Everything that may yield (the handshake, reads, writes, handlers) happens here, in Lua.

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")
local schemas = require("apisix_pubsub_rs.schema")
local codec = require("apisix_pubsub_rs.codec")
local writer = require("apisix_pubsub_rs.writer")

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
local type = type
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable

local K_NEED_MORE, K_COMMAND, K_EMPTY, K_UNDECODABLE = KIND.NEED_MORE, KIND.COMMAND, KIND.EMPTY, KIND.UNDECODABLE
local K_TEXT, K_CLOSED, K_FAILED, K_ENDED = KIND.TEXT, KIND.CLOSED, KIND.FAILED, KIND.ENDED

local SESSION_T = ffi.typeof("apisix_pubsub_rs_session *")
local build_params, encode_reply, release_held = codec.build_params, codec.encode_reply, codec.release_held
local flush = writer.flush

local schema = schemas.builtin()
local FIELDS = schema.fields

local _M = {
    version = native.version,
    _COMMANDS = schema.command_names,
    _REPLIES = schema.reply_names,
    decode_req = codec.decode_req,
    encode_resp = codec.encode_resp,
}
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

local function default_ping(params)
    return { pong_resp = { state = params.state } }
end

-- The handlers of an instance on which on() was never called; never written to.
local DEFAULT_HANDLERS = { cmd_ping = default_ping }

--- Performs the WebSocket handshake and makes a pubsub instance.
-- @tparam[opt] table opts `max_payload_len` (default 65535), `max_message_len` (default
--   `max_payload_len`), `timeout` (ms, default `lua_socket_read_timeout`), `fragment_size`
--   (split replies into frames of at most this many bytes; default: one frame per reply)
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

    local sock
    sock, err = require("apisix_pubsub_rs.handshake").accept()
    if not sock then
        return nil, err
    end
    if timeout then
        sock:settimeout(timeout)
    end

    local sess = C.session_new(schema.handle, max_payload, max_message, fragment or 0)
    if sess == nil then
        return nil, "failed to create a session"
    end
    sess = ffi_gc(sess, C.session_free)
    -- Until on() registers a handler of its own, cmd_ping gets the default handler's pong
    -- ({pong_resp = {state = params.state}}) straight from Rust, without a parameter table.
    C.session_echo_ping(sess, 1)
    -- An instance lives as long as its connection, so it stays small: four fields (one hash
    -- part of four slots). The handler table is the shared default until on() copies it; `held`
    -- is made by codec.hold when a reply first holds a value, and is false when replies are cut
    -- into fragments (which copy every value).
    local held
    if fragment then
        held = false
    end
    return setmetatable({
        sock = sock,
        sess = sess,
        cmd_handler = DEFAULT_HANDLERS,
        held = held,
    }, mt)
end

--- Registers the handler of a command, replacing any earlier one.
-- `handler(params)` returns a reply table such as `{pong_resp = {state = "x"}}`, or `nil, err`.
-- @tparam string command a command of pubsub.proto, e.g. "cmd_ping"
-- @tparam function handler
function _M.on(self, command, handler)
    if type(self) ~= "table" or not self.cmd_handler then
        error("bad self: call it as pubsub:on(command, handler)", 2)
    end
    if type(command) ~= "string" then
        error("bad command: a string expected, got " .. type(command), 2)
    end
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
    if command == "cmd_ping" and ffi_istype(SESSION_T, self.sess) then
        C.session_echo_ping(self.sess, handler == default_ping and 1 or 0)
    end
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
    local sess = self.sess
    local f = FIELDS[ev.command]
    local name = f.name
    local handler = self.cmd_handler[name]
    if not handler then
        ngx_log(ERR, "pubsub callback handler not registered for the command, command: ", name)
        local msg = "unknown command: " .. name
        C.session_reply_error(sess, msg, #msg)
        return
    end
    local params = build_params(schema, ev, f.target)
    local ok, resp, err = pcall(handler, params)
    if not ok then
        ngx_log(ERR, "pubsub handler of command ", name, " raised an error: ", tostring(resp))
        local msg = tostring(resp)
        C.session_reply_error(sess, msg, #msg)
        return
    end
    if not resp then
        local msg = err == nil and "" or tostring(err)
        C.session_reply_error(sess, msg, #msg)
        return
    end
    C.session_reply_begin(sess)
    local held = self.held
    local held_before = held and held.n or 0
    local encode_err = encode_reply(schema, C.session_encoder(sess), resp, held ~= false and self or nil)
    if not encode_err and C.session_reply_finish(sess) ~= 0 then
        encode_err = "unbalanced reply"
    end
    if encode_err then
        -- The reply is dropped, and with it the values it held.
        held = self.held
        for id = held_before + 1, held and held.n or 0 do
            release_held(held, id)
        end
        ngx_log(ERR, "failed to encode response message, err: ", encode_err)
        local msg = "failed to encode response message"
        C.session_reply_error(sess, msg, #msg)
    end
end

local function fatal(reason)
    ngx_log(ERR, "fatal error in pubsub websocket server, err: ", reason)
    return reason
end

--- Serves the connection until it ends.
-- @return nothing on a clean end, or the error string of a fatal one
function _M.wait(self)
    local sess, ev, sock = self.sess, event, self.sock
    while true do
        -- Serve every complete frame buffered, flushing when a write's worth is queued.
        while true do
            local k = C.session_step(sess, ev)
            if k == K_NEED_MORE then
                break
            elseif k == K_COMMAND then
                serve_command(self, ev)
                -- Whole writes only: more replies may follow before the next read.
                local whole = C.session_whole_writes(sess)
                if whole > 0 then
                    local ok, err = flush(self, tonumber(whole))
                    if not ok then
                        return "failed to send: " .. err
                    end
                end
            elseif k == K_EMPTY then
                ngx_log(WARN, "pubsub server receives empty command")
            elseif k == K_UNDECODABLE then
                ngx_log(ERR, "pubsub server receives undecodable data, err: ", ffi_string(ev.note, ev.note_len))
            elseif k == K_TEXT then
                ngx_log(WARN, "pubsub server receive non-binary data, type: text, data: ",
                    ffi_string(ev.note, ev.note_len))
            elseif k == K_CLOSED or k == K_ENDED then
                -- The closing handshake: a failed echo is no error.
                flush(self)
                return
            elseif k == K_FAILED then
                local reason = ffi_string(ev.note, ev.note_len)
                flush(self)
                return fatal(reason)
            else
                C.session_close(sess, 1011, "", 0)
                flush(self)
                return fatal("internal error in the pubsub session")
            end
        end

        local ok, err = flush(self, tonumber(C.session_write_due(sess)))
        if not ok then
            -- The peer went away while we wrote: nothing to report at error level.
            return "failed to send: " .. err
        end
        if worker_exiting() then
            C.session_close(sess, 1001, "", 0)
            flush(self)
            return
        end

        -- Read on while the frame being received cannot be complete yet: a frame larger than
        -- nginx's socket buffer (lua_socket_buffer_size, 4 KiB by default) comes in many pieces.
        local data
        repeat
            data, err = sock:receiveany(READ_MAX)
        until not data or C.session_feed(sess, data, #data) ~= 1
        if not data and err == "timeout" then
            if C.session_mid_message(sess) ~= 0 then
                -- A stalled peer holds buffers: end it.
                C.session_close(sess, 1008, "timeout", 7)
                flush(self)
                return "timeout in the middle of a frame"
            end
        elseif not data then
            local what = C.session_waiting(sess, waiting_len)
            return fatal("failed to receive " .. ffi_string(what, waiting_len[0]) .. ": " .. err)
        end
    end
end

return _M

-- The Lua face of apisix_pubsub_rs, embedded in the cdylib and run by luaopen_apisix_pubsub_rs.
--
-- It does what must run in Lua because it may yield: the handshake, socket reads and writes, and
-- the command handlers. Framing and protobuf happen in Rust, reached through LuaJIT's FFI with the
-- function pointers luaopen passes in. The API is APISIX core.pubsub's: new / on / wait.

local fns, schema_source = ...

local ffi = require("ffi")
local ffi_string = ffi.string
local ffi_cast = ffi.cast
local ffi_gc = ffi.gc
local ffi_istype = ffi.istype
local ngx = ngx
local ngx_log = ngx and ngx.log
local ERR = ngx and ngx.ERR
local WARN = ngx and ngx.WARN
local type = type
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local ipairs = ipairs
local pairs = pairs
local concat = table.concat
local str_lower = string.lower
local str_find = string.find

local schema = assert(loadstring(schema_source, "=apisix_pubsub_rs.schema"))()

-- cdef is global to the LuaJIT VM: define once, even if the module is loaded again.
if not pcall(ffi.typeof, "apisix_pubsub_rs_event") then
    ffi.cdef [[
typedef struct apisix_pubsub_rs_op {
    uint32_t code;
    uint32_t field;
    double num;
    size_t offset;
    size_t len;
} apisix_pubsub_rs_op;

typedef struct apisix_pubsub_rs_event {
    int32_t kind;
    int32_t command;
    int32_t code;
    int32_t pad;
    int64_t sequence;
    size_t nops;
    const apisix_pubsub_rs_op *ops;
    const char *payload;
    const char *text;
    const char *note;
    size_t note_len;
} apisix_pubsub_rs_event;

typedef struct apisix_pubsub_rs_session apisix_pubsub_rs_session;
typedef struct apisix_pubsub_rs_encoder apisix_pubsub_rs_encoder;
typedef struct apisix_pubsub_rs_codec apisix_pubsub_rs_codec;
]]
end

local function fn(name, signature)
    local p = fns[name]
    if not p then
        error("apisix_pubsub_rs: the library does not export " .. name)
    end
    return ffi_cast(signature, p)
end

local S = "apisix_pubsub_rs_session *"
local E = "apisix_pubsub_rs_encoder *"
local X = "apisix_pubsub_rs_codec *"
local EV = "apisix_pubsub_rs_event *"
local C = {
    session_new = fn("session_new", S .. "(*)(uint64_t, uint64_t, uint64_t)"),
    session_free = fn("session_free", "void (*)(" .. S .. ")"),
    session_encoder = fn("session_encoder", E .. "(*)(" .. S .. ")"),
    session_feed = fn("session_feed", "int (*)(" .. S .. ", const char *, size_t)"),
    session_step = fn("session_step", "int (*)(" .. S .. ", " .. EV .. ")"),
    session_echo_ping = fn("session_echo_ping", "void (*)(" .. S .. ", int)"),
    session_mid_message = fn("session_mid_message", "int (*)(" .. S .. ")"),
    session_waiting = fn("session_waiting", "const char *(*)(" .. S .. ", size_t *)"),
    session_peek = fn("session_peek", "const char *(*)(" .. S .. ", size_t, size_t *, int64_t *)"),
    session_consume = fn("session_consume", "void (*)(" .. S .. ", size_t)"),
    session_pending = fn("session_pending", "size_t (*)(" .. S .. ")"),
    session_write_size = fn("session_write_size", "size_t (*)(" .. S .. ")"),
    session_write_due = fn("session_write_due", "size_t (*)(" .. S .. ")"),
    session_whole_writes = fn("session_whole_writes", "size_t (*)(" .. S .. ")"),
    session_close = fn("session_close", "void (*)(" .. S .. ", int, const char *, size_t)"),
    session_reply_begin = fn("session_reply_begin", "void (*)(" .. S .. ")"),
    session_reply_finish = fn("session_reply_finish", "int (*)(" .. S .. ")"),
    session_reply_error = fn("session_reply_error", "void (*)(" .. S .. ", const char *, size_t)"),
    enc_begin = fn("enc_begin", "void (*)(" .. E .. ", int64_t)"),
    enc_number = fn("enc_number", "int (*)(" .. E .. ", uint32_t, double)"),
    enc_int = fn("enc_int", "int (*)(" .. E .. ", uint32_t, int64_t)"),
    enc_uint = fn("enc_uint", "int (*)(" .. E .. ", uint32_t, uint64_t)"),
    enc_int_text = fn("enc_int_text", "int (*)(" .. E .. ", uint32_t, const char *, size_t)"),
    enc_bool = fn("enc_bool", "int (*)(" .. E .. ", uint32_t, int)"),
    enc_bytes = fn("enc_bytes", "int (*)(" .. E .. ", uint32_t, const char *, size_t)"),
    enc_bytes_ref = fn("enc_bytes_ref", "int (*)(" .. E .. ", uint32_t, uint32_t, size_t)"),
    enc_open = fn("enc_open", "int (*)(" .. E .. ", uint32_t)"),
    enc_close = fn("enc_close", "int (*)(" .. E .. ")"),
    enc_result = fn("enc_result", "const char *(*)(" .. E .. ", size_t *)"),
    parse_int64 = fn("parse_int64", "int (*)(const char *, size_t, int64_t *)"),
    codec_new = fn("codec_new", X .. "(*)(void)"),
    codec_free = fn("codec_free", "void (*)(" .. X .. ")"),
    codec_encoder = fn("codec_encoder", E .. "(*)(" .. X .. ")"),
    codec_decode = fn("codec_decode", "int (*)(" .. X .. ", const char *, size_t, " .. EV .. ")"),
}

local EVENT_T = ffi.typeof("apisix_pubsub_rs_event")
local SESSION_T = ffi.typeof("apisix_pubsub_rs_session *")
local SIZE_T_BOX = ffi.typeof("size_t[1]")
local SIZE_T_PAIR = ffi.typeof("size_t[2]")
local INT64_BOX = ffi.typeof("int64_t[1]")
local INT64_T = ffi.typeof("int64_t")
local UINT64_T = ffi.typeof("uint64_t")

-- Event kinds, as src/ffi.rs numbers them.
local K_NEED_MORE, K_COMMAND, K_EMPTY, K_UNDECODABLE = 0, 1, 2, 3
local K_TEXT, K_CLOSED, K_FAILED, K_ENDED = 4, 5, 6, 7

-- Op codes, as src/message.rs numbers them.
local OP_NUMBER, OP_BOOL, OP_BYTES, OP_TEXT, OP_OPEN, OP_CLOSE = 1, 2, 3, 4, 5, 6
local OP_REPEATED = 16

local ENCODE_ERRORS = {
    [1] = "is not a field of this message",
    [2] = "has a value of the wrong type",
    [3] = "has a value out of range",
    [4] = "has a string that is not an integer",
    [5] = "is in unbalanced nested messages",
    [-1] = "hit an internal error",
}

local FIELDS = schema.fields
local MESSAGES = schema.messages
local REQUEST = MESSAGES[schema.request]
local RESPONSE = MESSAGES[schema.response]

local INTEGER_KINDS = {
    int32 = true, int64 = true, uint32 = true, uint64 = true, sint32 = true, sint64 = true,
    fixed32 = true, fixed64 = true, sfixed32 = true, sfixed64 = true, enum = true,
}
local INT64_KINDS = { int64 = true, uint64 = true, sint64 = true, fixed64 = true, sfixed64 = true }

-- Per message: the proto3 defaults a freshly decoded table starts with (as lua-protobuf fills them).
local DEFAULTS = {}
for idx, m in pairs(MESSAGES) do
    local d = {}
    for _, id in ipairs(m.fields) do
        local f = FIELDS[id]
        f.integer = INTEGER_KINDS[f.kind] or false
        f.int64 = INT64_KINDS[f.kind] or false
        f.number_like = f.integer or f.kind == "float" or f.kind == "double"
        f.owner = m
        if not f.repeated and not f.oneof then
            if f.number_like then
                d[#d + 1] = { f.name, 0 }
            elseif f.kind == "bool" then
                d[#d + 1] = { f.name, false }
            elseif f.kind == "string" or f.kind == "bytes" then
                d[#d + 1] = { f.name, "" }
            end
        end
    end
    DEFAULTS[idx] = d
end

local COMMANDS, COMMAND_NAMES, REPLIES, REPLY_NAMES = {}, {}, {}, {}
for _, id in ipairs(REQUEST.fields) do
    local f = FIELDS[id]
    if f.oneof then
        COMMANDS[f.name] = f
        COMMAND_NAMES[#COMMAND_NAMES + 1] = f.name
    end
end
for _, id in ipairs(RESPONSE.fields) do
    local f = FIELDS[id]
    if f.oneof then
        REPLIES[#REPLIES + 1] = f
        REPLY_NAMES[#REPLY_NAMES + 1] = f.name
    end
end
local COMMAND_LIST = concat(COMMAND_NAMES, ", ")
local REPLY_LIST = concat(REPLY_NAMES, ", ")

local function new_table(msg_index)
    local t = {}
    local d = DEFAULTS[msg_index]
    for i = 1, #d do
        local kv = d[i]
        t[kv[1]] = kv[2]
    end
    return t
end

-- Appends v to the array t[name], making the array if needed.
local function append(t, name, v)
    local arr = t[name]
    if arr == nil then
        arr = {}
        t[name] = arr
    end
    arr[#arr + 1] = v
end

-- Builds the parameter table of a command from the ops Rust decoded.
local function build_params(ev, msg_index)
    local t = new_table(msg_index)
    local stack, depth = nil, 0
    local ops, payload, text = ev.ops, ev.payload, ev.text
    for i = 0, tonumber(ev.nops) - 1 do
        local op = ops[i]
        local code = op.code
        local repeated = code >= OP_REPEATED
        if repeated then
            code = code - OP_REPEATED
        end
        local f = FIELDS[op.field]
        local v
        if code == OP_NUMBER then
            v = op.num
        elseif code == OP_BYTES then
            v = ffi_string(payload + op.offset, op.len)
        elseif code == OP_TEXT then
            v = ffi_string(text + op.offset, op.len)
        elseif code == OP_BOOL then
            v = op.num ~= 0
        elseif code == OP_OPEN then
            local sub
            if repeated then
                sub = new_table(f.target)
                append(t, f.name, sub)
            else
                sub = t[f.name]
                if sub == nil then
                    sub = new_table(f.target)
                    t[f.name] = sub
                end
            end
            stack = stack or {}
            depth = depth + 1
            stack[depth] = t
            t = sub
        elseif code == OP_CLOSE then
            t = stack[depth]
            stack[depth] = nil
            depth = depth - 1
        end
        if v ~= nil then
            if repeated then
                append(t, f.name, v)
            else
                t[f.name] = v
            end
        end
    end
    return t
end

local function field_error(f, what)
    return "field '" .. f.name .. "' of " .. f.owner.name .. " " .. what
end

local function check(rc, f)
    if rc ~= 0 then
        return field_error(f, ENCODE_ERRORS[rc] or "failed to encode")
    end
    return nil
end

local encode_fields

-- String values at least this long go into a connection's replies by reference: the encoder
-- notes where they belong, `held` keeps them, and flush hands them to the socket as they are, so
-- a large value is copied once (by nginx, into its send buffer) instead of three times.
local HOLD_MIN = 4096

-- Writes one value of a non-message field. `holder` is the pubsub instance whose `held` table keeps
-- the values held by reference (made when first needed), or nil to copy every value.
local function put_value(enc, f, v, holder)
    local tv = type(v)
    local id = f.id
    if f.number_like then
        if tv == "number" then
            return check(C.enc_number(enc, id, v), f)
        elseif tv == "string" and f.int64 then
            return check(C.enc_int_text(enc, id, v, #v), f)
        elseif tv == "cdata" and f.integer then
            if ffi_istype(UINT64_T, v) then
                return check(C.enc_uint(enc, id, v), f)
            elseif ffi_istype(INT64_T, v) then
                return check(C.enc_int(enc, id, v), f)
            end
        end
        return field_error(f, "expects a number, got " .. tv)
    elseif f.kind == "string" or f.kind == "bytes" then
        if tv ~= "string" then
            return field_error(f, "expects a string, got " .. tv)
        end
        local n = #v
        if holder and n >= HOLD_MIN then
            local held = holder.held
            if not held then
                -- held[id] = value for ids 1..n, of which `live` are still queued; parts: the
                -- pieces of a write that has held values among queued bytes.
                held = { n = 0, live = 0, parts = {} }
                holder.held = held
            end
            local k = held.n + 1
            held[k] = v
            held.n = k
            held.live = held.live + 1
            return check(C.enc_bytes_ref(enc, id, k, n), f)
        end
        return check(C.enc_bytes(enc, id, v, n), f)
    elseif f.kind == "bool" then
        if tv ~= "boolean" then
            return field_error(f, "expects a boolean, got " .. tv)
        end
        return check(C.enc_bool(enc, id, v and 1 or 0), f)
    end
    return field_error(f, "has an unsupported type")
end

local function put_message(enc, f, v, depth, holder)
    if type(v) ~= "table" then
        return field_error(f, "expects a table, got " .. type(v))
    end
    if depth > 32 then
        return field_error(f, "is nested too deep (a reference cycle?)")
    end
    local err = check(C.enc_open(enc, f.id), f)
    if err then
        return err
    end
    err = encode_fields(enc, f.target, v, depth + 1, holder)
    if err then
        return err
    end
    return check(C.enc_close(enc), f)
end

-- Writes the fields of `t` that message `msg_index` declares; other keys are ignored.
encode_fields = function(enc, msg_index, t, depth, holder)
    local ids = MESSAGES[msg_index].fields
    for i = 1, #ids do
        local f = FIELDS[ids[i]]
        local v = t[f.name]
        if v ~= nil then
            local err
            if f.repeated then
                if type(v) ~= "table" then
                    return field_error(f, "expects an array, got " .. type(v))
                end
                if f.kind == "message" then
                    for j = 1, #v do
                        err = put_message(enc, f, v[j], depth, holder)
                        if err then
                            return err
                        end
                    end
                elseif f.number_like and #v > 0 then
                    err = check(C.enc_open(enc, f.id), f)
                    for j = 1, #v do
                        err = err or put_value(enc, f, v[j])
                    end
                    err = err or check(C.enc_close(enc), f)
                else
                    for j = 1, #v do
                        err = err or put_value(enc, f, v[j], holder)
                    end
                end
            elseif f.kind == "message" then
                err = put_message(enc, f, v, depth, holder)
            else
                err = put_value(enc, f, v, holder)
            end
            if err then
                return err
            end
        end
    end
    return nil
end

-- Writes the one reply member of a handler's reply table, after enc_begin / session_reply_begin.
local function encode_reply(enc, reply, holder)
    if type(reply) ~= "table" then
        return "the reply must be a table, got " .. type(reply)
    end
    local member
    for i = 1, #REPLIES do
        local f = REPLIES[i]
        if reply[f.name] ~= nil then
            if member then
                return "the reply sets both " .. member.name .. " and " .. f.name
                    .. ": exactly one of " .. REPLY_LIST .. " is allowed"
            end
            member = f
        end
    end
    if not member then
        return "the reply has none of the keys " .. REPLY_LIST
    end
    return put_message(enc, member, reply[member.name], 0, holder)
end

-- Converts a sequence given by a user of encode_resp to int64: a number with no fraction, a decimal
-- or "#" string, or int64 cdata.
local function to_int64(v)
    local tv = type(v)
    if v == nil then
        return 0
    elseif tv == "number" then
        if v ~= v or v % 1 ~= 0 or v >= 2^63 or v < -2^63 then
            return nil
        end
        return v
    elseif tv == "string" then
        local box = INT64_BOX()
        if C.parse_int64(v, #v, box) == 1 then
            return box[0]
        end
        return nil
    elseif tv == "cdata" and (ffi_istype(INT64_T, v) or ffi_istype(UINT64_T, v)) then
        return v
    end
    return nil
end

-- lua-protobuf's int64_as_string view of a 64-bit integer.
local function int64_for_lua(n)
    if n >= -2147483648 and n <= 4294967295 then
        return tonumber(n)
    end
    local s = tostring(n)
    return "#" .. s:sub(1, -3) -- drop LuaJIT's "LL" suffix
end

local _M = {
    version = ffi_string(ffi_cast("const char *", fns.version)),
    _COMMANDS = COMMAND_NAMES,
    _REPLIES = REPLY_NAMES,
}
local mt = { __index = _M }

local codec, codec_enc
local codec_ev = EVENT_T()

local function get_codec()
    if not codec then
        codec = ffi_gc(C.codec_new(), C.codec_free)
        codec_enc = C.codec_encoder(codec)
    end
    return codec, codec_enc
end

--- Decodes a `PubSubReq` without a connection, for users who bring their own transport.
-- @tparam string bytes the request
-- @return sequence (number or "#<digits>"), command name (or nil), parameter table (or nil) | nil, err
function _M.decode_req(bytes)
    if type(bytes) ~= "string" then
        error("decode_req: bytes must be a string, got " .. type(bytes), 2)
    end
    local c = get_codec()
    local k = C.codec_decode(c, bytes, #bytes, codec_ev)
    if k == K_UNDECODABLE then
        return nil, ffi_string(codec_ev.note, codec_ev.note_len)
    elseif k ~= K_COMMAND and k ~= K_EMPTY then
        return nil, "internal error in decode_req"
    end
    local seq = int64_for_lua(codec_ev.sequence)
    if k == K_EMPTY then
        return seq, nil, nil
    end
    local f = FIELDS[codec_ev.command]
    return seq, f.name, build_params(codec_ev, f.target)
end

--- Encodes a `PubSubResp` without a connection.
-- @param sequence number, decimal or "#" string, or int64 cdata
-- @tparam table reply e.g. `{pong_resp = {state = "x"}}`
-- @return bytes | nil, err
function _M.encode_resp(sequence, reply)
    local seq = to_int64(sequence)
    if seq == nil then
        return nil, "bad sequence: " .. tostring(sequence)
    end
    local _, enc = get_codec()
    C.enc_begin(enc, seq)
    local err = encode_reply(enc, reply)
    if err then
        return nil, err
    end
    local len = SIZE_T_BOX()
    local p = C.enc_result(enc, len)
    if p == nil then
        return nil, "unbalanced reply"
    end
    return ffi_string(p, len[0])
end

local function header(headers, name)
    local v = headers[name]
    if type(v) == "table" then
        v = v[1]
    end
    return v
end

-- The WebSocket handshake, with lua-resty-websocket's error strings.
local function handshake()
    if ngx.headers_sent then
        return nil, "response header already sent"
    end
    if ngx.req.get_method() ~= "GET" then
        return nil, "bad method: " .. tostring(ngx.req.get_method()) .. " (a websocket handshake is a GET)"
    end
    ngx.req.read_body()
    if ngx.req.http_version() ~= 1.1 then
        return nil, "bad http version"
    end
    local headers = ngx.req.get_headers()
    local val = header(headers, "upgrade")
    if not val or str_lower(val) ~= "websocket" then
        return nil, "bad \"upgrade\" request header: " .. tostring(val)
    end
    val = header(headers, "connection")
    if not val or not str_find(str_lower(val), "upgrade", 1, true) then
        return nil, "bad \"connection\" request header"
    end
    local key = header(headers, "sec-websocket-key")
    local raw = key and ngx.decode_base64(key)
    if not raw or #raw ~= 16 then
        return nil, "bad \"sec-websocket-key\" request header"
    end
    if header(headers, "sec-websocket-version") ~= "13" then
        return nil, "bad \"sec-websocket-version\" request header"
    end
    local protocols = header(headers, "sec-websocket-protocol")
    if protocols then
        ngx.header["Sec-WebSocket-Protocol"] = protocols
    end
    ngx.header["Upgrade"] = "websocket"
    ngx.header["Sec-WebSocket-Accept"] =
        ngx.encode_base64(ngx.sha1_bin(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
    ngx.header["Content-Type"] = nil
    ngx.status = 101
    local ok, err = ngx.send_headers()
    if not ok then
        return nil, "failed to send response header: " .. (err or "unknown")
    end
    ok, err = ngx.flush(true)
    if not ok then
        return nil, "failed to flush response header: " .. (err or "unknown")
    end
    return ngx.req.socket(true)
end

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
    sock, err = handshake()
    if not sock then
        return nil, err
    end
    if timeout then
        sock:settimeout(timeout)
    end

    local sess = C.session_new(max_payload, max_message, fragment or 0)
    if sess == nil then
        return nil, "failed to create a session"
    end
    sess = ffi_gc(sess, C.session_free)
    -- Until on() registers a handler of its own, cmd_ping gets the default handler's pong
    -- ({pong_resp = {state = params.state}}) straight from Rust, without a parameter table.
    C.session_echo_ping(sess, 1)
    -- An instance lives as long as its connection, so it stays small: four fields (one hash
    -- part of four slots). The handler table is the shared default until on() copies it; `held`
    -- is made by put_value when a reply first holds a value, and is false when replies are cut
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
    if not COMMANDS[command] then
        error("unknown command '" .. command .. "': pubsub.proto defines " .. COMMAND_LIST, 2)
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
-- anything can yield: EV is read between session_step and the handler call, LEN and HELD_ID
-- between an FFI call and the next.
local EV = EVENT_T()
local LEN = SIZE_T_PAIR()
local HELD_ID = INT64_BOX()

-- Reads stay at or under 64 KiB: LuaJIT's allocator maps larger strings with mmap and unmaps them
-- when collected, which costs more than the extra calls. (Writes are sized by the session.)
local READ_MAX = 65536

-- Drops held value `id` from `held`; ids start over from 1 when none is left.
local function release_held(held, id)
    held[id] = nil
    local live = held.live - 1
    held.live = live
    if live == 0 then
        held.n = 0
    end
end

-- Sends `due` queued bytes (default: all), in writes of at most session_write_size queued bytes
-- plus the held values among them. Returns true, or nil and the socket's error.
local function flush(self, due)
    local sess, held, len, held_id = self.sess, self.held, LEN, HELD_ID
    due = due or tonumber(C.session_pending(sess))
    while due > 0 do
        -- A write is one string, or, when held values are among the queued bytes, the pieces in
        -- held.parts (queued bytes are contiguous, so two pieces mean a held value is one).
        local n, size, first, parts = 0, 0, nil, nil
        local max = tonumber(C.session_write_size(sess))
        if max > due then
            max = due
        end
        while size < max do
            local p = C.session_peek(sess, max - size, len, held_id)
            local k = tonumber(len[0])
            if k == 0 then
                break
            end
            local piece
            if p ~= nil then
                piece = ffi_string(p, k)
            else
                -- A held value is taken whole (what is left of it): it is done with.
                local id = tonumber(held_id[0])
                local v = held[id]
                local offset = tonumber(len[1])
                piece = offset == 0 and v or v:sub(offset + 1)
                release_held(held, id)
            end
            n = n + 1
            if n == 1 then
                first = piece
            else
                if n == 2 then
                    parts = held.parts
                    parts[1] = first
                end
                parts[n] = piece
            end
            -- Taken now, sent below: a failed send ends the connection anyway.
            C.session_consume(sess, k)
            size = size + k
        end
        if n == 0 then
            break
        end
        due = due - size
        local _, err
        if n == 1 then
            _, err = self.sock:send(first)
        else
            _, err = self.sock:send(parts)
            for i = 1, n do
                parts[i] = nil
            end
        end
        if err then
            return nil, err
        end
    end
    return true
end

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
    local params = build_params(ev, f.target)
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
    local n0 = held and held.n or 0
    local eerr = encode_reply(C.session_encoder(sess), resp, held ~= false and self or nil)
    if not eerr and C.session_reply_finish(sess) ~= 0 then
        eerr = "unbalanced reply"
    end
    if eerr then
        -- The reply is dropped, and with it the values it held.
        held = self.held
        for id = n0 + 1, held and held.n or 0 do
            release_held(held, id)
        end
        ngx_log(ERR, "failed to encode response message, err: ", eerr)
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
    local sess, ev, sock = self.sess, EV, self.sock
    local exiting = ngx.worker.exiting
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
        if exiting() then
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
            local what = C.session_waiting(sess, LEN)
            return fatal("failed to receive " .. ffi_string(what, LEN[0]) .. ": " .. err)
        end
    end
end

return _M

-- A Redis client on ngx_lua cosockets: the socket here, the protocol in Rust (src/resp/, through
-- src/ffi/resp.rs). One object per connection; commands are sent and their replies read in turn.
-- Pooled connections (the default) go back to nginx's keepalive pool with release().

local ffi = require("ffi")
-- Opens the library first when this file is found on package.path before it was loaded.
require("apisix_pubsub_rs")
local native = require("apisix_pubsub_rs.ffi")

local C = native.C
local STATUS = native.resp_status
local MODE = native.resp_mode
local ngx = ngx
local ngx_null = ngx and ngx.null
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local type = type
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local sub = string.sub

local S_NEED_MORE, S_REPLY, S_FAILED = STATUS.NEED_MORE, STATUS.REPLY, STATUS.FAILED

-- Item kinds of src/resp/reply.rs (`item`): fixed by the Rust side's contract.
local SIMPLE, ERROR, INTEGER, BULK, NIL, ARRAY, MAP, SET, PUSH, DOUBLE, BOOLEAN, BIG_NUMBER =
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12

local _M = { version = native.version, MODE = MODE }
local mt = { __index = _M }

-- Scratch space shared by every connection of the worker: each use is over before anything can
-- yield (the reply is read between resp_poll and the next socket call, the arguments between
-- filling them and resp_command).
local reply = ffi.new("apisix_pubsub_rs_resp_reply")
local written_len = ffi.new("size_t[1]")
local arg_cap = 64
local arg_ptrs = ffi.new("const char *[?]", arg_cap)
local arg_lens = ffi.new("size_t[?]", arg_cap)
local writer = ffi_gc(C.resp_writer_new(), C.resp_writer_free)

-- Reads stay at or under 64 KiB, as the WebSocket reader's do.
local READ_MAX = 65536

--- Parses an address: `"host:port"` (host a name, an IPv4 address or `[IPv6]`) or `"unix:/path"`.
-- @return host, port (nil for a unix socket) | nil, err
function _M.parse_address(addr)
    if type(addr) ~= "string" then
        return nil, "a string expected, got " .. type(addr)
    end
    if sub(addr, 1, 5) == "unix:" then
        if #addr == 5 then
            return nil, "no path after unix:"
        end
        return addr
    end
    local host, port = addr:match("^%[([%x:.]+)%]:(%d+)$")
    if not host then
        host, port = addr:match("^([%w.%-]+):(%d+)$")
    end
    port = tonumber(port)
    if not host or port < 1 or port > 65535 then
        return nil, "\"host:port\" or \"unix:/path\" expected, got \"" .. addr .. "\""
    end
    return host, port
end

-- The command of `n` arguments (strings or numbers) as bytes.
local function encode(args, n)
    if n > arg_cap then
        arg_cap = n
        arg_ptrs = ffi.new("const char *[?]", arg_cap)
        arg_lens = ffi.new("size_t[?]", arg_cap)
    end
    for i = 1, n do
        local a = args[i]
        if type(a) ~= "string" then
            a = tostring(a)
            args[i] = a
        end
        arg_ptrs[i - 1] = a
        arg_lens[i - 1] = #a
    end
    if C.resp_command(writer, n, arg_ptrs, arg_lens) ~= 0 then
        return nil
    end
    local p = C.resp_written(writer, written_len)
    local bytes = ffi_string(p, written_len[0])
    C.resp_writer_clear(writer)
    return bytes
end

-- The Lua value of the item at index `i` of the reply (0-based), and the index after it.
-- Strings are strings, integers numbers, nil ngx.null, aggregates arrays (maps flat, as RESP2
-- gives them); an error inside an aggregate is a table { err = words }.
local function value(items, bytes, i)
    local it = items[i]
    local kind = it.kind
    if kind == BULK or kind == SIMPLE or kind == BIG_NUMBER then
        return ffi_string(bytes + it.offset, it.len), i + 1
    elseif kind == INTEGER then
        return tonumber(it.integer), i + 1
    elseif kind == NIL then
        return ngx_null, i + 1
    elseif kind == ARRAY or kind == MAP or kind == SET or kind == PUSH then
        local t, j = {}, i + 1
        for k = 1, it.count do
            t[k], j = value(items, bytes, j)
        end
        return t, j
    elseif kind == DOUBLE then
        return it.num, i + 1
    elseif kind == BOOLEAN then
        return it.integer ~= 0, i + 1
    elseif kind == ERROR then
        return { err = ffi_string(bytes + it.offset, it.len) }, i + 1
    end
    return nil, i + 1
end

-- The stream entries of the reply: { key = (XREAD only), id = , fields = { name = value } }.
local function entries(r)
    local bytes, items, list = r.bytes, r.items, {}
    for k = 0, tonumber(r.nentries) - 1 do
        local e = r.entries[k]
        local fields = {}
        local at = tonumber(e.fields)
        for p = 0, tonumber(e.pairs) - 1 do
            local f, v = items[at + 2 * p], items[at + 2 * p + 1]
            fields[ffi_string(bytes + f.offset, f.len)] = ffi_string(bytes + v.offset, v.len)
        end
        list[k + 1] = {
            key = e.key_len > 0 and ffi_string(bytes + e.key_offset, e.key_len) or nil,
            id = ffi_string(bytes + e.id_offset, e.id_len),
            fields = fields,
        }
    end
    return list
end

-- Ends the connection after a failure: its byte stream can no longer be trusted.
local function fail(self, err)
    self.dead = err
    self.sock:close()
    return nil, err
end

-- Reads one reply, as `mode` says (MODE.PLAIN, XREAD or XRANGE).
-- @return the value (entries for XREAD / XRANGE) | nil, err, true when Redis replied with an error
local function read_reply(self, mode)
    local dec, sock = self.dec, self.sock
    while true do
        local rc = C.resp_poll(dec, mode, reply)
        if rc == S_REPLY then
            local first = reply.items[0]
            if first.kind == ERROR then
                return nil, ffi_string(reply.bytes + first.offset, first.len), true
            end
            if mode ~= MODE.PLAIN then
                return entries(reply)
            end
            return (value(reply.items, reply.bytes, 0))
        elseif rc ~= S_NEED_MORE then
            local words = rc == S_FAILED and ffi_string(reply.note, reply.note_len) or "internal error"
            return fail(self, "redis protocol: " .. words)
        end
        local data, err = sock:receiveany(READ_MAX)
        if not data then
            return fail(self, "redis read: " .. err)
        end
        C.resp_feed(dec, data, #data)
    end
end

--- Sends a command and reads its reply.
-- @param mode `MODE.PLAIN` (the reply as a Lua value), `MODE.XREAD` or `MODE.XRANGE` (a list of
--   entries `{ key, id, fields }`; a nil XREAD reply is an empty list)
-- @param ... the command's arguments
-- @return the reply | nil, err (`"redis: <error>"` for an error reply; the connection stays usable
--   after one, not after any other failure)
function _M.command(self, mode, ...)
    if self.dead then
        return nil, self.dead
    end
    local args = { ... }
    local bytes = encode(args, #args)
    if not bytes then
        return nil, "failed to encode the redis command"
    end
    local ok, err = self.sock:send(bytes)
    if not ok then
        return fail(self, "redis write: " .. err)
    end
    local res, rerr, replied = read_reply(self, mode)
    if replied then
        return nil, "redis: " .. rerr
    elseif res == nil then
        return nil, rerr
    end
    return res
end

--- Shorthand: `command(MODE.PLAIN, ...)`.
function _M.call(self, ...)
    return _M.command(self, MODE.PLAIN, ...)
end

--- Sets the read timeout (ms) for what follows (a blocking command waits longer than the default).
function _M.set_read_timeout(self, ms)
    self.sock:settimeouts(self.timeout, self.timeout, ms)
end

--- Gives a pooled connection back to nginx's keepalive pool (or closes an unpooled or failed one).
function _M.release(self)
    if self.dead then
        return
    end
    self.dead = "released"
    if self.pooled then
        self.sock:setkeepalive(self.idle, self.pool_size)
    else
        self.sock:close()
    end
end

--- Closes the connection.
function _M.close(self)
    if not self.dead then
        self.dead = "closed"
        self.sock:close()
    end
end

--- Connects (or takes a connection from the pool) and, on a new connection, authenticates and
-- selects the database.
-- @tparam table opts `redis` ("host:port" or "unix:/path"), `username`, `password`, `database`
--   (default 0), `timeout` (ms, default 1000, for connect, writes and reads), `pooled` (default
--   true), `max_reply_len` (bytes, default 4 MiB), `pool_size`, `idle` (ms)
-- @return connection | nil, err
function _M.connect(opts)
    local host, port = _M.parse_address(opts.redis)
    if not host then
        return nil, "bad redis address: " .. tostring(port)
    end
    local timeout = opts.timeout or 1000
    local db = opts.database or 0
    local pooled = opts.pooled ~= false
    local sock = ngx.socket.tcp()
    sock:settimeouts(timeout, timeout, timeout)
    local pool
    if pooled then
        pool = ("apisix_pubsub_rs.redis:%s:%s:%s:%s:%s"):format(opts.redis, db, opts.username or "",
            opts.password and ngx.crc32_long(opts.password) or "", opts.max_reply_len or 0)
    end
    local ok, err
    if port then
        ok, err = sock:connect(host, port, pool and { pool = pool })
    else
        ok, err = sock:connect(host, pool and { pool = pool })
    end
    if not ok then
        return nil, "redis connect to " .. opts.redis .. ": " .. err
    end
    local self = setmetatable({
        sock = sock,
        dec = ffi_gc(C.resp_decoder_new(opts.max_reply_len or 0, 0), C.resp_decoder_free),
        timeout = timeout,
        pooled = pooled,
        pool_size = opts.pool_size,
        idle = opts.idle or 60000,
        dead = false,
    }, mt)
    if sock:getreusedtimes() > 0 then
        return self
    end
    local res
    if opts.password then
        if opts.username then
            res, err = self:call("AUTH", opts.username, opts.password)
        else
            res, err = self:call("AUTH", opts.password)
        end
        if not res then
            self:close()
            return nil, "redis AUTH: " .. err
        end
    end
    if db ~= 0 then
        res, err = self:call("SELECT", db)
        if not res then
            self:close()
            return nil, "redis SELECT " .. db .. ": " .. err
        end
    end
    return self
end

return _M

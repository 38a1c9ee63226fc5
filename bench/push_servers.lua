-- The native side of `make bench-push` and of the push step of `make soak`: WebSocket
-- subscribers of this module, a publisher location that fans one message out to all of a worker's
-- subscribers, and producers that push from inside the server. Payloads follow the load
-- generator's layout (loadgen/src/push.rs): a little-endian u64 counter, a little-endian u64 send
-- time in ns since the epoch, then bytes 'a' + i % 26 (byte i of the payload) up to the size.
--
--   subscriber()  registers the connection in a worker-local set, serves it, unregisters it;
--                 ?max_queue=BYTES&on_full=error|close set those options.
--   publish()     POST: the body becomes one message, encoded once (pubsub.message) and sent to
--                 every registered connection; ?shared=0 encodes it once per connection instead
--                 (every queued byte then costs memory of its own). Answers
--                 {"sent":N,"full":N,"closed":N}.
--   flood()       one connection: a light thread pushes stamped messages of ?size=BYTES as fast as
--                 send accepts them; on "queue full" it sleeps 1 ms (the writer drains meanwhile).
--   tick()        one connection: a timer pushes one stamped message every ?interval_ms=MS, the
--                 connection otherwise idle (the latency of a push while wait() blocks reading).
--   stats()       GET: {"subscribers":N,"lua_kib":K}, the worker's registered subscribers and Lua
--                 heap (where a worker's memory goes); ?gc=1 runs a full collection first.

local ffi = require("ffi")
local pubsub = require("apisix_pubsub_rs")

local ngx = ngx
local pairs = pairs
local tonumber = tonumber
local ffi_string = ffi.string
local C = ffi.C

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } push_bench_timespec;
int clock_gettime(int clk_id, push_bench_timespec *tp);
]])
local CLOCK_REALTIME = 0
local ts = ffi.new("push_bench_timespec")
local head = ffi.new("uint64_t[2]")

local _M = {}

-- The worker's subscribers: instance -> true.
local subscribers = {}

-- The padding of a payload of `size` bytes: bytes 17..size of 'a' + i % 26 (i counted from 0).
local paddings = {}
local function padding(size)
    local p = paddings[size]
    if not p then
        local b = {}
        for i = 16, size - 1 do
            b[#b + 1] = string.char(97 + i % 26)
        end
        p = table.concat(b)
        paddings[size] = p
    end
    return p
end

-- A payload with counter `seq`, stamped now.
local function stamped(seq, pad)
    C.clock_gettime(CLOCK_REALTIME, ts)
    head[0] = seq
    head[1] = ts.tv_sec * 1000000000ULL + ts.tv_nsec
    return ffi_string(head, 16) .. pad
end

local function open(extra)
    local opts = { max_queue_bytes = tonumber(ngx.var.arg_max_queue), on_full = ngx.var.arg_on_full,
                   direct_writes = ngx.var.arg_direct ~= "0" }
    for k, v in pairs(extra or {}) do
        opts[k] = v
    end
    local c, err = pubsub.new(opts)
    if not c then
        ngx.log(ngx.ERR, "failed to initialize pubsub module, err: ", err)
        return ngx.exit(400)
    end
    return c
end

function _M.subscriber()
    local c = open()
    subscribers[c] = true
    c:wait()
    subscribers[c] = nil
end

function _M.publish()
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
        ngx.status = 400
        ngx.say("a body, in memory (client_body_buffer_size), is needed")
        return
    end
    local reply = { pong_resp = { state = body } }
    local shared = ngx.var.arg_shared ~= "0"
    local msg = reply
    if shared then
        local err
        msg, err = pubsub.message(reply)
        if not msg then
            ngx.status = 500
            ngx.say(err)
            return
        end
    end
    local sent, full, closed = 0, 0, 0
    for c in pairs(subscribers) do
        local ok, err = c:send(msg)
        if ok then
            sent = sent + 1
        elseif err == "queue full" then
            full = full + 1
        else
            closed = closed + 1
        end
    end
    local answer = '{"sent":' .. sent .. ',"full":' .. full .. ',"closed":' .. closed .. '}\n'
    ngx.header["Content-Length"] = #answer
    ngx.print(answer)
end

function _M.stats()
    if ngx.var.arg_gc == "1" then
        collectgarbage("collect")
    end
    local n = 0
    for _ in pairs(subscribers) do
        n = n + 1
    end
    local answer = '{"subscribers":' .. n .. ',"lua_kib":' .. math.floor(collectgarbage("count")) .. '}\n'
    ngx.header["Content-Length"] = #answer
    ngx.print(answer)
end

function _M.flood()
    local c = open()
    local pad = padding(tonumber(ngx.var.arg_size) or 16)
    local producer = ngx.thread.spawn(function()
        local seq = 0
        while true do
            seq = seq + 1
            while true do
                local ok, err = c:send({ pong_resp = { state = stamped(seq, pad) } })
                if ok then
                    break
                elseif err == "queue full" then
                    ngx.sleep(0.001)
                else
                    return
                end
            end
        end
    end)
    c:wait()
    ngx.thread.kill(producer)
end

function _M.tick()
    local c = open()
    local pad = padding(tonumber(ngx.var.arg_size) or 16)
    local interval = (tonumber(ngx.var.arg_interval_ms) or 2) / 1000
    local seq = 0
    local function push(premature)
        if premature then
            return
        end
        seq = seq + 1
        local ok, err = c:send({ pong_resp = { state = stamped(seq, pad) } })
        if ok or err == "queue full" then
            ngx.timer.at(interval, push)
        end
    end
    ngx.timer.at(interval, push)
    c:wait()
end

return _M

-- What the metrics suites share: a pubsub location whose handlers misbehave on request, and the
-- changes of this worker's figures (pubsub.metrics()) between two readings, as sorted lines.

local pubsub = require("apisix_pubsub_rs")

local _M = {}

local function fetch(params)
    local t = params.topic
    if t == "err" then
        return nil, "no"
    elseif t == "raise" then
        error("kaboom", 0)  -- no position: the reply's length must not depend on the checkout's path
    elseif t == "bad" then
        return { error_resp = { code = "seven" } }
    elseif t == "sleep" then
        ngx.sleep(0.03)
    end
    return { pong_resp = { state = t } }
end

--- The server: cmd_ping answered by the library, cmd_kafka_fetch by `fetch`, no handler for
-- cmd_kafka_list_offset. Query: timeout, max_queue_bytes, on_full, fragment_size, push (pushes of `size`
-- bytes sent at once from a light thread, then one more after the end), log_end (log this
-- worker's worker_exiting count once wait() returns).
function _M.serve()
    local args = ngx.req.get_uri_args()
    local ps = assert(pubsub.new({ timeout = tonumber(args.timeout), max_queue_bytes = tonumber(args.max_queue_bytes),
                                   on_full = args.on_full, fragment_size = tonumber(args.fragment_size) }))
    ps:on("cmd_kafka_fetch", fetch)
    local n = tonumber(args.push)
    if n then
        ngx.thread.spawn(function()
            local state = string.rep("p", tonumber(args.size) or 10)
            for i = 1, n do
                ps:send({ pong_resp = { state = state } }, -i)
            end
        end)
    end
    ps:wait()
    if args.log_end then
        ngx.log(ngx.WARN, "ended: worker_exiting=", pubsub.metrics().connections_ended.worker_exiting)
    end
    if n then
        ps:send({ pong_resp = { state = "late" } })
    end
end

-- "a.b.c" = n for every number in `t`.
local function flatten(t, prefix, out)
    for k, v in pairs(t) do
        local key = prefix .. tostring(k)
        if type(v) == "table" then
            flatten(v, key .. ".", out)
        else
            out[key] = v
        end
    end
    return out
end

--- This worker's figures, flattened.
function _M.read()
    return flatten(assert(pubsub.metrics()), "", {})
end

-- Figures whose change depends on timing: handler times, bytes queued at once, and writes made
-- without the writer thread (as many as the reads that brought the requests; t/pubsub/direct.t
-- counts them where they are certain).
local TIMED = { "^handler%..*%.buckets", "^handler%..*%.sum_us", "^queue_high_water_bytes", "^direct_writes$" }

--- The figures that changed since `before` as "name +n" lines, sorted; left out: those that
-- depend on timing, and those whose names match `skip` (a Lua pattern).
function _M.changes(before, skip)
    local now, lines = _M.read(), {}
    local function skipped(k)
        for _, p in ipairs(TIMED) do
            if k:find(p) then
                return true
            end
        end
        return skip and k:find(skip)
    end
    for k, v in pairs(now) do
        local d = v - (before[k] or 0)
        if d ~= 0 and not skipped(k) then
            lines[#lines + 1] = k .. " " .. (d > 0 and "+" or "") .. d
        end
    end
    table.sort(lines)
    return table.concat(lines, "\n")
end

--- Has the master reload (SIGHUP): this generation of workers exits gracefully.
function _M.reload()
    local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
    local master = f:read("*l")
    f:close()
    os.execute("kill -HUP " .. master)
end

--- Waits until the server side of the connections has ended (their counters moved): the client
-- sees the close before the server's wait() returns.
function _M.settle(before_open)
    for _ = 1, 100 do
        if pubsub.metrics().connections_open <= (before_open or 0) then
            return true
        end
        ngx.sleep(0.01)
    end
    return false
end

return _M

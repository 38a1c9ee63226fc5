-- The server side of t/pubsub/push.t: /push runs apisix_pubsub_rs with options and a producer
-- chosen by the query string, and keeps each connection in `connections[name]`, so that other
-- requests and timers of the worker can push into it.

local pubsub_mod = require("apisix_pubsub_rs")

local _M = { connections = {}, results = {} }

local function opts_from_args(args)
    local opts = {}
    for _, k in ipairs({ "max_payload_len", "fragment_size", "max_queue_bytes" }) do
        if args[k] then
            opts[k] = tonumber(args[k])
        end
    end
    opts.on_full = args.on_full
    if args.direct_writes then
        opts.direct_writes = args.direct_writes == "true"
    end
    return opts
end

--- The reply pushed as number `n` of a test: a pong whose state says so.
function _M.push_reply(n, size)
    local state = "push " .. n
    if size then
        state = state .. string.rep("p", size - #state)
    end
    return { pong_resp = { state = state } }
end

-- cmd_kafka_fetch handlers, by topic.
local function fetch(c, params)
    local t = params.topic
    if t == "push_then_reply" then
        assert(c:send(_M.push_reply(params.partition), -params.partition))
        return { pong_resp = { state = "reply " .. params.partition } }
    elseif t == "sleep" then
        ngx.sleep(0.01)
        return { pong_resp = { state = "reply " .. params.partition } }
    elseif t == "large_then_pushes" then
        -- A reply of `offset` bytes, and `partition` small pushes from a timer while it is written.
        ngx.timer.at(0, function()
            for i = 1, params.partition do
                assert(c:send(_M.push_reply(i), i))
                ngx.sleep(0.002)
            end
        end)
        return { pong_resp = { state = string.rep("L", params.offset) } }
    elseif t == "burst" then
        -- `partition` pushes of `offset` bytes each, at once: how many the queue took.
        local accepted, refused, first_err = 0, 0, nil
        for i = 1, params.partition do
            local ok, err = c:send(_M.push_reply(i, params.offset), i)
            if ok then
                accepted = accepted + 1
            else
                refused = refused + 1
                first_err = first_err or err
            end
        end
        return { pong_resp = { state = ("accepted %d refused %d %s"):format(accepted, refused, tostring(first_err)) } }
    end
    return { pong_resp = { state = "reply " .. params.partition } }
end

-- Producers, by the `producer` argument, started before wait().
local producers = {}

-- A light thread of the request pushes once the connection is idle.
function producers.idle(c)
    ngx.thread.spawn(function()
        ngx.sleep(0.05)
        assert(c:send(_M.push_reply(1), 7))
    end)
end

-- Pushes queued before wait() starts.
function producers.before_wait(c)
    assert(c:send(_M.push_reply(1), 1))
    assert(c:send(_M.push_reply(2), 2))
end

-- A producer that raises, then one that pushes: the connection goes on.
function producers.raise(c)
    ngx.thread.spawn(function()
        error("producer raised on purpose")
    end)
    ngx.thread.spawn(function()
        ngx.sleep(0.05)
        assert(c:send(_M.push_reply(1)))
    end)
end

-- Pushes 1..n with a yield between each, while the client pipelines requests.
function producers.steady(c, args)
    ngx.thread.spawn(function()
        for i = 1, tonumber(args.n) do
            local ok, err = c:send(_M.push_reply(i), -i)
            if not ok then
                ngx.log(ngx.INFO, "steady producer stopped: ", err)
                return
            end
            ngx.sleep(0.001)
        end
    end)
end

-- The request ends under wait(): a light thread exits it (status 444, the connection closed).
function producers.exit_later(c)
    ngx.thread.spawn(function()
        ngx.sleep(0.05)
        ngx.exit(444)
    end)
end

-- One large push, as soon as wait() runs.
function producers.large(c, args)
    assert(c:send(_M.push_reply(1, tonumber(args.size)), 1))
end

function _M.serve()
    local args = ngx.req.get_uri_args()
    local c, err = pubsub_mod.new(opts_from_args(args))
    if not c then
        ngx.log(ngx.ERR, "failed to initialize pubsub module, err: ", err)
        return ngx.exit(400)
    end
    c:on("cmd_kafka_fetch", function(params)
        return fetch(c, params)
    end)
    local name = args.name or "default"
    _M.connections[name] = c
    if args.producer then
        producers[args.producer](c, args)
    end
    local werr = c:wait()
    ngx.log(ngx.INFO, "wait returned: ", tostring(werr))
    local ok, serr = c:send(_M.push_reply(0))
    ngx.log(ngx.INFO, "send after the end: ", tostring(ok), " ", tostring(serr))
end

return _M

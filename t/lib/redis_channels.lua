-- The server side of the channels suites: /channels serves a pubsub instance with the channels
-- attached (options from the query string), /publish publishes a POST body with
-- channels.publish; and, for the client side, a subscriber over t/lib/rawws.lua.

local pubsub = require("apisix_pubsub_rs")
local channels = require("apisix_pubsub_rs.channels")
local server = require("redis_server")

local _M = {}

local NUMBERS = { "block", "maxlen", "max_age", "max_data_len", "max_channel_len", "timeout", "count", "max_subscriptions" }

--- The attach options a query string asks for (against the suite's redis-server).
function _M.opts(args)
    args = args or {}
    local o = { redis = args.unix and server.unix or server.address, prefix = args.prefix or "t:" }
    for _, k in ipairs(NUMBERS) do
        o[k] = tonumber(args[k])
    end
    o.publish = args.publish == "1"
    if args.auth then
        o.authorize = function(action, channel, params)
            if channel:find("^secret") then
                return false, "secret channels are closed to " .. action
            end
            if action == "publish" and params.data == "forbidden" then
                return nil
            end
            return true
        end
    end
    return o
end

function _M.serve()
    local args = ngx.req.get_uri_args()
    local c = assert(pubsub.new({ max_queue_bytes = tonumber(args.max_queue_bytes), on_full = args.on_full }))
    assert(channels.attach(c, _M.opts(args)))
    if args.hello then
        -- Says which worker serves the connection, before anything else.
        assert(c:send({ pong_resp = { state = "worker " .. ngx.worker.id() } }))
    end
    local err = c:wait()
    ngx.log(ngx.INFO, "channels connection ended: ", tostring(err))
end

--- POST /publish?channel=c: the body published; the id, or 502 and the error.
function _M.publish()
    ngx.req.read_body()
    local args = ngx.req.get_uri_args()
    local id, err = channels.publish(_M.opts(args), args.channel, ngx.req.get_body_data() or "")
    if not id then
        ngx.status = 502
        ngx.say(err)
        return
    end
    ngx.say(id)
end

--- Publishes from a test block (a direct call, as a backend would).
function _M.pub(channel, data, args)
    return channels.publish(_M.opts(args), channel, data)
end

--- A client: connects to /channels with the query string.
function _M.client(query, timeout)
    local ws = assert(require("rawws").connect("/channels?" .. (query or ""), nil, { timeout = timeout or 5000 }))
    if query and query:find("hello=1") then
        local r = assert(ws:resp())
        ws.worker = r.pong_resp.state
    end
    return ws
end

--- Subscribes and returns the subscribe_resp (or the error_resp's message as nil, err).
function _M.subscribe(ws, seq, channel, since)
    ws:send(ws.req({ sequence = seq, cmd_subscribe = { channel = channel, since = since } }))
    local r = assert(ws:resp())
    if r.error_resp then
        return nil, r.error_resp.message
    end
    assert(r.sequence == seq, "subscribe_resp with sequence " .. tostring(r.sequence))
    return r.subscribe_resp
end

--- Reads `n` channel messages: a list of "<seq> <channel> <data>", and their ids.
function _M.read(ws, n)
    local got, ids = {}, {}
    for i = 1, n do
        local r, err = ws:resp()
        if not r then
            got[#got + 1] = "read failed: " .. tostring(err)
            break
        end
        local m = r.channel_message
        if not m then
            got[#got + 1] = "not a message: " .. require("cjson").encode(r)
        else
            got[i] = r.sequence .. " " .. m.channel .. " " .. m.data
            ids[i] = m.id
        end
    end
    return got, ids
end

--- Closes clients with the closing handshake (a dropped socket is an error in the server's log).
function _M.bye(...)
    for _, ws in ipairs({ ... }) do
        ws:send(ws.close_frame(1000))
        ws:close_code()
        ws:close()
    end
end

--- GET /collect?channel=c&since=id&n=N: subscribes through this server's /channels and says the
-- N messages that came ("<data> <id>" lines), for a test on another nginx.
function _M.collect()
    local args = ngx.req.get_uri_args()
    local ws = _M.client()
    local r, err = _M.subscribe(ws, 1, args.channel, args.since)
    if not r then
        ngx.say("subscribe failed: ", err)
        return
    end
    local got, ids = _M.read(ws, tonumber(args.n))
    for i = 1, #got do
        ngx.say(got[i], " ", ids[i])
    end
    _M.bye(ws)
end

local second_prefix

--- Starts a second nginx on `port`: this one's config with another port and prefix, sharing
-- the suite's Redis. Its master's pid goes to <prefix>/logs/nginx.pid.
function _M.start_second(binary, port)
    local prefix = ngx.config.prefix()
    second_prefix = prefix .. "second/"
    assert(server.sh("mkdir -p " .. second_prefix .. "conf " .. second_prefix .. "logs"))
    local f = assert(io.open(prefix .. "conf/nginx.conf"))
    local conf = f:read("*a")
    f:close()
    local n
    conf, n = conf:gsub("listen(%s+)%d+", "listen%1" .. port, 1)
    assert(n == 1, "no listen directive")
    -- Test::Nginx names the pid file and the logs by absolute paths under this prefix: the
    -- second one's go under its own (else it would take over this nginx's pid file).
    local logs = (prefix .. "logs/"):gsub("%p", "%%%0")
    local second_logs = (second_prefix .. "logs/"):gsub("%%", "%%%%")
    conf = conf:gsub(logs, second_logs)
    f = assert(io.open(second_prefix .. "conf/nginx.conf", "w"))
    f:write(conf)
    f:close()
    -- As for redis-server: nginx's own sockets are closed before the second one runs.
    assert(server.sh(binary .. " -p " .. second_prefix .. " -c conf/nginx.conf >/dev/null 2>&1 &", true))
    for _ = 1, 500 do
        local sock = ngx.socket.tcp()
        local ok = sock:connect("127.0.0.1", port)
        sock:close()
        if ok then
            return true
        end
        ngx.sleep(0.01)
    end
    error("the second nginx did not listen on " .. port)
end

--- Stops the second nginx by its master's pid.
function _M.stop_second()
    local f = assert(io.open(second_prefix .. "logs/nginx.pid"))
    local pid = assert(tonumber(f:read("*l")))
    f:close()
    os.execute("kill -QUIT " .. pid)
end

--- An HTTP request to the second nginx: status, body.
function _M.http(port, method, path, body)
    local sock = ngx.socket.tcp()
    sock:settimeout(10000)
    assert(sock:connect("127.0.0.1", port))
    assert(sock:send(method .. " " .. path .. " HTTP/1.0\r\nHost: localhost\r\nContent-Length: "
        .. #(body or "") .. "\r\n\r\n" .. (body or "")))
    local all = assert(sock:receive("*a"))
    sock:close()
    local status = tonumber(all:match("^HTTP/1%.%d (%d+)"))
    return status, all:match("\r\n\r\n(.*)$")
end

--- True when nothing arrives within `ms`.
function _M.quiet(ws, ms)
    ws.sock:settimeout(ms)
    local op, err = ws:recv()
    ws.sock:settimeout(5000)
    return op == nil and err == "timeout", op
end

return _M

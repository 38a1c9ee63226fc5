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
    -- The suites' Redis fsyncs every write, on a disk shared with other work: stalls of over a
    -- second were seen, longer than the default timeout.
    o.timeout = o.timeout or 5000
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
    local c = assert(pubsub.new({ max_queue_bytes = tonumber(args.max_queue_bytes), on_full = args.on_full,
        timeout = tonumber(args.ws_timeout), compression = args.compression == "1" or nil,
        fragment_size = tonumber(args.fragment) }))
    assert(channels.attach(c, _M.opts(args)))
    if args.hello then
        -- Says which worker serves the connection, before anything else.
        assert(c:send({ pong_resp = { state = "worker " .. ngx.worker.id() } }))
    end
    if args.pid then
        -- Says the serving worker's pid, before anything else.
        assert(c:send({ pong_resp = { state = tostring(ngx.worker.pid()) } }))
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

--- A client: connects to /channels with the query string (on this nginx, or on `port`).
function _M.client(query, timeout, port)
    local ws = assert(require("rawws").connect("/channels?" .. (query or ""), nil, { timeout = timeout or 5000, port = port }))
    if query and query:find("hello=1") then
        local r = assert(ws:resp())
        ws.worker = r.pong_resp.state
    end
    if query and query:find("pid=1") then
        local r = assert(ws:resp())
        ws.pid = tonumber(r.pong_resp.state)
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

--- Publishes `n` messages on `channel` at once, by one script in Redis (one fsync, one reply):
-- data "<i> <filler>", `size` bytes each at least. Returns their ids.
function _M.pub_many(channel, n, size)
    local conn = assert(require("apisix_pubsub_rs.redis").connect({ redis = _M.opts().redis, timeout = 20000,
        max_reply_len = 16 * 1024 * 1024 }))
    local ids = assert(conn:call("EVAL", [[
        local ids = {}
        local fill = string.rep("z", tonumber(ARGV[2]))
        for i = 1, tonumber(ARGV[1]) do
            ids[i] = redis.call("XADD", KEYS[1], "*", "d", i .. " " .. fill)
        end
        return ids
    ]], 1, "t:" .. channel, n, size))
    conn:close()
    return ids
end

--- Pushes refused for a full queue in this worker so far.
function _M.refused_full()
    return pubsub.metrics().pushes_refused.queue_full
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

-- Where the second nginx's master pid is kept across blocks (the suite's Redis directory: the
-- server root goes with each block), for the next block to stop one that a failed block left.
local function leftover_file()
    return server.dir .. "/second-nginx.pid"
end

local function stop_leftover()
    local f = io.open(leftover_file())
    if not f then
        return
    end
    local pid = tonumber(f:read("*l"))
    f:close()
    os.remove(leftover_file())
    local cmd = pid and io.open("/proc/" .. pid .. "/cmdline")
    local line = cmd and cmd:read("*a")
    if cmd then
        cmd:close()
    end
    if line and line:find("logs/second/", 1, true) then
        os.execute("kill -QUIT " .. pid)
        if not _M.gone(pid) then
            os.execute("kill -KILL " .. pid)
        end
    end
end

--- Starts a second nginx on `port`: this one's config with another port and prefix (logs/second/
-- under this one's), sharing the suite's Redis. Its master's pid goes to <prefix>/logs/nginx.pid.
function _M.start_second(binary, port)
    stop_leftover()
    local prefix = ngx.config.prefix()
    -- Under logs/: the real Test::Nginx removes the directories it knows of a server root, then
    -- the root itself, and stops every suite after one that left another directory there.
    second_prefix = prefix .. "logs/second/"
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
        -- (nginx listens before it writes its pid file.)
        local pid = ok and _M.second_master(true)
        if pid then
            f = io.open(leftover_file(), "w")
            f:write(pid, "\n")
            f:close()
            return true
        end
        ngx.sleep(0.01)
    end
    error("the second nginx did not listen on " .. port)
end

--- Publishes `n` messages on `channel`, one every `gap` seconds: `state.acked` gets their ids in
-- order, `state.done` is set at the end.
function _M.publisher(channel, n, gap, state)
    state.acked = {}
    return ngx.thread.spawn(function()
        for i = 1, n do
            state.acked[i] = assert(_M.pub(channel, "m" .. i))
            ngx.sleep(gap)
        end
        state.done = true
    end)
end

--- Subscribes `ws` to `channel` and, while `state`'s publisher runs, re-subscribes it again and
-- again. Each round reads up to 2 messages (waiting 20 ms at most for each), then unsubscribes
-- and subscribes again with `since` = the last id it got: on odd rounds both in one write (the
-- messages that come before the unsubscribe_resp are then asked for again, as since says), on
-- even rounds the subscribe after the unsubscribe_resp (since is then the last id). Every 4th
-- round a subscribe to a new channel goes in the same write, and its first message is published
-- once its subscribe_resp is in: the time to its delivery is measured. Messages must come under
-- the sequence of the subscription they belong to, and none between an unsubscribe_resp and the
-- next subscribe_resp. Ends when the publisher is done and its last id came (or after 10 s).
-- Returns { subs = list of { since, ids } per subscription, problems = list of strings,
-- rounds, worst = the slowest first delivery on a new channel, in seconds }.
function _M.churn(ws, channel, state)
    local subs, problems, worst = {}, {}, 0
    local seq = 1
    local last = assert(_M.subscribe(ws, seq, channel)).last_id
    local cur = { since = last, ids = {}, seq = seq }
    subs[1] = cur
    local function problem(what)
        problems[#problems + 1] = what
    end
    -- Reads replies, taking this channel's messages, until one satisfies `want` (or `max` are
    -- read).
    local function read_until(want, timeout, max)
        ws.sock:settimeout(timeout or 5000)
        for _ = 1, max or math.huge do
            local r, err = ws:resp()
            if not r then
                if err ~= "timeout" or not timeout then
                    problem("read failed: " .. tostring(err))
                end
                break
            end
            local m = r.channel_message
            if m and m.channel == channel then
                if not cur or r.sequence ~= cur.seq then
                    problem("message " .. m.id .. " under sequence " .. tostring(r.sequence) .. " while "
                        .. (cur and cur.seq or "none") .. " is subscribed")
                else
                    cur.ids[#cur.ids + 1] = m.id
                end
                last = m.id
            elseif want and want(r) then
                ws.sock:settimeout(5000)
                return r
            else
                problem("unexpected reply " .. require("cjson").encode(r))
            end
        end
        ws.sock:settimeout(5000)
    end
    local function answer(kind, s)
        return function(r)
            return r[kind] ~= nil and r.sequence == s
        end
    end
    local function subscribed(s, since)
        local r = read_until(answer("subscribe_resp", s))
        if r and r.subscribe_resp.last_id ~= since then
            problem("subscribe_resp last_id " .. r.subscribe_resp.last_id .. ", asked since " .. since)
        end
        cur = { since = since, ids = {}, seq = s }
        subs[#subs + 1] = cur
    end
    ngx.update_time()
    local give_up = ngx.now() + 10
    local rounds = 0
    while not (state.done and last == state.acked[#state.acked]) and ngx.now() < give_up do
        rounds = rounds + 1
        read_until(nil, 20, 2)
        local unsub, sub, new_seq = seq + 1, seq + 2, seq + 3
        seq = seq + 3
        local new = rounds % 4 == 0 and channel .. ".new." .. rounds or nil
        local new_req = new and ws.req({ sequence = new_seq, cmd_subscribe = { channel = new } }) or ""
        local unsub_req = ws.req({ sequence = unsub, cmd_unsubscribe = { channel = channel } })
        local since = last
        if rounds % 2 == 1 then
            ws:send(unsub_req .. ws.req({ sequence = sub, cmd_subscribe = { channel = channel, since = since } }) .. new_req)
            read_until(answer("unsubscribe_resp", unsub))
            cur = nil
        else
            ws:send(unsub_req)
            read_until(answer("unsubscribe_resp", unsub))
            cur = nil
            since = last
            ws:send(ws.req({ sequence = sub, cmd_subscribe = { channel = channel, since = since } }) .. new_req)
        end
        subscribed(sub, since)
        if new then
            read_until(answer("subscribe_resp", new_seq))
            ngx.update_time()
            local t0 = ngx.now()
            assert(_M.pub(new, "first"))
            local m = read_until(function(x)
                return x.channel_message ~= nil and x.channel_message.channel == new
            end)
            ngx.update_time()
            worst = math.max(worst, ngx.now() - t0)
            if not m or m.sequence ~= new_seq or m.channel_message.data ~= "first" then
                problem("the new channel " .. new .. " did not deliver its first message")
            end
            seq = seq + 1
            ws:send(ws.req({ sequence = seq, cmd_unsubscribe = { channel = new } }))
            read_until(answer("unsubscribe_resp", seq))
        end
        ngx.update_time()
    end
    return { subs = subs, problems = problems, rounds = rounds, worst = worst }
end

--- Checks a churn's subscriptions against the acknowledged ids: each subscription must get the
-- acknowledged messages after its since, in order, none skipped, none twice; and the last one
-- reach the last acknowledged message. Adds what differs to the churn's problems; returns the
-- number of messages a subscription got that an earlier one had already (asked for again by a
-- since older than the last id).
function _M.check_churn(r, acked)
    local pos = {}
    for i, id in ipairs(acked) do
        pos[id] = i
    end
    local reached, again = 0, 0
    for k, sub in ipairs(r.subs) do
        -- The first subscription's since is the channel's last id before the publisher's first
        -- (as are the sinces of those before the first message came).
        local i = sub.since == r.subs[1].since and 0 or pos[sub.since]
        if not i then
            r.problems[#r.problems + 1] = "subscription " .. k .. ": since " .. sub.since .. " is no acknowledged id"
            i = 0
        end
        for _, id in ipairs(sub.ids) do
            i = i + 1
            if acked[i] ~= id then
                r.problems[#r.problems + 1] = "subscription " .. k .. ": got " .. id .. " where "
                    .. tostring(acked[i]) .. " was due"
                i = pos[id] or i
            end
            if i <= reached then
                again = again + 1
            end
            reached = math.max(reached, i)
        end
    end
    if reached ~= #acked then
        r.problems[#r.problems + 1] = "reached " .. reached .. " of " .. #acked
    end
    return again
end

--- Says how `ids` compare with the acknowledged ones: "<n> of <m>, same order, missing <k>,
-- twice <k>".
function _M.compare(ids, acked)
    local seen, twice = {}, 0
    for _, id in ipairs(ids) do
        if seen[id] then
            twice = twice + 1
        end
        seen[id] = true
    end
    local missing = 0
    for _, id in ipairs(acked) do
        if not seen[id] then
            missing = missing + 1
        end
    end
    local same = table.concat(ids, " ") == table.concat(acked, " ")
    return #ids .. " of " .. #acked .. (same and ", same order" or ", NOT in order") .. ", missing " .. missing
        .. ", twice " .. twice
end

--- The second nginx's master pid (with `maybe`, nil while its pid file is not written yet).
function _M.second_master(maybe)
    local f, err = io.open(second_prefix .. "logs/nginx.pid")
    local pid = f and tonumber(f:read("*l"))
    if f then
        f:close()
    end
    if maybe then
        return pid
    end
    return assert(pid, err or "no pid in the second nginx's pid file")
end

--- Stops the second nginx by its master's pid, and waits (up to 5 s) until it is gone (its
-- files under this nginx's prefix are then left alone: Test::Nginx removes them next).
function _M.stop_second()
    local master = _M.second_master()
    os.execute("kill -QUIT " .. master)
    os.remove(leftover_file())
    return _M.gone(master)
end

--- True while process `pid` runs (a zombie counts as gone).
function _M.alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then
        return false
    end
    local stat = f:read("*l")
    f:close()
    return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

--- Sends `signal` to `pid` and waits (up to `ms`) until process `watched` (default `pid`) is
-- gone: the milliseconds it took, or nil if it was still running.
function _M.signal_and_wait(signal, pid, watched, ms)
    watched = watched or pid
    ngx.update_time()
    local t0 = ngx.now()
    os.execute("kill -" .. signal .. " " .. pid)
    repeat
        if not _M.alive(watched) then
            ngx.update_time()
            return math.floor((ngx.now() - t0) * 1000)
        end
        ngx.sleep(0.005)
        ngx.update_time()
    until (ngx.now() - t0) * 1000 > ms
    return nil
end

--- Starts the second nginx on `port` and subscribes a client of it (query `query`) to each of
-- the channels named after it: the clients.
function _M.second_subscribers(binary, port, query, ...)
    _M.start_second(binary, port)
    local clients = {}
    for i, channel in ipairs({ ... }) do
        clients[i] = _M.client(query, nil, port)
        assert(_M.subscribe(clients[i], 1, channel))
    end
    return unpack(clients)
end

--- Waits in a light thread for the server's close frame, then closes the socket (as a client
-- does on close): ngx.thread.wait on it gives the close code.
function _M.closer(ws)
    return ngx.thread.spawn(function()
        local code = ws:close_code()
        ws:close()
        return code
    end)
end

--- Sends `signal` to the second nginx's master, its clients (of one worker) reading their close
-- frames meanwhile: whether their worker was gone within `within` ms, their close codes
-- ("1001 1001"), and the master's pid. The time it took is logged.
function _M.exit_timed(signal, within, ...)
    local master = _M.second_master()
    local clients, closers = { ... }, {}
    for i, ws in ipairs(clients) do
        closers[i] = _M.closer(ws)
    end
    local ms = _M.signal_and_wait(signal, master, clients[1].pid, 5000)
    ngx.log(ngx.NOTICE, "the worker exited ", ms, " ms after ", signal)
    local codes = {}
    for i, th in ipairs(closers) do
        codes[i] = tostring(select(2, ngx.thread.wait(th)))
    end
    return ms ~= nil and ms < within, table.concat(codes, " "), master
end

--- Whether Redis has a client blocked in XREAD (the worker's reader waiting), from CLIENT LIST;
-- asked again for up to `ms` until one is.
function _M.reader_blocked(ms)
    local conn = assert(require("apisix_pubsub_rs.redis").connect({ redis = server.address }))
    for _ = 0, (ms or 0) / 10 do
        local list = assert(conn:call("CLIENT", "LIST"))
        for line in list:gmatch("[^\n]+") do
            if line:find(" cmd=xread", 1, true) and line:find(" flags=b", 1, true) then
                conn:close()
                return true
            end
        end
        ngx.sleep(0.01)
    end
    conn:close()
    return false
end

--- Waits (up to 5 s) until process `pid` is gone: whether it is.
function _M.gone(pid)
    for _ = 1, 500 do
        if not _M.alive(pid) then
            return true
        end
        ngx.sleep(0.01)
    end
    return not _M.alive(pid)
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

-- Channels over Redis Streams: cmd_subscribe / cmd_unsubscribe / cmd_publish on a pubsub
-- instance, and publishing from any Lua context. docs/channels.md is the user's guide.
--
-- A channel is the stream <prefix><channel>; publishing is XADD. Per worker and per Redis (address,
-- database, prefix) one reader, a timer, runs XREAD BLOCK over every channel the worker's
-- connections subscribe to, from the last id it delivered on each, and fans each entry out with
-- instance:send, encoded once per distinct subscribe sequence. A subscription starting behind the
-- reader's position first catches up with XRANGE in a timer of its own, then joins the reader's
-- delivery exactly at its position, with no yield in between: no gap, no duplicate. A subscriber
-- whose push queue is full goes back to catching up from the last id it got, so it delays nobody.
--
-- The delivery loop itself is Rust's (src/ffi/fanout.rs): each channel holds its subscribers'
-- sessions in a fan-out, which pushes an entry to each of them and writes it at once where the
-- socket takes it, touching no Lua table per subscriber. Lua then sees to the few it lists: a
-- writer to wake, a subscriber refused, and the ones it sends to itself (connections that
-- compress, and messages long enough to be held by reference rather than copied).

-- Opens the library first when this file is found on package.path before it was loaded.
local connection = require("apisix_pubsub_rs")
local redis = require("apisix_pubsub_rs.redis")
local exit = require("apisix_pubsub_rs.exit")
local codec = require("apisix_pubsub_rs.codec")
local native = require("apisix_pubsub_rs.ffi")
local ffi = require("ffi")

local ngx = ngx
local ngx_log = ngx.log
local WARN, ERR, INFO = ngx.WARN, ngx.ERR, ngx.INFO
local timer_at = ngx.timer.at
local semaphore = require("ngx.semaphore")
local sleep = ngx.sleep
local now = ngx.now
local update_time = ngx.update_time
local worker_exiting = ngx.worker.exiting
local message = connection.message
local after_fanout = connection._after_fanout
local FANOUT_COPY_MAX = connection._fanout_copy_max
local encode_resp = codec.encode_resp
local to_int64 = codec.to_int64
local C = native.C
local PUSH = native.push
local ffi_gc = ffi.gc
local tonumber = tonumber
local MODE = redis.MODE
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local pcall = pcall
local error = error
local tostring = tostring
local setmetatable = setmetatable
local find = string.find
local sub = string.sub
local byte = string.byte
local floor = math.floor
local min = math.min
local max = math.max
local concat = table.concat
local unpack = unpack

local _M = { version = connection.version }

-- Defaults of the options (docs/channels.md lists them).
local DEFAULTS = {
    redis = "127.0.0.1:6379",
    database = 0,
    prefix = "pubsub:",
    timeout = 1000,
    maxlen = 100000,
    publish = false,
    max_channel_len = 256,
    max_data_len = 65536,
    max_subscriptions = 64,
    block = 5000,
    count = 256,
}

-- The options' kinds, for the checks: "string", "boolean", "function", or a positive integer
-- ("count", below 2^31) / an integer from 0 ("index").
local KINDS = {
    redis = "string", username = "string", password = "string", database = "index",
    prefix = "string", timeout = "count", maxlen = "count", max_age = "count", publish = "boolean",
    authorize = "function", max_channel_len = "count", max_data_len = "count",
    max_subscriptions = "count", block = "count", count = "count",
}

-- The largest Redis reply read: the reader lowers its XREAD COUNT as its channels grow so that
-- a reply of `count` entries of max_data_len bytes per channel stays within it.
local MAX_REPLY = 64 * 1024 * 1024

-- Validated options, by the table the caller passed (the same table is checked once).
local checked = setmetatable({}, { __mode = "k" })

local function check_options(opts)
    if opts == nil then
        opts = {}
    elseif type(opts) ~= "table" then
        return nil, "bad options: a table expected, got " .. type(opts)
    end
    local cfg = checked[opts]
    if cfg then
        return cfg
    end
    for name in pairs(opts) do
        if not KINDS[name] then
            return nil, "unknown option " .. tostring(name)
        end
    end
    cfg = {}
    for name, kind in pairs(KINDS) do
        local v = opts[name]
        if v == nil then
            v = DEFAULTS[name]
        elseif kind == "count" or kind == "index" then
            local low = kind == "count" and 1 or 0
            if type(v) ~= "number" or v % 1 ~= 0 or v < low or v >= 2^31 then
                return nil, "bad option " .. name .. ": " .. (low == 1 and "a positive" or "a non-negative")
                    .. " integer expected, got " .. tostring(v)
            end
        elseif type(v) ~= kind then
            return nil, "bad option " .. name .. ": a " .. kind .. " expected, got " .. type(v)
        end
        cfg[name] = v
    end
    local ok, err = redis.parse_address(cfg.redis)
    if not ok then
        return nil, "bad option redis: " .. err
    end
    if cfg.username and not cfg.password then
        return nil, "bad option username: a password is needed with it"
    end
    if opts.maxlen == nil and opts.max_age then
        cfg.maxlen = nil -- retention by age only
    end
    cfg.backend = concat({ cfg.redis, cfg.database, cfg.username or "", cfg.prefix }, "\0")
    cfg.redis_opts = {
        redis = cfg.redis, username = cfg.username, password = cfg.password, database = cfg.database,
        timeout = cfg.timeout,
        max_reply_len = MAX_REPLY,
    }
    cfg.reader_opts = setmetatable({ pooled = false }, { __index = cfg.redis_opts })
    checked[opts] = cfg
    return cfg
end

-- Stream ids ----------------------------------------------------------------------------------

-- A decimal of at most 20 digits without leading zeros, within 2^64 - 1; nil if it is not one.
local function canonical_u64(s)
    if s == "" or find(s, "[^%d]") then
        return nil
    end
    local i = 1
    while i < #s and byte(s, i) == 48 do
        i = i + 1
    end
    s = sub(s, i)
    if #s > 20 or (#s == 20 and s > "18446744073709551615") then
        return nil
    end
    return s
end

-- A stream id as Redis writes it ("<ms>-<seq>"), from "<ms>-<seq>" or "<ms>"; nil if not one.
local function canonical_id(s)
    local dash = find(s, "-", 1, true)
    local ms = canonical_u64(dash and sub(s, 1, dash - 1) or s)
    local seq = "0"
    if dash then
        seq = canonical_u64(sub(s, dash + 1))
    end
    if not ms or not seq then
        return nil
    end
    return ms .. "-" .. seq
end
_M.canonical_id = canonical_id

-- a > b for two canonical ids: by milliseconds, then sequence; each a decimal compared by length
-- first (no leading zeros).
local function id_after(a, b)
    local da, db = find(a, "-", 1, true), find(b, "-", 1, true)
    if da ~= db then
        return da > db
    end
    local ma, mb = sub(a, 1, da - 1), sub(b, 1, db - 1)
    if ma ~= mb then
        return ma > mb
    end
    local sa, sb = sub(a, da + 1), sub(b, db + 1)
    if #sa ~= #sb then
        return #sa > #sb
    end
    return sa > sb
end
_M.id_after = id_after

-- Checks ----------------------------------------------------------------------------------------

local function check_channel(cfg, channel)
    if type(channel) ~= "string" or channel == "" then
        return nil, "bad channel: a non-empty string expected"
    end
    if #channel > cfg.max_channel_len then
        return nil, "bad channel: longer than " .. cfg.max_channel_len .. " bytes"
    end
    if find(channel, "[%z\1-\31\127]") then
        return nil, "bad channel: control characters are not allowed"
    end
    return true
end

local function check_data(cfg, data)
    if type(data) ~= "string" then
        return nil, "bad data: a string expected, got " .. type(data)
    end
    if #data > cfg.max_data_len then
        return nil, "data too large: " .. #data .. " bytes, the limit is " .. cfg.max_data_len
    end
    return true
end

local function check_message(cfg, channel, data)
    local ok, err = check_channel(cfg, channel)
    if ok then
        ok, err = check_data(cfg, data)
    end
    return ok, err
end

-- Publishing ------------------------------------------------------------------------------------

local function xadd(cfg, channel, data)
    local conn, err = redis.connect(cfg.redis_opts)
    if not conn then
        return nil, err
    end
    local key = cfg.prefix .. channel
    local id
    if cfg.maxlen then
        id, err = conn:call("XADD", key, "MAXLEN", "~", cfg.maxlen, "*", "d", data)
    else
        update_time()
        id, err = conn:call("XADD", key, "MINID", "~", floor(now() * 1000) - cfg.max_age, "*", "d", data)
    end
    if id and cfg.maxlen and cfg.max_age then
        update_time()
        local ok, terr = conn:call("XTRIM", key, "MINID", "~", floor(now() * 1000) - cfg.max_age)
        if not ok then
            ngx_log(WARN, "channels: XTRIM of ", key, " failed: ", terr)
        end
    end
    if id then
        conn:release()
    else
        conn:close()
    end
    return id, err
end

--- Publishes `data` on `channel` without a WebSocket, from any context where cosockets work
-- (a content handler, a timer...). No authorize hook is asked: the caller is the backend.
-- @tparam table opts the options of `attach` (checked as there)
-- @return the message's id | nil, err
function _M.publish(opts, channel, data)
    local cfg, err = check_options(opts)
    if not cfg then
        return nil, err
    end
    local ok
    ok, err = check_message(cfg, channel, data)
    if not ok then
        return nil, err
    end
    return xadd(cfg, channel, data)
end

-- The worker's side -----------------------------------------------------------------------------

-- Per Redis (cfg.backend: address, database, user, prefix; the reader's settings are those of
-- the first attach): { cfg, channels = { [name] = channel }, asking = { [name] = semaphore of a
-- subscribe asking Redis about a channel not read yet }, running, blocked, down (the
-- reader lost Redis),
-- reader_id, exit (a semaphore posted when the worker exits: the reader's and catch-ups' pauses
-- wait on it) }. A channel: { name, pos (the last id
-- delivered), fan (the fan-out of the live subscribers' sessions: C.fanout_len counts them),
-- by_slot = { [the fan-out's slot] = sub, for each of them } }.
local backends = {}

local function new_channel(name, pos)
    local fan = C.fanout_new()
    if fan == nil then
        error("channels: failed to make a fan-out")
    end
    return { name = name, pos = pos, by_slot = {}, fan = ffi_gc(fan, C.fanout_free) }
end

local function backend_of(cfg)
    local b = backends[cfg.backend]
    if not b then
        b = { cfg = cfg, channels = {}, asking = {}, running = false, blocked = false, down = false,
              exit = semaphore.new() }
        backends[cfg.backend] = b
    end
    return b
end
_M._backends = backends -- for the tests: what the worker reads

local reader

-- Sends CLIENT UNBLOCK for the reader's connection `id` from another connection: its XREAD
-- BLOCK returns as if it had timed out. True when Redis unblocked it.
local function send_unblock(b, id)
    local conn = redis.connect(b.cfg.redis_opts)
    if not conn then
        return false
    end
    local n = conn:call("CLIENT", "UNBLOCK", id)
    if n then
        conn:release()
    else
        conn:close()
    end
    return n == 1
end

-- Ends the reader's block: it then reads the set of channels anew.
local function unblock(premature, b, id)
    if premature or not b.blocked or b.reader_id ~= id then
        return
    end
    send_unblock(b, id)
end

-- Worker exit. An exiting worker stays until its running timers end, and the reader is one: its
-- XREAD BLOCK (up to `block` ms) and its pauses would hold the worker that long. So each backend
-- registers with apisix_pubsub_rs.exit as its reader starts: at the exit it wakes every pause of
-- the reader and of the catch-ups, and ends the reader's block with CLIENT UNBLOCK; the reader
-- then sees the exit and stops. ngx.sleep would not be woken: pauses wait on the backend's `exit`
-- semaphore instead.
local EXIT_POSTS = 1000000 -- every pause of the backend, now and later, returns at once
local EXIT_UNBLOCK_FOR = 1 -- seconds the exit watch keeps asking Redis to unblock the reader

local function pause(b, seconds)
    b.exit:wait(seconds)
end

local function on_exit(b)
    ngx_log(INFO, "channels: the worker exits: the reader of ", b.cfg.redis, " is told to stop (running: ",
        b.running, ", blocked: ", b.blocked, ")")
    b.exit:post(EXIT_POSTS)
    -- The reader's XREAD may be on its way (sent while its connection was being made): the
    -- unblock is asked again until it is answered, the reader stops, or a second has gone.
    update_time()
    local deadline = now() + EXIT_UNBLOCK_FOR
    while b.running and now() < deadline do
        if b.blocked and b.reader_id and send_unblock(b, b.reader_id) then
            return
        end
        sleep(0.01)
        update_time()
    end
end

-- Has the worker's exit stop the backend's reader.
local function watch_exit(b)
    local ok, err = exit.on_exit(b, on_exit)
    if not ok then
        ngx_log(WARN, "channels: failed to arm the exit watch (an exiting worker waits for the reader's block): ", err)
    end
end

-- Starts the reader, or wakes it when it waits in XREAD BLOCK on a set without a new channel.
local function wake(b)
    if not b.running then
        local ok, err = timer_at(0, reader, b)
        if ok then
            b.running = true
            watch_exit(b)
        else
            ngx_log(ERR, "channels: failed to start the reader: ", err)
        end
        return
    end
    if b.blocked and b.reader_id then
        -- From a timer: a subscribe handler must not yield after it joined (its reply would
        -- then go after the first messages).
        timer_at(0, unblock, b, b.reader_id)
    end
end

-- `after`: the id the subscriber has read up to, when past the channel's position (entries up to
-- it are not for it).
local function join(ch, s, after)
    local conn = s.conn
    local slot = tonumber(C.fanout_join(ch.fan, conn.sess, s.seq64, after, after and #after or 0,
        conn.compressed and 1 or 0))
    if slot < 0 then
        -- (Not for a live session and an id canonical_id made.)
        error("channels: the fan-out refused a subscriber")
    end
    s.state = "live"
    s.after = after
    s.slot = slot
    ch.by_slot[slot] = s
end

local function leave_channel(b, s)
    local ch = b.channels[s.channel]
    local slot = s.slot
    if ch and slot and ch.by_slot[slot] == s then
        C.fanout_leave(ch.fan, slot)
        ch.by_slot[slot] = nil
        s.slot = nil
        if C.fanout_len(ch.fan) == 0 then
            -- The reader drops it from its next XREAD.
            b.channels[s.channel] = nil
        end
    end
end

-- Ends a subscription: its connection unsubscribed or went.
local function release(b, s)
    if s.state == "closed" then
        return
    end
    leave_channel(b, s)
    s.state = "closed"
    local subs = s.conn._channel_subs
    if subs and subs[s.channel] == s then
        subs[s.channel] = nil
        subs.n = subs.n - 1
    end
end

local catch_up

-- A subscriber whose queue is full: it leaves live delivery and catches up from what it got.
local function lag(b, s)
    leave_channel(b, s)
    s.state = "catching"
    s.cursor = s.last
    local ok, err = timer_at(0.05, catch_up, b, s)
    if not ok then
        ngx_log(ERR, "channels: failed to start a catch-up: ", err)
        release(b, s)
    end
end

-- A subscription refused a push (`err`: "queue full", "closed"); `last` the last id it has (a
-- live subscriber has every entry of its channel from where it joined: s.last is not kept per
-- delivery).
local function refused_by(b, s, err, last)
    s.last = last
    if err == "queue full" and not s.conn.io.ended then
        lag(b, s)
    else
        release(b, s)
    end
end

local function channel_message(name, id, data, seq)
    return message({ channel_message = { channel = name, id = id, data = data } }, seq)
end

local outcomes_len = ffi.new("size_t[1]")
local COPY, COPY_IF_IDLE, BY_LUA = native.fanout_mode.COPY, native.fanout_mode.COPY_IF_IDLE, native.fanout_mode.LUA
-- Messages up to this long are copied into a subscriber's queue when it is written at once: the
-- copy is gone once written, and the loop stays Rust's; a subscriber with something queued holds
-- it by reference instead (one Lua string for all of them). Longer ones are always held so.
local COPY_IF_IDLE_MAX = 16384

-- Fans an entry out to the live subscribers of `ch`: the fan-out pushes it to each (with its
-- subscribe request's sequence) from one encoding; what it lists is seen to here.
local function fan_out(b, ch, id, data)
    local entry = { channel_message = { channel = ch.name, id = id, data = data } }
    local body, err = encode_resp(0, entry)
    if not body then
        ngx_log(ERR, "channels: failed to encode an entry of ", ch.name, ": ", err)
        return
    end
    local n = #body
    local mode = n < FANOUT_COPY_MAX and COPY or n <= COPY_IF_IDLE_MAX and COPY_IF_IDLE or BY_LUA
    local out = C.fanout_send(ch.fan, id, #id, body, n, mode, outcomes_len)
    n = tonumber(outcomes_len[0])
    if n == 0 then
        return
    end
    -- The outcomes stay valid until the next fanout_send on this channel (fanout_leave, which
    -- refusals call, leaves them be). A subscriber taking this entry had the one before it
    -- (ch.pos, not moved yet), or, on its first past the id it joined after, that id.
    local pos, by_slot, by_seq = ch.pos, ch.by_slot, nil
    for i = 0, n - 1 do
        local o = out[i]
        local s = by_slot[o.slot]
        if s then
            local ok, serr
            if o.code == PUSH.LUA then
                by_seq = by_seq or {}
                local seq = s.seq
                local msg = by_seq[seq]
                if not msg then
                    msg = channel_message(ch.name, id, data, seq)
                    by_seq[seq] = msg
                end
                ok, serr = s.conn:send(msg)
            else
                ok, serr = after_fanout(s.conn, o.code)
            end
            if not ok then
                refused_by(b, s, serr, o.first_past_after ~= 0 and s.after or pos)
            end
        end
    end
end

-- A message the subscriber's whole push queue cannot hold (max_queue_bytes of its connection):
-- it would be refused for ever. The subscription ends, and the client is told so, with the
-- sequence of its subscribe; the connection stays.
local function too_large(b, s, id)
    ngx_log(WARN, "channels: message ", id, " of ", s.channel, " is larger than a subscriber's push queue: ",
        "its subscription ends")
    release(b, s)
    s.conn:send({ error_resp = { code = 0, message = "channel " .. s.channel .. ": message " .. id
        .. " is larger than this connection's push queue (max_queue_bytes): the subscription ends" } }, s.seq)
end

-- Catch-up: XRANGE from the subscription's cursor to the reader's position, then join the
-- reader's delivery there (no yield between the check and the join).
catch_up = function(premature, b, s)
    if premature then
        return release(b, s)
    end
    local cfg, backoff = b.cfg, 0.1
    local key = cfg.prefix .. s.channel
    while s.state == "catching" do
        local ch = b.channels[s.channel]
        if not ch then
            -- Nobody else reads it here: the reader starts at the cursor.
            ch = new_channel(s.channel, s.cursor)
            b.channels[s.channel] = ch
            join(ch, s, nil)
            wake(b)
            return
        end
        if not id_after(ch.pos, s.cursor) then
            join(ch, s, s.cursor ~= ch.pos and s.cursor or nil)
            return
        end
        local target = ch.pos
        local list, err
        local conn
        conn, err = redis.connect(cfg.redis_opts)
        if conn then
            list, err = conn:command(MODE.XRANGE, "XRANGE", key, "(" .. s.cursor, target, "COUNT",
                min(cfg.count, max(1, floor(MAX_REPLY / (cfg.max_data_len + 512)))))
            if list then
                conn:release()
            end
        end
        if not list then
            ngx_log(WARN, "channels: catch-up of ", s.channel, " waits for redis: ", err)
            pause(b, backoff)
            backoff = min(backoff * 2, 2)
        elseif #list == 0 then
            s.cursor = target -- nothing retained between them
        else
            backoff = 0.1
            for _, e in ipairs(list) do
                local msg = channel_message(s.channel, e.id, e.fields.d or "", s.seq)
                while s.state == "catching" do
                    local ok, serr = s.conn:send(msg)
                    if ok then
                        break
                    elseif serr ~= "queue full" or s.conn.io.ended then
                        return release(b, s)
                    elseif C.session_pending(s.conn.sess) == 0 then
                        return too_large(b, s, e.id)
                    end
                    pause(b, 0.05)
                    if worker_exiting() then
                        return release(b, s)
                    end
                end
                if s.state ~= "catching" then
                    return
                end
                s.cursor, s.last = e.id, e.id
            end
        end
        if worker_exiting() then
            return release(b, s)
        end
    end
end

-- The reader: XREAD BLOCK over the worker's channels until none is left.
reader = function(premature, b)
    local cfg = b.cfg
    local conn, backoff, down = nil, 0.1, nil
    while not premature and next(b.channels) ~= nil and not worker_exiting() do
        if not conn then
            local err
            conn, err = redis.connect(cfg.reader_opts)
            local id
            if conn then
                id, err = conn:call("CLIENT", "ID")
                if not id then
                    conn:close()
                    conn = nil
                end
            end
            if conn then
                b.reader_id = id
                if down then
                    ngx_log(WARN, "channels: the reader is back on redis ", cfg.redis, " after: ", down)
                    down = nil
                end
                backoff = 0.1
            else
                b.down = true
                ngx_log(INFO, "channels: the reader's connect failed: ", err)
                if not down then
                    ngx_log(WARN, "channels: the reader lost redis ", cfg.redis, ": ", err, "; retrying")
                end
                down = err
                pause(b, backoff)
                backoff = min(backoff * 2, 2)
            end
        end
        if conn and worker_exiting() then
            -- (The connect yielded: the exit watch may have looked before this XREAD was sent.)
            break
        end
        if conn and next(b.channels) == nil then
            -- (The connect yielded: the last subscriber may have left meanwhile.)
            break
        end
        if conn then
            -- `asked`: the channel states this XREAD reads, from their positions. A channel left
            -- and taken up again meanwhile is a new state at another position: what this read
            -- brings for it is not its next entries, and the next read asks again.
            local keys, ids, asked = {}, {}, {}
            for name, ch in pairs(b.channels) do
                keys[#keys + 1] = cfg.prefix .. name
                ids[#ids + 1] = ch.pos
                asked[name] = ch
            end
            local count = min(cfg.count, max(1, floor(MAX_REPLY / (#keys * (cfg.max_data_len + 512)))))
            local args = { "XREAD", "COUNT", count, "BLOCK", cfg.block, "STREAMS" }
            local n = #args
            for i = 1, #keys do
                args[n + i] = keys[i]
                args[n + #keys + i] = ids[i]
            end
            conn:set_read_timeout(cfg.block + cfg.timeout)
            b.blocked = true
            local list, err = conn:command(MODE.XREAD, unpack(args))
            b.blocked = false
            if list then
                b.down = false
                local plen = #cfg.prefix
                for _, e in ipairs(list) do
                    local name = sub(e.key, plen + 1)
                    local ch = b.channels[name]
                    if ch and ch == asked[name] and id_after(e.id, ch.pos) then
                        fan_out(b, ch, e.id, e.fields.d or "")
                        ch.pos = e.id
                    end
                end
            elseif conn.dead then
                b.down = true
                down = err
                ngx_log(WARN, "channels: the reader lost redis ", cfg.redis, ": ", err, "; reconnecting")
                conn = nil
            elseif sub(err, 1, 14) == "redis: LOADING" then
                -- A restarted Redis still loading its data answers so: it is not back yet.
                if not b.down then
                    ngx_log(WARN, "channels: the reader waits for redis ", cfg.redis, " to load its data")
                end
                b.down = true
                pause(b, backoff)
                backoff = min(backoff * 2, 2)
            else
                -- An error reply (say, a key that is no stream): said, and read again later.
                ngx_log(ERR, "channels: XREAD failed: ", err)
                pause(b, backoff)
                backoff = min(backoff * 2, 2)
            end
        end
    end
    ngx_log(INFO, "channels: the reader of ", cfg.redis, " stops (channels left: ", next(b.channels) ~= nil, ")")
    b.running, b.blocked, b.down = false, false, false
    if conn then
        conn:close()
    end
end

-- The instance's side ---------------------------------------------------------------------------

local done_asking

local function refused(action, channel, err)
    return nil, "channel " .. action .. " refused: " .. (err == nil and "not authorized" or tostring(err))
end

local function authorized(cfg, action, channel, params)
    if not cfg.authorize then
        return true
    end
    local ok, allowed, err = pcall(cfg.authorize, action, channel, params)
    if not ok then
        ngx_log(ERR, "channels: the authorize hook raised an error: ", tostring(allowed))
        return nil, "authorization failed"
    end
    if not allowed then
        return nil, err
    end
    return true
end

-- The end of one subscriber's question to Redis about a channel: those waiting for it go on.
function done_asking(b, channel, sema)
    if sema then
        if b.asking[channel] == sema then
            b.asking[channel] = nil
        end
        local waiting = -sema:count()
        if waiting > 0 then
            sema:post(waiting)
        end
    end
end

local function subscribe(self, cfg, b, params, seq)
    local channel = params.channel
    local ok, err = check_channel(cfg, channel)
    if not ok then
        return nil, err
    end
    local since = params.since
    if since == "" then
        since = nil
    end
    if since then
        since = canonical_id(since)
        if not since then
            return nil, "bad since: a stream id \"<ms>-<seq>\" expected, got \"" .. params.since .. "\""
        end
    end
    local subs = self._channel_subs
    if subs[channel] then
        return nil, "already subscribed to channel " .. channel
    end
    if subs.n >= cfg.max_subscriptions then
        return nil, "too many subscriptions: the limit is " .. cfg.max_subscriptions
    end
    ok, err = authorized(cfg, "subscribe", channel, params)
    if not ok then
        return refused("subscribe", channel, err)
    end
    local ch = b.channels[channel]
    local asking = b.asking[channel]
    if not ch and asking then
        -- Another subscriber of this worker asks Redis about the channel: its answer serves.
        asking:wait(cfg.timeout / 1000 + 1)
        ch = b.channels[channel]
    end
    local start = since
    local mine
    if not ch or b.down then
        -- Redis is asked: for the channel's last id, and whether it answers at all.
        if not ch and not b.asking[channel] then
            mine = semaphore.new()
            b.asking[channel] = mine
        end
        local conn
        conn, err = redis.connect(cfg.redis_opts)
        local list
        if conn then
            list, err = conn:command(MODE.XRANGE, "XREVRANGE", cfg.prefix .. channel, "+", "-", "COUNT", 1)
            if list then
                conn:release()
            end
        end
        if not list then
            done_asking(b, channel, mine)
            return nil, "channel subscribe failed: " .. err
        end
        start = start or (list[1] and list[1].id or "0-0")
    end
    -- What was asked may have yielded: look again, and at the connection.
    if self.io.ended or subs[channel] then
        done_asking(b, channel, mine)
        return nil, self.io.ended and "closed" or "already subscribed to channel " .. channel
    end
    ch = b.channels[channel]
    start = start or ch.pos
    local s = { conn = self, seq = seq, seq64 = to_int64(seq) or 0, channel = channel, state = "new",
                cursor = start, last = start }
    subs[channel] = s
    subs.n = subs.n + 1
    if not ch then
        ch = new_channel(channel, start)
        b.channels[channel] = ch
        join(ch, s, nil)
        wake(b)
    elseif not id_after(ch.pos, start) then
        join(ch, s, start ~= ch.pos and start or nil)
    else
        s.state = "catching"
        ok, err = timer_at(0, catch_up, b, s)
        if not ok then
            release(b, s)
            return nil, "channel subscribe failed: " .. err
        end
    end
    done_asking(b, channel, mine)
    return { subscribe_resp = { channel = channel, last_id = start } }
end

local function unsubscribe(self, b, params)
    local channel = params.channel
    local s = type(channel) == "string" and self._channel_subs[channel]
    if not s then
        return nil, "not subscribed to channel " .. tostring(channel)
    end
    release(b, s)
    return { unsubscribe_resp = { channel = channel } }
end

local function publish(cfg, params)
    if not cfg.publish then
        return nil, "channel publish refused: clients may not publish here"
    end
    local channel, data = params.channel, params.data
    local ok, err = check_message(cfg, channel, data)
    if not ok then
        return nil, err
    end
    ok, err = authorized(cfg, "publish", channel, params)
    if not ok then
        return refused("publish", channel, err)
    end
    local id
    id, err = xadd(cfg, channel, data)
    if not id then
        return nil, "channel publish failed: " .. err
    end
    return { publish_resp = { channel = channel, id = id } }
end

--- Serves cmd_subscribe, cmd_unsubscribe and cmd_publish on a pubsub instance (from
-- `require("apisix_pubsub_rs").new()`), backed by Redis. Its subscriptions end when `wait()`
-- returns.
-- @tparam table opts see docs/channels.md: `redis`, `username`, `password`, `database`,
--   `prefix`, `timeout`, `maxlen`, `max_age`, `publish`, `authorize`, `max_channel_len`,
--   `max_data_len`, `max_subscriptions`, `block`, `count`
-- @return true | nil, err (a bad option)
function _M.attach(instance, opts)
    if type(instance) ~= "table" or not instance.io or not instance.on then
        error("bad instance: a pubsub instance expected", 2)
    end
    local cfg, err = check_options(opts)
    if not cfg then
        return nil, err
    end
    if instance._channel_subs then
        return nil, "channels are attached to this instance already"
    end
    local b = backend_of(cfg)
    instance._channel_subs = { n = 0 }
    instance:on("cmd_subscribe", function(params, seq)
        return subscribe(instance, cfg, b, params, seq)
    end)
    instance:on("cmd_unsubscribe", function(params)
        return unsubscribe(instance, b, params)
    end)
    instance:on("cmd_publish", function(params)
        return publish(cfg, params)
    end)
    -- wait() serves the connection until it ends: then its subscriptions go.
    local wait = instance.wait
    instance.wait = function(self, ...)
        local ok, res = pcall(wait, self, ...)
        for name, s in pairs(self._channel_subs) do
            if name ~= "n" then
                release(b, s)
            end
        end
        if not ok then
            error(res, 0)
        end
        return res
    end
    return true
end

return _M

# Channels over Redis: cmd_subscribe / cmd_unsubscribe / cmd_publish, channels.publish, the
# backlog and its seam, validation, authorization, releases. A real redis-server underneath.
use t::channels::RedisServer;
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => $t::channels::RedisServer::Locations, no_error_log => '[error]', http_config => $t::channels::RedisServer::HttpConfig);

run_tests();

__DATA__

=== TEST 1: subscribe, then messages published over HTTP POST arrive as pushes with the subscribe sequence, after the subscribe_resp
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local ws = t.client()
            local r = assert(t.subscribe(ws, 7, "news.1"))
            ngx.say("subscribed ", r.channel, " ", r.last_id)
            local ids = {}
            for i = 1, 3 do
                local res = ngx.location.capture("/publish?channel=news.1", { method = ngx.HTTP_POST, body = "item " .. i })
                ids[i] = res.body:gsub("\n", "")
            end
            local got, gids = t.read(ws, 3)
            ngx.say(table.concat(got, "\n"))
            ngx.say("ids as published: ", table.concat(gids, " ") == table.concat(ids, " "))
            ngx.say("quiet: ", (t.quiet(ws, 200)))
            t.bye(ws)
        }
    }
--- response_body
subscribed news.1 0-0
7 news.1 item 1
7 news.1 item 2
7 news.1 item 3
ids as published: true
quiet: true



=== TEST 2: clients may publish only with publish = true: publish_resp carries the id the subscriber sees
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local closed = t.client()
            closed:send(closed.req({ sequence = 1, cmd_publish = { channel = "pub.2", data = "x" } }))
            ngx.say(assert(closed:resp()).error_resp.message)
            local sub = t.client()
            assert(t.subscribe(sub, 3, "pub.2"))
            local ws = t.client("publish=1")
            ws:send(ws.req({ sequence = 9, cmd_publish = { channel = "pub.2", data = "\0binary\255" } }))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.publish_resp.channel, " ", r.publish_resp.id:match("^%d+%-%d+$") ~= nil)
            local got, ids = t.read(sub, 1)
            ngx.say(got[1] == "3 pub.2 \0binary\255", " ", ids[1] == r.publish_resp.id)
            t.bye(closed, sub, ws)
        }
    }
--- response_body
channel publish refused: clients may not publish here
9 pub.2 true
true true



=== TEST 3: since: the retained messages after it first, then live ones, none twice; a later subscriber catches up while another one is live
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local ids = {}
            for i = 1, 5 do
                ids[i] = assert(t.pub("seam.3", "m" .. i))
            end
            local a = t.client()
            local r = assert(t.subscribe(a, 1, "seam.3", ids[2]))
            ngx.say("a from ", r.last_id == ids[2])
            ngx.say(table.concat((t.read(a, 3)), ","))
            for i = 6, 8 do
                ids[i] = assert(t.pub("seam.3", "m" .. i))
            end
            ngx.say(table.concat((t.read(a, 3)), ","))
            -- b starts behind the worker's reader: XRANGE up to it, then live.
            local b = t.client()
            assert(t.subscribe(b, 2, "seam.3", ids[4]))
            ids[9] = assert(t.pub("seam.3", "m9"))
            ngx.say(table.concat((t.read(b, 5)), ","))
            ngx.say(table.concat((t.read(a, 1)), ","))
            -- c without since: after the channel's last id, not before.
            local c = t.client()
            r = assert(t.subscribe(c, 3, "seam.3"))
            ngx.say("c from ", r.last_id == ids[9])
            assert(t.pub("seam.3", "m10"))
            for _, ws in ipairs({ a, b, c }) do
                ngx.say(table.concat((t.read(ws, 1)), ","))
            end
            ngx.say("quiet: ", (t.quiet(a, 100)), " ", (t.quiet(b, 100)), " ", (t.quiet(c, 100)))
            t.bye(a, b, c)
        }
    }
--- response_body
a from true
1 seam.3 m3,1 seam.3 m4,1 seam.3 m5
1 seam.3 m6,1 seam.3 m7,1 seam.3 m8
2 seam.3 m5,2 seam.3 m6,2 seam.3 m7,2 seam.3 m8,2 seam.3 m9
1 seam.3 m9
c from true
1 seam.3 m10
2 seam.3 m10
3 seam.3 m10
quiet: true true true



=== TEST 4: a since ahead of the reader skips what it has not reached, and the forms of a stream id
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local a = t.client()
            assert(t.subscribe(a, 1, "ahead.4"))
            local ids = {}
            for i = 1, 4 do
                ids[i] = assert(t.pub("ahead.4", "m" .. i))
            end
            t.read(a, 4)
            local b = t.client()
            local r = assert(t.subscribe(b, 2, "ahead.4", ids[2]))
            ngx.say(table.concat((t.read(b, 2)), ","))
            local ms = ids[4]:match("^(%d+)")
            local c = t.client()
            r = assert(t.subscribe(c, 3, "ahead.4c", "000" .. ms))
            ngx.say("canonical: ", r.last_id == ms .. "-0")
            ngx.say(t.subscribe(c, 4, "ahead.5", "$"))
            ngx.say(t.subscribe(c, 4, "ahead.5", "1-2-3"))
            ngx.say(t.subscribe(c, 4, "ahead.5", "18446744073709551616-0"))
            ngx.say(t.subscribe(c, 4, "ahead.4c"))
            t.bye(a, b, c)
        }
    }
--- response_body
2 ahead.4 m3,2 ahead.4 m4
canonical: true
nilbad since: a stream id "<ms>-<seq>" expected, got "$"
nilbad since: a stream id "<ms>-<seq>" expected, got "1-2-3"
nilbad since: a stream id "<ms>-<seq>" expected, got "18446744073709551616-0"
nilalready subscribed to channel ahead.4c



=== TEST 5: limits on the channel name and the data, control characters, too many subscriptions
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local ws = t.client("publish=1&max_channel_len=8&max_data_len=4&max_subscriptions=2")
            ngx.say(t.subscribe(ws, 1, "123456789"))
            ngx.say(t.subscribe(ws, 1, ""))
            ngx.say(t.subscribe(ws, 1, "a\nb"))
            ws:send(ws.req({ sequence = 2, cmd_publish = { channel = "lim.5", data = "12345" } }))
            ngx.say(assert(ws:resp()).error_resp.message)
            ws:send(ws.req({ sequence = 2, cmd_publish = { channel = "lim.5", data = "1234" } }))
            ngx.say(assert(ws:resp()).publish_resp ~= nil)
            assert(t.subscribe(ws, 3, "lim.5a"))
            assert(t.subscribe(ws, 3, "lim.5b"))
            ngx.say(t.subscribe(ws, 3, "lim.5c"))
            ngx.say(t.pub("lim.5", string.rep("x", 65537)))
            ngx.say(t.pub("lim.5", nil))
            t.bye(ws)
        }
    }
--- response_body
nilbad channel: longer than 8 bytes
nilbad channel: a non-empty string expected
nilbad channel: control characters are not allowed
data too large: 5 bytes, the limit is 4
true
niltoo many subscriptions: the limit is 2
nildata too large: 65537 bytes, the limit is 65536
nilbad data: a string expected, got nil



=== TEST 6: every option is checked at attach, by name
--- config
    location /t {
        content_by_lua_block {
            local channels = require("apisix_pubsub_rs.channels")
            local fake = { io = {}, on = function() end }
            for _, o in ipairs({
                { redis = "nowhere" }, { redis = 6379 }, { redis = "unix:" }, { username = "u" },
                { password = 1 }, { database = -1 }, { prefix = false }, { timeout = 0 },
                { maxlen = 1.5 }, { max_age = "1h" }, { publish = "yes" }, { authorize = true },
                { max_channel_len = 0 }, { max_data_len = 2^40 }, { max_subscriptions = -3 },
                { block = "x" }, { count = 0 }, { reddis = "x" },
            }) do
                ngx.say(select(2, channels.attach(fake, o)))
            end
            ngx.say(select(2, channels.attach(fake, "x")))
            ngx.say(select(2, pcall(channels.attach, {}, {})))
            ngx.say(select(2, channels.publish({ maxlen = 0 }, "c", "d")))
        }
    }
--- response_body
bad option redis: "host:port" or "unix:/path" expected, got "nowhere"
bad option redis: a string expected, got number
bad option redis: no path after unix:
bad option username: a password is needed with it
bad option password: a string expected, got number
bad option database: a non-negative integer expected, got -1
bad option prefix: a string expected, got boolean
bad option timeout: a positive integer expected, got 0
bad option maxlen: a positive integer expected, got 1.5
bad option max_age: a positive integer expected, got 1h
bad option publish: a boolean expected, got string
bad option authorize: a function expected, got boolean
bad option max_channel_len: a positive integer expected, got 0
bad option max_data_len: a positive integer expected, got 1099511627776
bad option max_subscriptions: a positive integer expected, got -3
bad option block: a positive integer expected, got x
bad option count: a positive integer expected, got 0
unknown option reddis
bad options: a table expected, got string
bad instance: a pubsub instance expected
bad option maxlen: a positive integer expected, got 0



=== TEST 7: the authorize hook decides each subscribe and publish: refused means error_resp, no subscription, nothing published
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local ws = t.client("publish=1&auth=1")
            ngx.say(t.subscribe(ws, 1, "secret.7"))
            ws:send(ws.req({ sequence = 2, cmd_publish = { channel = "secret.7", data = "x" } }))
            ngx.say(assert(ws:resp()).error_resp.message)
            ws:send(ws.req({ sequence = 3, cmd_publish = { channel = "open.7", data = "forbidden" } }))
            ngx.say(assert(ws:resp()).error_resp.message)
            local redis = require("apisix_pubsub_rs.redis")
            local r = assert(redis.connect({ redis = require("redis_server").address }))
            ngx.say("published: ", r:call("EXISTS", "t:secret.7"), " ", r:call("EXISTS", "t:open.7"))
            r:release()
            ws:send(ws.req({ sequence = 4, cmd_unsubscribe = { channel = "secret.7" } }))
            ngx.say(assert(ws:resp()).error_resp.message)
            assert(t.subscribe(ws, 5, "open.7"))
            assert(t.pub("secret.7", "from the backend"))
            assert(t.pub("open.7", "fine"))
            ngx.say(table.concat((t.read(ws, 1)), ","))
            t.bye(ws)
        }
    }
--- response_body
nilchannel subscribe refused: secret channels are closed to subscribe
channel publish refused: secret channels are closed to publish
channel publish refused: not authorized
published: 0 0
not subscribed to channel secret.7
5 open.7 fine



=== TEST 8: unsubscribe stops the messages; a disconnect releases; a worker with no subscriber stops reading the channel
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local channels = require("apisix_pubsub_rs.channels")
            local function reading()
                local names = {}
                for _, b in pairs(channels._backends) do
                    for name in pairs(b.channels) do
                        names[#names + 1] = name
                    end
                end
                table.sort(names)
                return table.concat(names, " ")
            end
            local a, b = t.client(), t.client()
            assert(t.subscribe(a, 1, "rel.8"))
            assert(t.subscribe(b, 2, "rel.8"))
            assert(t.subscribe(b, 3, "rel.8b"))
            ngx.say("reading: ", reading())
            a:send(a.req({ sequence = 4, cmd_unsubscribe = { channel = "rel.8" } }))
            local r = assert(a:resp())
            ngx.say(r.sequence, " ", r.unsubscribe_resp.channel)
            assert(t.pub("rel.8", "after"))
            ngx.say(table.concat((t.read(b, 1)), ","), "; a quiet: ", (t.quiet(a, 200)))
            b:send(b.close_frame(1000))
            b:close_code()
            ngx.sleep(0.1)
            ngx.say("reading: [", reading(), "]")
            assert(t.pub("rel.8", "nobody"))
            ngx.sleep(0.1)
            local running
            for _, be in pairs(channels._backends) do
                running = be.running
            end
            ngx.say("reader running: ", running)
            t.bye(a)
        }
    }
--- response_body
reading: rel.8 rel.8b
4 rel.8
2 rel.8 after; a quiet: true
reading: []
reader running: false
--- no_error_log
[error]
--- error_log
channels connection ended: nil



=== TEST 9: a subscription to a channel the reader is not reading starts at once although the reader waits in XREAD BLOCK
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local a = t.client("block=10000")
            assert(t.subscribe(a, 1, "wait.9"))
            ngx.sleep(0.2) -- the reader is blocked on wait.9 alone now
            local worst = 0
            for i = 1, 5 do
                local ch = "new.9." .. i
                assert(t.subscribe(a, 10 + i, ch))
                ngx.update_time()
                local start = ngx.now()
                assert(t.pub(ch, "first"))
                local got = t.read(a, 1)
                ngx.update_time()
                worst = math.max(worst, ngx.now() - start)
                ngx.say(got[1])
            end
            ngx.log(ngx.WARN, "channels: publish to delivery on a new channel, worst of 5: ", worst * 1000, " ms")
            -- Not a speed check: well under the 10 s a reader waiting out its BLOCK would take.
            ngx.say("prompt: ", worst < 2)
            t.bye(a)
        }
    }
--- response_body
11 new.9.1 first
12 new.9.2 first
13 new.9.3 first
14 new.9.4 first
15 new.9.5 first
prompt: true



=== TEST 10: the handler's second argument is the request's sequence, a number or a "#" string beyond 32 bits
--- config
    location /seq {
        content_by_lua_block {
            local c = assert(require("apisix_pubsub_rs").new())
            c:on("cmd_ping", function(params, seq)
                return { pong_resp = { state = type(seq) .. " " .. tostring(seq) } }
            end)
            c:wait()
        }
    }
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/seq")
            for _, s in ipairs({ 5, -1, "#1099511627776" }) do
                ws:send(ws.req({ sequence = s, cmd_ping = { state = "x" } }))
                ngx.say(assert(ws:resp()).pong_resp.state)
            end
            ws:send(ws.close_frame(1000))
            ws:close_code()
        }
    }
--- response_body
number 5
number -1
string #1099511627776



=== TEST 11: retention: maxlen trims the stream (XADD MAXLEN ~), max_age alone trims by id age (MINID ~)
--- timeout: 15
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local redis = require("apisix_pubsub_rs.redis")
            local r = assert(redis.connect({ redis = require("redis_server").address }))
            r:call("DEL", "t:keep.11", "t:age.11")
            for i = 1, 150 do
                assert(t.pub("keep.11", "m" .. i, { maxlen = "10" }))
            end
            local len = r:call("XLEN", "t:keep.11")
            ngx.say("maxlen 10: ", len < 150 and len >= 10)
            for i = 1, 150 do
                assert(t.pub("age.11", "m" .. i, { max_age = "100000" }))
            end
            ngx.say("max_age, young: ", r:call("XLEN", "t:age.11"))
            ngx.sleep(0.05)
            for i = 1, 150 do
                assert(t.pub("age.11", "n" .. i, { max_age = "10" }))
            end
            len = r:call("XLEN", "t:age.11")
            ngx.say("max_age 10 ms: ", len < 300)
            r:release()
        }
    }
--- response_body
maxlen 10: true
max_age, young: 150
max_age 10 ms: true



=== TEST 12: with an APISIX proto loaded at run time the channel commands stay; a file that takes their names or numbers is refused
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local t = require("redis_channels")
            local dir = os.getenv("TMPDIR") or "/tmp"
            local function write(name, text)
                local path = dir .. "/apisix-pubsub-rs-channels-" .. name .. "-" .. ngx.worker.pid() .. ".proto"
                local f = assert(io.open(path, "w"))
                f:write(text)
                f:close()
                return path
            end
            local apisix = [[
syntax = "proto3";
message CmdEcho { string text = 1; }
message EchoResp { string text = 1; }
message PubSubReq { int64 sequence = 1; oneof req { CmdEcho cmd_echo = 35; } }
message PubSubResp { int64 sequence = 1; oneof resp { EchoResp echo_resp = 35; } }
]]
            local path = write("ok", apisix)
            ngx.say("load: ", pubsub.load_proto(path))
            os.remove(path)
            local ws = t.client()
            assert(t.subscribe(ws, 1, "proto.12"))
            assert(t.pub("proto.12", "still here"))
            ngx.say(table.concat((t.read(ws, 1)), ","))
            t.bye(ws)
            for _, bad in ipairs({ { "number", "cmd_echo = 35", "cmd_echo = 1001" }, { "name", "cmd_echo = 35", "cmd_subscribe = 35" } }) do
                path = write(bad[1], (apisix:gsub(bad[2], bad[3])))
                local ok, err = pubsub.load_proto(path)
                os.remove(path)
                ngx.say(bad[1], ": ", ok, " ", (err:gsub("^.*%.proto:", "FILE:")))
            end
        }
    }
--- response_body
load: true
1 proto.12 still here
number: nil FILE:4: number 1001 of PubSubReq is cmd_subscribe in the built-in schema, not cmd_echo
name: nil FILE:4: field cmd_subscribe of PubSubReq is number 1001 with another type in the built-in schema, which this file may not change



=== TEST 13: one channel, subscribers that differ: sequences of one, two and ten bytes, one fragmenting, one compressing; a short message, one of 390 bytes and one of 2,600 bytes that compresses: each gets every message once, in order, with its own sequence
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local cc = require("compression_client")
            local plain = { t.client(), t.client(), t.client("fragment=100") }
            local seqs = { 0, 300, "#1099511627776" }
            for i, ws in ipairs(plain) do
                assert(t.subscribe(ws, seqs[i], "mixed.13"))
            end
            local z, agreed = cc.connect("/channels?compression=1", "permessage-deflate")
            local zc = cc.codec(agreed)
            z:send(z.req({ sequence = 5, cmd_subscribe = { channel = "mixed.13" } }))
            ngx.say("compressing: ", agreed ~= "none", ", ", assert(cc.resp(z, zc)).subscribe_resp.channel)
            local sent = { "short", string.rep("not so short ", 30), string.rep("compressible ", 200) }
            local ids = {}
            for i, data in ipairs(sent) do
                ids[i] = assert(t.pub("mixed.13", data))
            end
            for i, ws in ipairs(plain) do
                local n, ok = 0, true
                for k = 1, #sent do
                    local r = assert(ws:resp())
                    local m = r.channel_message
                    ok = ok and m.id == ids[k] and m.data == sent[k]
                    n = n + 1
                    if k == 1 then
                        ngx.say("subscriber ", i, ": sequence ", r.sequence)
                    end
                end
                ngx.say("  ", n, " messages, ids and data as published: ", ok, ", quiet after: ", (t.quiet(ws, 100)))
            end
            local ok, compressed = true, 0
            for k = 1, #sent do
                local r, was = assert(cc.resp(z, zc))
                ok = ok and r.sequence == 5 and r.channel_message.id == ids[k] and r.channel_message.data == sent[k]
                compressed = compressed + (was and 1 or 0)
            end
            ngx.say("compressing subscriber: ", ok, ", ", compressed, " of 3 compressed")
            t.bye(plain[1], plain[2], plain[3], z)
        }
    }
--- response_body
compressing: true, mixed.13
subscriber 1: sequence 0
  3 messages, ids and data as published: true, quiet after: true
subscriber 2: sequence 300
  3 messages, ids and data as published: true, quiet after: true
subscriber 3: sequence #1099511627776
  3 messages, ids and data as published: true, quiet after: true
compressing subscriber: true, 2 of 3 compressed

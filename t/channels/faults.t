# Channels when Redis fails: down at subscribe and publish (error_resp, the connection stays),
# killed and restarted while subscribers wait or while messages flow (every acknowledged message
# reaches each subscriber once, in order), and a slow subscriber (it delays nobody, loses nothing).
use t::channels::RedisServer;
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => $t::channels::RedisServer::Locations, no_error_log => '[error]', http_config => $t::channels::RedisServer::HttpConfig);

run_tests();

__DATA__

=== TEST 1: Redis down: subscribe and publish get error_resp and the connection stays; channels.publish says why; back up, both work
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local server = require("redis_server")
            local ws = t.client("publish=1")
            server.kill()
            ngx.say(t.subscribe(ws, 1, "down.1"))
            ws:send(ws.req({ sequence = 2, cmd_publish = { channel = "down.1", data = "x" } }))
            ngx.say(assert(ws:resp()).error_resp.message)
            ngx.say(t.pub("down.1", "x"))
            ws:send(ws.req({ sequence = 3, cmd_ping = { state = "still here" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            server.start()
            ngx.say(t.subscribe(ws, 4, "down.1").channel)
            ws:send(ws.req({ sequence = 5, cmd_publish = { channel = "down.1", data = "back" } }))
            -- The reader may push the message before the publish_resp goes.
            local replies = {}
            for i = 1, 2 do
                local r = assert(ws:resp())
                replies[i] = r.publish_resp and ("published " .. r.publish_resp.channel)
                    or (r.sequence .. " " .. r.channel_message.channel .. " " .. r.channel_message.data)
            end
            table.sort(replies)
            ngx.say(table.concat(replies, "\n"))
            t.bye(ws)
        }
    }
--- response_body_like
^nilchannel subscribe failed: redis connect to 127.0.0.1:\d+: connection refused
channel publish failed: redis connect to 127.0.0.1:\d+: connection refused
nilredis connect to 127.0.0.1:\d+: connection refused
still here
down.1
4 down.1 back
published down.1



=== TEST 2: Redis killed and restarted while subscribers wait: the reader reconnects and resumes from the last id it delivered; every acknowledged message arrives once, in order
--- timeout: 20
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local server = require("redis_server")
            local a, b = t.client(), t.client()
            assert(t.subscribe(a, 1, "restart.2"))
            assert(t.subscribe(b, 2, "restart.2"))
            local acked = {}
            for i = 1, 5 do
                acked[#acked + 1] = assert(t.pub("restart.2", "before " .. i))
            end
            -- a reads what came; b reads nothing until after the restart.
            local _, ids = t.read(a, 5)
            ngx.say("a before: ", table.concat(ids, " ") == table.concat(acked, " "))
            server.kill()
            local refused = 0
            for i = 1, 3 do
                if not t.pub("restart.2", "during " .. i) then
                    refused = refused + 1
                end
            end
            ngx.say("refused while down: ", refused)
            ngx.sleep(0.3)
            server.start()
            for i = 1, 5 do
                acked[#acked + 1] = assert(t.pub("restart.2", "after " .. i))
            end
            local got
            _, ids = t.read(a, 5)
            ngx.say("a after: ", table.concat(ids, " ") == table.concat(acked, " ", 6, 10))
            got, ids = t.read(b, 10)
            ngx.say("b all: ", table.concat(ids, " ") == table.concat(acked, " "), " ", got[1], " .. ", got[10])
            ngx.say("quiet: ", (t.quiet(a, 200)), " ", (t.quiet(b, 50)))
            t.bye(a, b)
        }
    }
--- response_body
a before: true
refused while down: 3
a after: true
b all: true 2 restart.2 before 1 .. 2 restart.2 after 5
quiet: true true
--- error_log
channels: the reader lost redis
channels: the reader is back on redis



=== TEST 3: Redis killed twice mid-stream while a publisher runs: the subscribers get every acknowledged id, each once, in increasing order
--- timeout: 20
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local server = require("redis_server")
            local channels = require("apisix_pubsub_rs.channels")
            local subs = { t.client(), t.client(), t.client() }
            for i, ws in ipairs(subs) do
                assert(t.subscribe(ws, i, "stream.3"))
            end
            local acked, done = {}, false
            local publisher = ngx.thread.spawn(function()
                local i = 0
                while #acked < 200 do
                    i = i + 1
                    local id = t.pub("stream.3", "n" .. i)
                    if id then
                        acked[#acked + 1] = id
                    else
                        ngx.sleep(0.01)
                    end
                end
                done = true
            end)
            local readers = {}
            for i, ws in ipairs(subs) do
                readers[i] = ngx.thread.spawn(function()
                    local seen, bad, last, waited = {}, 0, nil, 0
                    ws.sock:settimeout(500)
                    while not (done and seen[acked[#acked]]) and waited < 20 do
                        local r, err = ws:resp()
                        if r then
                            local id = r.channel_message.id
                            if seen[id] or (last and not channels.id_after(id, last)) then
                                bad = bad + 1
                            end
                            seen[id], last = true, id
                        elseif err == "timeout" then
                            waited = waited + 1
                        else
                            ngx.log(ngx.WARN, "subscriber ", i, " stopped reading: ", err)
                            break
                        end
                    end
                    return seen, bad
                end)
            end
            for _ = 1, 2 do
                ngx.sleep(0.2)
                server.kill()
                ngx.sleep(0.2)
                server.start()
            end
            ngx.thread.wait(publisher)
            ngx.say("acked: ", #acked)
            for i = 1, #subs do
                local _, seen, bad = ngx.thread.wait(readers[i])
                local missing = 0
                for _, id in ipairs(acked) do
                    if not seen[id] then missing = missing + 1 end
                end
                ngx.say("subscriber ", i, ": missing ", missing, ", out of order or twice ", bad)
                if missing > 0 then
                    for k, id in ipairs(acked) do
                        if not seen[id] then
                            ngx.log(ngx.WARN, "subscriber ", i, " missed #", k, " ", id, " of ", #acked)
                            break
                        end
                    end
                end
            end
            t.bye(unpack(subs))
        }
    }
--- no_error_log
lua entry thread aborted
--- response_body
acked: 200
subscriber 1: missing 0, out of order or twice 0
subscriber 2: missing 0, out of order or twice 0
subscriber 3: missing 0, out of order or twice 0



=== TEST 4: a subscriber that does not read meets its queue limit and catches up later from what it got; the others get everything at once
--- timeout: 60
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local slow = t.client("max_queue_bytes=2048")
            local fast = t.client()
            assert(t.subscribe(slow, 1, "slow.4"))
            assert(t.subscribe(fast, 2, "slow.4"))
            local refused = t.refused_full()
            -- More than the sockets hold (about 4 MB on loopback), in short messages, which the
            -- fan-out pushes itself, many per XREAD.
            local n = 20000
            local acked = t.pub_many("slow.4", n, 200)
            -- The fast one gets everything while the slow one has read nothing: it waits for nobody.
            local _, ids = t.read(fast, n)
            ngx.say("fast got all: ", table.concat(ids, " ") == table.concat(acked, " "))
            ngx.say("the slow one's queue refused pushes: ", t.refused_full() > refused)
            -- The slow one reads now: everything, once, in order.
            _, ids = t.read(slow, n)
            ngx.say("slow got all: ", table.concat(ids, " ") == table.concat(acked, " "))
            ngx.say("quiet: ", (t.quiet(slow, 200)))
            t.bye(slow, fast)
        }
    }
--- response_body
fast got all: true
the slow one's queue refused pushes: true
slow got all: true
quiet: true



=== TEST 5: a lone subscriber that does not read: its channel is left while it catches up and taken up again at its position, nothing skipped (long messages, which Lua sends, then short ones)
--- timeout: 20
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local slow = t.client("max_queue_bytes=65536")
            assert(t.subscribe(slow, 1, "alone.5"))
            local refused = t.refused_full()
            local acked = {}
            for i = 1, 200 do
                -- Enough to fill the sockets' buffers (about 4 MB on loopback).
                acked[i] = assert(t.pub("alone.5", i <= 150 and string.rep("y", 32768) or "short " .. i))
                if i % 50 == 0 then
                    ngx.sleep(0.1) -- catch-ups start, the reader waits again
                end
            end
            ngx.say("refused pushes: ", t.refused_full() > refused)
            local _, ids = t.read(slow, 200)
            ngx.say("got all: ", table.concat(ids, " ") == table.concat(acked, " "))
            ngx.say("quiet: ", (t.quiet(slow, 200)))
            t.bye(slow)
        }
    }
--- response_body
refused pushes: true
got all: true
quiet: true



=== TEST 6: a message larger than a subscriber's whole push queue ends that subscription with an error_resp of its sequence; the connection stays, the other subscriber gets everything
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local small = t.client("max_queue_bytes=1024")
            local other = t.client()
            assert(t.subscribe(small, 4, "big.6"))
            assert(t.subscribe(other, 5, "big.6"))
            local ids = { assert(t.pub("big.6", "before")), assert(t.pub("big.6", string.rep("b", 2000))),
                          assert(t.pub("big.6", "after")) }
            local got = t.read(small, 1)
            ngx.say(got[1])
            local r = assert(small:resp())
            local m = r.error_resp.message
            local at = assert(m:find(ids[2], 1, true))
            ngx.say(r.sequence, " ", m:sub(1, at - 1), "ID", m:sub(at + #ids[2]))
            ngx.say("quiet: ", (t.quiet(small, 200)))
            ngx.say("subscribe again: ", assert(t.subscribe(small, 6, "big.6", ids[2])).channel)
            ngx.say(table.concat((t.read(small, 1)), ","))
            local _, oids = t.read(other, 3)
            ngx.say("the other got all: ", table.concat(oids, " ") == table.concat(ids, " "))
            t.bye(small, other)
        }
    }
--- response_body
4 big.6 before
4 channel big.6: message ID is larger than this connection's push queue (max_queue_bytes): the subscription ends
quiet: true
subscribe again: big.6
6 big.6 after
the other got all: true

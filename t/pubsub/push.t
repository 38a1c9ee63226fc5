# Server push: instance:send and pubsub.message, from every context, in order, bounded.
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => $t::Pubsub::PushLocation, no_error_log => '[error]');

run_tests();

__DATA__

=== TEST 1: a push from a light thread reaches an idle client at once, with its sequence
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/push?producer=idle")
            local start = ngx.now()
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ngx.say("before any request: ", ngx.now() - start < 1)
            ws:send(ws.req({ sequence = 3, cmd_ping = { state = "p" } }))
            r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
7 push 1
before any request: true
3 p
close 1000
--- error_log
wait returned: nil
send after the end: nil closed



=== TEST 2: a push from a handler goes out before the handler's reply; pipelined, byte for byte
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local server = require("push_server")
            local codec = require("apisix_pubsub_rs")
            local ws = rawws.connect("/push")
            local batch = {}
            for i = 1, 6 do
                local topic = i == 3 and "push_then_reply" or (i == 5 and "sleep" or "plain")
                batch[i] = ws.req({ sequence = i, cmd_kafka_fetch = { topic = topic, partition = i } })
            end
            ws:send(table.concat(batch))
            local want = {}
            for i = 1, 6 do
                if i == 3 then
                    want[#want + 1] = codec.encode_resp(-3, server.push_reply(3))
                end
                want[#want + 1] = codec.encode_resp(i, { pong_resp = { state = "reply " .. i } })
            end
            local same = 0
            for i = 1, #want do
                local op, payload = ws:recv()
                if op == 2 and payload == want[i] then
                    same = same + 1
                else
                    ngx.say("frame ", i, " differs: ", op, " ", payload)
                end
            end
            ngx.say("identical frames, in order: ", same, " of ", #want)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
identical frames, in order: 7 of 7
close 1000



=== TEST 3: a push from another request and from a timer into a connection of the same worker
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local ws = require("rawws").connect("/push?name=other")
            -- The connection is registered once its handler runs: a round trip makes sure.
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "ready" } }))
            assert(ws:resp())
            local c = server.connections.other
            ngx.say("from this request: ", tostring(c:send(server.push_reply(1), 11)))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            assert(ngx.timer.at(0, function()
                server.results.timer = { c:send(server.push_reply(2), 12) }
            end))
            r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state, ", timer's send returned ", tostring(server.results.timer[1]))
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
            ngx.sleep(0.05)
            ngx.say("after the end: ", table.concat({ tostring(c:send(server.push_reply(3))) }, " "),
                " ", select(2, c:send(server.push_reply(3))))
        }
    }
--- response_body
from this request: true
11 push 1
12 push 2, timer's send returned true
close 1000
after the end: nil closed



=== TEST 4: pushes queued before wait() go out when it starts
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/push?producer=before_wait")
            for _ = 1, 2 do
                local r = assert(ws:resp())
                ngx.say(r.sequence, " ", r.pong_resp.state)
            end
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
1 push 1
2 push 2
close 1000



=== TEST 5: a steady pusher beside pipelined requests and yielding handlers: each stream in order, byte for byte
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local server = require("push_server")
            local codec = require("apisix_pubsub_rs")
            local ws = rawws.connect("/push?producer=steady&n=40")
            local want_push, want_reply = {}, {}
            for i = 1, 40 do
                want_push[i] = codec.encode_resp(-i, server.push_reply(i))
            end
            for round = 0, 3 do
                local batch = {}
                for j = 1, 5 do
                    local i = round * 5 + j
                    local topic = j % 2 == 0 and "sleep" or "plain"
                    batch[j] = ws.req({ sequence = i, cmd_kafka_fetch = { topic = topic, partition = i } })
                    want_reply[i] = codec.encode_resp(i, { pong_resp = { state = "reply " .. i } })
                end
                ws:send(table.concat(batch))
                ngx.sleep(0.005)
            end
            local np, nr, bad = 0, 0, 0
            while np < 40 or nr < 20 do
                local op, payload = ws:recv()
                if op ~= 2 then
                    ngx.say("unexpected ", tostring(op), " ", tostring(payload))
                    break
                end
                if payload == want_push[np + 1] then
                    np = np + 1
                elseif payload == want_reply[nr + 1] then
                    nr = nr + 1
                else
                    bad = bad + 1
                    ngx.say("out of order or changed after ", np, " pushes and ", nr, " replies")
                    break
                end
            end
            ngx.say("pushes in order: ", np, ", replies in order: ", nr, ", others: ", bad)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
pushes in order: 40, replies in order: 20, others: 0
close 1000



=== TEST 6: queue full, on_full = "error": the pushes that fit are queued, the rest refused, the connection goes on
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local codec = require("apisix_pubsub_rs")
            local ws = require("rawws").connect("/push?max_queue_bytes=1000&direct_writes=false")
            -- Each push: a 2-byte frame header and its PubSubResp.
            local size = 2 + #codec.encode_resp(1, server.push_reply(1, 100))
            ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "burst", partition = 20, offset = 100 } }))
            local got = 0
            while true do
                local r = assert(ws:resp())
                if r.sequence == 1 and r.pong_resp.state:find("^accepted") then
                    ngx.say(r.pong_resp.state)
                    break
                end
                got = got + 1
            end
            ngx.say("received ", got, ", as many as fit: ", got == math.floor(1000 / size))
            ws:send(ws.req({ sequence = 2, cmd_ping = { state = "still here" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
accepted 9 refused 11 queue full
received 9, as many as fit: true
still here
close 1000
--- no_error_log
[error]
[warn]



=== TEST 7: queue full, on_full = "close": close 1008 "queue full" after the pushes that fit; wait() says why
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/push?max_queue_bytes=1000&on_full=close&direct_writes=false")
            ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "burst", partition = 20, offset = 100 } }))
            local pushes = 0
            while true do
                local op, payload = ws:recv()
                if op == 8 then
                    ngx.say("close ", string.byte(payload, 1) * 256 + string.byte(payload, 2), " ", payload:sub(3))
                    break
                end
                pushes = pushes + 1
            end
            ngx.say("pushes before the close: ", pushes)
            ws:send(ws.close_frame(1000))
            ngx.sleep(0.05)
        }
    }
--- response_body
close 1008 queue full
pushes before the close: 9
--- error_log
pubsub connection closed: its push queue is full
wait returned: queue full
--- no_error_log
[error]



=== TEST 8: misuse raises as on() does; a reply that does not encode is refused and queues nothing
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local ws = require("rawws").connect("/push?name=misuse")
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "ready" } }))
            assert(ws:resp())
            local c = server.connections.misuse
            ngx.say(select(2, pcall(c.send, c, "a string")))
            ngx.say(select(2, pcall(c.send, c, { pong_resp = {} }, 1.5)))
            ngx.say(select(2, pcall(c.send, {}, { pong_resp = {} })))
            ngx.say(select(2, pcall(pubsub.message, 42)))
            ngx.say(c:send({ pong_resp = { state = {} } }))
            ngx.say(c:send({ nothing = true }))
            ngx.say(c:send({ pong_resp = { state = "ok" } }, "#-5"))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state, " (only the valid push came)")
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body_like
^[^\n]*bad reply: a table or a message expected, got string
[^\n]*bad sequence: an integer, a decimal or "#" string or int64 cdata expected, got number
[^\n]*bad self: call it as pubsub:send\(reply \[, sequence\]\)
[^\n]*bad reply: a table expected, got number
nilfailed to encode the push: field 'state' of PongResp expects a string, got table
nilfailed to encode the push: the reply has none of the keys error_resp, pong_resp, kafka_fetch_resp, kafka_list_offset_resp, subscribe_resp, unsubscribe_resp, publish_resp, channel_message
true
-5 ok \(only the valid push came\)
close 1000



=== TEST 9: a 1 MiB push, in one frame and in fragments of 64 KiB
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local codec = require("apisix_pubsub_rs")
            local want = codec.encode_resp(1, server.push_reply(1, 1048576))
            for _, frag in ipairs({ "", "&fragment_size=65536" }) do
                local ws = require("rawws").connect("/push?producer=large&size=1048576&max_queue_bytes=2000000" .. frag, nil, { timeout = 10000 })
                local frames = 0
                local op, payload, fin = ws:recv_frame()
                local parts = { payload }
                frames = 1
                while not fin do
                    op, payload, fin = ws:recv_frame()
                    parts[#parts + 1] = payload
                    frames = frames + 1
                end
                ngx.say("frames ", frames, ", same bytes: ", table.concat(parts) == want)
                ws:send(ws.close_frame(1000))
                ngx.say("close ", ws:close_code())
            end
        }
    }
--- response_body
frames 1, same bytes: true
close 1000
frames 17, same bytes: true
close 1000



=== TEST 10: a producer that raises does not end the connection
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/push?producer=raise")
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ws:send(ws.req({ sequence = 2, cmd_ping = { state = "alive" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
0 push 1
alive
close 1000
--- error_log
producer raised on purpose



=== TEST 11: one message encoded once, sent to several connections, byte for byte; refusals as for tables
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local rawws = require("rawws")
            local clients = {}
            for i = 1, 3 do
                clients[i] = rawws.connect("/push?name=fan" .. i .. (i == 3 and "&fragment_size=100" or ""))
                clients[i]:send(clients[i].req({ sequence = 1, cmd_ping = { state = "ready" } }))
                assert(clients[i]:resp())
            end
            local msg = assert(pubsub.message(server.push_reply(1, 5000), 9))
            local want = pubsub.encode_resp(9, server.push_reply(1, 5000))
            for i = 1, 3 do
                assert(server.connections["fan" .. i]:send(msg))
            end
            for i = 1, 3 do
                local op, payload = clients[i]:recv()
                ngx.say("client ", i, ": ", op, " ", payload == want)
            end
            ngx.say(select(2, pcall(server.connections.fan1.send, server.connections.fan1, msg, 5)))
            ngx.say(pubsub.message({ pong_resp = { state = 1 } }))
            for i = 1, 3 do
                clients[i]:send(clients[i].close_frame(1000))
                clients[i]:close_code()
            end
        }
    }
--- response_body_like
^client 1: 2 true
client 2: 2 true
client 3: 2 true
[^\n]*bad sequence: a message carries its own
nilfailed to encode the message: field 'state' of PongResp expects a string, got number



=== TEST 12: a peer that goes away with pushes queued: they are dropped, and counted at info level
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/push?producer=large&size=4000000&max_queue_bytes=5000000")
            ngx.say("first bytes: ", #assert(ws.sock:receive(2)))
            ws:close()
            ngx.sleep(0.5)
        }
    }
--- response_body
first bytes: 2
--- error_log eval
qr/pubsub connection ended with 1 pushes not sent/
--- no_error_log
[crit]

# Metrics: each counter family moves exactly as the events it counts (pubsub.metrics(), one
# worker), and the exposition says the same (pubsub.prometheus()).
use t::Pubsub 'no_plan';

our $Probe = <<'_EOC_';
    location /ps {
        content_by_lua_block {
            require("metrics_probe").serve()
        }
    }
_EOC_

t::Pubsub::server_suite(location => $Probe, no_error_log => '[alert]', http_config => <<'_EOC_');
    lua_socket_log_errors off;
_EOC_

run_tests();

__DATA__

=== TEST 1: commands by name, replies, messages by type, pongs, bytes in and out, connections
--- config
    location /t {
        content_by_lua_block {
            local probe = require("metrics_probe")
            local rawws = require("rawws")
            local before = probe.read()
            local ws = assert(rawws.connect("/ps"))
            local frames = {
                ws.req({ sequence = 1, cmd_ping = { state = "a" } }),
                ws.req({ sequence = 2, cmd_ping = { state = "bb" } }),
                ws.req({ sequence = 3, cmd_kafka_fetch = { topic = "t" } }),
                ws.req({ sequence = 4, cmd_kafka_list_offset = { topic = "t" } }),
                rawws.frame(2, "\8"),
                rawws.frame(1, "hello"),
                rawws.frame(9, "p"),
                rawws.frame(10, "unsolicited"),
            }
            local sent = 0
            for _, f in ipairs(frames) do
                ws:send(f)
                sent = sent + #f
            end
            local got = 0
            for _ = 1, 6 do
                local op, payload = ws:recv()
                got = got + 2 + #payload
            end
            ngx.say("open during: ", require("apisix_pubsub_rs").metrics().connections_open - (before.connections_open or 0))
            local close = rawws.close_frame(1000)
            ws:send(close)
            sent = sent + #close
            ngx.say("close ", ws:close_code())
            got = got + 4
            probe.settle()
            local after = probe.read()
            ngx.say("bytes in as sent: ", after.received_bytes - before.received_bytes == sent)
            ngx.say("bytes out as received: ", after.sent_bytes - before.sent_bytes == got)
            ngx.say(probe.changes(before, "bytes$"))
        }
    }
--- response_body
open during: 1
close 1000
bytes in as sent: true
bytes out as received: true
commands.cmd_kafka_fetch +1
commands.cmd_kafka_list_offset +1
commands.cmd_ping +2
connections_accepted +1
connections_ended.peer_close +1
error_replies.undecodable +1
error_replies.unknown_command +1
frames_received +9
frames_sent +7
handler.cmd_kafka_fetch.count +1
handler.cmd_kafka_list_offset.count +1
messages_received.binary +5
messages_received.close +1
messages_received.ping +1
messages_received.pong +1
messages_received.text +1
peer_close_codes.1000 +1
pongs_sent +1
replies +5



=== TEST 2: frames: each fragment of a message received and sent, control frames between them
--- config
    location /t {
        content_by_lua_block {
            local probe = require("metrics_probe")
            local rawws = require("rawws")
            local before = probe.read()
            local ws = assert(rawws.connect("/ps?fragment_size=100"))
            -- A ping of 300 bytes' state in three fragments, a ping frame between the first two.
            local req = require("protobuf").encode("PubSubReq", { sequence = 1, cmd_ping = { state = string.rep("s", 300) } })
            ws:send(rawws.frame(2, req:sub(1, 100), { fin = false }))
            ws:send(rawws.frame(9, "c"))
            ws:send(rawws.frame(0, req:sub(101, 200), { fin = false }))
            ws:send(rawws.frame(0, req:sub(201)))
            local op = ws:recv()
            ngx.say("control answered: ", op)
            local r = assert(ws:resp())
            ngx.say("pong of ", #r.pong_resp.state)
            ws:send(rawws.close_frame(1000))
            ws:close_code()
            probe.settle()
            ngx.say(probe.changes(before, "bytes$"))
        }
    }
--- response_body
control answered: 10
pong of 300
commands.cmd_ping +1
connections_accepted +1
connections_ended.peer_close +1
frames_received +5
frames_sent +6
messages_received.binary +1
messages_received.close +1
messages_received.ping +1
peer_close_codes.1000 +1
pongs_sent +1
replies +1



=== TEST 3: error replies by kind
--- config
    location /t {
        content_by_lua_block {
            local probe = require("metrics_probe")
            local rawws = require("rawws")
            local before = probe.read()
            local ws = assert(rawws.connect("/ps"))
            for i, topic in ipairs({ "err", "raise", "bad", "err", "fine" }) do
                ws:send(ws.req({ sequence = i, cmd_kafka_fetch = { topic = topic } }))
                local r = assert(ws:resp())
                ngx.say(i, " ", r.error_resp and "error" or "ok")
            end
            ws:send(ws.req({ sequence = 9, cmd_kafka_list_offset = { topic = "t" } }))
            assert(ws:resp())
            ws:send(rawws.close_frame(1001))
            ws:close_code()
            probe.settle()
            ngx.say(probe.changes(before))
        }
    }
--- response_body
1 error
2 error
3 error
4 error
5 ok
commands.cmd_kafka_fetch +5
commands.cmd_kafka_list_offset +1
connections_accepted +1
connections_ended.peer_close +1
error_replies.encode_failure +1
error_replies.handler_error +2
error_replies.handler_raised +1
error_replies.unknown_command +1
frames_received +7
frames_sent +7
handler.cmd_kafka_fetch.count +5
handler.cmd_kafka_list_offset.count +1
messages_received.binary +6
messages_received.close +1
peer_close_codes.1001 +1
received_bytes +105
replies +6
sent_bytes +143
--- error_log
kaboom



=== TEST 4: ends by reason: protocol error (by kind), timeout in a frame, receive error, peer close codes
--- config
    location /t {
        content_by_lua_block {
            local probe = require("metrics_probe")
            local rawws = require("rawws")
            local before = probe.read()
            local ws = assert(rawws.connect("/ps"))
            ws:send(rawws.frame(2, "x", { unmasked = true }))
            ngx.say("unmasked: close ", ws:close_code())
            ws = assert(rawws.connect("/ps?timeout=100"))
            ws:send(rawws.frame(2, string.rep("x", 100)):sub(1, 20))
            ngx.say("stalled: close ", (ws:close_code()))
            ws = assert(rawws.connect("/ps"))
            ws:send(ws.req({ sequence = 1, cmd_ping = {} }))
            assert(ws:resp())
            ws.sock:close()
            ws = assert(rawws.connect("/ps"))
            ws:send(rawws.close_frame(4321))
            ngx.say("4321: close ", ws:close_code())
            ngx.say("settled: ", probe.settle())
            ngx.say(probe.changes(before, "bytes$"))
        }
    }
--- response_body
unmasked: close 1002
stalled: close 1008
4321: close 4321
settled: true
commands.cmd_ping +1
connections_accepted +4
connections_ended.peer_close +1
connections_ended.protocol_error +1
connections_ended.receive_error +1
connections_ended.timeout +1
frames_received +2
frames_sent +4
messages_received.binary +1
messages_received.close +1
peer_close_codes.other +1
protocol_errors.unmasked +1
replies +1
--- no_error_log
[alert]



=== TEST 5: pushes sent, refused for a full queue and after the end; a close for a full queue
--- config
    location /t {
        content_by_lua_block {
            local probe = require("metrics_probe")
            local rawws = require("rawws")
            local before = probe.read()
            -- 10 pushes of 110 bytes of state (123 on the wire, with the frame header) into a queue of
            -- 400 bytes: 3 fit, 7 are refused.
            local ws = assert(rawws.connect("/ps?push=10&size=110&max_queue_bytes=400"))
            for i = 1, 3 do
                assert(ws:resp())
            end
            ws:send(rawws.close_frame(1000))
            ngx.say("close ", ws:close_code())
            probe.settle()
            ngx.say(probe.changes(before, "bytes$"))
            before = probe.read()
            ws = assert(rawws.connect("/ps?push=10&size=110&max_queue_bytes=400&on_full=close"))
            for i = 1, 3 do
                assert(ws:resp())
            end
            ngx.say("on_full=close: close ", (ws:close_code()))
            probe.settle()
            ngx.say(probe.changes(before, "bytes$"))
        }
    }
--- response_body
close 1000
connections_accepted +1
connections_ended.peer_close +1
frames_received +1
frames_sent +4
messages_received.close +1
peer_close_codes.1000 +1
pushes_refused.closed +1
pushes_refused.queue_full +7
pushes_sent +3
on_full=close: close 1008
connections_accepted +1
connections_ended.queue_full +1
frames_sent +4
pushes_refused.closed +7
pushes_refused.queue_full +1
pushes_sent +3
--- error_log
its push queue is full



=== TEST 6: handler time: a histogram per command, on a monotonic clock, in seconds, from the command handed out to its reply queued
--- config
    location /t {
        content_by_lua_block {
            local probe = require("metrics_probe")
            local rawws = require("rawws")
            local ws = assert(rawws.connect("/ps"))
            ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "sleep" } }))
            ws:send(ws.req({ sequence = 2, cmd_kafka_fetch = { topic = "quick" } }))
            ws:send(ws.req({ sequence = 3, cmd_ping = {} }))
            for _ = 1, 3 do assert(ws:resp()) end
            ws:send(rawws.close_frame(1000))
            ws:close_code()
            probe.settle()
            local text = require("apisix_pubsub_rs").prometheus()
            local function v(series)
                local pat = "\n" .. series:gsub("[%.%+%-%[%]%(%)]", "%%%0") .. " (%S+)"
                return tonumber(text:match(pat))
            end
            local H = 'apisix_pubsub_handler_seconds'
            ngx.say("fetch count ", v(H .. '_count{command="cmd_kafka_fetch"}'))
            ngx.say("fetch at most 10 ms ", v(H .. '_bucket{command="cmd_kafka_fetch",le="0.01"}'))
            ngx.say("fetch at most 25 ms ", v(H .. '_bucket{command="cmd_kafka_fetch",le="0.025"}'))
            ngx.say("fetch all ", v(H .. '_bucket{command="cmd_kafka_fetch",le="+Inf"}'))
            local sum = v(H .. '_sum{command="cmd_kafka_fetch"}')
            ngx.say("sum at least the sleep: ", sum >= 0.03, ", under a second: ", sum < 1)
            ngx.say("pings answered in Rust time no handler: ", v(H .. '_count{command="cmd_ping"}'))
            local m = require("apisix_pubsub_rs").metrics()
            ngx.say("table: ", m.handler.cmd_kafka_fetch.count, " ", m.handler.cmd_kafka_fetch.sum_us >= 30000)
        }
    }
--- response_body
fetch count 2
fetch at most 10 ms 1
fetch at most 25 ms 1
fetch all 2
sum at least the sleep: true, under a second: true
pings answered in Rust time no handler: 0
table: 2 true



=== TEST 7: the exposition: HELP and TYPE for every family, labels, names of this build's schema
--- config
    location /t {
        content_by_lua_block {
            local text = assert(require("apisix_pubsub_rs").prometheus())
            local families, samples = {}, 0
            for line in text:gmatch("[^\n]+") do
                local name, kind = line:match("^# TYPE (%S+) (%S+)$")
                if name then
                    families[#families + 1] = name .. " " .. kind
                elseif not line:find("^#") then
                    assert(line:find("^apisix_pubsub_[a-z_]+{?[^ ]* %d"), line)
                    samples = samples + 1
                end
            end
            ngx.say(table.concat(families, "\n"))
            ngx.say("helps: ", select(2, text:gsub("\n# HELP ", "")) + (text:find("^# HELP ") and 1 or 0))
            ngx.say("samples: ", samples > 100)
            ngx.say(text:match('apisix_pubsub_commands_total{command="cmd_kafka_list_offset"} %d+'))
        }
    }
--- response_body
apisix_pubsub_workers_reporting gauge
apisix_pubsub_connections_accepted_total counter
apisix_pubsub_connections_open gauge
apisix_pubsub_connections_ended_total counter
apisix_pubsub_peer_close_codes_total counter
apisix_pubsub_protocol_errors_total counter
apisix_pubsub_commands_total counter
apisix_pubsub_replies_total counter
apisix_pubsub_error_replies_total counter
apisix_pubsub_pushes_sent_total counter
apisix_pubsub_pushes_refused_total counter
apisix_pubsub_messages_received_total counter
apisix_pubsub_pongs_sent_total counter
apisix_pubsub_frames_received_total counter
apisix_pubsub_frames_sent_total counter
apisix_pubsub_direct_writes_total counter
apisix_pubsub_received_bytes_total counter
apisix_pubsub_sent_bytes_total counter
apisix_pubsub_queue_high_water_bytes gauge
apisix_pubsub_handler_seconds histogram
helps: 20
samples: true
apisix_pubsub_commands_total{command="cmd_kafka_list_offset"} 0



=== TEST 8: a counter wraps to 0 past 2^64 - 1 (Prometheus reads it as a reset)
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local native = require("apisix_pubsub_rs.ffi")
            native.C.metrics_set(native.metrics_slot.REPLIES, 0xffffffffffffffffULL)
            ngx.say(pubsub.prometheus():match("\n(apisix_pubsub_replies_total %d+)"))
            local rawws = require("rawws")
            local ws = assert(rawws.connect("/ps"))
            ws:send(ws.req({ sequence = 1, cmd_ping = {} }))
            assert(ws:resp())
            ngx.say(pubsub.prometheus():match("\n(apisix_pubsub_replies_total %d+)"))
            ngx.say("table: ", pubsub.metrics().replies)
            ws:send(rawws.close_frame(1000))
            ws:close_code()
        }
    }
--- response_body
apisix_pubsub_replies_total 18446744073709551615
apisix_pubsub_replies_total 0
table: 0



=== TEST 9: configure refuses what it cannot use
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            for _, opts in ipairs({ "x", { metrics_dict = "nope" }, { metrics_dict = 3 } }) do
                local ok, err = pcall(pubsub.configure, opts)
                ngx.say(ok, " ", err)
            end
        }
    }
--- response_body
false bad opts: a table expected, got string
false bad option metrics_dict: the name of a lua_shared_dict expected, got nope
false bad option metrics_dict: the name of a lua_shared_dict expected, got 3

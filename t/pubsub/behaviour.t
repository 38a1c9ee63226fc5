# wait() behaviour, one block per row of the behaviour table in the README, over a raw client.
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(no_error_log => '[error]');

run_tests();

__DATA__

=== TEST 1: replies carry the request's sequence, all 64 bits; several commands on one connection
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            ngx.say("status ", ws.status)
            for _, seq in ipairs({ 0, 1, -1, "#9223372036854775807", "#-9223372036854775808", 4294967296 }) do
                ws:send(ws.req({ sequence = seq, cmd_ping = { state = "s" .. tostring(seq) } }))
                local r = assert(ws:resp())
                ngx.say(tostring(r.sequence), " ", r.pong_resp.state)
            end
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
status 101
0 s0
1 s1
-1 s-1
#9223372036854775807 s#9223372036854775807
#-9223372036854775808 s#-9223372036854775808
#4294967296 s4294967296
close 1000
--- no_error_log
[error]
--- error_log
wait returned cleanly



=== TEST 2: handler returns nil, err / nil / raises; unknown command
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            for i, topic in ipairs({ "nil_err", "nil", "raise" }) do
                ws:send(ws.req({ sequence = i, cmd_kafka_fetch = { topic = topic } }))
                local r = assert(ws:resp())
                ngx.say(r.sequence, " code=", r.error_resp.code, " msg=[", r.error_resp.message, "]")
            end
            ws:send(ws.req({ sequence = 9, cmd_empty = {} }))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.error_resp.message)
            ws:send(ws.close_frame())
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body_like
^1 code=0 msg=\[boom\]
2 code=0 msg=\[\]
3 code=0 msg=\[.*kaboom\]
9 unknown command: cmd_empty
close 1000
--- error_log eval
[qr/pubsub handler of command cmd_kafka_fetch raised an error: .*kaboom/,
"pubsub callback handler not registered for the command, command: cmd_empty"]



=== TEST 3: replies that cannot be encoded, and extra keys that are ignored
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            for i, topic in ipairs({ "not_table", "no_key", "two_keys", "wrong_int", "table_for_bytes", "extra" }) do
                ws:send(ws.req({ sequence = 100 + i, cmd_kafka_fetch = { topic = topic } }))
                local r = assert(ws:resp())
                if r.error_resp then
                    ngx.say(r.sequence, " ", r.error_resp.code, " ", r.error_resp.message)
                else
                    ngx.say(r.sequence, " pong ", r.pong_resp.state)
                end
            end
            ws:send(ws.close_frame())
            ws:close_code()
        }
    }
--- response_body
101 0 failed to encode response message
102 0 failed to encode response message
103 0 failed to encode response message
104 0 failed to encode response message
105 0 failed to encode response message
106 pong extra ok
--- error_log
failed to encode response message, err: the reply must be a table, got string
failed to encode response message, err: the reply has none of the keys error_resp, pong_resp, kafka_fetch_resp, kafka_list_offset_resp
failed to encode response message, err: the reply sets both error_resp and pong_resp
failed to encode response message, err: field 'code' of ErrorResp expects a number, got string
failed to encode response message, err: field 'state' of PongResp expects a string, got table



=== TEST 4: empty command: a warning and no reply; undecodable: wrong command with sequence 0
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            ws:send(ws.req({ sequence = 5 }))
            ws:send(ws.frame(2, "\8"))
            ws:send(ws.req({ sequence = 6, cmd_ping = { state = "after" } }))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.error_resp.message)
            r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ws:send(ws.close_frame())
            ws:close_code()
        }
    }
--- response_body
0 wrong command
6 after
--- error_log
pubsub server receives empty command
pubsub server receives undecodable data, err: truncated varint at offset 1



=== TEST 5: text frames: a warning, cut and escaped, and no reply
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            ws:send(ws.frame(1, "line1\nline2 [error] \27[31m"))
            ws:send(ws.frame(1, string.rep("x", 5000)))
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "still here" } }))
            local r = assert(ws:resp())
            ngx.say(r.pong_resp.state)
            ws:send(ws.close_frame())
            ws:close_code()
        }
    }
--- response_body
still here
--- error_log eval
[qr/pubsub server receive non-binary data, type: text, data: line1\\nline2 \[error\] \\u\{1b\}\[31m/,
qr/data: x{256}\.\.\.\(5000 bytes\)/]
--- no_error_log eval
[qr/^line2/, qr/x{257}/]



=== TEST 6: WebSocket ping gets a pong with the same payload, pong gets nothing, fragments make one message
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local pb = require("protobuf")
            local ws = rawws.connect()
            ws:send(ws.frame(10, "unsolicited"))
            ws:send(ws.frame(9, "hello?"))
            local op, payload = ws:recv()
            ngx.say(op, " ", payload)
            local req = pb.encode("PubSubReq", { sequence = 3, cmd_ping = { state = "in three parts" } })
            ws:send(ws.frame(2, req:sub(1, 4), { fin = false }))
            ws:send(ws.frame(9, "between"))
            ws:send(ws.frame(0, req:sub(5, 9), { fin = false }))
            ws:send(ws.frame(0, req:sub(10), { fin = true }))
            op, payload = ws:recv()
            ngx.say(op, " ", payload)
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ws:send(ws.close_frame(1001, "going"))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
10 hello?
10 between
3 in three parts
close 1001



=== TEST 7: pipelined commands in one write are all served, in order, a yielding handler included
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            local batch = {}
            for i = 1, 20 do
                if i % 5 == 0 then
                    batch[i] = ws.req({ sequence = i, cmd_kafka_fetch = { topic = "sleep", partition = i } })
                else
                    batch[i] = ws.req({ sequence = i, cmd_ping = { state = "p" .. i } })
                end
            end
            ws:send(table.concat(batch) .. ws.close_frame(1000))
            local out = {}
            for i = 1, 20 do
                local r = assert(ws:resp())
                out[#out + 1] = r.sequence .. "=" .. r.pong_resp.state
            end
            ngx.say(table.concat(out, ","))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
1=p1,2=p2,3=p3,4=p4,5=slept 5,6=p6,7=p7,8=p8,9=p9,10=slept 10,11=p11,12=p12,13=p13,14=p14,15=slept 15,16=p16,17=p17,18=p18,19=p19,20=slept 20
close 1000



=== TEST 8: Kafka-shaped parameters: int64 as numbers or "#" strings, int32 as numbers
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            for i, off in ipairs({ 5, -2147483648, 4294967295, 4294967296, -2147483649, "#-9223372036854775808" }) do
                ws:send(ws.req({ sequence = i, cmd_kafka_fetch = { topic = "describe", partition = -7, offset = off } }))
                ngx.say(assert(ws:resp()).error_resp.message)
            end
            for i, ts in ipairs({ -1, 1700000000000, "#9223372036854775807" }) do
                ws:send(ws.req({ sequence = i, cmd_kafka_list_offset = { topic = "t", timestamp = ts } }))
                ngx.say("list_offset ", tostring(assert(ws:resp()).kafka_list_offset_resp.offset))
            end
            ws:send(ws.close_frame())
            ws:close_code()
        }
    }
--- response_body
number 5 number -7
number -2147483648 number -7
number 4294967295 number -7
string #4294967296 number -7
string #-2147483649 number -7
string #-9223372036854775808 number -7
list_offset -1
list_offset #1700000000000
list_offset #9223372036854775807



=== TEST 9: Kafka-shaped replies: int64 from numbers, "#" and decimal strings, int64 cdata
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "int64" } }))
            local r = assert(ws:resp())
            for _, m in ipairs(r.kafka_fetch_resp.messages) do
                ngx.say(tostring(m.offset), " ", tostring(m.timestamp), " [", m.key, "] [", m.value, "]")
            end
            ws:send(ws.close_frame())
            ws:close_code()
        }
    }
--- response_body
7 -1 [] []
#9223372036854775807 #-9223372036854775808 [] []
30 -2 [] []
#4294967296 #9223372036854775807 [] []
#9007199254740992 0 [k] [v]



=== TEST 10: a reply of several MiB is sent whole; fragmented when fragment_size is set
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            for _, q in ipairs({ "", "?fragment_size=65536" }) do
                local ws = rawws.connect("/pubsub" .. q)
                ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "big", partition = 3 * 1024 * 1024 } }))
                local op, payload, fin = ws:recv_frame()
                local frames = 1
                local total = #payload
                while not fin do
                    local _, p
                    _, p, fin = ws:recv_frame()
                    frames = frames + 1
                    total = total + #p
                end
                ngx.say(q, " frames>1: ", frames > 1, " total>3MiB: ", total > 3 * 1024 * 1024)
                ws:send(ws.close_frame())
                ws:close_code()
            end
        }
    }
--- response_body
 frames>1: false total>3MiB: true
?fragment_size=65536 frames>1: true total>3MiB: true



=== TEST 11: peer closes the socket between frames: exactly one error line
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect()
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "x" } }))
            assert(ws:resp())
            ws:close()
            ngx.sleep(0.1)
            ngx.say("done")
        }
    }
--- response_body
done
--- error_log
fatal error in pubsub websocket server, err: failed to receive the first 2 bytes: closed
--- no_error_log
failed to send



=== TEST 12: protocol violations end the connection with 1002, 1007 or 1009
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local cases = {
                { "unmasked", rawws.frame(2, "x", { unmasked = true }) },
                { "rsv", rawws.frame(2, "x", { rsv = 0x40 }) },
                { "opcode 3", rawws.frame(3, "x") },
                { "opcode 11", rawws.frame(11, "x") },
                { "long ping", rawws.frame(9, string.rep("p", 126)) },
                { "fragmented ping", rawws.frame(9, "p", { fin = false }) },
                { "lone continuation", rawws.frame(0, "x") },
                { "data inside fragments", rawws.frame(2, "a", { fin = false }) .. rawws.frame(2, "b") },
                { "close 1 byte", rawws.frame(8, "\3") },
                { "close 0", rawws.close_frame(0) },
                { "close 999", rawws.close_frame(999) },
                { "close 1004", rawws.close_frame(1004) },
                { "close 1005", rawws.close_frame(1005) },
                { "close 1006", rawws.close_frame(1006) },
                { "close 1015", rawws.close_frame(1015) },
                { "close 5000", rawws.close_frame(5000) },
                { "close bad utf8", rawws.close_frame(1000, "\255") },
                { "text bad utf8", rawws.frame(1, "\192\128") },
                { "too big", rawws.frame(2, "", { len = 65536 }) },
                { "top bit", rawws.frame(2, "", { len = 2 ^ 32, len_hi = 0x80000000 }) },
            }
            for _, c in ipairs(cases) do
                local ws = rawws.connect()
                ws:send(c[2])
                ngx.say(c[1], ": ", ws:close_code())
                ws:close()
            end
        }
    }
--- response_body
unmasked: 1002
rsv: 1002
opcode 3: 1002
opcode 11: 1002
long ping: 1002
fragmented ping: 1002
lone continuation: 1002
data inside fragments: 1002
close 1 byte: 1002
close 0: 1002
close 999: 1002
close 1004: 1002
close 1005: 1002
close 1006: 1002
close 1015: 1002
close 5000: 1002
close bad utf8: 1007
text bad utf8: 1007
too big: 1009
top bit: 1002
--- error_log
fatal error in pubsub websocket server, err: frame unmasked
fatal error in pubsub websocket server, err: bad RSV1, RSV2, or RSV3 bits
fatal error in pubsub websocket server, err: exceeding max payload len (65536 > 65535)
fatal error in pubsub websocket server, err: invalid close status code 1005
fatal error in pubsub websocket server, err: text message is not valid UTF-8



=== TEST 13: options: max_payload_len is inclusive, max_message_len bounds reassembly
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local pb = require("protobuf")
            local req = pb.encode("PubSubReq", { sequence = 1, cmd_ping = { state = string.rep("s", 93) } })
            ngx.say("request is ", #req, " bytes")
            local ws = rawws.connect("/pubsub?max_payload_len=100")
            ws:send(rawws.frame(2, req))
            ngx.say("100: ", assert(ws:resp()).sequence)
            ws:send(rawws.frame(2, req .. "\0"))
            ngx.say("101: ", ws:close_code())
            ws = rawws.connect("/pubsub?max_payload_len=60&max_message_len=100")
            ws:send(rawws.frame(2, req:sub(1, 50), { fin = false }) .. rawws.frame(0, req:sub(51)))
            ngx.say("fragments of 100: ", assert(ws:resp()).sequence)
            ws:send(rawws.frame(2, req:sub(1, 60), { fin = false }) .. rawws.frame(0, req:sub(61) .. "\0"))
            ngx.say("fragments of 101: ", ws:close_code())
        }
    }
--- response_body
request is 100 bytes
100: 1
101: 1009
fragments of 100: 1
fragments of 101: 1009
--- error_log
exceeding max message len (101 > 100)



=== TEST 14: options are validated with clear errors
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            for _, q in ipairs({ "max_payload_len=0", "max_payload_len=abc", "max_payload_len=100&max_message_len=50", "timeout=-1" }) do
                local ws = rawws.connect("/pubsub?" .. q)
                ngx.say(q, " -> ", ws.status)
            end
            local ok, err = pcall(function() return require("apisix_pubsub_rs").new("x") end)
            ngx.say(ok, " ", select(2, require("apisix_pubsub_rs").new("x")))
        }
    }
--- response_body
max_payload_len=0 -> 400
max_payload_len=abc -> 400
max_payload_len=100&max_message_len=50 -> 400
timeout=-1 -> 400
true bad argument: opts must be a table, got string
--- error_log
failed to initialize pubsub module, err: bad option max_payload_len: a positive integer expected, got 0
failed to initialize pubsub module, err: bad option max_payload_len: a positive integer expected, got abc
failed to initialize pubsub module, err: bad option max_message_len: must be at least max_payload_len (100)
failed to initialize pubsub module, err: bad option timeout: a positive integer expected, got -1



=== TEST 15: read timeout between frames keeps the connection; a stall mid-frame ends it with 1008
--- http_config
    # ngx_lua's own "lua tcp socket read timed out" line; APISIX's nginx.conf sets this too.
    lua_socket_log_errors off;
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local ws = rawws.connect("/pubsub?timeout=100")
            ngx.sleep(0.35)
            ws:send(ws.req({ sequence = 4, cmd_ping = { state = "alive" } }))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            local frame = ws.req({ sequence = 5, cmd_ping = { state = "never finished" } })
            ws:send(frame:sub(1, 8))
            ngx.say("stall: ", (ws:close_code()))
        }
    }
--- response_body
4 alive
stall: 1008
--- error_log
wait returned: timeout in the middle of a frame
--- no_error_log
[error]



=== TEST 16: the handshake's errors are lua-resty-websocket's
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local K = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            local cases = {
                { "no connection", "Upgrade: websocket\r\n" .. K .. "Sec-WebSocket-Version: 13\r\n" },
                { "no key", "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n" },
                { "short key", "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n" },
                { "key not base64", "Upgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n" },
                { "version 12", "Upgrade: websocket\r\nConnection: upgrade\r\n" .. K .. "Sec-WebSocket-Version: 12\r\n" },
                { "upgrade h2c", "Upgrade: h2c\r\nConnection: upgrade\r\n" .. K .. "Sec-WebSocket-Version: 13\r\n" },
            }
            for _, c in ipairs(cases) do
                local ws = rawws.connect("/pubsub", c[2])
                ngx.say(c[1], ": ", ws.status)
            end
            local ws = rawws.connect("/pubsub", nil, { request_line = "GET /pubsub HTTP/1.0" })
            ngx.say("http/1.0: ", ws.status)
            ws = rawws.connect("/pubsub", nil, { request_line = "POST /pubsub HTTP/1.1" })
            ngx.say("post: ", ws.status)
            ws = rawws.connect("/pubsub")
            ngx.say("good: ", ws.status, " ", ws.head:match("Sec%-WebSocket%-Accept: (%S+)"))
        }
    }
--- response_body
no connection: 400
no key: 400
short key: 400
key not base64: 400
version 12: 400
upgrade h2c: 400
http/1.0: 400
post: 400
good: 101 s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
--- error_log
failed to initialize pubsub module, err: bad "connection" request header
failed to initialize pubsub module, err: bad "sec-websocket-key" request header
failed to initialize pubsub module, err: bad "sec-websocket-version" request header
failed to initialize pubsub module, err: bad "upgrade" request header: h2c
failed to initialize pubsub module, err: bad http version
failed to initialize pubsub module, err: bad method: POST



=== TEST 17: on() refuses bad arguments with clear errors
--- config
    location /t {
        content_by_lua_block {
            local m = require("apisix_pubsub_rs")
            local fake = setmetatable({ cmd_handler = {} }, { __index = m })
            ngx.say(select(2, pcall(fake.on, fake, "cmd_nope", function() end)))
            ngx.say(select(2, pcall(fake.on, fake, 42, function() end)))
            ngx.say(select(2, pcall(fake.on, fake, "cmd_ping", "not a function")))
            fake:on("cmd_ping", function() end)
            ngx.say(type(fake.cmd_handler.cmd_ping))
        }
    }
--- response_body_like
unknown command 'cmd_nope': pubsub.proto defines cmd_empty, cmd_ping, cmd_kafka_fetch, cmd_kafka_list_offset, cmd_subscribe, cmd_unsubscribe, cmd_publish
bad command: a string expected, got number
bad handler for cmd_ping: a function expected, got string
function



=== TEST 18: decode_req / encode_resp for users who bring their own transport
--- config
    location /t {
        content_by_lua_block {
            local m = require("apisix_pubsub_rs")
            local pb = require("protobuf")
            local seq, cmd, params = m.decode_req(pb.encode("PubSubReq", { sequence = "#9223372036854775807", cmd_kafka_fetch = { topic = "t", offset = 3 } }))
            ngx.say(seq, " ", cmd, " ", params.topic, " ", params.partition, " ", params.offset)
            ngx.say(m.decode_req("\8"))
            ngx.say(m.decode_req(""))
            local bytes = assert(m.encode_resp("#-1", { pong_resp = { state = "x" } }))
            local r = pb.decode("PubSubResp", bytes)
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ngx.say(m.encode_resp(1, { nothing = true }))
            ngx.say(m.encode_resp(1.5, { pong_resp = {} }))
        }
    }
--- response_body
#9223372036854775807 cmd_kafka_fetch t 0 3
niltruncated varint at offset 1
0nilnil
-1 x
nilthe reply has none of the keys error_resp, pong_resp, kafka_fetch_resp, kafka_list_offset_resp, subscribe_resp, unsubscribe_resp, publish_resp, channel_message
nilbad sequence: 1.5



=== TEST 19: require("apisix.core.pubsub") is the native module (the APISIX drop-in shim), replying "unknown command" as APISIX 3 does
--- config
    location /shim {
        content_by_lua_block {
            local pubsub = require("apisix.core.pubsub").new(ngx.var.arg_named and { unknown_command = "named" } or nil)
            pubsub:wait()
        }
    }
    location /t {
        content_by_lua_block {
            local shim, native = require("apisix.core.pubsub"), require("apisix_pubsub_rs")
            ngx.say(getmetatable(shim).__index == native, " ", shim.encode_resp == native.encode_resp, " ", shim.version == native.version)
            local rawws = require("rawws")
            for _, path in ipairs({ "/shim", "/shim?named=1" }) do
                local ws = rawws.connect(path)
                ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "t" } }))
                ngx.say(path, ": ", assert(ws:resp()).error_resp.message)
                ws:send(ws.close_frame(1000))
                ws:close_code()
            end
        }
    }
--- response_body
true true true
/shim: unknown command
/shim?named=1: unknown command: cmd_kafka_fetch
--- error_log
pubsub callback handler not registered for the command, command: cmd_kafka_fetch



=== TEST 20: required first inside a request, then hundreds of error paths: the worker survives
--- config
    location /t {
        content_by_lua_block {
            -- This block's worker is new: this coroutine is the first to load the module.
            local m = require("apisix_pubsub_rs")
            local rawws = require("rawws")
            for round = 1, 10 do
                local ws = rawws.connect()
                for i = 1, 20 do
                    ws:send(ws.frame(2, "\8"))
                    assert(ws:resp())
                    ws:send(ws.req({ sequence = i, cmd_kafka_fetch = { topic = "raise" } }))
                    assert(ws:resp())
                    ws:send(ws.req({ sequence = i, cmd_kafka_fetch = { topic = "wrong_int" } }))
                    assert(ws:resp())
                    pcall(m.on, {}, 1, 2)
                    m.decode_req("\15")
                    m.encode_resp("bad", {})
                end
                ws:send(ws.frame(2, "x", { unmasked = true }))
                ws:close_code()
            end
            collectgarbage()
            local ws = rawws.connect()
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "survived" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
        }
    }
--- response_body
survived
--- no_error_log eval
[qr/exited on signal/, qr/worker process \d+ exited/]



=== TEST 21: required in init_by_lua, init_worker_by_lua and a timer
--- http_config
    init_by_lua_block {
        local m = require("apisix_pubsub_rs")
        assert(m.decode_req("\8\1"))
    }
    init_worker_by_lua_block {
        package.loaded.apisix_pubsub_rs = nil
        local m = require("apisix_pubsub_rs")
        assert(m.decode_req("\8\2"))
        ngx.timer.at(0, function()
            package.loaded.apisix_pubsub_rs = nil
            local m2 = require("apisix_pubsub_rs")
            ngx.log(ngx.WARN, "timer decoded sequence ", (m2.decode_req("\8\3")))
            local _, err = m2.decode_req("\15")
            ngx.log(ngx.WARN, "timer error path: ", err)
        end)
    }
--- config
    location /t {
        content_by_lua_block {
            ngx.sleep(0.05)
            ngx.say(require("apisix_pubsub_rs").decode_req("\8\4"))
        }
    }
--- response_body
4nilnil
--- error_log
timer decoded sequence 3
timer error path: invalid wire type 7 at offset 0
--- no_error_log
[error]



=== TEST 22: large values go out by reference, nested, pipelined and in order, byte for byte
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local server = require("pubsub_server")
            local codec = require("apisix_pubsub_rs")
            local ws = rawws.connect("/pubsub?max_payload_len=200000")
            local batch, want = {}, {}
            for i = 1, 12 do
                local reply
                if i % 3 == 0 then
                    batch[i] = ws.req({ sequence = i, cmd_kafka_fetch = { topic = "sizes", partition = i } })
                    reply = server.sizes_reply(i)
                else
                    local state = string.rep(string.char(64 + i), i % 3 == 1 and 60000 or 4096 + i)
                    batch[i] = ws.req({ sequence = i, cmd_ping = { state = state } })
                    reply = { pong_resp = { state = state } }
                end
                -- The codec copies every value: what the connection sends must be the same bytes.
                want[i] = assert(codec.encode_resp(i, reply))
            end
            ws:send(table.concat(batch) .. ws.frame(9, "between") .. ws.close_frame(1000))
            local same = 0
            for i = 1, 12 do
                local op, payload = ws:recv()
                if op == 2 and payload == want[i] then
                    same = same + 1
                else
                    ngx.say("reply ", i, " differs: ", op, " ", #payload, " bytes, want ", #want[i])
                end
            end
            ngx.say("identical replies: ", same)
            local op, payload = ws:recv()
            ngx.say(op, " ", payload)
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
identical replies: 12
10 between
close 1000



=== TEST 23: connections served at once, handlers yielding between replies that hold large values
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local server = require("pubsub_server")
            local codec = require("apisix_pubsub_rs")
            local function client(c)
                local ws = rawws.connect("/pubsub?max_payload_len=200000")
                local batch, want = {}, {}
                for i = 1, 9 do
                    local reply
                    if i % 3 == 0 then
                        batch[i] = ws.req({ sequence = i, cmd_kafka_fetch = { topic = "sizes_after_sleep", partition = c * 10 + i } })
                        reply = server.sizes_reply(c * 10 + i)
                    else
                        local state = string.rep(string.char(64 + c * 10 + i), i % 3 == 1 and 60000 or 20 + i)
                        batch[i] = ws.req({ sequence = i, cmd_ping = { state = state } })
                        reply = { pong_resp = { state = state } }
                    end
                    want[i] = assert(codec.encode_resp(i, reply))
                end
                ws:send(table.concat(batch) .. ws.close_frame(1000))
                local same = 0
                for i = 1, 9 do
                    local op, payload = ws:recv()
                    if op == 2 and payload == want[i] then
                        same = same + 1
                    end
                end
                return same .. " close " .. tostring(ws:close_code())
            end
            local threads = {}
            for c = 1, 4 do
                threads[c] = ngx.thread.spawn(client, c)
            end
            for c = 1, 4 do
                ngx.say(c, ": ", select(2, ngx.thread.wait(threads[c])))
            end
        }
    }
--- response_body
1: 9 close 1000
2: 9 close 1000
3: 9 close 1000
4: 9 close 1000



=== TEST 24: a frame cut between writes: replies before it come, in order, once it completes or stalls
--- http_config
    lua_socket_log_errors off;
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            -- Replies to whole frames, then the rest of a frame cut in two after a pause.
            local ws = rawws.connect("/pubsub?timeout=2000")
            local second = ws.req({ sequence = 2, cmd_ping = { state = string.rep("b", 600) } })
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "a" } }) .. second:sub(1, 300))
            ngx.sleep(0.05)
            ws:send(second:sub(301))
            for _ = 1, 2 do
                local r = assert(ws:resp())
                ngx.say(r.sequence, " ", #r.pong_resp.state)
            end
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
            -- The peer stalls in the middle of a frame: the replies before it still come, then 1008.
            ws = rawws.connect("/pubsub?timeout=100")
            ws:send(ws.req({ sequence = 3, cmd_ping = { state = "c" } }) .. second:sub(1, 300))
            local r = assert(ws:resp())
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ngx.say("stall: ", (ws:close_code()))
        }
    }
--- response_body
1 1
2 600
close 1000
3 c
stall: 1008
--- error_log
wait returned: timeout in the middle of a frame
--- no_error_log
[error]



=== TEST 25: unknown_command words the reply to a command without a handler as the seed or as APISIX 3 does
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            for _, style in ipairs({ "", "?unknown_command=named", "?unknown_command=plain" }) do
                local ws = rawws.connect("/pubsub" .. style)
                ws:send(ws.req({ sequence = 1, cmd_empty = {} }))
                ngx.say(style, ": ", assert(ws:resp()).error_resp.message)
                ws:send(ws.close_frame(1000))
                ws:close_code()
            end
            local ws = rawws.connect("/pubsub?unknown_command=loud")
            ngx.say("bad option: ", ws.status)
        }
    }
--- response_body
: unknown command: cmd_empty
?unknown_command=named: unknown command: cmd_empty
?unknown_command=plain: unknown command
bad option: 400
--- error_log
pubsub callback handler not registered for the command, command: cmd_empty
failed to initialize pubsub module, err: bad option unknown_command: "named" or "plain" expected, got loud



=== TEST 26: a handler gets the request's sequence as its second argument when it declares one (or `...`), and only then
--- config
    location /seq {
        content_by_lua_block {
            local ps = assert(require("apisix_pubsub_rs").new())
            ps:on("cmd_kafka_fetch", function(params, seq)
                return { pong_resp = { state = "two: " .. type(seq) .. " " .. tostring(seq) } }
            end)
            ps:on("cmd_kafka_list_offset", function(...)
                return { pong_resp = { state = "vararg: " .. select("#", ...) .. " " .. tostring(select(2, ...)) } }
            end)
            ps:on("cmd_ping", function(params, ...)
                return { pong_resp = { state = "one: " .. select("#", ...) } }
            end)
            ps:on("cmd_empty", function(params)
                return { pong_resp = { state = "plain" } }
            end)
            ps:wait()
        }
    }
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/seq")
            for _, req in ipairs({
                { sequence = 7, cmd_kafka_fetch = { topic = "t" } },
                { sequence = "#9223372036854775807", cmd_kafka_fetch = { topic = "t" } },
                { sequence = 8, cmd_kafka_list_offset = { topic = "t" } },
                { sequence = 9, cmd_ping = { state = "x" } },
                { sequence = 10, cmd_empty = {} },
            }) do
                ws:send(ws.req(req))
                local r = assert(ws:resp())
                ngx.say(tostring(r.sequence), " ", r.pong_resp.state)
            end
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
7 two: number 7
#9223372036854775807 two: string #9223372036854775807
8 vararg: 2 8
9 one: 1
10 plain
close 1000

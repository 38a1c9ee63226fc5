# The bad-input catalogue: every case sends one kind of bad input over a raw socket and asserts its
# outcome (reply, close code, log line), then checks that the worker still serves a new connection.
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(http_config => <<'_EOC_');
    lua_socket_log_errors off;
    large_client_header_buffers 4 8k;
_EOC_

run_tests();

__DATA__

=== TEST 1: protobuf: wrong wire types, truncations, bad lengths, bad tags -> "wrong command", connection kept
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local pb = require("protobuf")
            local T = pb.tag
            local function ld(n, body) return T(n, 2) .. pb.varint(#body) .. body end
            local cases = {
                { "sequence as length-delimited", ld(1, "x") },
                { "cmd_ping as varint", T(32, 0) .. "\1" },
                { "cmd_ping as 64-bit", T(32, 1) .. ("\0"):rep(8) },
                { "state as varint", ld(32, T(1, 0) .. "\1") },
                { "state as 32-bit", ld(32, T(1, 5) .. "\0\0\0\0") },
                { "partition as length-delimited", ld(33, ld(2, "x")) },
                { "offset as 64-bit", ld(33, T(3, 1) .. ("\0"):rep(8)) },
                { "topic as varint", ld(34, T(1, 0) .. "\5") },
                { "truncated sequence varint", T(1, 0) .. "\255\255" },
                { "varint of 11 bytes", T(1, 0) .. ("\255"):rep(10) .. "\1" },
                { "missing length", T(32, 2) },
                { "length past the end", T(32, 2) .. "\20" .. "abc" },
                { "inner length past the end", ld(32, T(1, 2) .. "\9" .. "ab") },
                { "truncated 64-bit value", T(5, 1) .. "\1\2\3" },
                { "truncated 32-bit value", T(5, 5) .. "\1" },
                { "wire type 6", "\14" },
                { "wire type 7", "\15" },
                { "field number 0", "\0\0" },
                { "lone end-group", T(5, 4) },
                { "unterminated group", T(5, 3) .. T(1, 0) .. "\1" },
                { "groups nested 40 deep", T(5, 3):rep(40) .. T(5, 4):rep(40) },
                { "nested message that does not parse", ld(33, ld(1, "ok") .. T(2, 0)) },
            }
            for i, c in ipairs(cases) do
                local ws = rawws.connect()
                ws:send(rawws.frame(2, c[2]))
                local r, err = ws:resp()
                local outcome = r and r.error_resp and (r.sequence .. " " .. r.error_resp.message) or tostring(err)
                -- the connection is kept: a ping on it still works
                ws:send(rawws.req({ sequence = i, cmd_ping = { state = "k" } }))
                local r2 = ws:resp()
                ngx.say(c[1], ": ", outcome, ", kept: ", r2 and r2.sequence == i)
                ws:send(rawws.close_frame())
                ws:close_code()
            end
        }
    }
--- response_body
sequence as length-delimited: 0 wrong command, kept: true
cmd_ping as varint: 0 wrong command, kept: true
cmd_ping as 64-bit: 0 wrong command, kept: true
state as varint: 0 wrong command, kept: true
state as 32-bit: 0 wrong command, kept: true
partition as length-delimited: 0 wrong command, kept: true
offset as 64-bit: 0 wrong command, kept: true
topic as varint: 0 wrong command, kept: true
truncated sequence varint: 0 wrong command, kept: true
varint of 11 bytes: 0 wrong command, kept: true
missing length: 0 wrong command, kept: true
length past the end: 0 wrong command, kept: true
inner length past the end: 0 wrong command, kept: true
truncated 64-bit value: 0 wrong command, kept: true
truncated 32-bit value: 0 wrong command, kept: true
wire type 6: 0 wrong command, kept: true
wire type 7: 0 wrong command, kept: true
field number 0: 0 wrong command, kept: true
lone end-group: 0 wrong command, kept: true
unterminated group: 0 wrong command, kept: true
groups nested 40 deep: 0 wrong command, kept: true
nested message that does not parse: 0 wrong command, kept: true
--- error_log
pubsub server receives undecodable data, err: field 'sequence' of PubSubReq expects a varint value, got length-delimited at offset 0
pubsub server receives undecodable data, err: field 'state' of CmdPing expects a length-delimited value, got varint at offset 3
pubsub server receives undecodable data, err: invalid varint (more than 10 bytes) at offset 1
pubsub server receives undecodable data, err: invalid wire type 7 at offset 0
pubsub server receives undecodable data, err: messages nested deeper than 32
--- no_error_log
fatal error



=== TEST 2: protobuf: accepted oddities -> served as protobuf says
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local pb = require("protobuf")
            local T = pb.tag
            local function ld(n, body) return T(n, 2) .. pb.varint(#body) .. body end
            local ping = ld(32, ld(1, "p"))
            local cases = {
                { "empty then ping: last oneof member wins", T(1, 0) .. "\7" .. ld(31, "") .. ping },
                { "ping then empty: last oneof member wins", T(1, 0) .. "\7" .. ping .. ld(31, "") },
                { "ping twice: merged", T(1, 0) .. "\7" .. ld(32, ld(1, "a")) .. ld(32, ld(1, "b")) },
                { "sequence twice: last wins", T(1, 0) .. "\1" .. T(1, 0) .. "\7" .. ping },
                { "unknown fields of every wire type", T(1, 0) .. "\7" .. T(5, 0) .. "\1" .. T(6, 1) .. ("\0"):rep(8)
                    .. ld(7, "zz") .. T(8, 5) .. "\0\0\0\0" .. T(9, 3) .. T(1, 0) .. "\1" .. T(9, 4) .. ping },
                { "unknown field inside the command", T(1, 0) .. "\7" .. ld(32, ld(9, "unknown") .. ld(1, "p")) },
                { "huge unknown field inside the command", T(1, 0) .. "\7" .. ld(32, ld(9, ("u"):rep(60000)) .. ld(1, "p")) },
                { "tag cut off at the end", T(1, 0) .. "\7" .. ping .. "\128" },
            }
            for _, c in ipairs(cases) do
                local ws = rawws.connect()
                ws:send(rawws.frame(2, c[2]))
                local r, err = ws:resp()
                if r and r.pong_resp then
                    ngx.say(c[1], ": ", r.sequence, " pong ", r.pong_resp.state)
                elseif r then
                    ngx.say(c[1], ": ", r.sequence, " error ", r.error_resp.message)
                else
                    ngx.say(c[1], ": ", err)
                end
                ws:send(rawws.close_frame())
                ws:close_code()
            end
        }
    }
--- response_body
empty then ping: last oneof member wins: 7 pong p
ping then empty: last oneof member wins: 7 error unknown command: cmd_empty
ping twice: merged: 7 pong b
sequence twice: last wins: 7 pong p
unknown fields of every wire type: 7 pong p
unknown field inside the command: 7 pong p
huge unknown field inside the command: 7 pong p
tag cut off at the end: 7 pong p



=== TEST 3: zero-length frames and 1 MiB of random bytes: no crash, connection kept
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local ws = rawws.connect("/pubsub?max_payload_len=2097152")
            ws:send(rawws.frame(2, ""))
            math.randomseed(6455)
            local t = {}
            for i = 1, 1024 * 1024 do t[i] = string.char(math.random(0, 255)) end
            local junk = table.concat(t)
            ws:send(rawws.frame(2, junk))
            ws:send(rawws.req({ sequence = 3, cmd_ping = { state = "after junk" } }))
            -- the junk gets a reply or none (it may decode as an empty request); the ping is served
            local r = assert(ws:resp())
            if r.error_resp then
                ngx.say("junk: ", r.error_resp.message)
                r = assert(ws:resp())
            else
                ngx.say("junk: no reply")
            end
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ws:send(rawws.close_frame())
            ngx.say("close ", (ws:close_code()))
        }
    }
--- response_body_like
^junk: (wrong command|no reply)
3 after junk
close 1000
--- error_log
pubsub server receives empty command
--- no_error_log
fatal error



=== TEST 4: text frames with control characters and megabytes: the log line is cut and escaped
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local ws = rawws.connect("/pubsub?max_payload_len=4194304")
            ws:send(rawws.frame(1, "evil\r\n2026/01/01 00:00:00 [error] forged line\0\7"))
            ws:send(rawws.frame(1, ("m"):rep(3 * 1024 * 1024)))
            ws:send(rawws.req({ sequence = 1, cmd_ping = { state = "ok" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            ws:send(rawws.close_frame())
            ws:close_code()
        }
    }
--- response_body
ok
--- error_log eval
[qr/data: evil\\r\\n2026\/01\/01 00:00:00 \[error\] forged line\\u\{0\}\\u\{7\}/,
qr/data: m{256}\.\.\.\(3145728 bytes\)/]
--- no_error_log eval
[qr/^2026\/01\/01/, qr/m{257}/]



=== TEST 5: handshake: huge headers, POST with a body, a peer gone mid-handshake
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local ws = rawws.connect("/pubsub", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                .. "X-Huge: " .. ("h"):rep(20000) .. "\r\n")
            ngx.say("huge header: ", ws.status)
            ws = rawws.connect("/pubsub", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                .. "Content-Length: 5\r\n\r\nhello", { request_line = "POST /pubsub HTTP/1.1" })
            ngx.say("post with body: ", ws.status)
            local sock = ngx.socket.tcp()
            sock:connect("127.0.0.1", tonumber(ngx.var.server_port))
            sock:send("GET /pubsub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            sock:close()
            ngx.sleep(0.05)
            ws = rawws.connect()
            ws:send(rawws.req({ sequence = 1, cmd_ping = { state = "alive" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            ws:send(rawws.close_frame())
            ws:close_code()
        }
    }
--- response_body
huge header: 400
post with body: 400
alive
--- error_log
failed to initialize pubsub module, err: bad method: POST
--- no_error_log
fatal error



=== TEST 6: hostile peers: one byte at a time; gone mid-frame; gone while a handler yields
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local ws = rawws.connect()
            local frame = rawws.req({ sequence = 11, cmd_ping = { state = "slowly" } })
            for i = 1, #frame do
                ws:send(frame:sub(i, i))
                ngx.sleep(0.001)
            end
            ngx.say("byte by byte: ", assert(ws:resp()).pong_resp.state)
            ws:send(frame:sub(1, 5))
            ws:close()
            ws = rawws.connect()
            ws:send(rawws.req({ sequence = 12, cmd_kafka_fetch = { topic = "sleep", partition = 1 } }))
            ws:close()
            ngx.sleep(0.2)
            ws = rawws.connect()
            ws:send(rawws.req({ sequence = 13, cmd_ping = { state = "alive" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
        }
    }
--- response_body
byte by byte: slowly
alive
--- error_log
fatal error in pubsub websocket server, err: failed to receive masking-len and payload: closed
--- no_error_log
[alert]
[crit]



=== TEST 7: a client that never reads: the server stops reading while its write waits, then gives up
--- http_config
    lua_socket_send_timeout 300ms;
--- config
    location /t {
        content_by_lua_block {
            local rawws = require("rawws")
            local ws = rawws.connect("/pubsub", nil, { timeout = 1000 })
            local frame = rawws.req({ sequence = 1, cmd_ping = { state = ("s"):rep(60000) } })
            -- 60 KB pings, replies never read: the server's write blocks, it reads no more frames
            -- meanwhile, and gives up when lua_socket_send_timeout expires.
            for i = 1, 400 do
                if not ws:send(frame) then break end
            end
            ngx.sleep(0.5)
            ngx.say("client done")
            local ws2 = rawws.connect()
            ws2:send(rawws.req({ sequence = 2, cmd_ping = { state = "alive" } }))
            ngx.say(assert(ws2:resp()).pong_resp.state)
            ws2:send(rawws.close_frame())
            ws2:close_code()
        }
    }
--- response_body
client done
alive
--- error_log
wait returned: failed to send: timeout
--- no_error_log
[error]

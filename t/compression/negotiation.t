# permessage-deflate negotiation (RFC 7692 sections 5-7): which offers are accepted and how they
# are answered, which are declined (the connection then works uncompressed), the compression
# option of new(opts) and its bad values.
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(no_error_log => '[error]', http_config => <<'_EOC_');
    lua_socket_log_errors off;
_EOC_

run_tests();

__DATA__

=== TEST 1: offers accepted and answered, each connection then exchanging compressed messages
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local cases = {
                { "plain", "permessage-deflate" },
                { "client_max_window_bits without a value", "permessage-deflate; client_max_window_bits" },
                { "both windows", "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12" },
                { "server window 9", "permessage-deflate; server_max_window_bits=9" },
                { "client window 8", "permessage-deflate; client_max_window_bits=8" },
                { "quoted value", 'permessage-deflate; server_max_window_bits="11"' },
                { "both no_context_takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover" },
                { "case and spaces", "  PerMessage-Deflate ;Client_Max_Window_Bits ; SERVER_MAX_WINDOW_BITS=14  " },
                { "another extension first", "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=9" },
                { "first acceptable of several", "permessage-deflate; server_max_window_bits=8, permessage-deflate; foo, permessage-deflate; server_max_window_bits=13" },
                { "several header lines", { "permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=12" } },
            }
            for i, c in ipairs(cases) do
                local ws, agreed = cc.connect("/pubsub?compression=true", c[2])
                local codec = cc.codec(agreed)
                cc.send_ping(ws, codec, i, string.rep("state " .. i .. " ", 40))
                local r, compressed = cc.resp(ws, codec)
                ngx.say(c[1], ": ", agreed, " -> ", r and r.sequence, " ",
                    r and r.pong_resp and #r.pong_resp.state, " ", tostring(compressed))
                cc.close(ws)
            end
        }
    }
--- response_body
plain: permessage-deflate; server_no_context_takeover; client_no_context_takeover -> 1 320 true
client_max_window_bits without a value: permessage-deflate; server_no_context_takeover; client_no_context_takeover -> 2 320 true
both windows: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12 -> 3 320 true
server window 9: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9 -> 4 320 true
client window 8: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=8 -> 5 320 true
quoted value: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11 -> 6 320 true
both no_context_takeover: permessage-deflate; server_no_context_takeover; client_no_context_takeover -> 7 320 true
case and spaces: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=14 -> 8 320 true
another extension first: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9 -> 9 320 true
first acceptable of several: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=13 -> 10 360 true
several header lines: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12 -> 11 360 true



=== TEST 2: compression off (the default, and false): every offer declined
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            for _, path in ipairs({ "/pubsub", "/off" }) do
                local ws, agreed = cc.connect(path, "permessage-deflate; client_max_window_bits")
                ngx.say(path, ": ", agreed, " ", ws.status)
                cc.close(ws)
            end
        }
    }
    location /off {
        content_by_lua_block {
            local p = assert(require("apisix_pubsub_rs").new({ compression = false }))
            p:wait()
        }
    }
--- response_body
/pubsub: none 101
/off: none 101



=== TEST 3: a compression table: windows, context takeover, threshold, levels
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local cases = {
                { "server_max_window_bits:10,client_max_window_bits:11", "permessage-deflate; client_max_window_bits" },
                { "server_max_window_bits:10", "permessage-deflate; server_max_window_bits=12" },
                { "client_max_window_bits:9", "permessage-deflate; client_max_window_bits=12" },
                { "client_max_window_bits:9", "permessage-deflate" },
                { "server_no_context_takeover:false,client_no_context_takeover:false", "permessage-deflate" },
                { "server_no_context_takeover:false", "permessage-deflate; server_no_context_takeover" },
                { "threshold:1000,level:9,large_level:0", "permessage-deflate" },
            }
            for _, c in ipairs(cases) do
                local ws, agreed = cc.connect("/pubsub?compression=" .. c[1], c[2])
                local codec = cc.codec(agreed)
                local sizes = {}
                for seq, n in ipairs({ 10, 500, 2000 }) do
                    cc.send_ping(ws, codec, seq, string.rep("ab", n / 2))
                    local r, compressed = cc.resp(ws, codec)
                    sizes[#sizes + 1] = (r and #r.pong_resp.state or "?") .. (compressed and "z" or "")
                end
                ngx.say(c[1], " | ", c[2], " -> ", agreed, " | ", table.concat(sizes, " "))
                cc.close(ws)
            end
        }
    }
--- response_body
server_max_window_bits:10,client_max_window_bits:11 | permessage-deflate; client_max_window_bits -> permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11 | 10 500z 2000z
server_max_window_bits:10 | permessage-deflate; server_max_window_bits=12 -> permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10 | 10 500z 2000z
client_max_window_bits:9 | permessage-deflate; client_max_window_bits=12 -> permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9 | 10 500z 2000z
client_max_window_bits:9 | permessage-deflate -> permessage-deflate; server_no_context_takeover; client_no_context_takeover | 10 500z 2000z
server_no_context_takeover:false,client_no_context_takeover:false | permessage-deflate -> permessage-deflate | 10 500z 2000z
server_no_context_takeover:false | permessage-deflate; server_no_context_takeover -> permessage-deflate; server_no_context_takeover; client_no_context_takeover | 10 500z 2000z
threshold:1000,level:9,large_level:0 | permessage-deflate -> permessage-deflate; server_no_context_takeover; client_no_context_takeover | 10 500 2000z



=== TEST 4: bad compression options: new() fails with the words, no handshake
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            for _, c in ipairs({ "level:10", "server_max_window_bits:8", "client_max_window_bits:16",
                                 "threshold:-1", "large_level:1.5", "server_no_context_takeover:1", "colour:1" }) do
                local ws = cc.connect("/pubsub?compression=" .. c, "permessage-deflate")
                ngx.say(c, ": ", ws.status)
                ws:close()
            end
            local ws = cc.connect("/string", "permessage-deflate")
            ngx.say("a string: ", ws.status)
        }
    }
    location /string {
        content_by_lua_block {
            local p, err = require("apisix_pubsub_rs").new({ compression = "yes" })
            ngx.log(ngx.ERR, "new: ", err)
            ngx.exit(400)
        }
    }
--- response_body
level:10: 400
server_max_window_bits:8: 400
client_max_window_bits:16: 400
threshold:-1: 400
large_level:1.5: 400
server_no_context_takeover:1: 400
colour:1: 400
a string: 400
--- error_log
bad option compression.level: an integer in 0..9 expected, got 10
bad option compression.server_max_window_bits: an integer in 9..15 expected, got 8
bad option compression.client_max_window_bits: an integer in 9..15 expected, got 16
bad option compression.threshold: an integer in 0..9007199254740991 expected, got -1
bad option compression.large_level: an integer in 0..9 expected, got 1.5
bad option compression.server_no_context_takeover: a boolean expected, got 1
bad option compression: unknown key colour
new: bad option compression: true, false or a table expected, got string



=== TEST 5: offers declined (malformed, unknown, duplicate, out of range, window 8): served uncompressed
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local cases = {
                { "server window 8", "permessage-deflate; server_max_window_bits=8" },
                { "server window without a value", "permessage-deflate; server_max_window_bits" },
                { "window 16", "permessage-deflate; client_max_window_bits=16" },
                { "window 7", "permessage-deflate; server_max_window_bits=7" },
                { "leading zero", "permessage-deflate; server_max_window_bits=09" },
                { "not a number", "permessage-deflate; client_max_window_bits=x" },
                { "unknown parameter", "permessage-deflate; foo" },
                { "unknown parameter with a value", "permessage-deflate; foo=1" },
                { "duplicate flag", "permessage-deflate; server_no_context_takeover; server_no_context_takeover" },
                { "duplicate window", "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11" },
                { "value on a flag", "permessage-deflate; client_no_context_takeover=1" },
                { "unterminated quote", 'permessage-deflate; server_max_window_bits="10' },
                { "empty parameter name", "permessage-deflate; =10" },
                { "other extensions only", "x-webkit-deflate-frame; no_context_takeover" },
                { "garbage", "permessage-deflate;;;" },
                { "no offer", nil },
            }
            for i, c in ipairs(cases) do
                local ws, agreed = cc.connect("/pubsub?compression=true", c[2])
                ws:send(rawws.req({ sequence = i, cmd_ping = { state = string.rep("s", 200) } }))
                local op, payload, rsv = ws:recv()
                -- RSV1 on what the client sends is now a protocol error.
                ws:send(rawws.frame(2, "x", { rsv = 0x40 }))
                ngx.say(c[1], ": ", agreed, ", reply rsv ", rsv, " op ", op, ", rsv1 then: ", ws:close_code())
                ws:close()
            end
        }
    }
--- response_body
server window 8: none, reply rsv 0 op 2, rsv1 then: 1002
server window without a value: none, reply rsv 0 op 2, rsv1 then: 1002
window 16: none, reply rsv 0 op 2, rsv1 then: 1002
window 7: none, reply rsv 0 op 2, rsv1 then: 1002
leading zero: none, reply rsv 0 op 2, rsv1 then: 1002
not a number: none, reply rsv 0 op 2, rsv1 then: 1002
unknown parameter: none, reply rsv 0 op 2, rsv1 then: 1002
unknown parameter with a value: none, reply rsv 0 op 2, rsv1 then: 1002
duplicate flag: none, reply rsv 0 op 2, rsv1 then: 1002
duplicate window: none, reply rsv 0 op 2, rsv1 then: 1002
value on a flag: none, reply rsv 0 op 2, rsv1 then: 1002
unterminated quote: none, reply rsv 0 op 2, rsv1 then: 1002
empty parameter name: none, reply rsv 0 op 2, rsv1 then: 1002
other extensions only: none, reply rsv 0 op 2, rsv1 then: 1002
garbage: none, reply rsv 0 op 2, rsv1 then: 1002
no offer: none, reply rsv 0 op 2, rsv1 then: 1002
--- error_log
bad RSV1, RSV2, or RSV3 bits
--- no_error_log
[crit]

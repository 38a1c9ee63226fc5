# permessage-deflate data: compressed requests of every size and shape inflated, replies and
# pushes compressed at or above the threshold with the agreed windows and context takeover,
# order and sequences as without compression; a push compressed once for many connections.
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(no_error_log => '[error]', http_config => <<'_EOC_');
    lua_socket_log_errors off;
_EOC_

run_tests();

__DATA__

=== TEST 1: requests and replies of 16 B to 1 MiB, compressed both ways (Rust echo and Lua handler paths)
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local ws, agreed = cc.connect("/pubsub?compression=true&max_payload_len=2200000", "permessage-deflate; client_max_window_bits")
            local codec = cc.codec(agreed)
            local function json(n)
                local parts, len, i = {}, 0, 0
                while len < n do
                    i = i + 1
                    local rec = ('{"id":%d,"topic":"orders","price":%d.%02d,"side":"%s"},'):format(i, i * 7 % 1000, i % 100, i % 2 == 0 and "buy" or "sell")
                    parts[#parts + 1] = rec
                    len = len + #rec
                end
                return table.concat(parts):sub(1, n)
            end
            for seq, n in ipairs({ 16, 63, 64, 1024, 5000, 60000, 200000, 1048576 }) do
                local state = json(n)
                cc.send_ping(ws, codec, seq, state)
                local r, compressed, wire = cc.resp(ws, codec)
                ngx.say(n, ": seq ", r.sequence, ", same state ", r.pong_resp.state == state, ", compressed ",
                    tostring(compressed), ", wire under 0.3 ", wire < 0.3 * n)
            end
            ngx.say("close ", cc.close(ws))
        }
    }
--- response_body
16: seq 1, same state true, compressed false, wire under 0.3 false
63: seq 2, same state true, compressed true, wire under 0.3 false
64: seq 3, same state true, compressed true, wire under 0.3 false
1024: seq 4, same state true, compressed true, wire under 0.3 true
5000: seq 5, same state true, compressed true, wire under 0.3 true
60000: seq 6, same state true, compressed true, wire under 0.3 true
200000: seq 7, same state true, compressed true, wire under 0.3 true
1048576: seq 8, same state true, compressed true, wire under 0.3 true
close 1000



=== TEST 2: fragmented compressed requests with pings between, mixed with uncompressed ones: order kept
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local ws, agreed = cc.connect("/pubsub?compression=true", "permessage-deflate")
            local codec = cc.codec(agreed)
            local got = {}
            for seq = 1, 6 do
                if seq % 3 == 0 then
                    ws:send(rawws.req({ sequence = seq, cmd_ping = { state = string.rep("u", 300) } }))
                else
                    cc.send_ping(ws, codec, seq, string.rep("fragment " .. seq .. " ", 500), 50)
                end
            end
            for _ = 1, 6 do
                local r, compressed = cc.resp(ws, codec)
                got[#got + 1] = r.sequence .. ":" .. #r.pong_resp.state .. (compressed and "z" or "")
            end
            ngx.say(table.concat(got, " "), ", close ", cc.close(ws))
        }
    }
--- response_body
1:5500z 2:5500z 3:300z 4:5500z 5:5500z 6:300z, close 1000



=== TEST 3: context takeover both ways: later similar messages refer back into earlier ones
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            for _, q in ipairs({ "server_no_context_takeover:false,client_no_context_takeover:false", "true" }) do
                local ws, agreed = cc.connect("/pubsub?compression=" .. q, "permessage-deflate; client_max_window_bits")
                local codec = cc.codec(agreed)
                local wires, ok = {}, true
                local base = {}
                for i = 1, 200 do base[i] = string.char(97 + (i * 7919) % 26) end
                base = table.concat(base)
                for seq = 1, 4 do
                    local state = base .. seq
                    cc.send_ping(ws, codec, seq, state)
                    local r, compressed, wire = cc.resp(ws, codec)
                    ok = ok and compressed and r.pong_resp.state == state
                    wires[seq] = wire
                end
                ngx.say(agreed, ": ok ", ok, ", later messages under half the first ", wires[4] < wires[1] / 2, ", close ", cc.close(ws))
            end
        }
    }
--- response_body
permessage-deflate: ok true, later messages under half the first true, close 1000
permessage-deflate; server_no_context_takeover; client_no_context_takeover: ok true, later messages under half the first false, close 1000



=== TEST 4: the agreed server window is honoured: a 9-bit inflater reads the replies; one of 15 bits is not
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local zlib = require("zlib")
            -- 4 KiB of 16-letter noise repeated: a 15-bit window finds the repeats 4 KiB back, a 9-bit one
            -- cannot (and the noise is not so random that it is sent uncompressed).
            local noise = {}
            local x = 12345
            for i = 1, 4096 do x = (x * 1103515245 + 12345) % 2147483648; noise[i] = string.char(97 + x % 16) end
            local state = table.concat(noise):rep(8)
            for _, offer in ipairs({ "permessage-deflate; server_max_window_bits=9", "permessage-deflate" }) do
                local ws, agreed = cc.connect("/pubsub?compression=true&max_payload_len=100000", offer)
                local codec = cc.codec(agreed)
                local nine = zlib.inflater(9, true, 64)
                codec.inflate = function(p) return nine:inflate(p) end
                cc.send_ping(ws, codec, 1, state)
                local r, err = cc.resp(ws, codec)
                ngx.say(agreed, ": ", r and tostring(r.pong_resp.state == state) or err)
                cc.close(ws)
            end
        }
    }
--- response_body
permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9: true
permessage-deflate; server_no_context_takeover; client_no_context_takeover: zlib error -3: invalid distance too far back



=== TEST 5: replies of a Lua handler, values of every size, compressed with their values copied
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local pb = require("protobuf")
            local server = require("pubsub_server")
            local ws, agreed = cc.connect("/pubsub?compression=true&max_payload_len=1000000", "permessage-deflate")
            local codec = cc.codec(agreed)
            for n = 1, 3 do
                local req = pb.encode("PubSubReq", { sequence = n, cmd_kafka_fetch = { topic = "sizes", partition = n, offset = 0 } })
                ws:send(rawws.frame(2, codec.compress(req), { rsv = 0x40 }))
            end
            for n = 1, 3 do
                local r, compressed = cc.resp(ws, codec)
                local want = server.sizes_reply(n).kafka_fetch_resp.messages
                local same = #r.kafka_fetch_resp.messages == #want
                for i, m in ipairs(want) do
                    local g = r.kafka_fetch_resp.messages[i]
                    same = same and g.value == m.value and g.key == m.key
                end
                ngx.say(r.sequence, ": compressed ", tostring(compressed), ", same ", same)
            end
            ngx.say("close ", cc.close(ws))
        }
    }
--- response_body
1: compressed true, same true
2: compressed true, same true
3: compressed true, same true
close 1000



=== TEST 6: pushes: a message compressed once per window and level for every connection that shares it
--- http_config
    lua_shared_dict unused 1m;
--- config
    location /cpush {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local args = ngx.req.get_uri_args()
            local opts = {}
            if args.takeover then
                opts.compression = { server_no_context_takeover = false, client_no_context_takeover = false }
            else
                opts.compression = true
            end
            local p = assert(pubsub.new(opts))
            package.loaded.cpush = package.loaded.cpush or {}
            table.insert(package.loaded.cpush, p)
            p:wait()
        }
    }
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local pubsub = require("apisix_pubsub_rs")
            local clients = {
                { "/cpush", "permessage-deflate" },
                { "/cpush", "permessage-deflate" },
                { "/cpush", "permessage-deflate; client_max_window_bits" },
                { "/cpush", "permessage-deflate; server_max_window_bits=10" },
                { "/cpush?takeover=1", "permessage-deflate" },
                { "/cpush", nil },
            }
            for _, c in ipairs(clients) do
                c.ws, c.agreed = cc.connect(c[1], c[2])
                c.codec = cc.codec(c.agreed)
            end
            ngx.sleep(0.05)
            local conns = package.loaded.cpush
            local records = {}
            for i = 1, 100 do records[i] = { offset = i, key = "k" .. i, value = '{"price":' .. i .. ',"side":"buy"}' } end
            local reply = { kafka_fetch_resp = { messages = records } }
            local msg = assert(pubsub.message(reply, 42))
            local small = assert(pubsub.message({ pong_resp = { state = "tiny" } }, 43))
            for _, p in ipairs(conns) do
                assert(p:send(msg))
                assert(p:send(small))
                assert(p:send(reply, 44))
            end
            local keys = {}
            for k in pairs(msg.deflated) do keys[#keys + 1] = string.format("window %d level %d", math.floor(k / 256), k % 256) end
            table.sort(keys)
            ngx.say("compressed ", #keys, " times: ", table.concat(keys, ", "), "; small: ", tostring(small.deflated))
            local wires = {}
            for i, c in ipairs(clients) do
                local got = {}
                for _ = 1, 3 do
                    local r, compressed, wire = cc.resp(c.ws, c.codec)
                    local n = r.kafka_fetch_resp and #r.kafka_fetch_resp.messages or r.pong_resp.state
                    got[#got + 1] = r.sequence .. ":" .. n .. (compressed and "z" or "")
                    wires[i] = wires[i] or wire
                end
                ngx.say(c[1], " ", c.agreed, ": ", table.concat(got, " "))
            end
            ngx.say("same bytes on the shared ones: ", wires[1] == wires[2] and wires[2] == wires[3], ", window 10 differs: ", wires[4] ~= wires[1])
            for _, c in ipairs(clients) do cc.close(c.ws) end
        }
    }
--- response_body
compressed 2 times: window 10 level 1, window 15 level 1; small: nil
/cpush permessage-deflate; server_no_context_takeover; client_no_context_takeover: 42:100z 43:tiny 44:100z
/cpush permessage-deflate; server_no_context_takeover; client_no_context_takeover: 42:100z 43:tiny 44:100z
/cpush permessage-deflate; server_no_context_takeover; client_no_context_takeover: 42:100z 43:tiny 44:100z
/cpush permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10: 42:100z 43:tiny 44:100z
/cpush?takeover=1 permessage-deflate: 42:100z 43:tiny 44:100z
/cpush none: 42:100 43:tiny 44:100
same bytes on the shared ones: true, window 10 differs: true



=== TEST 7: with fragment_size, a compressed reply is cut into frames: RSV1 on the first only
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local ws, agreed = cc.connect("/pubsub?compression=true&fragment_size=10", "permessage-deflate")
            local codec = cc.codec(agreed)
            local state = string.rep('{"id":1,"side":"buy"},', 60)
            cc.send_ping(ws, codec, 9, state)
            local frames, rsvs = 0, {}
            repeat
                local op, payload, fin, rsv = ws:recv_frame()
                frames = frames + 1
                rsvs[#rsvs + 1] = rsv
            until fin
            ngx.say("frames > 1: ", frames > 1, ", rsv of the first ", rsvs[1], ", of the others ", rsvs[2], "..", rsvs[#rsvs])
            -- and whole: the same reply again, reassembled and inflated
            cc.send_ping(ws, codec, 10, state)
            local r, compressed = cc.resp(ws, codec)
            ngx.say(r.sequence, " ", r.pong_resp.state == state, " ", tostring(compressed), ", close ", cc.close(ws))
        }
    }
--- response_body
frames > 1: true, rsv of the first 64, of the others 0..0
10 true true, close 1000

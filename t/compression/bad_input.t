# permessage-deflate on bad input: every case fails the connection with its close code (1002 for
# RSV bits where RFC 7692 forbids them, 1007 for data that does not inflate or is not UTF-8, 1009
# for a message that inflates past max_message_len, found while inflating), and the worker keeps
# serving. Bombs cost at most the limit in memory: the worker's peak RSS is checked around them.
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(http_config => <<'_EOC_');
    lua_socket_log_errors off;
_EOC_

run_tests();

__DATA__

=== TEST 1: RSV bits: without negotiation, on control frames, on continuations, RSV2/RSV3 -> 1002
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local zlib = require("zlib")
            local z = zlib.deflater(15, true):compress(string.rep("a", 300))
            local cases = {
                { "rsv1 without compression", "/pubsub", rawws.frame(2, z, { rsv = 0x40 }) },
                { "rsv1 when the offer was declined", "/pubsub?compression=true", rawws.frame(2, z, { rsv = 0x40 }), "permessage-deflate; foo" },
                { "rsv1 on a ping", "/pubsub?compression=true", rawws.frame(9, "p", { rsv = 0x40 }) },
                { "rsv1 on a pong", "/pubsub?compression=true", rawws.frame(10, "p", { rsv = 0x40 }) },
                { "rsv1 on a close", "/pubsub?compression=true", rawws.frame(8, "\3\232", { rsv = 0x40 }) },
                { "rsv1 on a continuation", "/pubsub?compression=true",
                    rawws.frame(2, z:sub(1, 5), { rsv = 0x40, fin = false }) .. rawws.frame(0, z:sub(6), { rsv = 0x40 }) },
                { "rsv1 on a continuation of an uncompressed message", "/pubsub?compression=true",
                    rawws.frame(2, "ab", { fin = false }) .. rawws.frame(0, "cd", { rsv = 0x40 }) },
                { "rsv2", "/pubsub?compression=true", rawws.frame(2, z, { rsv = 0x20 }) },
                { "rsv3", "/pubsub?compression=true", rawws.frame(2, z, { rsv = 0x50 }) },
            }
            for _, c in ipairs(cases) do
                local ws, agreed = cc.connect(c[2], c[4] or "permessage-deflate")
                ws:send(c[3])
                ngx.say(c[1], " (", agreed == "none" and "declined" or "agreed", "): ", ws:close_code())
                ws:close()
            end
            ngx.say(cc.still_serves(5))
        }
    }
--- response_body
rsv1 without compression (declined): 1002
rsv1 when the offer was declined (declined): 1002
rsv1 on a ping (agreed): 1002
rsv1 on a pong (agreed): 1002
rsv1 on a close (agreed): 1002
rsv1 on a continuation (agreed): 1002
rsv1 on a continuation of an uncompressed message (agreed): 1002
rsv2 (agreed): 1002
rsv3 (agreed): 1002
then: 5 1000
--- error_log
bad RSV1, RSV2, or RSV3 bits
RSV1 set on a control frame
RSV1 set on a continuation frame
--- no_error_log
[crit]



=== TEST 2: corrupt deflate streams and bad text -> 1007; truncated and padded streams
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local zlib = require("zlib")
            local function z(s) return zlib.deflater(15, true):compress(s) end
            local cases = {
                { "reserved block type", rawws.frame(2, "\255\255\255\255", { rsv = 0x40 }) },
                { "distance before the start", rawws.frame(2, "\2\2\0", { rsv = 0x40 }) },
                { "stored block with a bad length", rawws.frame(2, "\0\5\0\0\0abc", { rsv = 0x40 }) },
                { "corrupt in the second fragment", rawws.frame(2, z(string.rep("ab", 100)):sub(1, 4), { rsv = 0x40, fin = false })
                    .. rawws.frame(0, "\255\255\255") },
                { "text not UTF-8 once inflated", rawws.frame(1, z("ok \255\254 not utf-8"), { rsv = 0x40 }) },
                { "fragmented text not UTF-8 once inflated", rawws.frame(1, z("ok \255\254 not utf-8"), { rsv = 0x40, fin = false })
                    .. rawws.frame(0, "") },
            }
            for _, c in ipairs(cases) do
                local ws = cc.connect("/pubsub?compression=true", "permessage-deflate")
                ws:send(c[2])
                ngx.say(c[1], ": ", ws:close_code())
                ws:close()
            end
            -- Valid text: logged, as uncompressed text is; an empty compressed message is the
            -- empty command; a final block followed by padding is ended by the final block.
            local ws, agreed = cc.connect("/pubsub?compression=true", "permessage-deflate")
            ws:send(rawws.frame(1, z("h\195\169llo compressed"), { rsv = 0x40 }))
            ws:send(rawws.frame(2, "", { rsv = 0x40 }))
            local pb = require("protobuf")
            local final = zlib.deflater(15, true):compress(pb.encode("PubSubReq", { sequence = 3, cmd_ping = { state = "fin" } }), true)
            -- a stream ended by a final block, then bytes after it, which are not inflated
            ws:send(rawws.frame(2, final .. "\0\0\255\255", { rsv = 0x40 }))
            local codec = cc.codec(agreed)
            local r = cc.resp(ws, codec)
            ngx.say("after a final block: ", r.sequence, " ", r.pong_resp.state, ", close ", cc.close(ws))
        }
    }
--- response_body
reserved block type: 1007
distance before the start: 1007
stored block with a bad length: 1007
corrupt in the second fragment: 1007
text not UTF-8 once inflated: 1007
fragmented text not UTF-8 once inflated: 1007
after a final block: 3 fin, close 1000
--- error_log
invalid compressed data
text message is not valid UTF-8
pubsub server receive non-binary data, type: text, data: héllo compressed
pubsub server receives empty command
--- no_error_log
[crit]



=== TEST 3: limits: at max_message_len inflated is served, one byte more is 1009 (single and fragmented)
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local zlib = require("zlib")
            local pb = require("protobuf")
            local limit = 10000
            local function ping(n)
                -- a cmd_ping whose encoding is exactly n bytes
                for k = n - 12, n do
                    local req = pb.encode("PubSubReq", { sequence = 1, cmd_ping = { state = string.rep("s", k) } })
                    if #req == n then
                        return req, n
                    end
                end
            end
            for _, n in ipairs({ limit, limit + 1 }) do
                for _, frag in ipairs({ false, true }) do
                    local req, len = ping(n)
                    local ws, agreed = cc.connect("/pubsub?compression=true&max_payload_len=" .. limit .. "&max_message_len=" .. limit, "permessage-deflate")
                    local codec = cc.codec(agreed)
                    local z = codec.compress(req)
                    if frag then
                        ws:send(rawws.frame(2, z:sub(1, 10), { rsv = 0x40, fin = false }) .. rawws.frame(9, "between")
                            .. rawws.frame(0, z:sub(11, 20), { fin = false }) .. rawws.frame(0, z:sub(21)))
                    else
                        ws:send(rawws.frame(2, z, { rsv = 0x40 }))
                    end
                    local r, err = cc.resp(ws, codec)
                    ngx.say(len, " bytes inflated", frag and ", fragmented" or "", " (", #z, " on the wire): ",
                        r and ("pong " .. #r.pong_resp.state .. ", close " .. cc.close(ws)) or err)
                    ws:close()
                end
            end
        }
    }
--- response_body
10000 bytes inflated (40 on the wire): pong 9991, close 1000
10000 bytes inflated, fragmented (40 on the wire): pong 9991, close 1000
10001 bytes inflated (40 on the wire): close 1009
10001 bytes inflated, fragmented (40 on the wire): close 1009
--- error_log
exceeding max message len (10000) when inflated



=== TEST 4: bombs: 1 KiB inflating to 1 MiB, and 1 MiB of frames inflating to 1 GiB -> 1009, memory within the limit
--- config
    location /t {
        content_by_lua_block {
            local cc = require("compression_client")
            local rawws = require("rawws")
            local zlib = require("zlib")
            local function peak_kib()
                local f = io.open("/proc/self/status")
                local s = f:read("*a")
                f:close()
                return tonumber(s:match("VmHWM:%s*(%d+)"))
            end
            local small = zlib.zero_bomb(1)
            local big = zlib.zero_bomb(1024)
            local before = peak_kib()
            local ws = cc.connect("/pubsub?compression=true", "permessage-deflate")
            ws:send(rawws.frame(2, small, { rsv = 0x40 }))
            ngx.say("1 MiB from ", #small, " bytes, limit 64 KiB: ", ws:close_code())
            ws:close()

            ws = cc.connect("/pubsub?compression=true&max_payload_len=65536&max_message_len=2097152", "permessage-deflate")
            local frames, at = {}, 1
            while at <= #big do
                local last = at + 65536 > #big
                frames[#frames + 1] = rawws.frame(at == 1 and 2 or 0, big:sub(at, at + 65535), { fin = last, rsv = at == 1 and 0x40 or 0 })
                at = at + 65536
            end
            ngx.thread.spawn(function()
                -- the server fails the connection early: what is left may not be taken
                for _, f in ipairs(frames) do
                    if not ws:send(f) then break end
                end
            end)
            ngx.say("1 GiB from ", math.floor(#big / 1024), " KiB in ", #frames, " frames, limit 2 MiB: ", ws:close_code())
            local grown = peak_kib() - before
            ngx.say("peak RSS grew under 16 MiB: ", grown < 16 * 1024)
            ws:close()
            ngx.say(cc.still_serves(7))
        }
    }
--- response_body_like
^1 MiB from 10\d\d bytes, limit 64 KiB: 1009
1 GiB from 10\d\d KiB in 1[67] frames, limit 2 MiB: 1009
peak RSS grew under 16 MiB: true
then: 7 1000
--- error_log
exceeding max message len (65535) when inflated
exceeding max message len (2097152) when inflated

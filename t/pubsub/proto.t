# A proto file read at run time (pubsub.load_proto): its commands served beside the built-in ones,
# bad files refused with the file and line, the schema in force kept.
use t::Pubsub 'no_plan';

our $ProtoLocation = <<'_EOC_';
    location /echo {
        content_by_lua_block {
            local c = assert(require("apisix_pubsub_rs").new())
            c:on("cmd_echo", function(params)
                local texts = {}
                for i = 1, params.times do
                    texts[i] = params.text
                end
                return { echo_resp = { texts = texts } }
            end)
            c:wait()
        }
    }
_EOC_

t::Pubsub::server_suite(location => $ProtoLocation, no_error_log => '[error]');

run_tests();

__DATA__

=== TEST 1: a new command and reply from a file, served and encoded with no rebuild; the built-in commands keep working
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local dir = os.getenv("TMPDIR") or "/tmp"
            local path = dir .. "/apisix-pubsub-rs-proto-t-" .. ngx.worker.pid() .. ".proto"
            local f = assert(io.open(path, "w"))
            f:write([[
syntax = "proto3";
message CmdEcho { string text = 1; int64 times = 2; }
message EchoResp { repeated string texts = 1; }
message PubSubReq {
    int64 sequence = 1;
    oneof req { CmdEcho cmd_echo = 41; }
}
message PubSubResp {
    int64 sequence = 1;
    oneof resp { EchoResp echo_resp = 41; }
}
]])
            f:close()
            ngx.say("before: ", pcall(pubsub.encode_resp, 1, { echo_resp = { texts = { "x" } } }) and
                tostring((pubsub.encode_resp(1, { echo_resp = { texts = { "x" } } }))) or "raised")
            ngx.say("load: ", tostring(pubsub.load_proto(path)))
            local cmds = table.concat(pubsub._COMMANDS, " ")
            ngx.say("commands: ", cmds)
            -- PubSubReq { sequence = 5, cmd_echo = { text = "hi", times = 3 } }, by hand.
            local req = "\8\5\202\2\6\10\2hi\16\3"
            local seq, cmd, params = pubsub.decode_req(req)
            ngx.say("decode_req: ", seq, " ", cmd, " ", params.text, " ", params.times)
            local want = assert(pubsub.encode_resp(5, { echo_resp = { texts = { "hi", "hi", "hi" } } }))
            local ws = require("rawws").connect("/echo")
            ws:send(ws.frame(2, req))
            local op, payload = ws:recv()
            ngx.say("reply: ", op, " ", payload == want)
            ws:send(ws.req({ sequence = 6, cmd_ping = { state = "built-in" } }))
            ngx.say("ping: ", assert(ws:resp()).pong_resp.state)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
            os.remove(path)
        }
    }
--- response_body
before: nil
load: true
commands: cmd_empty cmd_ping cmd_kafka_fetch cmd_kafka_list_offset cmd_subscribe cmd_unsubscribe cmd_publish cmd_echo
decode_req: 5 cmd_echo hi 3
reply: 2 true
ping: built-in
close 1000



=== TEST 2: bad files are refused naming the file and line, and the schema in force stays
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local dir = os.getenv("TMPDIR") or "/tmp"
            local function try(name, text)
                local path = dir .. "/apisix-pubsub-rs-bad-" .. name .. "-" .. ngx.worker.pid() .. ".proto"
                local f = assert(io.open(path, "w"))
                f:write(text)
                f:close()
                local ok, err = pubsub.load_proto(path)
                os.remove(path)
                ngx.say(name, ": ", tostring(ok), " ", (err:gsub("^.*/apisix%-pubsub%-rs%-bad%-[^/]*%.proto", "FILE")))
            end
            local good = [[
syntax = "proto3";
message PongResp { bytes state = 1; }
message PubSubReq {
    int64 sequence = 1;
}
message PubSubResp {
    int64 sequence = 1;
    oneof resp { PongResp pong_resp = 32; }
}
]]
            try("syntax", "syntax = \"proto3\";\nmessage PubSubReq { int64 sequence = 1 }\n")
            try("missing", "syntax = \"proto3\";\nmessage PubSubReq { int64 sequence = 1; }\n")
            try("renumbered", (good:gsub("pong_resp = 32", "pong_resp = 42")))
            try("retyped", (good:gsub("bytes state = 1", "int32 state = 1")))
            try("basic", (good:gsub("int64 sequence = 1;\n}", "int64 sequence = 1;\n    string token = 2;\n}")))
            ngx.say("missing file: ", select(2, pubsub.load_proto(dir .. "/no-such-file.proto")) ~= nil)
            ngx.say("still served: ", table.concat(pubsub._COMMANDS, " "))
            ngx.say(select(2, pcall(pubsub.load_proto, 42)))
        }
    }
--- response_body_like
^syntax: nil [^\n]*FILE:2:[^\n]*
missing: nil FILE: no message PubSubResp
renumbered: nil FILE:8: field pong_resp of PubSubResp is number 32 with another type in the built-in schema[^\n]*
retyped: nil FILE:2: field state of PongResp is number 1 with another type in the built-in schema[^\n]*
basic: nil FILE:5: field token of PubSubReq: numbers 1 to 30 carry basic information[^\n]*
missing file: true
still served: cmd_empty cmd_ping cmd_kafka_fetch cmd_kafka_list_offset cmd_subscribe cmd_unsubscribe cmd_publish
[^\n]*bad path: a string expected, got number



=== TEST 3: the APISIX shim loads apisix/include/apisix/model/pubsub.proto under the prefix when it is there
--- config
    location /t {
        content_by_lua_block {
            local dir = ngx.config.prefix() .. "apisix/include/apisix/model/"
            assert(os.execute("mkdir -p " .. dir))
            local f = assert(io.open(dir .. "pubsub.proto", "w"))
            f:write([[
syntax = "proto3";
message CmdEcho { string text = 1; int64 times = 2; }
message EchoResp { repeated string texts = 1; }
message PubSubReq { int64 sequence = 1; oneof req { CmdEcho cmd_echo = 41; } }
message PubSubResp { int64 sequence = 1; oneof resp { EchoResp echo_resp = 41; } }
]])
            f:close()
            local shim = require("apisix.core.pubsub")
            -- Loaded: the directory goes (the real Test::Nginx stops at a server root holding
            -- directories it does not know).
            assert(os.execute("rm -rf " .. ngx.config.prefix() .. "apisix"))
            ngx.say("commands: ", table.concat(shim._COMMANDS, " "))
            local seq, cmd = shim.decode_req("\8\5\202\2\6\10\2hi\16\3")
            ngx.say(seq, " ", cmd)
        }
    }
--- response_body
commands: cmd_empty cmd_ping cmd_kafka_fetch cmd_kafka_list_offset cmd_subscribe cmd_unsubscribe cmd_publish cmd_echo
5 cmd_echo

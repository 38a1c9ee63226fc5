-- Per-message cost of the Lua<->Rust bridge, outside nginx: decode_req (FFI decode + building the
-- params table from ops) plus encode_resp (walking the reply table + FFI encoder calls), for a
-- ping with a 16-byte state. Run from the repo root after `make`:
--   luajit bench/lua_codec.lua
package.cpath = "target/release/lib?.so;" .. package.cpath
local m = require("apisix_pubsub_rs")
-- PubSubReq{sequence = 12345, cmd_ping = {state = "0123456789abcdef"}}
local req = "\8\185\96\130\2\18\10\16" .. "0123456789abcdef"
local n = 2000000
local clock = os.clock

local function run(label, f)
    for _ = 1, n / 10 do f() end -- warm up, let the JIT compile
    local t0 = clock()
    for _ = 1, n do f() end
    local dt = clock() - t0
    print(("%-44s %7.0f ns/message"):format(label, dt / n * 1e9))
end

local decode_req, encode_resp = m.decode_req, m.encode_resp
run("decode_req (ping, 16 B state)", function()
    local seq, cmd, params = decode_req(req)
    return params.state
end)
local reply = { pong_resp = { state = "0123456789abcdef" } }
run("encode_resp (pong, 16 B state)", function()
    return encode_resp(12345, reply)
end)
run("decode_req + handler + encode_resp", function()
    local seq, cmd, params = decode_req(req)
    return encode_resp(seq, { pong_resp = { state = params.state } })
end)

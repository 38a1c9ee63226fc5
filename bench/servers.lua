-- The servers `make bench` compares, each behind its own location of one nginx worker.
-- native:       this module, end to end, with its default cmd_ping handler.
-- native_lua_handler: the same with a cmd_ping handler written in Lua (the same echo).
-- native_compressed: native with compression = true (permessage-deflate, when the client offers
--               it), or at zlib level ?level=N for every size.
-- lua_framing:  lua-resty-websocket's server does the framing, this module's codec the protobuf,
--               with the same handler logic: isolates what native framing buys.
-- floor:        reads with receiveany and answers each frame with a precomputed reply, decoding
--               nothing: the cost of nginx and cosockets alone. Requests must all have the size
--               given by ?frame=N; replies are pongs whose state has ?state=N bytes.

local _M = {}

-- resty.websocket.server, or nginx.websocket.server on Debian: pubsub_runtime is the module that
-- bench.sh writes from scripts/runtime.sh --lua.
local ws_server = require(require("pubsub_runtime").websocket .. ".server")

-- Serves one connection with this module; `ping`, when given, is registered as the cmd_ping
-- handler in place of the default one.
local function serve_native(max, ping, compression)
    local pubsub, err = require("apisix_pubsub_rs").new({ max_payload_len = max, compression = compression,
                                                          direct_writes = ngx.var.arg_direct ~= "0" })
    if not pubsub then
        ngx.log(ngx.ERR, "failed to initialize pubsub module, err: ", err)
        return ngx.exit(400)
    end
    if ping then
        pubsub:on("cmd_ping", ping)
    end
    pubsub:wait()
end

function _M.native(max)
    return serve_native(max)
end

function _M.native_compressed(max, level)
    return serve_native(max, nil, level and { level = level, large_level = level } or true)
end

function _M.native_lua_handler(max)
    return serve_native(max, function(params)
        return { pong_resp = { state = params.state } }
    end)
end

function _M.lua_framing(max)
    local codec = require("apisix_pubsub_rs")
    local wb, err = ws_server:new({ max_payload_len = max, timeout = 60000 })
    if not wb then
        ngx.log(ngx.ERR, "handshake: ", err)
        return ngx.exit(400)
    end
    while true do
        local data, typ = wb:recv_frame()
        if not data or typ == "close" then
            if typ == "close" then wb:send_close() end
            return
        end
        if typ == "binary" then
            local seq, cmd, params = codec.decode_req(data)
            local reply
            if cmd == "cmd_ping" then
                reply = codec.encode_resp(seq, { pong_resp = { state = params.state } })
            else
                reply = codec.encode_resp(seq or 0, { error_resp = { code = 0, message = "wrong command" } })
            end
            wb:send_binary(reply)
        elseif typ == "ping" then
            wb:send_pong(data)
        end
    end
end

local function server_frame(payload)
    local len = #payload
    local hdr
    if len <= 125 then
        hdr = string.char(0x82, len)
    elseif len <= 65535 then
        hdr = string.char(0x82, 126, math.floor(len / 256), len % 256)
    else
        local b = {}
        for i = 8, 1, -1 do b[i] = len % 256; len = math.floor(len / 256) end
        hdr = string.char(0x82, 127, unpack(b))
    end
    return hdr .. payload
end

function _M.floor(max)
    local wb, err = ws_server:new({ max_payload_len = max })
    if not wb then
        ngx.log(ngx.ERR, "handshake: ", err)
        return ngx.exit(400)
    end
    local sock = wb.sock
    local frame_len = tonumber(ngx.var.arg_frame)
    local state_len = tonumber(ngx.var.arg_state)
    local codec = require("apisix_pubsub_rs")
    local reply = server_frame(codec.encode_resp(1, { pong_resp = { state = string.rep("s", state_len) } }))
    local batches = {}
    local pending = 0
    while true do
        local data = sock:receiveany(65536)
        if not data then
            return
        end
        pending = pending + #data
        local n = math.floor(pending / frame_len)
        pending = pending - n * frame_len
        if n > 0 then
            local out = batches[n]
            if not out then
                out = string.rep(reply, n)
                if n <= 64 then batches[n] = out end
            end
            sock:send(out)
        end
    end
end

return _M

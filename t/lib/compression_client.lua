-- What the compression suites share: a raw client connection that offers permessage-deflate and
-- speaks it through the system's zlib (t/lib/zlib.lua), and the words of the answer.

local rawws = require("rawws")
local zlib = require("zlib")
local pb = require("protobuf")

local _M = {}

local KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

--- Connects to `path` offering `offers` (a string: one Sec-WebSocket-Extensions line; a table:
--- one line each; nil: none). Returns the connection and the response's extensions value (or
--- "none").
function _M.connect(path, offers)
    local lines = {}
    if type(offers) == "string" then
        offers = { offers }
    end
    for _, o in ipairs(offers or {}) do
        lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. o .. "\r\n"
    end
    local ws, err = rawws.connect(path, "Upgrade: websocket\r\nConnection: Upgrade\r\n" .. KEY
        .. "Sec-WebSocket-Version: 13\r\n" .. table.concat(lines))
    if not ws then
        return nil, err
    end
    local agreed = ws.head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: ([^\r\n]*)")
    return ws, agreed or "none"
end

--- The parameters of a response value: { name = true | number }.
function _M.params(agreed)
    local p = {}
    for name, eq, value in agreed:gmatch(";%s*([%w_]+)(=?)(%d*)") do
        p[name] = eq == "=" and tonumber(value) or true
    end
    return p
end

--- The client's side of what was agreed: `compress(msg)` and `inflate(payload)` with the
--- windows and context takeover of the response.
function _M.codec(agreed)
    local p = _M.params(agreed)
    local d = zlib.deflater(p.client_max_window_bits or 15, p.client_no_context_takeover)
    local i = zlib.inflater(p.server_max_window_bits or 15, p.server_no_context_takeover)
    return {
        compress = function(msg) return d:compress(msg) end,
        inflate = function(payload) return i:inflate(payload) end,
    }
end

--- Sends a compressed cmd_ping (`state`, sequence `seq`), in frames of at most `fragment`
--- bytes when given, a ping control frame between each two.
function _M.send_ping(ws, codec, seq, state, fragment)
    local payload = codec.compress(pb.encode("PubSubReq", { sequence = seq, cmd_ping = { state = state } }))
    if not fragment or #payload <= fragment then
        return ws:send(rawws.frame(2, payload, { rsv = 0x40 }))
    end
    local parts, at = {}, 1
    while at <= #payload do
        local last = at + fragment > #payload
        parts[#parts + 1] = rawws.frame(at == 1 and 2 or 0, payload:sub(at, at + fragment - 1),
            { fin = last, rsv = at == 1 and 0x40 or 0 })
        if not last then
            parts[#parts + 1] = rawws.frame(9, "between")
        end
        at = at + fragment
    end
    return ws:send(table.concat(parts))
end

--- Ends the connection cleanly: a close frame, and the server's close code.
function _M.close(ws)
    ws:send(rawws.close_frame(1000))
    local code = ws:close_code()
    ws:close()
    return code
end

--- A new compressed connection is served (the worker lives on): "then: <seq> <close code>".
function _M.still_serves(seq)
    local ws, agreed = _M.connect("/pubsub?compression=true", "permessage-deflate")
    local codec = _M.codec(agreed)
    _M.send_ping(ws, codec, seq, string.rep("x", 100))
    local r, err = _M.resp(ws, codec)
    return "then: " .. (r and r.sequence or tostring(err)) .. " " .. tostring(_M.close(ws))
end

--- Reads one data message (pongs skipped), inflated when its first frame has RSV1: the
--- PubSubResp, whether it came compressed, and its payload length on the wire.
function _M.resp(ws, codec)
    while true do
        local op, payload, rsv = ws:recv()
        if not op then
            return nil, payload
        end
        if op == 2 then
            local wire = #payload
            local compressed = rsv == 0x40
            if compressed then
                local err
                payload, err = codec.inflate(payload)
                if not payload then
                    return nil, err
                end
            elseif rsv ~= 0 then
                return nil, "rsv " .. rsv
            end
            return pb.decode("PubSubResp", payload), compressed, wire
        elseif op == 8 then
            return nil, "close " .. (#payload >= 2 and (payload:byte(1) * 256 + payload:byte(2)) or "")
        elseif op ~= 10 then
            return nil, "opcode " .. op .. " " .. payload
        end
    end
end

return _M

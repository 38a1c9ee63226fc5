-- A raw WebSocket client for the suites: exact bytes out (any frame, valid or not), server frames
-- in, with their opcodes and close codes. Built on ngx.socket.tcp.

local bit = require("bit")
local pb = require("protobuf")
local char, byte, concat = string.char, string.byte, table.concat

local _M = {}
local mt = { __index = _M }

--- Connects and performs the handshake. `headers` replaces the default handshake headers when given;
-- `opts`: timeout (ms), port (default: the server's), tls (TLS first, the certificate unchecked),
-- request_line.
function _M.connect(path, headers, opts)
    opts = opts or {}
    local sock = ngx.socket.tcp()
    sock:settimeout(opts.timeout or 3000)
    local ok, err = sock:connect("127.0.0.1", tonumber(opts.port or ngx.var.server_port))
    if not ok then
        return nil, "connect: " .. err
    end
    if opts.tls then
        ok, err = sock:sslhandshake(nil, "localhost", false)
        if not ok then
            return nil, "TLS handshake: " .. err
        end
    end
    local req = (opts.request_line or ("GET " .. (path or "/pubsub") .. " HTTP/1.1")) .. "\r\nHost: localhost\r\n"
        .. (headers or "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
        .. "\r\n"
    ok, err = sock:send(req)
    if not ok then
        return nil, "send: " .. err
    end
    local reader = sock:receiveuntil("\r\n\r\n")
    local head
    head, err = reader()
    if not head then
        return nil, "handshake: " .. err
    end
    local status = tonumber(head:match("^HTTP/1%.%d (%d+)"))
    return setmetatable({ sock = sock, status = status, head = head }, mt)
end

--- A masked client frame. `opts`: fin (default true), rsv (bits to or into byte 0), mask (4 bytes),
--- unmasked, len (announced length, to lie about it).
function _M.frame(opcode, payload, opts)
    opts = opts or {}
    payload = payload or ""
    local fin = opts.fin == false and 0 or 0x80
    local b0 = bit.bor(fin, opts.rsv or 0, opcode)
    local len = opts.len or #payload
    local mask_bit = opts.unmasked and 0 or 0x80
    local hdr
    if len <= 125 then
        hdr = char(b0, bit.bor(mask_bit, len))
    elseif len <= 65535 then
        hdr = char(b0, bit.bor(mask_bit, 126), bit.rshift(len, 8), bit.band(len, 255))
    else
        local hi = opts.len_hi or math.floor(len / 2^32)
        local lo = len % 2^32
        hdr = char(b0, bit.bor(mask_bit, 127),
            bit.band(bit.rshift(hi, 24), 255), bit.band(bit.rshift(hi, 16), 255),
            bit.band(bit.rshift(hi, 8), 255), bit.band(hi, 255),
            bit.band(bit.rshift(lo, 24), 255), bit.band(bit.rshift(lo, 16), 255),
            bit.band(bit.rshift(lo, 8), 255), bit.band(lo, 255))
    end
    if opts.unmasked then
        return hdr .. payload
    end
    local mask = opts.mask or "\1\2\3\4"
    local out = {}
    local m = { byte(mask, 1, 4) }
    for i = 1, #payload do
        out[i] = char(bit.bxor(byte(payload, i), m[(i - 1) % 4 + 1]))
    end
    return hdr .. mask .. concat(out)
end

--- A binary frame holding the PubSubReq `req` (a table, encoded by t/lib/protobuf.lua).
function _M.req(req, opts)
    return _M.frame(2, pb.encode("PubSubReq", req), opts)
end

function _M.close_frame(code, reason)
    local payload = code and (char(bit.rshift(code, 8), bit.band(code, 255)) .. (reason or "")) or ""
    return _M.frame(8, payload)
end

function _M.send(self, data)
    return self.sock:send(data)
end

--- Reads one server frame: opcode, payload, fin, rsv (the RSV bits of byte 0) | nil, err.
function _M.recv_frame(self)
    local sock = self.sock
    local hdr, err = sock:receive(2)
    if not hdr then
        return nil, err
    end
    local b0, b1 = byte(hdr, 1, 2)
    if bit.band(b1, 0x80) ~= 0 then
        return nil, "server frame is masked"
    end
    local len = bit.band(b1, 0x7f)
    if len == 126 then
        local ext = sock:receive(2)
        len = byte(ext, 1) * 256 + byte(ext, 2)
    elseif len == 127 then
        local ext = sock:receive(8)
        len = 0
        for i = 1, 8 do len = len * 256 + byte(ext, i) end
    end
    local payload = ""
    if len > 0 then
        payload, err = sock:receive(len)
        if not payload then
            return nil, err
        end
    end
    return bit.band(b0, 0x0f), payload, bit.band(b0, 0x80) ~= 0, bit.band(b0, 0x70)
end

--- Reads one whole message (reassembling fragments; control frames are returned as they come):
--- opcode, payload, the RSV bits of its first frame.
function _M.recv(self)
    local op, payload, fin, rsv = self:recv_frame()
    if not op then
        return nil, payload
    end
    if op >= 8 or fin then
        return op, payload, rsv
    end
    local parts = { payload }
    while true do
        local op2, p2, fin2 = self:recv_frame()
        if not op2 then
            return nil, p2
        end
        parts[#parts + 1] = p2
        if fin2 then
            return op, concat(parts), rsv
        end
    end
end

--- Reads one reply and decodes it as a PubSubResp.
function _M.resp(self)
    local op, payload = self:recv()
    if not op then
        return nil, payload
    end
    if op ~= 2 then
        return nil, "opcode " .. op .. " " .. payload
    end
    return pb.decode("PubSubResp", payload)
end

--- Reads until a close frame arrives: its code, or nil and what came instead.
function _M.close_code(self)
    while true do
        local op, payload = self:recv()
        if not op then
            return nil, payload
        end
        if op == 8 then
            if #payload < 2 then
                return 0
            end
            return byte(payload, 1) * 256 + byte(payload, 2), payload:sub(3)
        end
    end
end

function _M.close(self)
    self.sock:close()
end

return _M

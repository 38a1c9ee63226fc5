-- The pubsub test client, with the API of APISIX's t/lib/pubsub.lua (new_ws, send_recv_ws_binary,
-- send_recv_ws_text, close_ws), built on lua-resty-websocket's client and the independent codec in
-- t/lib/protobuf.lua. The client is OpenResty's resty.websocket.client, or the same library as
-- Debian's lua-nginx-websocket names it, nginx.websocket.client.

local function websocket_client()
    local ok, client = pcall(require, "resty.websocket.client")
    if ok then
        return client
    end
    return require("nginx.websocket.client")
end

local ws_client = websocket_client()
local pb = require("protobuf")

local _M = {}
local mt = { __index = _M }

function _M.new_ws(server, opts)
    local ws, err = ws_client:new(opts or { max_payload_len = 16 * 1024 * 1024, timeout = 5000 })
    if not ws then
        ngx.log(ngx.ERR, "failed to create websocket client: ", err)
        return nil, err
    end
    local ok
    ok, err = ws:connect(server)
    if not ok then
        ngx.log(ngx.ERR, "failed to connect: ", err)
        return nil, err
    end
    return setmetatable({ type = "ws", ws_client = ws }, mt)
end

--- Receives one reply and decodes it as a PubSubResp.
function _M.recv(self)
    local raw, typ, err = self.ws_client:recv_frame()
    if not raw then
        ngx.log(ngx.ERR, "failed to receive the frame: ", err)
        return nil, err
    end
    if typ ~= "binary" then
        return nil, "got a " .. typ .. " frame", raw
    end
    local data
    data, err = pb.decode("PubSubResp", raw)
    if not data then
        ngx.log(ngx.ERR, "failed to decode the frame: ", err)
        return nil, err
    end
    return data
end

--- Sends a request (a PubSubReq table, or raw bytes when is_raw) and reads the reply.
function _M.send_recv_ws_binary(self, data, is_raw)
    if not is_raw then
        data = pb.encode("PubSubReq", data)
    end
    local _, err = self.ws_client:send_binary(data)
    if err then
        return nil, err
    end
    return self:recv()
end

function _M.send_recv_ws_text(self, text)
    local _, err = self.ws_client:send_text(text)
    if err then
        return nil, err
    end
    return self:recv()
end

function _M.close_ws(self)
    self.ws_client:send_close()
end

return _M

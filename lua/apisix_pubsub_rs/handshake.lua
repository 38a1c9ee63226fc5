-- The server side of the WebSocket opening handshake (RFC 6455 section 4.2), with
-- lua-resty-websocket's error strings, which APISIX's suites observe.

local ngx = ngx
local ngx_req = ngx.req
local ngx_header = ngx.header
local ngx_send_headers = ngx.send_headers
local ngx_flush = ngx.flush
local decode_base64 = ngx.decode_base64
local encode_base64 = ngx.encode_base64
local sha1_bin = ngx.sha1_bin
local type = type
local tostring = tostring
local str_lower = string.lower
local str_find = string.find
local concat = table.concat

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local _M = {}

-- The first value of a request header (a repeated header comes as a table).
local function first(headers, name)
    local v = headers[name]
    if type(v) == "table" then
        v = v[1]
    end
    return v
end

-- Every value of a request header, joined by commas as HTTP allows for a list header sent on
-- several lines (RFC 7230 section 3.2.2); nil when absent.
local function all(headers, name)
    local v = headers[name]
    if type(v) == "table" then
        v = concat(v, ", ")
    end
    return v
end

--- Checks the upgrade request, sends the 101 response and returns the raw request socket, or
-- nil and the reason. `extensions`, when given, is called with every value of the request's
-- Sec-WebSocket-Extensions (joined by commas) before the response goes out, and returns the
-- response's value or nil (every offer declined); without it, extensions are declined.
function _M.accept(extensions)
    if ngx.headers_sent then
        return nil, "response header already sent"
    end
    local method = ngx_req.get_method()
    if method ~= "GET" then
        return nil, "bad method: " .. tostring(method) .. " (a websocket handshake is a GET)"
    end
    ngx_req.read_body()
    if ngx_req.http_version() ~= 1.1 then
        return nil, "bad http version"
    end
    local headers = ngx_req.get_headers()
    local val = first(headers, "upgrade")
    if not val or str_lower(val) ~= "websocket" then
        return nil, "bad \"upgrade\" request header: " .. tostring(val)
    end
    val = first(headers, "connection")
    if not val or not str_find(str_lower(val), "upgrade", 1, true) then
        return nil, "bad \"connection\" request header"
    end
    local key = first(headers, "sec-websocket-key")
    local raw = key and decode_base64(key)
    if not raw or #raw ~= 16 then
        return nil, "bad \"sec-websocket-key\" request header"
    end
    if first(headers, "sec-websocket-version") ~= "13" then
        return nil, "bad \"sec-websocket-version\" request header"
    end
    local protocols = first(headers, "sec-websocket-protocol")
    if protocols then
        ngx_header["Sec-WebSocket-Protocol"] = protocols
    end
    local offers = extensions and all(headers, "sec-websocket-extensions")
    if offers then
        local agreed = extensions(offers)
        if agreed then
            ngx_header["Sec-WebSocket-Extensions"] = agreed
        end
    end
    ngx_header["Upgrade"] = "websocket"
    ngx_header["Sec-WebSocket-Accept"] = encode_base64(sha1_bin(key .. GUID))
    ngx_header["Content-Type"] = nil
    ngx.status = 101
    local ok, err = ngx_send_headers()
    if not ok then
        return nil, "failed to send response header: " .. (err or "unknown")
    end
    ok, err = ngx_flush(true)
    if not ok then
        return nil, "failed to flush response header: " .. (err or "unknown")
    end
    return ngx_req.socket(true)
end

return _M

-- Drop-in for APISIX's apisix/core/pubsub.lua: `require("apisix.core.pubsub")` (and so
-- `core.pubsub`) gets the native module, with the same new / on / wait API (and send, message,
-- decode_req, encode_resp). Install it over the APISIX file (`make install APISIX_DIR=...`), or
-- put its directory before APISIX's in lua_package_path.
--
-- It also loads APISIX's pubsub.proto, as APISIX does (below). One difference from the module's
-- defaults: this shim goes into current APISIX trees, whose
-- own suite expects the reply to a command without a handler to be plain "unknown command"
-- (apache/apisix#7043), so its new() passes unknown_command = "plain" unless told otherwise.

local native = require("apisix_pubsub_rs")
local pairs = pairs
local type = type

local _M = setmetatable({}, { __index = native })

-- APISIX compiles apisix/include/apisix/model/pubsub.proto (relative to its prefix) when
-- core.pubsub loads, so that commands added there need no rebuild; so does this shim, when the
-- file is there. A file that does not load leaves the built-in schema in force, with a warning.
local prefix = ngx and ngx.config and ngx.config.prefix and ngx.config.prefix()
if prefix then
    local path = prefix .. (prefix:sub(-1) == "/" and "" or "/") .. "apisix/include/apisix/model/pubsub.proto"
    local f = io.open(path, "r")
    if f then
        f:close()
        local ok, err = native.load_proto(path)
        if not ok then
            ngx.log(ngx.WARN, "apisix.core.pubsub: ", err, "; the built-in schema is served")
        end
    end
end

--- native.new(opts), with `unknown_command = "plain"` unless opts sets it.
function _M.new(opts)
    if opts ~= nil and type(opts) ~= "table" then
        return native.new(opts)
    end
    local o = { unknown_command = "plain" }
    for k, v in pairs(opts or {}) do
        o[k] = v
    end
    return native.new(o)
end

return _M

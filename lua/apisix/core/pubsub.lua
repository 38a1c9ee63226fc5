-- Drop-in for APISIX's apisix/core/pubsub.lua: `require("apisix.core.pubsub")` (and so
-- `core.pubsub`) gets the native module, with the same new / on / wait API (and send, message,
-- decode_req, encode_resp). Install it over the APISIX file (`make install APISIX_DIR=...`), or
-- put its directory before APISIX's in lua_package_path.
--
-- One difference from the module's defaults: this shim goes into current APISIX trees, whose
-- own suite expects the reply to a command without a handler to be plain "unknown command"
-- (apache/apisix#7043), so its new() passes unknown_command = "plain" unless told otherwise.

local native = require("apisix_pubsub_rs")
local pairs = pairs
local type = type

local _M = setmetatable({}, { __index = native })

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

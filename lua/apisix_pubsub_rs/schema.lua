-- A schema as the Lua face uses it: the tables Rust derives from a Schema value (fields with
-- their kind predicates and defaults, messages, the commands and replies in proto order), and the
-- lookups made from them. One object per schema; the built-in one is made when first needed.

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")

local C = native.C
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local loadstring = loadstring
local assert = assert
local concat = table.concat

local SIZE_T_BOX = ffi.typeof("size_t[1]")

local _M = {}

-- Wraps a schema handle from Rust (owned: freed with the object) into its Lua view.
local function view(handle)
    handle = ffi_gc(handle, C.schema_free)
    local len = SIZE_T_BOX()
    local source = ffi_string(C.schema_lua(handle, len), len[0])
    local tables = assert(loadstring(source, "=apisix_pubsub_rs.schema tables"))()
    local fields, messages = tables.fields, tables.messages

    -- Per message: the { name, default } pairs a freshly decoded table starts with.
    local defaults = {}
    for index, m in pairs(messages) do
        local d = {}
        for _, id in ipairs(m.fields) do
            local f = fields[id]
            f.owner = m
            if f.default ~= nil then
                d[#d + 1] = { f.name, f.default }
            end
        end
        defaults[index] = d
    end

    local commands = {}
    for _, id in ipairs(messages[tables.request].fields) do
        local f = fields[id]
        if f.oneof then
            commands[f.name] = f
        end
    end
    local replies = {}
    for _, id in ipairs(messages[tables.response].fields) do
        local f = fields[id]
        if f.oneof then
            replies[#replies + 1] = f
        end
    end

    return {
        handle = handle,
        fields = fields,              -- [id] = field
        messages = messages,          -- [index] = { name, fields = { id, ... } }
        defaults = defaults,          -- [message index] = { { name, default }, ... }
        commands = commands,          -- [command name] = field of PubSubReq
        command_names = tables.commands,
        command_list = concat(tables.commands, ", "),
        replies = replies,            -- the reply fields of PubSubResp, in order
        reply_names = tables.replies,
        reply_list = concat(tables.replies, ", "),
    }
end

local builtin
local current

--- The built-in schema (proto/pubsub.proto as the library was built with).
function _M.builtin()
    if not builtin then
        local handle = C.schema_builtin()
        if handle == nil then
            error("apisix_pubsub_rs: the built-in schema could not be made")
        end
        builtin = view(handle)
    end
    return builtin
end

--- The schema new connections and the connection-less codec use: the built-in one until a proto
-- file is loaded.
function _M.current()
    return current or _M.builtin()
end

local ERR_PTR = ffi.typeof("const char *[1]")

--- Compiles the proto file at `path`, lays it over the built-in schema and makes the result the
-- current one. Returns the schema, or nil and the error (naming the file and line); the schema in
-- force stays then.
function _M.load(path)
    local err, err_len = ERR_PTR(), SIZE_T_BOX()
    local handle = C.schema_load(path, #path, err, err_len)
    if handle == nil then
        if err[0] == nil then
            return nil, "failed to load " .. path
        end
        return nil, ffi_string(err[0], err_len[0])
    end
    current = view(handle)
    return current
end

return _M

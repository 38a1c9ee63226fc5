-- The bridge between Lua values and the Rust codec: parameter tables built from the ops Rust
-- decoded, reply tables walked and written field by field, and the int64 rules. Shared by the
-- connections (lua/apisix_pubsub_rs/connection.lua) and by decode_req / encode_resp.

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")
local schemas = require("apisix_pubsub_rs.schema")

local C = native.C
local KIND = native.kind
local OP = native.op
local STATUS_OK = native.status.OK
local NUMBER_MIN, NUMBER_MAX = native.int64.NUMBER_MIN, native.int64.NUMBER_MAX
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local ffi_istype = ffi.istype
local type = type
local tostring = tostring
local tonumber = tonumber
local error = error

local OP_NUMBER, OP_BOOL, OP_BYTES, OP_TEXT = OP.NUMBER, OP.BOOL, OP.BYTES, OP.TEXT
local OP_OPEN, OP_CLOSE, OP_REPEATED = OP.OPEN, OP.CLOSE, OP.REPEATED

local EVENT_T = ffi.typeof("apisix_pubsub_rs_event")
local SIZE_T_BOX = ffi.typeof("size_t[1]")
local INT64_BOX = ffi.typeof("int64_t[1]")
local INT64_T = ffi.typeof("int64_t")
local UINT64_T = ffi.typeof("uint64_t")

local _M = {}

local function new_table(schema, msg_index)
    local t = {}
    local d = schema.defaults[msg_index]
    for i = 1, #d do
        local pair = d[i]
        t[pair[1]] = pair[2]
    end
    return t
end

-- Appends v to the array t[name], making the array if needed.
local function append(t, name, v)
    local arr = t[name]
    if arr == nil then
        arr = {}
        t[name] = arr
    end
    arr[#arr + 1] = v
end

--- Builds the parameter table of a command from the ops Rust decoded into `ev`.
function _M.build_params(schema, ev, msg_index)
    local fields = schema.fields
    local t = new_table(schema, msg_index)
    local stack, depth = nil, 0
    local ops, payload, text = ev.ops, ev.payload, ev.text
    for i = 0, tonumber(ev.nops) - 1 do
        local op = ops[i]
        local code = op.code
        local repeated = code >= OP_REPEATED
        if repeated then
            code = code - OP_REPEATED
        end
        local f = fields[op.field]
        local v
        if code == OP_NUMBER then
            v = op.num
        elseif code == OP_BYTES then
            v = ffi_string(payload + op.offset, op.len)
        elseif code == OP_TEXT then
            v = ffi_string(text + op.offset, op.len)
        elseif code == OP_BOOL then
            v = op.num ~= 0
        elseif code == OP_OPEN then
            local sub
            if repeated then
                sub = new_table(schema, f.target)
                append(t, f.name, sub)
            else
                sub = t[f.name]
                if sub == nil then
                    sub = new_table(schema, f.target)
                    t[f.name] = sub
                end
            end
            stack = stack or {}
            depth = depth + 1
            stack[depth] = t
            t = sub
        elseif code == OP_CLOSE then
            t = stack[depth]
            stack[depth] = nil
            depth = depth - 1
        end
        if v ~= nil then
            if repeated then
                append(t, f.name, v)
            else
                t[f.name] = v
            end
        end
    end
    return t
end

--- The words of the last encoding failure Rust reported.
function _M.last_error()
    local len = SIZE_T_BOX()
    local words = C.encode_error(len)
    return words ~= nil and ffi_string(words, len[0]) or "internal error"
end

local function field_error(f, what)
    return "field '" .. f.name .. "' of " .. f.owner.name .. " " .. what
end

-- nil for a status of success, else the words of the failure, naming the field.
local function check(rc, f)
    if rc == STATUS_OK then
        return nil
    end
    local len = SIZE_T_BOX()
    local words = C.encode_error(len)
    if rc ~= native.status.FAILED or words == nil then
        return field_error(f, "hit an internal error")
    end
    return field_error(f, ffi_string(words, len[0]))
end

--- String values at least this long go into a connection's replies by reference: the encoder
-- notes where they belong, the holder's `held` table keeps them, and the writer hands them to the
-- socket as they are, so a large value is copied once (by nginx, into its send buffer).
_M.HOLD_MIN = 4096
local HOLD_MIN = _M.HOLD_MIN

--- Keeps `v` in `holder.held` (made when first needed) and returns its id.
function _M.hold(holder, v)
    local held = holder.held
    if not held then
        -- held[id] = value for ids 1..n, of which `live` are still queued; parts: the pieces of
        -- a write that has held values among queued bytes.
        held = { n = 0, live = 0, parts = {} }
        holder.held = held
    end
    local id = held.n + 1
    held[id] = v
    held.n = id
    held.live = held.live + 1
    return id
end

--- Drops held value `id` from `held`; ids start over from 1 when none is left.
function _M.release_held(held, id)
    held[id] = nil
    local live = held.live - 1
    held.live = live
    if live == 0 then
        held.n = 0
    end
end

--- Releases the values `holder` took since its count of held values was `before` (a reply or
-- push that was dropped after holding them).
function _M.release_since(holder, before)
    local held = holder.held
    for id = before + 1, held and held.n or 0 do
        _M.release_held(held, id)
    end
end

local hold = _M.hold
local encode_fields

-- Writes one value of a non-message field. `holder` keeps the values held by reference, or is
-- nil to copy every value.
local function put_value(enc, f, v, holder)
    local tv = type(v)
    local id = f.id
    if f.number_like then
        if tv == "number" then
            return check(C.enc_number(enc, id, v), f)
        elseif tv == "string" and f.int64 then
            return check(C.enc_int_text(enc, id, v, #v), f)
        elseif tv == "cdata" and f.integer then
            if ffi_istype(UINT64_T, v) then
                return check(C.enc_uint(enc, id, v), f)
            elseif ffi_istype(INT64_T, v) then
                return check(C.enc_int(enc, id, v), f)
            end
        end
        return field_error(f, "expects a number, got " .. tv)
    elseif f.kind == "string" or f.kind == "bytes" then
        if tv ~= "string" then
            return field_error(f, "expects a string, got " .. tv)
        end
        local n = #v
        if holder and n >= HOLD_MIN then
            return check(C.enc_bytes_ref(enc, id, hold(holder, v), n), f)
        end
        return check(C.enc_bytes(enc, id, v, n), f)
    elseif f.kind == "bool" then
        if tv ~= "boolean" then
            return field_error(f, "expects a boolean, got " .. tv)
        end
        return check(C.enc_bool(enc, id, v and 1 or 0), f)
    end
    return field_error(f, "has an unsupported type")
end

local function put_message(schema, enc, f, v, depth, holder)
    if type(v) ~= "table" then
        return field_error(f, "expects a table, got " .. type(v))
    end
    if depth > 32 then
        return field_error(f, "is nested too deep (a reference cycle?)")
    end
    local err = check(C.enc_open(enc, f.id), f)
    if err then
        return err
    end
    err = encode_fields(schema, enc, f.target, v, depth + 1, holder)
    if err then
        return err
    end
    return check(C.enc_close(enc), f)
end

-- Writes the fields of `t` that message `msg_index` declares; other keys are ignored.
encode_fields = function(schema, enc, msg_index, t, depth, holder)
    local fields = schema.fields
    local ids = schema.messages[msg_index].fields
    for i = 1, #ids do
        local f = fields[ids[i]]
        local v = t[f.name]
        if v ~= nil then
            local err
            if f.repeated then
                if type(v) ~= "table" then
                    return field_error(f, "expects an array, got " .. type(v))
                end
                if f.kind == "message" then
                    for j = 1, #v do
                        err = put_message(schema, enc, f, v[j], depth, holder)
                        if err then
                            return err
                        end
                    end
                elseif f.number_like and #v > 0 then
                    err = check(C.enc_open(enc, f.id), f)
                    for j = 1, #v do
                        err = err or put_value(enc, f, v[j])
                    end
                    err = err or check(C.enc_close(enc), f)
                else
                    for j = 1, #v do
                        err = err or put_value(enc, f, v[j], holder)
                    end
                end
            elseif f.kind == "message" then
                err = put_message(schema, enc, f, v, depth, holder)
            else
                err = put_value(enc, f, v, holder)
            end
            if err then
                return err
            end
        end
    end
    return nil
end

--- Writes the one reply member of a reply table, after the reply was begun. Returns nil, or the
-- words of what is wrong with the table.
function _M.encode_reply(schema, enc, reply, holder)
    if type(reply) ~= "table" then
        return "the reply must be a table, got " .. type(reply)
    end
    local replies = schema.replies
    local member
    for i = 1, #replies do
        local f = replies[i]
        if reply[f.name] ~= nil then
            if member then
                return "the reply sets both " .. member.name .. " and " .. f.name
                    .. ": exactly one of " .. schema.reply_list .. " is allowed"
            end
            member = f
        end
    end
    if not member then
        return "the reply has none of the keys " .. schema.reply_list
    end
    return put_message(schema, enc, member, reply[member.name], 0, holder)
end

--- A sequence as int64: a number with no fraction, a decimal or "#" string, or int64 / uint64
-- cdata; nil for anything else.
function _M.to_int64(v)
    local tv = type(v)
    if v == nil then
        return 0
    elseif tv == "number" then
        if v ~= v or v % 1 ~= 0 or v >= 2^63 or v < -2^63 then
            return nil
        end
        return v
    elseif tv == "string" then
        local box = INT64_BOX()
        if C.parse_int64(v, #v, box) == 1 then
            return box[0]
        end
        return nil
    elseif tv == "cdata" and (ffi_istype(INT64_T, v) or ffi_istype(UINT64_T, v)) then
        return v
    end
    return nil
end

--- lua-protobuf's int64_as_string view of a 64-bit integer: a number in the range Rust gives,
-- else "#<digits>".
function _M.int64_for_lua(n)
    if n >= NUMBER_MIN and n <= NUMBER_MAX then
        return tonumber(n)
    end
    local s = tostring(n)
    return "#" .. s:sub(1, -3) -- drop LuaJIT's "LL" suffix
end

local to_int64, int64_for_lua, build_params, encode_reply =
    _M.to_int64, _M.int64_for_lua, _M.build_params, _M.encode_reply

local codec_event = EVENT_T()

-- The connection-less codec of the current schema (one per schema, made when first needed).
local function get_codec()
    local schema = schemas.current()
    local codec = schema.codec
    if not codec then
        codec = ffi_gc(C.codec_new(schema.handle), C.codec_free)
        schema.codec = codec
        schema.codec_encoder = C.codec_encoder(codec)
    end
    return codec, schema.codec_encoder, schema
end

--- Decodes a `PubSubReq` without a connection, for users who bring their own transport.
-- @tparam string bytes the request
-- @return sequence (number or "#<digits>"), command name (or nil), parameter table (or nil) | nil, err
function _M.decode_req(bytes)
    if type(bytes) ~= "string" then
        error("decode_req: bytes must be a string, got " .. type(bytes), 2)
    end
    local c, _, schema = get_codec()
    local ev = codec_event
    local k = C.codec_decode(c, bytes, #bytes, ev)
    if k == KIND.UNDECODABLE then
        return nil, ffi_string(ev.note, ev.note_len)
    elseif k ~= KIND.COMMAND and k ~= KIND.EMPTY then
        return nil, "internal error in decode_req"
    end
    local seq = int64_for_lua(ev.sequence)
    if k == KIND.EMPTY then
        return seq, nil, nil
    end
    local f = schema.fields[ev.command]
    return seq, f.name, build_params(schema, ev, f.target)
end

--- Encodes a `PubSubResp` without a connection.
-- @param sequence number, decimal or "#" string, or int64 cdata
-- @tparam table reply e.g. `{pong_resp = {state = "x"}}`
-- @return bytes | nil, err
function _M.encode_resp(sequence, reply)
    local seq = to_int64(sequence)
    if seq == nil then
        return nil, "bad sequence: " .. tostring(sequence)
    end
    local _, enc, schema = get_codec()
    C.enc_begin(enc, seq)
    local err = encode_reply(schema, enc, reply)
    if err then
        return nil, err
    end
    local len = SIZE_T_BOX()
    local p = C.enc_result(enc, len)
    if p == nil then
        return nil, "unbalanced reply"
    end
    return ffi_string(p, len[0])
end

return _M

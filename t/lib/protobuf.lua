-- A small protobuf codec in plain LuaJIT, for the test client: independent of the module under
-- test, so the suites check the module's bytes against a second implementation.
-- 64-bit integers travel as uint64 cdata internally; decoded int64 values follow lua-protobuf's
-- int64_as_string rule (numbers in [-2^31, 2^32-1], "#<digits>" otherwise).

local ffi = require("ffi")
local bit = require("bit")
local char, byte, sub, concat = string.char, string.byte, string.sub, table.concat

local _M = {}

-- Message shapes, by name: { [field name] = {number, kind, message-or-nil, repeated} }.
_M.schema = {
    CmdPing = { state = { 1, "bytes" } },
    CmdEmpty = {},
    CmdKafkaListOffset = { topic = { 1, "string" }, partition = { 2, "int32" }, timestamp = { 3, "int64" } },
    CmdKafkaFetch = { topic = { 1, "string" }, partition = { 2, "int32" }, offset = { 3, "int64" } },
    PubSubReq = {
        sequence = { 1, "int64" },
        cmd_empty = { 31, "message", "CmdEmpty" },
        cmd_ping = { 32, "message", "CmdPing" },
        cmd_kafka_fetch = { 33, "message", "CmdKafkaFetch" },
        cmd_kafka_list_offset = { 34, "message", "CmdKafkaListOffset" },
        cmd_subscribe = { 1001, "message", "CmdSubscribe" },
        cmd_unsubscribe = { 1002, "message", "CmdUnsubscribe" },
        cmd_publish = { 1003, "message", "CmdPublish" },
    },
    CmdSubscribe = { channel = { 1, "string" }, since = { 2, "string" } },
    CmdUnsubscribe = { channel = { 1, "string" } },
    CmdPublish = { channel = { 1, "string" }, data = { 2, "bytes" } },
    SubscribeResp = { channel = { 1, "string" }, last_id = { 2, "string" } },
    UnsubscribeResp = { channel = { 1, "string" } },
    PublishResp = { channel = { 1, "string" }, id = { 2, "string" } },
    ChannelMessage = { channel = { 1, "string" }, id = { 2, "string" }, data = { 3, "bytes" } },
    ErrorResp = { code = { 1, "int32" }, message = { 2, "string" } },
    PongResp = { state = { 1, "bytes" } },
    KafkaMessage = { offset = { 1, "int64" }, timestamp = { 2, "int64" }, key = { 3, "bytes" }, value = { 4, "bytes" } },
    KafkaFetchResp = { messages = { 1, "message", "KafkaMessage", true } },
    KafkaListOffsetResp = { offset = { 1, "int64" } },
    PubSubResp = {
        sequence = { 1, "int64" },
        error_resp = { 31, "message", "ErrorResp" },
        pong_resp = { 32, "message", "PongResp" },
        kafka_fetch_resp = { 33, "message", "KafkaFetchResp" },
        kafka_list_offset_resp = { 34, "message", "KafkaListOffsetResp" },
        subscribe_resp = { 1001, "message", "SubscribeResp" },
        unsubscribe_resp = { 1002, "message", "UnsubscribeResp" },
        publish_resp = { 1003, "message", "PublishResp" },
        channel_message = { 1004, "message", "ChannelMessage" },
    },
}

local U64 = ffi.typeof("uint64_t")
local I64 = ffi.typeof("int64_t")

local function to_u64(v)
    if type(v) == "string" then
        local s = v:gsub("^#", "")
        local neg = s:sub(1, 1) == "-"
        if neg then s = s:sub(2) end
        local n = U64(0)
        for i = 1, #s do n = n * 10 + (byte(s, i) - 48) end
        return neg and (U64(0) - n) or n
    elseif type(v) == "cdata" then
        return ffi.cast(U64, v)
    end
    if v < 0 then
        return ffi.cast(U64, I64(v))
    end
    return U64(v)
end

local function varint(n)
    n = to_u64(n)
    local out = {}
    repeat
        local b = tonumber(n % 128)
        n = n / 128
        if n ~= 0 then b = b + 128 end
        out[#out + 1] = char(b)
    until n == 0
    return concat(out)
end
_M.varint = varint

local function tag(number, wt)
    return varint(number * 8 + wt)
end
_M.tag = tag

local function encode(msg_name, t)
    local shape = assert(_M.schema[msg_name], msg_name)
    local names = {}
    for name in pairs(shape) do names[#names + 1] = name end
    table.sort(names, function(a, b) return shape[a][1] < shape[b][1] end)
    local out = {}
    for _, name in ipairs(names) do
        local v = t[name]
        local number, kind, target, repeated = unpack(shape[name])
        local values = repeated and v or { v }
        if v ~= nil then
            for _, x in ipairs(values) do
                if kind == "message" then
                    local body = encode(target, x)
                    out[#out + 1] = tag(number, 2) .. varint(#body) .. body
                elseif kind == "bytes" or kind == "string" then
                    if x ~= "" then out[#out + 1] = tag(number, 2) .. varint(#x) .. x end
                elseif x ~= 0 and x ~= "0" then
                    out[#out + 1] = tag(number, 0) .. varint(x)
                end
            end
        end
    end
    return concat(out)
end

local function read_varint(s, pos)
    local n, shift = U64(0), 0
    while true do
        local b = byte(s, pos)
        if not b then return nil, "truncated varint" end
        n = n + bit.lshift(U64(bit.band(b, 127)), shift)
        pos = pos + 1
        if b < 128 then return n, pos end
        shift = shift + 7
        if shift > 63 then return nil, "varint too long" end
    end
end

local function int_for_lua(u, kind)
    local i = ffi.cast(I64, u)
    if kind == "int32" then
        return tonumber(ffi.cast("int32_t", i))
    end
    if i >= -2147483648 and i <= 4294967295 then
        return tonumber(i)
    end
    return "#" .. tostring(i):sub(1, -3)
end

local function decode(msg_name, s, i, j)
    local shape = assert(_M.schema[msg_name], msg_name)
    local by_number = {}
    for name, f in pairs(shape) do by_number[f[1]] = { name, unpack(f) } end
    local t = {}
    for name, f in pairs(shape) do
        if f[2] == "bytes" or f[2] == "string" then t[name] = ""
        elseif f[2] ~= "message" then t[name] = 0 end
    end
    local pos = i or 1
    j = j or #s
    while pos <= j do
        local key, err = read_varint(s, pos)
        if not key then return nil, err end
        pos = err
        local number, wt = tonumber(key / 8), tonumber(key % 8)
        local f = by_number[number]
        local value
        if wt == 0 then
            value, pos = read_varint(s, pos)
            if not value then return nil, pos end
        elseif wt == 2 then
            local len
            len, pos = read_varint(s, pos)
            if not len then return nil, pos end
            len = tonumber(len)
            if pos + len - 1 > j then return nil, "length past the end" end
            value = { pos, pos + len - 1 }
            pos = pos + len
        elseif wt == 1 then pos = pos + 8
        elseif wt == 5 then pos = pos + 4
        else return nil, "bad wire type " .. wt end
        if f then
            local name, _, kind, target, repeated = unpack(f)
            local v
            if kind == "message" then
                local err2
                v, err2 = decode(target, s, value[1], value[2])
                if not v then return nil, err2 end
            elseif kind == "bytes" or kind == "string" then
                v = sub(s, value[1], value[2])
            else
                v = int_for_lua(value, kind)
            end
            if repeated then
                t[name] = t[name] or {}
                t[name][#t[name] + 1] = v
            else
                t[name] = v
            end
        end
    end
    return t
end

_M.encode = encode
_M.decode = function(msg_name, s) return decode(msg_name, s) end

return _M

-- The server side shared by the behaviour suites: /pubsub runs apisix_pubsub_rs with options from
-- the query string and handlers whose behaviour the request's topic selects.

local pubsub_mod = require("apisix_pubsub_rs")
local ffi = require("ffi")

local _M = {}

local function opts_from_args()
    local args = ngx.req.get_uri_args()
    local opts = {}
    for _, k in ipairs({ "max_payload_len", "max_message_len", "timeout", "fragment_size", "unknown_command" }) do
        if args[k] then
            opts[k] = tonumber(args[k]) or args[k]
        end
    end
    -- compression=true, or compression=key:value,key:value (numbers and true/false)
    local c = args.compression
    if c == "true" then
        opts.compression = true
    elseif c then
        opts.compression = {}
        for k, v in c:gmatch("([%w_]+):([^,]+)") do
            if v == "true" or v == "false" then
                opts.compression[k] = v == "true"
            else
                opts.compression[k] = tonumber(v) or v
            end
        end
    end
    return opts
end

-- Sizes around the module's by-reference threshold (4096) and the varint steps of nested lengths.
local SIZES = { 0, 100, 4095, 4096, 16383, 16384, 70000 }

--- The reply of topic "sizes": messages whose keys and values have the SIZES, filled with a letter
-- chosen by `n`; shared with the tests, which rebuild it to compare.
function _M.sizes_reply(n)
    local messages = {}
    for i, size in ipairs(SIZES) do
        local letter = string.char(97 + (n + i) % 26)
        messages[i] = { offset = i, key = string.rep("K", math.floor(size / 3)), value = string.rep(letter, size) }
    end
    return { kafka_fetch_resp = { messages = messages } }
end

local function fetch(params)
    local t = params.topic
    if t == "sizes" then
        return _M.sizes_reply(params.partition)
    elseif t == "sizes_after_sleep" then
        -- Yields with values held by reference in no reply yet, and others queued before it.
        ngx.sleep(0.01)
        return _M.sizes_reply(params.partition)
    end
    if t == "nil_err" then
        return nil, "boom"
    elseif t == "raise" then
        error("kaboom")
    elseif t == "not_table" then
        return "a string"
    elseif t == "no_key" then
        return { unrelated = 1 }
    elseif t == "two_keys" then
        return { pong_resp = {}, error_resp = { message = "x" } }
    elseif t == "wrong_int" then
        return { error_resp = { code = "seven" } }
    elseif t == "table_for_bytes" then
        return { pong_resp = { state = {} } }
    elseif t == "extra" then
        return { pong_resp = { state = "extra ok" }, something_else = true }
    elseif t == "nil" then
        return nil
    elseif t == "sleep" then
        ngx.sleep(0.05)
        return { pong_resp = { state = "slept " .. params.partition } }
    elseif t == "big" then
        return { kafka_fetch_resp = { messages = { { offset = 1, value = string.rep("v", params.partition) } } } }
    elseif t == "int64" then
        return { kafka_fetch_resp = { messages = {
            { offset = 7, timestamp = -1 },
            { offset = "#9223372036854775807", timestamp = "#-9223372036854775808" },
            { offset = "30", timestamp = "-2" },
            { offset = ffi.new("int64_t", 4294967296), timestamp = 0x7fffffffffffffffLL },
            { offset = 2 ^ 53, key = "k", value = "v" },
        } } }
    elseif t == "describe" then
        return nil, ("%s %s %s %s"):format(type(params.offset), tostring(params.offset),
            type(params.partition), tostring(params.partition))
    end
    return nil, "unknown topic " .. tostring(t)
end

local function list_offset(params)
    return { kafka_list_offset_resp = { offset = params.timestamp } }
end

function _M.serve()
    local pubsub, err = pubsub_mod.new(opts_from_args())
    if not pubsub then
        ngx.log(ngx.ERR, "failed to initialize pubsub module, err: ", err)
        return ngx.exit(400)
    end
    pubsub:on("cmd_kafka_fetch", fetch)
    pubsub:on("cmd_kafka_list_offset", list_offset)
    local werr = pubsub:wait()
    if werr then
        ngx.log(ngx.INFO, "wait returned: ", werr)
    else
        ngx.log(ngx.INFO, "wait returned cleanly")
    end
end

return _M

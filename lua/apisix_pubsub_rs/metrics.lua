-- The worker's metrics as Lua reads them (the counters live in Rust, src/metrics.rs):
-- pubsub.metrics() for this worker as a plain table, pubsub.prometheus() for the text exposition,
-- and pubsub.configure{metrics_dict = ...}, which has each worker publish its figures into a
-- lua_shared_dict so that the exposition served by any worker sums them all.

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")
local schemas = require("apisix_pubsub_rs.schema")

local C = native.C
local ffi_string = ffi.string
local type = type
local tostring = tostring
local error = error
local loadstring = loadstring
local concat = table.concat
local ngx = ngx

local LEN = ffi.new("size_t[1]")
-- A worker's figures in the dict: this prefix and the worker's id.
local KEY = "apisix_pubsub_rs:metrics:worker:"

local _M = {
    -- False in a build without the `metrics` feature (every figure stays 0).
    enabled = C.metrics_enabled() ~= 0,
}

-- The dict configure() named, and whether this worker's publishing timer runs.
local dict, publishing

-- Writes this worker's figures into the dict. A worker that is exiting (its timer fires early)
-- does not: after a reload, a new worker of the same id publishes there.
local function publish(premature)
    local id = ngx.worker.id()
    if premature or not id then
        return
    end
    local p = C.metrics_snapshot(LEN)
    if p ~= nil then
        local ok, err = dict:set(KEY .. id, ffi_string(p, LEN[0]))
        if not ok then
            ngx.log(ngx.ERR, "pubsub metrics: failed to publish into the shared dict: ", err)
        end
    end
end

--- Settings of the module, from init_worker_by_lua (once per worker).
-- @tparam table opts `metrics_dict`: the name of a lua_shared_dict into which each worker
--   publishes its figures every `metrics_interval` seconds (default 1), so that
--   `prometheus()` sums the figures of every worker
-- @return true | nil, err (the timer could not start); misuse raises
function _M.configure(opts)
    if type(opts) ~= "table" then
        error("bad opts: a table expected, got " .. type(opts), 2)
    end
    local name, interval = opts.metrics_dict, opts.metrics_interval or 1
    if name ~= nil then
        if type(name) ~= "string" or not ngx.shared[name] then
            error("bad option metrics_dict: the name of a lua_shared_dict expected, got " .. tostring(name), 2)
        end
        if type(interval) ~= "number" or interval <= 0 then
            error("bad option metrics_interval: a positive number of seconds expected, got " .. tostring(interval), 2)
        end
        if ngx.get_phase() == "init" then
            error("configure{metrics_dict = ...} belongs in init_worker_by_lua, not init_by_lua", 2)
        end
        dict = ngx.shared[name]
        publish(false)
        -- Called again, the worker publishes into the new dict at the first interval.
        if not publishing then
            local ok, err = ngx.timer.every(interval, publish)
            if not ok then
                return nil, "failed to start publishing the metrics: " .. err
            end
            publishing = true
        end
    end
    return true
end

-- The published figures of the other workers, one after another.
local function others()
    if not dict then
        return ""
    end
    local me = ngx.worker.id()
    local parts = {}
    for id = 0, ngx.worker.count() - 1 do
        if id ~= me then
            parts[#parts + 1] = dict:get(KEY .. id)
        end
    end
    return concat(parts)
end

local function render(extra, as_table)
    local p = C.metrics_render(schemas.current().handle, extra, #extra, as_table and 1 or 0, LEN)
    if p == nil then
        return nil
    end
    return ffi_string(p, LEN[0])
end

--- The Prometheus text exposition (format 0.0.4) of the figures: every worker's summed when
-- configure{metrics_dict = ...} was called (the serving worker's live, the others' as last
-- published), else this worker's.
-- @return string | nil, err
function _M.prometheus()
    local text = render(others(), false)
    if not text then
        return nil, "failed to render the metrics"
    end
    return text
end

--- This worker's figures, as a plain table (names as in the README's metrics section).
-- @return table | nil, err
function _M.metrics()
    local source = render("", true)
    if not source then
        return nil, "failed to render the metrics"
    end
    return loadstring(source, "=apisix_pubsub_rs.metrics")()
end

return _M

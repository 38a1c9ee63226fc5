-- The native server of `make bench-channels` (bench/channels_bench.sh): /sub serves a pubsub
-- instance with the channels attached, /pub/<channel> publishes a POST body with
-- channels.publish (one XADD), as nchan's HTTP publisher does with nchan_use_redis.

local pubsub = require("apisix_pubsub_rs")
local channels = require("apisix_pubsub_rs.channels")

local _M = {}
local opts

--- From init_by_lua: the Redis of the run.
function _M.init(redis)
    opts = { redis = redis, prefix = "bench:", maxlen = 10000 }
end

function _M.subscriber()
    local c = assert(pubsub.new({ max_queue_bytes = 4 * 1024 * 1024 }))
    assert(channels.attach(c, opts))
    c:wait()
end

function _M.publish(channel)
    ngx.req.read_body()
    local id, err = channels.publish(opts, channel, ngx.req.get_body_data() or "")
    if not id then
        ngx.status = 502
        ngx.say(err)
        return
    end
    ngx.say(id)
end

return _M

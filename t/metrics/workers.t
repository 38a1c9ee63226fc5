# Metrics across workers: with configure{metrics_dict = ...} each worker publishes its figures
# into the shared dict, and the exposition any worker serves sums the counters and the open
# connections of all and takes the largest high-water mark; a restarted worker starts from 0.
use t::Pubsub 'no_plan';

master_on();
workers(2);

our $Probe = <<'_EOC_';
    location /ps {
        content_by_lua_block {
            require("metrics_probe").serve()
        }
    }
_EOC_

# Each worker, at its first start only, takes a share that tells the workers apart in a sum:
# 1000 * (id + 1) connections accepted (none ended, so as many open), a high-water mark of
# 100 * (id + 1) bytes. A worker started again (after a crash) starts from 0, as any would.
t::Pubsub::server_suite(location => $Probe, no_error_log => '[error]', http_config => <<'_EOC_');
    lua_socket_log_errors off;
    lua_shared_dict pubsub_metrics 1m;
    init_worker_by_lua_block {
        local pubsub = require("apisix_pubsub_rs")
        local native = require("apisix_pubsub_rs.ffi")
        local id, d = ngx.worker.id(), ngx.shared.pubsub_metrics
        if d:add("started:" .. id, true) then
            native.C.metrics_set(native.metrics_slot.ACCEPTED, 1000 * (id + 1))
            native.C.metrics_set(native.metrics_slot.QUEUE_HIGH_WATER, 100 * (id + 1))
        end
        d:set("pid:" .. id, ngx.worker.pid())
        assert(pubsub.configure({ metrics_dict = "pubsub_metrics", metrics_interval = 0.1 }))
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: counters and open connections are summed over 2 workers, high-water marks are the largest
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local function v(series)
                local text = pubsub.prometheus()
                return text:match("\n" .. series:gsub("[%[%]%(%)%.%+%-]", "%%%0") .. " (%S+)")
            end
            -- Waits (up to 5 s: the other worker publishes every 0.1 s, later on a loaded machine)
            -- until `series` reads `want`; returns what it read last.
            local function once(series, want)
                local got
                for _ = 1, 500 do
                    got = v(series)
                    if got == want then
                        break
                    end
                    ngx.sleep(0.01)
                end
                return got
            end
            ngx.say("workers ", once("apisix_pubsub_workers_reporting", "2"))
            ngx.say("accepted ", v("apisix_pubsub_connections_accepted_total"))
            ngx.say("open ", v("apisix_pubsub_connections_open"))
            ngx.say("high water ", v("apisix_pubsub_queue_high_water_bytes"))
            ngx.say("this worker's own: ", pubsub.metrics().connections_accepted == 1000 * (ngx.worker.id() + 1))
            local rawws = require("rawws")
            local ws = assert(rawws.connect("/ps"))
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "x" } }))
            assert(ws:resp())
            -- Whichever worker serves it, its figures are in the sum within the interval.
            ngx.say("during: pings ", once('apisix_pubsub_commands_total{command="cmd_ping"}', "1"), ", accepted ",
                v("apisix_pubsub_connections_accepted_total"), ", open ", v("apisix_pubsub_connections_open"))
            ws:send(rawws.close_frame(1000))
            ws:close_code()
            ngx.say("after: ended ", once('apisix_pubsub_connections_ended_total{reason="peer_close"}', "1"),
                ", open ", v("apisix_pubsub_connections_open"))
        }
    }
--- response_body
workers 2
accepted 3000
open 3000
high water 200
this worker's own: true
during: pings 1, accepted 3001, open 3001
after: ended 1, open 3000



=== TEST 2: a restarted worker starts from 0 and replaces its last figures: the sum drops
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            local d = ngx.shared.pubsub_metrics
            local function accepted()
                return tonumber(pubsub.prometheus():match("\napisix_pubsub_connections_accepted_total (%d+)"))
            end
            local me = ngx.worker.id()
            local other, mine = 1 - me, 1000 * (me + 1)
            local function once(want)
                for _ = 1, 500 do
                    if accepted() == want then
                        break
                    end
                    ngx.sleep(0.01)
                end
                return accepted()
            end
            ngx.say("before: ", once(3000))
            local pid = d:get("pid:" .. other)
            os.execute("kill -KILL " .. pid)
            for _ = 1, 500 do
                if d:get("pid:" .. other) ~= pid then
                    break
                end
                ngx.sleep(0.01)
            end
            ngx.say("restarted: ", d:get("pid:" .. other) ~= pid)
            ngx.say("after: only this worker's share: ", once(mine) == mine)
            ngx.say("workers ", pubsub.prometheus():match("\napisix_pubsub_workers_reporting (%d+)"))
        }
    }
--- response_body
before: 3000
restarted: true
after: only this worker's share: true
workers 2
--- no_error_log
[error]



=== TEST 3: a connection the worker's exit ends counts as worker_exiting, in the exiting worker
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/ps?timeout=100&log_end=1")
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "before" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            require("metrics_probe").reload()
            ngx.say("close ", (ws:close_code()))
        }
    }
--- response_body
before
close 1001
--- error_log
ended: worker_exiting=1

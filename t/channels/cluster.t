# Channels across workers and gateways: every worker and every nginx sharing one Redis sees every
# message of a channel, in order.
use t::channels::RedisServer;
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => $t::channels::RedisServer::Locations, no_error_log => '[error]', http_config => $t::channels::RedisServer::HttpConfig);
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: 2 workers: subscribers in both get every message published, in order, each worker reading Redis on its own
--- timeout: 20
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local by_worker, extra = {}, {}
            for _ = 1, 60 do
                local ws = t.client("hello=1")
                if by_worker[ws.worker] then
                    extra[#extra + 1] = ws
                else
                    by_worker[ws.worker] = ws
                end
                if by_worker["worker 0"] and by_worker["worker 1"] then break end
            end
            t.bye(unpack(extra))
            local a, b = by_worker["worker 0"], by_worker["worker 1"]
            ngx.say("both workers: ", a ~= nil and b ~= nil)
            assert(t.subscribe(a, 1, "workers.1"))
            assert(t.subscribe(b, 2, "workers.1"))
            local acked = {}
            for i = 1, 20 do
                acked[i] = assert(t.pub("workers.1", "m" .. i))
            end
            local got_a, ids_a = t.read(a, 20)
            local got_b, ids_b = t.read(b, 20)
            local want = table.concat(acked, " ")
            ngx.say("worker 0: ", table.concat(ids_a, " ") == want, " ", got_a[1], " .. ", got_a[20])
            ngx.say("worker 1: ", table.concat(ids_b, " ") == want, " ", got_b[1], " .. ", got_b[20])
            t.bye(a, b)
        }
    }
--- response_body
both workers: true
worker 0: true 1 workers.1 m1 .. 1 workers.1 m20
worker 1: true 2 workers.1 m1 .. 2 workers.1 m20



=== TEST 2: two nginx instances sharing one Redis: a message published through either reaches the subscribers of both, in order
--- timeout: 30
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local port = $TEST_NGINX_SECOND_PORT
            t.start_second("$TEST_NGINX_BINARY", port)
            -- Both start after a marker, so neither misses anything however late it subscribes.
            local marker = assert(t.pub("gw.2", "marker"))
            local far = ngx.thread.spawn(function()
                return t.http(port, "GET", "/collect?channel=gw.2&n=20&since=" .. marker)
            end)
            local near = t.client()
            assert(t.subscribe(near, 1, "gw.2", marker))
            local acked = {}
            for i = 1, 20 do
                if i % 2 == 0 then
                    local status, body = t.http(port, "POST", "/publish?channel=gw.2", "m" .. i)
                    assert(status == 200, body)
                    acked[i] = body:gsub("\n", "")
                else
                    local res = ngx.location.capture("/publish?channel=gw.2", { method = ngx.HTTP_POST, body = "m" .. i })
                    acked[i] = res.body:gsub("\n", "")
                end
            end
            local got, ids = t.read(near, 20)
            ngx.say("here: ", table.concat(ids, " ") == table.concat(acked, " "), " ", got[1], " .. ", got[20])
            local _, status, body = ngx.thread.wait(far)
            local lines = {}
            for line in body:gmatch("[^\n]+") do
                lines[#lines + 1] = line
            end
            local far_ids = {}
            for i, line in ipairs(lines) do
                far_ids[i] = line:match("(%S+)$")
            end
            ngx.say("there: ", status, " ", table.concat(far_ids, " ") == table.concat(acked, " "), " ", lines[1]:match("^(.-) %S+$"), " .. ", lines[20]:match("^(.-) %S+$"))
            t.bye(near)
            t.stop_second()
        }
    }
--- response_body
here: true 1 gw.2 m1 .. 1 gw.2 m20
there: 200 true 1 gw.2 m1 .. 1 gw.2 m20

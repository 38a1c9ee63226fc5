# A worker that exits (reload) ends its pubsub connections with close 1001.
use t::Pubsub 'no_plan';

master_on();
repeat_each(1);
no_root_location();
log_level('info');

run_tests();

__DATA__

=== TEST 1: on reload, the old worker closes with 1001 at its next wake-up
--- http_config
    lua_socket_log_errors off;
--- config
    location /pubsub {
        content_by_lua_block {
            require("pubsub_server").serve()
        }
    }
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/pubsub?timeout=100")
            ws:send(ws.req({ sequence = 1, cmd_ping = { state = "before" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
            local master = f:read("*l")
            f:close()
            os.execute("kill -HUP " .. master)
            ngx.say("close ", (ws:close_code()))
        }
    }
--- request
GET /t
--- response_body
before
close 1001
--- error_log
wait returned cleanly
--- no_error_log
[error]

# The seed suite of APISIX's pubsub framework (t/pubsub/pubsub.t of apache/apisix@4690feb), run
# against apisix_pubsub_rs. The seed made its /pubsub route through APISIX's admin API; here the
# same serverless function is a location every block shares. Everything else is as in the seed.
use t::Pubsub 'no_plan';

repeat_each(1);
no_long_string();
no_root_location();

add_block_preprocessor(sub {
    my ($block) = @_;

    if ((!defined $block->error_log) && (!defined $block->no_error_log)) {
        $block->set_value("no_error_log", "[error]");
    }

    if (!defined $block->request) {
        $block->set_value("request", "GET /t");
    }

    my $route = <<'_EOC_';
    location /pubsub {
        access_by_lua_block {
            local pubsub_mod = require("apisix_pubsub_rs")
            local pubsub, err = pubsub_mod.new()
            if not pubsub then
                ngx.log(ngx.ERR, "failed to initialize pubsub module, err: ", err)
                ngx.exit(400)
                return
            end
            pubsub:on("cmd_ping", function (params)
                if params.state == "test" then
                    return {pong_resp = {state = "test"}}
                end
                return nil, "error"
            end)
            pubsub:wait()
            ngx.exit(0)
        }
    }
_EOC_
    $block->set_value("config", $route . ($block->config // ''));
});

run_tests();

__DATA__

=== TEST 1: setup route (a location here; the seed used the admin API)
--- config
    location /t {
        content_by_lua_block {
            ngx.say("passed")
        }
    }
--- response_body
passed



=== TEST 2: hit route (with HTTP request)
--- request
GET /pubsub
--- error_code: 400
--- error_log
failed to initialize pubsub module, err: bad "upgrade" request header: nil



=== TEST 3: connect websocket service
--- config
    location /t {
        content_by_lua_block {
            local lib_pubsub = require("lib.pubsub")
            local test_pubsub = lib_pubsub.new_ws("ws://127.0.0.1:1984/pubsub")
            local data = test_pubsub:send_recv_ws_binary({
                sequence = 0,
                cmd_ping = {
                    state = "test"
                },
            })
            if data and data.pong_resp then
                ngx.say("ret: ", data.pong_resp.state)
            end
            test_pubsub:close_ws()
        }
    }
--- response_body
ret: test



=== TEST 4: connect websocket service (return error)
--- config
    location /t {
        content_by_lua_block {
            local lib_pubsub = require("lib.pubsub")
            local test_pubsub = lib_pubsub.new_ws("ws://127.0.0.1:1984/pubsub")
            local data = test_pubsub:send_recv_ws_binary({
                sequence = 0,
                cmd_ping = {
                    state = "non-test"
                },
            })
            if data and data.error_resp then
                ngx.say("ret: ", data.error_resp.message)
            end
            test_pubsub:close_ws()
        }
    }
--- response_body
ret: error



=== TEST 5: send unregistered command
--- config
    location /t {
        content_by_lua_block {
            local lib_pubsub = require("lib.pubsub")
            local test_pubsub = lib_pubsub.new_ws("ws://127.0.0.1:1984/pubsub")
            local data = test_pubsub:send_recv_ws_binary({
                sequence = 0,
                cmd_empty = {},
            })
            if data and data.error_resp then
                ngx.say(data.error_resp.message)
            end
            test_pubsub:close_ws()
        }
    }
--- response_body
unknown command: cmd_empty
--- error_log
pubsub callback handler not registered for the command, command: cmd_empty



=== TEST 6: send text command (server skip command, keep connection)
--- config
    location /t {
        lua_check_client_abort on;
        content_by_lua_block {
            ngx.on_abort(function ()
                ngx.log(ngx.ERR, "text command is skipped, and close connection")
                ngx.exit(444)
            end)
            local lib_pubsub = require("lib.pubsub")
            local test_pubsub = lib_pubsub.new_ws("ws://127.0.0.1:1984/pubsub")
            test_pubsub:send_recv_ws_text("test")
            test_pubsub:close_ws()
        }
    }
--- abort
--- ignore_response
--- error_log
pubsub server receive non-binary data, type: text, data: test
text command is skipped, and close connection
fatal error in pubsub websocket server, err: failed to receive the first 2 bytes: closed



=== TEST 7: send wrong command: empty (server skip command, keep connection)
--- config
    location /t {
        lua_check_client_abort on;
        content_by_lua_block {
            ngx.on_abort(function ()
                ngx.log(ngx.ERR, "empty command is skipped, and close connection")
                ngx.exit(444)
            end)
            local lib_pubsub = require("lib.pubsub")
            local test_pubsub = lib_pubsub.new_ws("ws://127.0.0.1:1984/pubsub")
            test_pubsub:send_recv_ws_binary({})
            test_pubsub:close_ws()
        }
    }
--- abort
--- ignore_response
--- error_log
pubsub server receives empty command
empty command is skipped, and close connection
fatal error in pubsub websocket server, err: failed to receive the first 2 bytes: closed



=== TEST 8: send wrong command: undecodable (server skip command, keep connection)
--- config
    location /t {
        lua_check_client_abort on;
        content_by_lua_block {
            ngx.on_abort(function ()
                ngx.log(ngx.ERR, "empty command is skipped, and close connection")
                ngx.exit(444)
            end)
            local lib_pubsub = require("lib.pubsub")
            local test_pubsub = lib_pubsub.new_ws("ws://127.0.0.1:1984/pubsub")
            test_pubsub:send_recv_ws_binary("!@#$%^&*中文", true)
            test_pubsub:close_ws()
        }
    }
--- abort
--- ignore_response
--- error_log
pubsub server receives empty command
empty command is skipped, and close connection
fatal error in pubsub websocket server, err: failed to receive the first 2 bytes: closed

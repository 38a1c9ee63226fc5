# The runner's own tests: every section and preamble call, against plain Lua locations.
use t::Pubsub 'no_plan';

repeat_each(2);
no_long_string();
no_shuffle();
log_level('info');
worker_connections(128);

add_block_preprocessor(sub {
    my ($block) = @_;
    if (!defined $block->request) {
        $block->set_value("request", "GET /t");
    }
});

# Registered last, so it runs first: the block above still sees no request here.
add_block_preprocessor(sub {
    my ($block) = @_;
    if ($block->name =~ /preprocessor order/ && !defined $block->request) {
        $block->set_value("request", "GET /order");
    }
});

run_tests();

__DATA__

=== TEST 1: plain body, default status
--- config
    location /t {
        content_by_lua_block {
            ngx.say("hello")
            ngx.say("world")
        }
    }
--- response_body
hello
world
--- no_error_log
[error]



=== TEST 2: error_code, response_headers, more_headers
--- config
    location /t {
        content_by_lua_block {
            ngx.header["X-Echo"] = ngx.var.http_x_in
            ngx.status = 403
            ngx.say("no")
        }
    }
--- more_headers
X-In: ping
--- error_code: 403
--- response_headers
X-Echo: ping
X-Absent:
--- response_body
no



=== TEST 3: response_body eval with a regex
--- config
    location /t {
        content_by_lua_block {
            ngx.say("n = ", 42)
        }
    }
--- response_body eval
qr/^n = \d+$/m



=== TEST 4: response_body_like
--- config
    location /t {
        content_by_lua_block {
            ngx.say("the value is 17")
        }
    }
--- response_body_like: value is \d+



=== TEST 5: error_log literal lines and no_error_log regex
--- config
    location /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "first marker")
            ngx.log(ngx.WARN, "second marker")
            ngx.say("ok")
        }
    }
--- response_body
ok
--- error_log
first marker
second marker
--- no_error_log eval
qr/third marker/



=== TEST 6: request eval array, several requests
--- config
    location /a {
        content_by_lua_block { ngx.say("A") }
    }
    location /b {
        content_by_lua_block { ngx.say("B") }
    }
--- request eval
["GET /a", "GET /b"]
--- response_body eval
["A\n", "B\n"]



=== TEST 7: POST with a body, HTTP/1.0
--- config
    location /t {
        content_by_lua_block {
            ngx.req.read_body()
            ngx.say(ngx.req.get_method(), " ", ngx.req.http_version(), " ", ngx.req.get_body_data())
        }
    }
--- request eval
"POST /t HTTP/1.0\nhello body"
--- response_body
POST 1 hello body



=== TEST 8: http_config and main_config, with an env variable expanded
--- main_config
env TEST_NGINX_SERVER_PORT;
--- http_config
    lua_shared_dict runner_dict 1m;
--- config
    location /t {
        content_by_lua_block {
            ngx.say(ngx.shared.runner_dict and "dict" or "none", " ", os.getenv("TEST_NGINX_SERVER_PORT"))
            ngx.say("port ", $TEST_NGINX_SERVER_PORT)
        }
    }
--- response_body eval
"dict $ENV{TEST_NGINX_SERVER_PORT}\nport $ENV{TEST_NGINX_SERVER_PORT}\n"



=== TEST 9: timeout with abort: the client gives up and nginx sees it
--- config
    location /t {
        lua_check_client_abort on;
        content_by_lua_block {
            ngx.on_abort(function()
                ngx.log(ngx.ERR, "client went away")
                ngx.exit(444)
            end)
            ngx.sleep(5)
            ngx.say("too late")
        }
    }
--- timeout: 0.5
--- abort
--- ignore_response
--- wait: 0.2
--- error_log
client went away



=== TEST 10: ignore_response skips status and body, not the log
--- config
    location /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "log still checked")
            ngx.exit(500)
        }
    }
--- ignore_response
--- error_log
log still checked



=== TEST 11: preprocessor order: the latest registered runs first
--- config
    location /order {
        content_by_lua_block { ngx.say("order") }
    }
    location /t {
        content_by_lua_block { ngx.say("t") }
    }
--- response_body
order



=== TEST 12: SKIP is skipped
--- SKIP
--- config
    location /t {
        content_by_lua_block { ngx.say("never") }
    }
--- response_body
this block would fail



=== TEST 13: the root location is there unless no_root_location
--- request
GET /
--- response_body_like: <title>It works!</title>

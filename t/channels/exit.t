# Channels when the worker exits (quit, reload): the worker's Redis reader stops at once, its
# XREAD BLOCK ended by CLIENT UNBLOCK and its pauses woken, so the worker is gone well within
# `block`. Each block drives a second nginx (this one's config, another port) and times its worker.
use t::channels::RedisServer;
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => $t::channels::RedisServer::Locations, no_error_log => '[error]', http_config => $t::channels::RedisServer::HttpConfig);
master_on();

run_tests();

__DATA__

=== TEST 1: quit with subscribers connected and the reader blocked in XREAD (block 10 s): the worker is gone within 1.5 s, the subscribers closed with 1001
--- timeout: 30
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local a, b = t.second_subscribers("$TEST_NGINX_BINARY", $TEST_NGINX_SECOND_PORT,
                "pid=1&block=10000&ws_timeout=100", "exit.1", "exit.2")
            -- The reader delivers, then blocks again.
            assert(t.pub("exit.1", "before"))
            ngx.say(t.read(a, 1)[1])
            ngx.say("the reader is blocked: ", t.reader_blocked(2000))
            local gone, codes, master = t.exit_timed("QUIT", 1500, a, b)
            ngx.say("worker gone within 1500 ms: ", gone)
            ngx.say("close ", codes)
            ngx.say("master gone: ", t.gone(master))
        }
    }
--- response_body
1 exit.1 before
the reader is blocked: true
worker gone within 1500 ms: true
close 1001 1001
master gone: true



=== TEST 2: reload (HUP) with a subscriber: the old worker is gone within 1.5 s; a subscriber of the new worker gets what is published
--- timeout: 30
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local q = "pid=1&block=10000&ws_timeout=100"
            local old = t.second_subscribers("$TEST_NGINX_BINARY", $TEST_NGINX_SECOND_PORT, q, "reload.1")
            ngx.say("the reader is blocked: ", t.reader_blocked(2000))
            local gone, codes, master = t.exit_timed("HUP", 1500, old)
            ngx.say("old worker gone within 1500 ms: ", gone)
            ngx.say("close ", codes)
            local new = t.client(q, nil, $TEST_NGINX_SECOND_PORT)
            ngx.say("a new worker: ", new.pid ~= old.pid and t.alive(new.pid))
            local sub = assert(t.subscribe(new, 2, "reload.1"))
            local id = assert(t.pub("reload.1", "after"))
            local got, ids = t.read(new, 1)
            ngx.say(got[1], " ", ids[1] == id)
            t.bye(new)
            t.stop_second()
            ngx.say("master gone: ", t.gone(master))
        }
    }
--- response_body
the reader is blocked: true
old worker gone within 1500 ms: true
close 1001
a new worker: true
2 reload.1 after true
master gone: true



=== TEST 3: quit while Redis is down and the reader waits between reconnects (pauses up to 2 s): the worker is gone within 700 ms
--- timeout: 30
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local server = require("redis_server")
            local a = t.second_subscribers("$TEST_NGINX_BINARY", $TEST_NGINX_SECOND_PORT, "pid=1&ws_timeout=100", "exit.3")
            server.kill()
            -- Its pauses double from 100 ms: after 3.5 s the reader waits 2 s between attempts.
            ngx.sleep(3.5)
            local gone, codes, master = t.exit_timed("QUIT", 700, a)
            ngx.say("worker gone within 700 ms: ", gone)
            ngx.say("close ", codes)
            server.start()
            ngx.say("master gone: ", t.gone(master))
        }
    }
--- response_body
worker gone within 700 ms: true
close 1001
master gone: true



=== TEST 4: quit with a subscriber that has no read timeout (lua_socket_read_timeout 60 s): it is sent a close 1001 at once, and the worker is gone within 1.5 s
--- timeout: 30
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local a = t.second_subscribers("$TEST_NGINX_BINARY", $TEST_NGINX_SECOND_PORT,
                "pid=1&block=10000", "exit.4")
            ngx.say("the reader is blocked: ", t.reader_blocked(2000))
            local gone, codes, master = t.exit_timed("QUIT", 1500, a)
            ngx.say("worker gone within 1500 ms: ", gone)
            ngx.say("close ", codes)
            ngx.say("master gone: ", t.gone(master))
        }
    }
--- response_body
the reader is blocked: true
worker gone within 1500 ms: true
close 1001
master gone: true

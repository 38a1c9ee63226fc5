# The Redis client of the channels (lua/apisix_pubsub_rs/redis.lua): cosockets for the I/O, the
# RESP codec of src/resp/ through the FFI, against a real redis-server.
use t::channels::RedisServer;
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => '', no_error_log => '[error]', http_config => $t::channels::RedisServer::HttpConfig);

run_tests();

__DATA__

=== TEST 1: commands and their replies as Lua values, over TCP and a unix socket
--- config
    location /t {
        content_by_lua_block {
            local redis = require("apisix_pubsub_rs.redis")
            local server = require("redis_server")
            for _, addr in ipairs({ server.address, server.unix }) do
                local r = assert(redis.connect({ redis = addr }))
                ngx.say(r:call("SET", "redis.t:k", "v\r\n\0x"))
                ngx.say(r:call("GET", "redis.t:k") == "v\r\n\0x")
                ngx.say(r:call("GET", "redis.t:none") == ngx.null)
                ngx.say(r:call("DEL", "redis.t:k"))
                local list = r:call("ECHO", string.rep("x", 100000))
                ngx.say(#list)
                local arr = r:call("MGET", "redis.t:none", "redis.t:none")
                ngx.say(#arr, " ", arr[1] == ngx.null)
                ngx.say(r:call("NOSUCHCOMMAND"))
                ngx.say(r:call("PING"))
                r:release()
            end
        }
    }
--- response_body eval
"OK\ntrue\ntrue\n1\n100000\n2 true\nnilredis: ERR unknown command 'NOSUCHCOMMAND', with args beginning with: \nPONG\n" x 2



=== TEST 2: stream entries out of XRANGE and XREAD, ids and fields as sent
--- config
    location /t {
        content_by_lua_block {
            local redis = require("apisix_pubsub_rs.redis")
            local r = assert(redis.connect({ redis = require("redis_server").address }))
            r:call("DEL", "redis.t:s", "redis.t:s2")
            local a = assert(r:call("XADD", "redis.t:s", "*", "d", "one"))
            local b = assert(r:call("XADD", "redis.t:s", "*", "d", "two", "x", "y"))
            local c = assert(r:call("XADD", "redis.t:s2", "*", "d", ""))
            local list = assert(r:command(redis.MODE.XRANGE, "XRANGE", "redis.t:s", "-", "+"))
            ngx.say(#list, " ", list[1].id == a, " ", list[1].fields.d, " ", list[2].fields.d, " ", list[2].fields.x)
            list = assert(r:command(redis.MODE.XREAD, "XREAD", "COUNT", 10, "STREAMS", "redis.t:s", "redis.t:s2", a, "0-0"))
            ngx.say(#list, " ", list[1].key, " ", list[1].id == b, " ", list[2].key, " ", list[2].id == c, " [", list[2].fields.d, "]")
            -- BLOCK that times out: no entries.
            list = assert(r:command(redis.MODE.XREAD, "XREAD", "BLOCK", 50, "STREAMS", "redis.t:s", b))
            ngx.say(#list)
            -- An error reply in XRANGE mode.
            r:call("SET", "redis.t:str", "x")
            ngx.say(r:command(redis.MODE.XRANGE, "XRANGE", "redis.t:str", "-", "+"))
            r:release()
        }
    }
--- response_body
2 true one two y
2 redis.t:s true redis.t:s2 true []
0
nilredis: WRONGTYPE Operation against a key holding the wrong kind of value



=== TEST 3: AUTH with a username and password, SELECT a database, and the refusals
--- config
    location /t {
        content_by_lua_block {
            local redis = require("apisix_pubsub_rs.redis")
            local addr = require("redis_server").address
            local admin = assert(redis.connect({ redis = addr }))
            assert(admin:call("ACL", "SETUSER", "redis_t", "on", ">secret", "~*", "+@all"))
            local r = assert(redis.connect({ redis = addr, username = "redis_t", password = "secret", database = 3, pooled = false }))
            ngx.say(r:call("ACL", "WHOAMI"))
            r:call("SET", "redis.t:db", "three")
            r:close()
            ngx.say(admin:call("GET", "redis.t:db") == ngx.null)
            admin:call("SELECT", 3)
            ngx.say(admin:call("GET", "redis.t:db"))
            admin:call("DEL", "redis.t:db")
            admin:close()
            ngx.say(redis.connect({ redis = addr, username = "redis_t", password = "wrong" }))
            ngx.say(redis.connect({ redis = addr, database = 99 }))
            ngx.say(redis.connect({ redis = "127.0.0.1:1" }))
            ngx.say(redis.connect({ redis = "nowhere" }))
        }
    }
--- response_body_like
^redis_t
true
three
nilredis AUTH: redis: WRONGPASS invalid username-password pair or user is disabled.
nilredis SELECT 99: redis: ERR DB index is out of range
nilredis connect to 127.0.0.1:1: connection refused
nilbad redis address: "host:port" or "unix:/path" expected, got "nowhere"



=== TEST 4: a timeout ends the connection with a clear error; a killed server is a read error
--- config
    location /t {
        content_by_lua_block {
            local redis = require("apisix_pubsub_rs.redis")
            local server = require("redis_server")
            local r = assert(redis.connect({ redis = server.address, timeout = 100, pooled = false }))
            ngx.say(r:command(redis.MODE.XREAD, "XREAD", "BLOCK", 1000, "STREAMS", "redis.t:none", "$"))
            ngx.say(r:call("PING"))
            r = assert(redis.connect({ redis = server.address, pooled = false }))
            ngx.say(r:call("PING"))
            server.kill()
            ngx.say(r:call("PING"))
            server.start()
            r = assert(redis.connect({ redis = server.address, pooled = false }))
            ngx.say(r:call("PING"))
        }
    }
--- response_body_like
^nilredis read: timeout
nilredis read: timeout
PONG
nilredis (read|write): (closed|connection reset by peer|broken pipe)
PONG

# Writes made at once, by send() or by the reader (src/ffi/socket.rs): when, and never at the cost
# of order, of the queue's limit, of a connection that has gone, or of TLS.
use t::Pubsub 'no_plan';
use IO::Socket::INET;
use File::Temp qw(tempdir);

# A TLS server for TEST 6: a certificate made now, on a free port.
my $certs = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $certs/key.pem -out $certs/cert.pem"
    . " -days 2 -subj /CN=localhost >/dev/null 2>&1") == 0
    or die "direct.t: openssl could not make a test certificate\n";
my $probe = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0)
    or die "direct.t: no free port: $!\n";
$ENV{TEST_NGINX_TLS_PORT} = $probe->sockport;
close $probe;
$ENV{TEST_NGINX_CERT_DIR} = $certs;

our $TlsServer = <<'_EOC_' . $t::Pubsub::PushLocation . "    }\n";
    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT ssl;
        ssl_certificate $TEST_NGINX_CERT_DIR/cert.pem;
        ssl_certificate_key $TEST_NGINX_CERT_DIR/key.pem;
_EOC_

t::Pubsub::server_suite(location => $t::Pubsub::PushLocation, no_error_log => '[error]');

run_tests();

__DATA__

=== TEST 1: a push from another request to an idle connection is written by send itself, byte for byte
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local ws = require("rawws").connect("/push?name=idle")
            ngx.sleep(0.05)
            local before = pubsub.metrics()
            assert(server.connections.idle:send(server.push_reply(1), 5))
            local after = pubsub.metrics()
            ngx.say("written by send: ", after.direct_writes - before.direct_writes,
                ", pushes sent: ", after.pushes_sent - before.pushes_sent)
            local op, payload = ws:recv()
            ngx.say("op ", op, ", bytes as encoded: ", payload == pubsub.encode_resp(5, server.push_reply(1)))
            -- A message of pubsub.message large enough to be held by reference: the same.
            local msg = pubsub.message(server.push_reply(2, 3000), 6)
            assert(server.connections.idle:send(msg))
            local after2 = pubsub.metrics()
            op, payload = ws:recv()
            ngx.say("held message: ", after2.direct_writes - after.direct_writes, " direct, bytes as encoded: ",
                payload == pubsub.encode_resp(6, server.push_reply(2, 3000)))
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
written by send: 1, pushes sent: 1
op 2, bytes as encoded: true
held message: 1 direct, bytes as encoded: true
close 1000



=== TEST 2: direct_writes = false: every push goes through the writer thread
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local ws = require("rawws").connect("/push?name=off&direct_writes=false")
            ngx.sleep(0.05)
            local before = pubsub.metrics()
            assert(server.connections.off:send(server.push_reply(1), 5))
            local r = assert(ws:resp())
            local after = pubsub.metrics()
            ngx.say(r.sequence, " ", r.pong_resp.state)
            ngx.say("written by send: ", after.direct_writes - before.direct_writes,
                ", pushes sent: ", after.pushes_sent - before.pushes_sent)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
5 push 1
written by send: 0, pushes sent: 1
close 1000



=== TEST 3: a client that does not read: the socket takes what it can, the queue the rest up to its limit; all arrives intact, in order
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local ws = require("rawws").connect("/push?name=stalled&max_queue_bytes=262144")
            ngx.sleep(0.05)
            local c = server.connections.stalled
            local before = pubsub.metrics()
            -- 60,000-byte messages, held by reference: writes stop in the middle of one.
            local accepted, err = 0, nil
            for i = 1, 2000 do
                local ok
                ok, err = c:send(pubsub.message(server.push_reply(i, 60000), i))
                if not ok then
                    break
                end
                accepted = accepted + 1
            end
            local after = pubsub.metrics()
            ngx.say("stopped by: ", err, ", some written by send: ", after.direct_writes > before.direct_writes)
            local good = 0
            for i = 1, accepted do
                local r = assert(ws:resp())
                if r.sequence == i and #r.pong_resp.state == 60000 and r.pong_resp.state:find("^push " .. i .. "p") then
                    good = good + 1
                end
            end
            ngx.say("received intact and in order: ", good == accepted, " (", accepted > 4 and "more" or "fewer", " than 4)")
            ws:send(ws.req({ sequence = 9, cmd_ping = { state = "after" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
stopped by: queue full, some written by send: true
received intact and in order: true (more than 4)
after
close 1000



=== TEST 4: pushes sent while the writer is busy with a large reply wait their turn behind it
--- config
    location /t {
        content_by_lua_block {
            local ws = require("rawws").connect("/push?name=busy&max_queue_bytes=8000000")
            ws:send(ws.req({ sequence = 1, cmd_kafka_fetch = { topic = "large_then_pushes", partition = 20, offset = 4000000 } }))
            -- Not reading for a while: the reply's write waits for the socket meanwhile.
            ngx.sleep(0.1)
            local r = assert(ws:resp())
            ngx.say("first: sequence ", r.sequence, ", ", #r.pong_resp.state, " bytes, intact: ",
                r.pong_resp.state == string.rep("L", 4000000))
            local order = true
            for i = 1, 20 do
                r = assert(ws:resp())
                order = order and r.sequence == i and r.pong_resp.state == "push " .. i
            end
            ngx.say("then 20 pushes in order: ", order)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
first: sequence 1, 4000000 bytes, intact: true
then 20 pushes in order: true
close 1000



=== TEST 5: a request that ends under wait(): its pushes are refused as closed, and a new connection gets none of them
--- config
    location /t {
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local ws = require("rawws").connect("/push?name=gone&producer=exit_later")
            -- The request exits after 50 ms: the client sees the connection close.
            local op, err = ws:recv()
            ngx.say("client: ", tostring(op), " ", tostring(err))
            ngx.sleep(0.05)
            local gone = server.connections.gone
            local ok, serr = gone:send(server.push_reply(1), 1)
            ngx.say("push to it: ", tostring(ok), " ", tostring(serr))
            -- A new connection, likely on the gone one's nginx connection: only its own pushes.
            local fresh = require("rawws").connect("/push?name=fresh")
            ngx.sleep(0.05)
            ok, serr = gone:send(server.push_reply(2), 2)
            ngx.say("push to the gone one again: ", tostring(ok), " ", tostring(serr))
            assert(server.connections.fresh:send(server.push_reply(3), 3))
            local r = assert(fresh:resp())
            ngx.say("fresh got: ", r.sequence, " ", r.pong_resp.state)
            fresh:send(fresh.req({ sequence = 4, cmd_ping = { state = "p" } }))
            r = assert(fresh:resp())
            ngx.say("then: ", r.sequence, " ", r.pong_resp.state)
            fresh:send(fresh.close_frame(1000))
            ngx.say("close ", fresh:close_code())
        }
    }
--- response_body
client: nil closed
push to it: nil closed
push to the gone one again: nil closed
fresh got: 3 push 3
then: 4 p
close 1000
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: a TLS connection is never written by send: its pushes go through the writer, intact
--- http_config eval: $::TlsServer
--- config
    location /t {
        set $tls_port $TEST_NGINX_TLS_PORT;
        content_by_lua_block {
            local server = require("push_server")
            local pubsub = require("apisix_pubsub_rs")
            local ws = assert(require("rawws").connect("/push?name=tls", nil,
                { port = tonumber(ngx.var.tls_port), tls = true }))
            ngx.sleep(0.05)
            local before = pubsub.metrics()
            for i = 1, 3 do
                assert(server.connections.tls:send(server.push_reply(i, 1000), i))
            end
            local good = 0
            for i = 1, 3 do
                local r = assert(ws:resp())
                if r.sequence == i and r.pong_resp.state == server.push_reply(i, 1000).pong_resp.state then
                    good = good + 1
                end
            end
            local after = pubsub.metrics()
            ngx.say("received intact: ", good, ", written by send: ", after.direct_writes - before.direct_writes)
            ws:send(ws.req({ sequence = 9, cmd_ping = { state = "over tls" } }))
            ngx.say(assert(ws:resp()).pong_resp.state)
            ws:send(ws.close_frame(1000))
            ngx.say("close ", ws:close_code())
        }
    }
--- response_body
received intact: 3, written by send: 0
over tls
close 1000



=== TEST 7: a read's replies are written by the reader at once; with direct_writes = false by the writer
--- config
    location /t {
        content_by_lua_block {
            local pubsub = require("apisix_pubsub_rs")
            for _, q in ipairs({ "", "&direct_writes=false" }) do
                local ws = require("rawws").connect("/push?name=rr" .. q)
                local before = pubsub.metrics()
                for i = 1, 3 do
                    ws:send(ws.req({ sequence = i, cmd_ping = { state = "p" .. i } }))
                    local r = assert(ws:resp())
                    assert(r.sequence == i and r.pong_resp.state == "p" .. i)
                end
                local after = pubsub.metrics()
                ngx.say(q == "" and "direct" or "writer only", ": 3 replies, ",
                    after.direct_writes - before.direct_writes, " written at once")
                ws:send(ws.close_frame(1000))
                ngx.say("close ", ws:close_code())
            end
        }
    }
--- response_body
direct: 3 replies, 3 written at once
close 1000
writer only: 3 replies, 0 written at once
close 1000

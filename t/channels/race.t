# Channels under re-subscription while the worker's reader has an XREAD in flight: subscribers
# that unsubscribe and subscribe again (with since = the last id they got), and subscribe to new
# channels, all the time while messages flow: nothing lost, nothing twice, new channels deliver at
# once.
use t::channels::RedisServer;
use t::Pubsub 'no_plan';

t::Pubsub::server_suite(location => $t::channels::RedisServer::Locations, no_error_log => '[error]', http_config => $t::channels::RedisServer::HttpConfig);

run_tests();

__DATA__

=== TEST 1: churn on a shared channel (another subscriber stays) and on a lone one (it leaves the reader's set each time): every acknowledged message once, in order; new channels deliver within 2 s although BLOCK is 10 s
--- timeout: 40
--- config
    location /t {
        content_by_lua_block {
            local t = require("redis_channels")
            local q = "block=10000"
            local steady, shared_churner, lone_churner = t.client(q), t.client(q), t.client(q)
            assert(t.subscribe(steady, 1, "race.shared"))
            local shared, lone = {}, {}
            local churns = {
                ngx.thread.spawn(t.churn, shared_churner, "race.shared", shared),
                ngx.thread.spawn(t.churn, lone_churner, "race.lone", lone),
            }
            -- The churners subscribe first: both publishers start after their subscribe_resps.
            ngx.sleep(0.1)
            local publishers = { t.publisher("race.shared", 200, 0.003, shared), t.publisher("race.lone", 200, 0.003, lone) }
            for _, th in ipairs(publishers) do
                assert(ngx.thread.wait(th))
            end
            local _, s = ngx.thread.wait(churns[1])
            local _, l = ngx.thread.wait(churns[2])
            local _, steady_ids = t.read(steady, 200)
            ngx.say("steady: ", t.compare(steady_ids, shared.acked))
            for _, c in ipairs({ { "shared", s, shared.acked }, { "lone", l, lone.acked } }) do
                local name, r, acked = unpack(c)
                local again = t.check_churn(r, acked)
                ngx.log(ngx.NOTICE, name, ": ", r.rounds, " rounds, the slowest first delivery on a new channel ",
                    r.worst * 1000, " ms")
                ngx.log(ngx.NOTICE, name, ": ", #r.subs, " subscriptions, ", again, " messages asked for again")
                ngx.say(name, " churner: each subscription got every acknowledged message after its since, once, in order: ",
                    #r.problems == 0, " ", table.concat(r.problems, "; "))
            end
            ngx.say("churned: ", s.rounds >= 8 and l.rounds >= 8)
            ngx.say("new channels prompt: ", s.worst < 2 and l.worst < 2)
            -- After all that joining and leaving, each channel's fan-out (Rust) holds exactly its
            -- live subscriptions (Lua).
            local C = require("apisix_pubsub_rs.ffi").C
            local agree, seen = true, 0
            for _, b in pairs(require("apisix_pubsub_rs.channels")._backends) do
                for _, ch in pairs(b.channels) do
                    local slots = 0
                    for slot, sub in pairs(ch.by_slot) do
                        slots = slots + 1
                        agree = agree and sub.slot == slot and sub.state == "live"
                    end
                    agree = agree and tonumber(C.fanout_len(ch.fan)) == slots
                    seen = seen + 1
                end
            end
            ngx.say("fan-outs hold the live subscriptions: ", agree and seen > 0)
            t.bye(steady, shared_churner, lone_churner)
        }
    }
--- response_body
steady: 200 of 200, same order, missing 0, twice 0
shared churner: each subscription got every acknowledged message after its since, once, in order: true 
lone churner: each subscription got every acknowledged message after its since, once, in order: true 
churned: true
new channels prompt: true
fan-outs hold the live subscriptions: true

# The runner's preamble calls that sections.t leaves out: a fixed plan, master_on, workers,
# no_root_location, and a block preprocessor that fills in the request.
use t::Pubsub;

master_on();
workers(2);
no_root_location();
repeat_each(1);

plan tests => repeat_each() * 5;

add_block_preprocessor(sub {
    my ($block) = @_;
    $block->set_value("request", "GET /t") unless defined $block->request;
});

run_tests();

__DATA__

=== TEST 1: master and two workers
--- config
    location /t {
        content_by_lua_block {
            ngx.say("workers ", ngx.worker.count(), " master ", ngx.config.subsystem, " ",
                    require("ngx.process").type())
        }
    }
--- response_body
workers 2 master http worker
--- no_error_log
[error]



=== TEST 2: no root location: the block may define its own "location /" (a duplicate would stop nginx)
--- config
    location / {
        return 200 "mine\n";
    }
--- request
GET /
--- response_body
mine

package t::channels::RedisServer;

# A real redis-server for a channels suite: `use t::channels::RedisServer;` before t::Pubsub.
# It listens on a free port of 127.0.0.1 and on a unix socket, in a temporary directory, with
# appendonly yes and appendfsync always (an acknowledged write is on disk), and is stopped by the
# pid in its pidfile when the suite ends. The blocks get TEST_NGINX_REDIS_PORT and
# TEST_NGINX_REDIS_DIR (expanded in their config); t/lib/redis_server.lua kills and restarts the
# same server from a block (same config, same data).

use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

my $binary = (grep { -x $_ } ('/usr/bin/redis-server', '/usr/local/bin/redis-server'))[0]
    or die "t::channels::RedisServer: redis-server is not installed (make deps installs Debian's redis-server)\n";

my $dir = tempdir('apisix-pubsub-rs-redis-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
        or die "t::channels::RedisServer: no free port: $!\n";
    my $p = $s->sockport;
    close $s;
    return $p;
}
my $port = free_port();
# For a suite that starts a second nginx beside the one of the block.
$ENV{TEST_NGINX_SECOND_PORT} = free_port();

open my $conf, '>', "$dir/redis.conf" or die "$dir/redis.conf: $!";
print $conf <<_EOC_;
port $port
bind 127.0.0.1
unixsocket $dir/redis.sock
unixsocketperm 700
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
appendonly yes
appendfsync always
save ""
_EOC_
close $conf;

sub listening {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    return 0 unless $s;
    close $s;
    return 1;
}

system($binary, "$dir/redis.conf") == 0 or die "t::channels::RedisServer: redis-server failed to start\n";
my $deadline = time + 10;
sleep 0.02 until listening() || time > $deadline;
die "t::channels::RedisServer: redis-server did not listen on $port\n" unless listening();

$ENV{TEST_NGINX_REDIS_PORT} = $port;
$ENV{TEST_NGINX_REDIS_DIR} = $dir;
$ENV{TEST_NGINX_REDIS_SERVER} = $binary;

# What every block of a channels suite puts in its http_config: the server's place for
# t/lib/redis_server.lua, and no socket error logs (the suites kill Redis on purpose).
our $HttpConfig = <<'_EOC_';
    lua_socket_log_errors off;
    init_by_lua_block {
        require("redis_server").init($TEST_NGINX_REDIS_PORT, "$TEST_NGINX_REDIS_DIR", "$TEST_NGINX_REDIS_SERVER")
    }
_EOC_

# The locations of t/lib/redis_channels.lua: /channels (an instance with the channels attached)
# and /publish (channels.publish of a POST body).
our $Locations = <<'_EOC_';
    location /channels {
        content_by_lua_block {
            require("redis_channels").serve()
        }
    }
    location /publish {
        content_by_lua_block {
            require("redis_channels").publish()
        }
    }
    location /collect {
        content_by_lua_block {
            require("redis_channels").collect()
        }
    }
_EOC_

sub pid {
    open my $f, '<', "$dir/redis.pid" or return;
    my $pid = <$f>;
    close $f;
    chomp $pid if defined $pid;
    return $pid;
}

END {
    # A second nginx a failed block left running (t/lib/redis_channels.lua keeps its pid here).
    if (open my $f, '<', "$dir/second-nginx.pid") {
        my $second = <$f>;
        close $f;
        chomp $second if defined $second;
        my $cmdline = '';
        if ($second && open my $c, '<', "/proc/$second/cmdline") {
            local $/;
            $cmdline = <$c> // '';
            close $c;
        }
        # (Its pid only if it is still that nginx: pids are reused.)
        if ($cmdline =~ m{logs/second/}) {
            kill 'QUIT', $second;
            my $until = time + 5;
            sleep 0.02 while kill(0, $second) && time < $until;
            kill 'KILL', $second if kill 0, $second;
        }
    }
    my $pid = pid();
    if ($pid && kill 0, $pid) {
        kill 'TERM', $pid;
        my $until = time + 5;
        sleep 0.02 while kill(0, $pid) && time < $until;
        kill 'KILL', $pid if kill 0, $pid;
    }
}

1;

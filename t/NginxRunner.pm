package t::NginxRunner;

# A runner for Test::Nginx `.t` suites, for machines where Test::Nginx itself cannot be installed.
# It reads the same files (Test::Base blocks) and follows the same rules: one fresh nginx and
# servroot per block, raw-socket HTTP requests, response and error.log checks, TAP out.
# t::Pubsub picks the real Test::Nginx::Socket::Lua when it can be loaded and this runner otherwise.

use Test::Base -Base;

use POSIX ();
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);
use File::Path qw(make_path remove_tree);
use File::Spec;
use List::Util qw(shuffle);

our @EXPORT = qw(
    run_tests repeat_each no_long_string no_root_location no_shuffle log_level
    master_on master_off workers worker_connections add_block_preprocessor
    server_port env_to_nginx
);

our $RepeatEach = 1;
our $NoRootLocation = 0;
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterOn = 0;
our $Workers = 1;
our $WorkerConnections = 64;
our @BlockPreprocessors;
our @EnvToNginx;
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
our $NoClean = $ENV{TEST_NGINX_NO_CLEAN} || 0;
our $Valgrind = $ENV{TEST_NGINX_USE_VALGRIND} || 0;

sub repeat_each (@) { $RepeatEach = shift if @_; return $RepeatEach }
sub no_long_string () { }    # diagnostics are plain `is` output either way
sub no_root_location () { $NoRootLocation = 1 }
sub no_shuffle () { $NoShuffle = 1 }
sub log_level (@) { $LogLevel = shift if @_; return $LogLevel }
sub master_on () { $MasterOn = 1 }
sub master_off () { $MasterOn = 0 }
sub workers (@) { $Workers = shift if @_; return $Workers }
sub worker_connections (@) { $WorkerConnections = shift if @_; return $WorkerConnections }
sub server_port (@) { $ServerPort = shift if @_; return $ServerPort }
sub env_to_nginx (@) { push @EnvToNginx, @_ }

# The latest registered preprocessor runs first, as in Test::Nginx.
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }

sub nginx_binary () {
    return $ENV{TEST_NGINX_BINARY} if $ENV{TEST_NGINX_BINARY};
    for my $dir (File::Spec->path) {
        return "$dir/nginx" if -x "$dir/nginx";
    }
    return '/usr/sbin/nginx';
}

# As in Test::Nginx: none unless TEST_NGINX_LOAD_MODULES names them (t::Pubsub sets it from
# scripts/runtime.sh).
sub default_modules () {
    return defined $ENV{TEST_NGINX_LOAD_MODULES} ? $ENV{TEST_NGINX_LOAD_MODULES} : '';
}

# $TEST_NGINX_FOO in a config section; an undefined one is an error.
sub expand_env ($$) {
    my ($text, $name) = @_;
    return '' unless defined $text;
    $text =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/
        defined $ENV{$1} ? $ENV{$1} : die "$name - environment variable $1 is not defined\n"/ge;
    return $text;
}

sub write_config ($) {
    my $block = shift;
    my $name = $block->name;
    remove_tree($ServRoot) if -d $ServRoot;
    make_path("$ServRoot/conf", "$ServRoot/logs", "$ServRoot/html");
    open my $idx, '>', "$ServRoot/html/index.html" or die "$ServRoot/html: $!";
    print $idx "<html><head><title>It works!</title></head><body>It works!</body></html>";
    close $idx;

    my $main = '';
    for my $m (split /\s+/, default_modules()) {
        $main .= "load_module $m;\n" if $m ne '';
    }
    $main .= expand_env($block->main_config, $name);
    my $http = expand_env($block->http_config, $name);
    my $config = expand_env($block->config, $name);
    my $user = $> == 0 ? "user root;\n" : '';
    my $master = $MasterOn ? 'on' : 'off';
    my $env = join '', map { "env $_;\n" } @EnvToNginx;
    my $root = $NoRootLocation ? '' : <<_EOC_;
        location / {
            root $ServRoot/html;
            index index.html index.htm;
        }
_EOC_

    open my $out, '>', "$ServRoot/conf/nginx.conf" or die "$ServRoot/conf/nginx.conf: $!";
    print $out <<_EOC_;
$main
worker_processes  $Workers;
daemon off;
master_process $master;
error_log logs/error.log $LogLevel;
pid       logs/nginx.pid;
$user$env
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout  68;
    client_body_temp_path $ServRoot/client_body_temp;
    proxy_temp_path $ServRoot/proxy_temp;
    fastcgi_temp_path $ServRoot/fastcgi_temp;
    uwsgi_temp_path $ServRoot/uwsgi_temp;
    scgi_temp_path $ServRoot/scgi_temp;

$http

    server {
        listen          $ServerPort;
        server_name     'localhost';
        client_max_body_size 30M;

$config

$root    }
}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
_EOC_
    close $out;
}

sub port_open () {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Proto => 'tcp');
    return 0 unless $s;
    close $s;
    return 1;
}

sub start_nginx ($) {
    my $block = shift;
    my @cmd = (nginx_binary(), '-p', "$ServRoot/", '-c', 'conf/nginx.conf');
    if ($Valgrind) {
        my @vg = split /\s+/, ($ENV{TEST_NGINX_VALGRIND} || 'valgrind -q --leak-check=full');
        @cmd = (@vg, @cmd);
    }
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$ServRoot/logs/stdout.log";
        open STDERR, '>>', "$ServRoot/logs/stderr.log";
        exec @cmd or POSIX::_exit(127);
    }
    my $deadline = time + ($Valgrind ? 60 : 10);
    while (time < $deadline) {
        return $pid if port_open();
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            my $err = slurp("$ServRoot/logs/stderr.log") . slurp("$ServRoot/logs/error.log");
            die $block->name . " - nginx failed to start: $err\n";
        }
        sleep 0.01;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    die $block->name . " - nginx did not listen on port $ServerPort in time\n";
}

# Stops and reaps the nginx we started: ours to reap, so no block waits on PID 1.
sub stop_nginx ($) {
    my $pid = shift;
    return unless $pid;
    kill 'QUIT', $pid;
    my $deadline = time + ($Valgrind ? 30 : 5);
    while (time < $deadline) {
        return if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.005;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

sub slurp ($) {
    my $f = shift;
    open my $in, '<', $f or return '';
    local $/;
    my $s = <$in>;
    close $in;
    return defined $s ? $s : '';
}

sub build_request ($$) {
    my ($block, $raw) = @_;
    $raw =~ s/^\s+//;
    my ($line, $body) = split /\n/, $raw, 2;
    $body = '' unless defined $body;
    my ($method, $uri, $proto) = split /\s+/, $line;
    $proto ||= 'HTTP/1.1';
    my $headers = "Host: localhost\r\n";
    my $more = $block->more_headers;
    my $has_conn = 0;
    if (defined $more) {
        for my $h (split /\n/, $more) {
            next if $h =~ /^\s*$/;
            $has_conn = 1 if $h =~ /^\s*Connection\s*:/i;
            $headers .= "$h\r\n";
        }
    }
    $headers .= "Connection: close\r\n" unless $has_conn;
    if ($body ne '' || $method =~ /^(POST|PUT|PATCH)$/) {
        $headers .= 'Content-Length: ' . length($body) . "\r\n";
    }
    return "$method $uri $proto\r\n$headers\r\n$body";
}

# Sends one request and reads until the server closes, or until `timeout` seconds pass with no
# data (then the client closes, which nginx sees as an abort). Returns (response, timed_out).
sub http_exchange ($$) {
    my ($req, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ServerPort, Proto => 'tcp')
        or return (undef, 0, "connect: $!");
    $sock->autoflush(1);
    binmode $sock;
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $req) {
        if (!$sel->can_write($timeout)) {
            close $sock;
            return ('', 1);
        }
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        last unless defined $n;
        $off += $n;
    }
    my $resp = '';
    while (1) {
        if (!$sel->can_read($timeout)) {
            close $sock;
            return ($resp, 1);
        }
        my $n = sysread($sock, my $buf, 65536);
        last if !$n;
        $resp .= $buf;
    }
    close $sock;
    return ($resp, 0);
}

sub parse_response ($) {
    my $raw = shift;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return (undef, {}, '') unless defined $head && $head =~ m{^HTTP/\d\.\d\s+(\d+)};
    my $status = $1;
    $body = '' unless defined $body;
    my %h;
    for my $line (split /\r\n/, $head) {
        next unless $line =~ /^([^:\s]+)\s*:\s*(.*)$/;
        $h{lc $1} = $2;
    }
    if (($h{'transfer-encoding'} || '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }
    return ($status, \%h, $body);
}

sub as_list ($) {
    my $v = shift;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return grep { $_ ne '' } split /\n/, $v;
}

sub pick ($$) {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}

sub check_log ($$) {
    my ($block, $tag) = @_;
    my $name = $block->name;
    my @lines = split /\n/, slurp("$ServRoot/logs/error.log");
    for my $pat (as_list($block->error_log)) {
        my $found = grep { ref $pat ? $_ =~ $pat : index($_, $pat) >= 0 } @lines;
        ok($found, "$name - pattern \"$pat\" matches a line in error.log$tag");
    }
    for my $pat (as_list($block->no_error_log)) {
        my $bad = 0;
        for my $line (@lines) {
            if (ref $pat ? $line =~ $pat : index($line, $pat) >= 0) {
                fail("$name - pattern \"$pat\" should not match any line in error.log but matches line \"$line\"$tag");
                $bad++;
            }
        }
        pass("$name - pattern \"$pat\" does not match a line in error.log$tag") unless $bad;
    }
}

sub run_block ($$) {
    my ($block, $rep) = @_;
    my $name = $block->name;
    if (!eval { write_config($block); 1 }) {
        fail("$name - nginx.conf written");
        diag($@);
        return;
    }
    my $pid = eval { start_nginx($block) };
    if (!$pid) {
        fail("$name - nginx started");
        diag($@);
        return;
    }
    my @reqs = ref $block->request eq 'ARRAY' ? @{ $block->request } : ($block->request);
    my $timeout = defined $block->timeout ? $block->timeout : $Timeout;
    # Under valgrind everything is slower; but a block with --- abort relies on its timeout firing
    # before the client's own timers, so its timeout stays as written.
    $timeout *= 10 if $Valgrind && !defined $block->abort;
    my $i = 0;
    for my $r (@reqs) {
        next unless defined $r;
        my $tag = " (repeat $rep, req $i)";
        my ($raw, $timed_out, $err) = http_exchange(build_request($block, $r), $timeout);
        if (!defined $raw) {
            fail("$name - request sent$tag");
            diag($err);
            $i++;
            next;
        }
        if ($timed_out && !defined $block->abort) {
            fail("ERROR: client socket timed out - $name$tag");
        }
        if (!defined $block->ignore_response && !($timed_out && defined $block->abort)) {
            my ($status, $headers, $body) = parse_response($raw);
            my $want = pick($block->error_code, $i);
            $want = 200 unless defined $want;
            is($status, $want, "$name - status code ok$tag");
            if (defined(my $rh = pick($block->response_headers, $i))) {
                for my $line (split /\n/, $rh) {
                    next unless $line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/;
                    my ($k, $v) = (lc $1, $2);
                    if ($v eq '') {
                        ok(!defined $headers->{$k}, "$name - header $k is absent$tag");
                    } else {
                        is($headers->{$k}, $v, "$name - header $k ok$tag");
                    }
                }
            }
            my $rb = pick($block->response_body, $i);
            if (defined $rb) {
                if (ref $rb eq 'Regexp') {
                    like($body, $rb, "$name - response_body - like (req $i)");
                } else {
                    is($body, $rb, "$name - response_body - response is expected$tag");
                }
            }
            my $rbl = pick($block->response_body_like, $i);
            if (defined $rbl) {
                my $re = ref $rbl ? $rbl : qr/$rbl/s;
                like($body, $re, "$name - response_body_like - response is expected$tag");
            }
        }
        $i++;
    }
    my $wait = defined $block->wait ? $block->wait : 0.05;
    sleep($Valgrind ? $wait + 1 : $wait);
    check_log($block, " (repeat $rep)");
    stop_nginx($pid);
}

sub run_tests () {
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort unless defined $ENV{TEST_NGINX_SERVER_PORT};
    for my $block ($NoShuffle ? Test::Base::blocks() : shuffle(Test::Base::blocks())) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', $0 . ' ' . $block->name);
        for my $rep (0 .. $RepeatEach - 1) {
            run_block($block, $rep);
        }
    }
    remove_tree($ServRoot) if -d $ServRoot && !$NoClean;
}

1;

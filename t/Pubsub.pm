package t::Pubsub;

# What every suite of this project uses: `use t::Pubsub 'no_plan';`.
#
# It runs the suite on the real Test::Nginx::Socket::Lua when that can be loaded (installed, or
# `prove -I/path/to/test-nginx/lib`), and on the bundled t::NginxRunner otherwise
# (TEST_NGINX_RUNNER=bundled forces the bundled one). Either way it points nginx at this checkout:
# the Lua test libraries in t/lib, the drop-in shim in lua/, and the cdylib cargo built in
# target/release (or TEST_NGINX_PUBSUB_LIB_DIR). The runtime (nginx binary, modules to load, Lua
# paths) is what scripts/runtime.sh decides, as for make run: Debian's packages by default,
# TEST_NGINX_BINARY or OPENRESTY_PREFIX to name another; TEST_NGINX_LOAD_MODULES still overrides.
# It also holds what several suites share: the /pubsub location and the block defaults.

use strict;
use warnings;
use File::Spec;
use File::Basename qw(dirname);

my $root = File::Spec->rel2abs(dirname(dirname(__FILE__)));
$root = File::Spec->rel2abs('.') if $root eq '' || !-d "$root/t";

# PUBSUB_* as scripts/runtime.sh prints them (NAME='value' lines).
our %Runtime;
{
    my $out = `"$root/scripts/runtime.sh"`;
    die "t::Pubsub: scripts/runtime.sh failed\n" if $? != 0;
    for my $line (split /\n/, $out) {
        my ($name, $value) = $line =~ /^(PUBSUB_\w+)='(.*)'$/ or next;
        $value =~ s/'\\''/'/g;
        $Runtime{$name} = $value;
    }
}
$ENV{TEST_NGINX_BINARY} ||= $Runtime{PUBSUB_NGINX};
$ENV{TEST_NGINX_LOAD_MODULES} = $Runtime{PUBSUB_LOAD_MODULES} if !defined $ENV{TEST_NGINX_LOAD_MODULES};

my $lib_dir = $ENV{TEST_NGINX_PUBSUB_LIB_DIR} || "$root/target/release";
$ENV{TEST_NGINX_PUBSUB_ROOT} = $root;

our $Backend;
if (($ENV{TEST_NGINX_RUNNER} || '') ne 'bundled' && eval { require Test::Nginx::Socket::Lua; 1 }) {
    $Backend = 'Test::Nginx::Socket::Lua';
} else {
    require t::NginxRunner;
    $Backend = 't::NginxRunner';
}

our $LuaPaths = <<_EOC_;
    lua_package_path "$root/t/lib/?.lua;$root/t/?.lua;$root/lua/?.lua;$Runtime{PUBSUB_LUA_PATH};";
    lua_package_cpath "$lib_dir/lib?.so;$Runtime{PUBSUB_LUA_CPATH};";
_EOC_

# The /pubsub location the behaviour suites share: t/lib/pubsub_server.lua with its test handlers.
our $ServerLocation = <<'_EOC_';
    location /pubsub {
        content_by_lua_block {
            require("pubsub_server").serve()
        }
    }
_EOC_

# The /push location of the push suites: t/lib/push_server.lua, options and producer by query.
our $PushLocation = <<'_EOC_';
    lua_socket_log_errors off;
    location /push {
        content_by_lua_block {
            require("push_server").serve()
        }
    }
_EOC_

sub import {
    my $class = shift;
    # Hand the import to the backend as if the suite had used it directly.
    my $import = $Backend->can('import');
    @_ = ($Backend, @_);
    goto &$import;
}

# Every block gets the paths above in its http_config.
sub add_paths {
    my $block = shift;
    my $http = $block->http_config;
    $block->set_value('http_config', $LuaPaths . (defined $http ? $http : ''));
}

{
    no strict 'refs';
    &{"${Backend}::add_block_preprocessor"}(\&add_paths);
}

# The preamble of the suites whose blocks talk to a shared server location ($ServerLocation unless
# told): one repeat, info logs, no root location; every block gets the location, and GET /t unless
# it names a request. Options:
#   location     => TEXT   the server's config instead of $ServerLocation
#   no_error_log => TEXT   the block's no_error_log when it has neither error_log nor no_error_log
#   http_config  => TEXT   put before every block's own http_config
sub server_suite {
    my %opt = (location => $ServerLocation, @_);
    no strict 'refs';
    &{"${Backend}::$_"}() for qw(no_long_string no_root_location);
    &{"${Backend}::repeat_each"}(1);
    &{"${Backend}::log_level"}('info');
    &{"${Backend}::add_block_preprocessor"}(sub {
        my $block = shift;
        if (defined $opt{no_error_log} && !defined $block->error_log && !defined $block->no_error_log) {
            $block->set_value('no_error_log', $opt{no_error_log});
        }
        $block->set_value('request', 'GET /t') unless defined $block->request;
        $block->set_value('config', $opt{location} . ($block->config // ''));
        if (defined $opt{http_config}) {
            $block->set_value('http_config', $opt{http_config} . ($block->http_config // ''));
        }
    });
}

1;

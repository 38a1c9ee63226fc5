package t::Pubsub;

# What every suite of this project uses: `use t::Pubsub 'no_plan';`.
#
# It runs the suite on the real Test::Nginx::Socket::Lua when that can be loaded (installed, or
# `prove -I/path/to/test-nginx/lib`), and on the bundled t::NginxRunner otherwise
# (TEST_NGINX_RUNNER=bundled forces the bundled one). Either way it points nginx at this checkout:
# the Lua test libraries in t/lib, the drop-in shim in lua/, and the cdylib cargo built in
# target/release (or TEST_NGINX_PUBSUB_LIB_DIR), and it loads Debian's ndk and lua modules unless
# TEST_NGINX_LOAD_MODULES says otherwise.

use strict;
use warnings;
use File::Spec;
use File::Basename qw(dirname);

my $root = File::Spec->rel2abs(dirname(dirname(__FILE__)));
$root = File::Spec->rel2abs('.') if $root eq '' || !-d "$root/t";

if (!defined $ENV{TEST_NGINX_LOAD_MODULES}) {
    my $dir = '/usr/share/nginx/modules';
    my @mods = grep { -f $_ } ("$dir/ndk_http_module.so", "$dir/ngx_http_lua_module.so");
    $ENV{TEST_NGINX_LOAD_MODULES} = join ' ', @mods;
}

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
    lua_package_path "$root/t/lib/?.lua;$root/t/?.lua;$root/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$lib_dir/lib?.so;;";
_EOC_

# The /pubsub location the behaviour suites share: t/lib/pubsub_server.lua with its test handlers.
our $ServerLocation = <<'_EOC_';
    location /pubsub {
        content_by_lua_block {
            require("pubsub_server").serve()
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

1;

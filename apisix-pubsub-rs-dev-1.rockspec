-- LuaRocks package: `luarocks make` in the checkout builds the library with cargo (offline once
-- cargo has its crates) and installs it as the C module apisix_pubsub_rs and the APISIX shim as
-- the Lua module apisix.core.pubsub.
rockspec_format = "3.0"
package = "apisix-pubsub-rs"
version = "dev-1"
source = {
   url = "git+file://./",
}
description = {
   summary = "A native drop-in for Apache APISIX core.pubsub: WebSocket framing and protobuf in Rust",
   detailed = [[
require("apisix_pubsub_rs") gives new / on / wait with APISIX core.pubsub's behaviour; the
WebSocket framing and the protobuf codec run in Rust, handlers in Lua. The rock also installs
apisix.core.pubsub, the shim that makes APISIX's core.pubsub this module. Needs ngx_lua
(OpenResty, or nginx with lua-nginx-module) and cargo to build.]],
   license = "Apache-2.0",
}
dependencies = {}
build = {
   type = "command",
   -- LuaRocks keeps a C module's file name, and require() wants apisix_pubsub_rs.so, not cargo's
   -- libapisix_pubsub_rs.so.
   build_command = "cargo build --release && cp target/release/libapisix_pubsub_rs.so target/release/apisix_pubsub_rs.so",
   install = {
      lib = { apisix_pubsub_rs = "target/release/apisix_pubsub_rs.so" },
      lua = { ["apisix.core.pubsub"] = "lua/apisix/core/pubsub.lua" },
   },
}

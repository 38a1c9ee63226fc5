-- Drop-in for APISIX's apisix/core/pubsub.lua: `require("apisix.core.pubsub")` (and so
-- `core.pubsub`) gets the native module, with the same new / on / wait API.
-- Install it over the APISIX file, or put its directory before APISIX's in lua_package_path.
return require("apisix_pubsub_rs")

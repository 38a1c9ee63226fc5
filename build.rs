//! Build script: compiles `proto/pubsub.proto` without `protoc` and lists the Lua face to embed.
//!
//! It writes, into `OUT_DIR`:
//! - `pubsub.rs`: prost types (for Rust users, tests and the load generator);
//! - `pubsub.fds`: the compiled proto, an encoded `FileDescriptorSet`, from which
//!   `Schema::builtin()` is made (the same path a proto compiled at run time takes);
//! - `lua_modules.rs`: `(module name, source)` of every file of `lua/apisix_pubsub_rs/`, which
//!   `luaopen` registers in `package.preload`.

use std::fmt::Write as _;
use std::path::PathBuf;

use prost_build::Config;
use prost::Message as _;
use protox::prost_reflect::prost_types::FileDescriptorSet;

const PROTO: &str = "proto/pubsub.proto";
const LUA_DIR: &str = "lua/apisix_pubsub_rs";

fn main() {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed={LUA_DIR}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));

    let fds: FileDescriptorSet = protox::compile([PROTO], ["."]).unwrap_or_else(|e| panic!("{PROTO}: {e}"));
    Config::new()
        .compile_fds(fds.clone())
        .unwrap_or_else(|e| panic!("prost-build: {e}"));
    // prost-build names the output after the proto package; ours has none.
    let generated = out.join("_.rs");
    std::fs::rename(&generated, out.join("pubsub.rs")).expect("prost-build wrote _.rs");

    std::fs::write(out.join("pubsub.fds"), fds.encode_to_vec()).expect("write pubsub.fds");

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut modules: Vec<(String, PathBuf)> = std::fs::read_dir(root.join(LUA_DIR))
        .unwrap_or_else(|e| panic!("{LUA_DIR}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "lua"))
        .map(|p| (format!("apisix_pubsub_rs.{}", p.file_stem().unwrap().to_string_lossy()), p))
        .collect();
    modules.sort();
    let mut list = String::from("&[\n");
    for (name, path) in &modules {
        writeln!(list, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    list.push_str("]\n");
    std::fs::write(out.join("lua_modules.rs"), list).expect("write lua_modules.rs");
}


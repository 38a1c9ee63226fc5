//! A proto file read at run time, as APISIX's `core.pubsub` compiles `pubsub.proto` when it loads:
//! compiled with protox and laid over the built-in schema, so that its commands and replies are
//! served beside the project's own.
//!
//! The rules, each refusal naming the file and line: the file compiles; it defines `PubSubReq`
//! and `PubSubResp`; in those two, a field the built-in schema has keeps its number and type, a
//! number the built-in schema uses keeps its field, and fields 1 to 30 (basic information, not
//! commands) are the built-in ones only; a message the built-in schema also has keeps its fields
//! as they are, and may gain new ones. Everything else the file adds is added.

use std::path::Path;

use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::schema::{Schema, SchemaError};

/// The file the built-in schema comes from, in its descriptor set.
const BUILTIN_FILE: &str = "proto/pubsub.proto";

/// Compiles `path` and lays it over `builtin` (the built-in schema's descriptor set): the merged
/// schema, or an error naming the file and, where it can, the line.
pub fn load(path: &Path, builtin: &FileDescriptorSet) -> Result<Schema, SchemaError> {
    let shown = path.display().to_string();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| SchemaError::new(format!("{shown}: not a file")))?;
    let fds = protox::Compiler::new([dir])
        .and_then(|mut c| {
            c.include_source_info(true);
            c.open_file(name)?;
            Ok(c.file_descriptor_set())
        })
        .map_err(|e| SchemaError::new(compile_error(&e, &name.to_string_lossy(), &shown)))?;
    let file = fds
        .file
        .iter()
        .find(|f| Path::new(f.name()).file_name() == Some(name))
        .ok_or_else(|| SchemaError::new(format!("{shown}: compiled to nothing")))?;
    let base = builtin.file.iter().find(|f| f.name() == BUILTIN_FILE).expect("the built-in descriptor");
    let merged = merge(base, file, &shown)?;
    Schema::from_descriptor(&FileDescriptorSet { file: vec![merged] }, BUILTIN_FILE).map_err(|e| SchemaError::new(format!("{shown}: {e}")))
}

/// protox's error as `path:line:column: what`: its Debug form is the one with the position
/// (`name:line:column: what`, the name as opened), which is put on the path the caller gave.
fn compile_error(e: &protox::Error, name: &str, shown: &str) -> String {
    let words = format!("{e:?}");
    let words = words.trim();
    match words.strip_prefix(name) {
        Some(rest) if rest.starts_with(':') => format!("{shown}{rest}"),
        _ => format!("{shown}: {words}"),
    }
}

/// The line (1-based) where the file declares field `f` of message `m`.
fn line(file: &FileDescriptorProto, m: usize, f: usize) -> Option<i32> {
    // The source-code path of a field: message_type (4), the message, field (2), the field.
    let want = [4, m as i32, 2, f as i32];
    let info = file.source_code_info.as_ref()?;
    info.location.iter().find(|l| l.path == want).and_then(|l| l.span.first()).map(|l| l + 1)
}

/// A field's type as a comparable tuple (type, label, message type name without the package).
fn shape<'a>(f: &'a FieldDescriptorProto, package: &str) -> (i32, i32, &'a str) {
    (f.r#type.unwrap_or(0), f.label.unwrap_or(0), short_type(f.type_name(), package))
}

fn short_type<'a>(type_name: &'a str, package: &str) -> &'a str {
    let t = type_name.trim_start_matches('.');
    if package.is_empty() {
        t
    } else {
        t.strip_prefix(package).and_then(|t| t.strip_prefix('.')).unwrap_or(t)
    }
}

fn merge(base: &FileDescriptorProto, file: &FileDescriptorProto, shown: &str) -> Result<FileDescriptorProto, SchemaError> {
    let package = file.package();
    let at = |m: usize, f: usize| match line(file, m, f) {
        Some(l) => format!("{shown}:{l}"),
        None => shown.to_string(),
    };
    for required in ["PubSubReq", "PubSubResp"] {
        if !file.message_type.iter().any(|m| m.name() == required) {
            return Err(SchemaError::new(format!("{shown}: no message {required}")));
        }
    }
    let mut merged = base.clone();
    merged.source_code_info = None;
    for (mi, m) in file.message_type.iter().enumerate() {
        let envelope = matches!(m.name(), "PubSubReq" | "PubSubResp");
        let Some(known) = merged.message_type.iter_mut().find(|b| b.name() == m.name()) else {
            let mut new: DescriptorProto = m.clone();
            for f in &mut new.field {
                let t = short_type(f.type_name(), package).to_string();
                if !t.is_empty() {
                    f.type_name = Some(format!(".{t}"));
                }
            }
            merged.message_type.push(new);
            continue;
        };
        for (fi, f) in m.field.iter().enumerate() {
            let by_name = known.field.iter().find(|b| b.name() == f.name());
            let by_number = known.field.iter().find(|b| b.number() == f.number());
            match (by_name, by_number) {
                (Some(b), _) if b.number() != f.number() || shape(b, "") != shape(f, package) => {
                    return Err(SchemaError::new(format!(
                        "{}: field {} of {} is number {} with another type in the built-in schema, which this file may not change",
                        at(mi, fi),
                        f.name(),
                        m.name(),
                        b.number()
                    )));
                }
                (Some(_), _) => {}
                (None, Some(b)) => {
                    return Err(SchemaError::new(format!(
                        "{}: number {} of {} is {} in the built-in schema, not {}",
                        at(mi, fi),
                        f.number(),
                        m.name(),
                        b.name(),
                        f.name()
                    )));
                }
                (None, None) if envelope && f.number() <= 30 => {
                    return Err(SchemaError::new(format!(
                        "{}: field {} of {}: numbers 1 to 30 carry basic information, and only the built-in ones are served; commands and replies take numbers above 30",
                        at(mi, fi),
                        f.name(),
                        m.name()
                    )));
                }
                (None, None) => {
                    let mut new = f.clone();
                    let t = short_type(f.type_name(), package).to_string();
                    if !t.is_empty() {
                        new.type_name = Some(format!(".{t}"));
                    }
                    // A new command or reply joins the built-in oneof.
                    if envelope {
                        new.oneof_index = Some(0);
                    } else if f.oneof_index.is_some() {
                        return Err(SchemaError::new(format!(
                            "{}: field {} adds a oneof to {}, which the built-in schema declares without it",
                            at(mi, fi),
                            f.name(),
                            m.name()
                        )));
                    }
                    known.field.push(new);
                }
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn builtin() -> FileDescriptorSet {
        FileDescriptorSet::decode(crate::schema::BUILTIN_DESCRIPTOR).unwrap()
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("apisix-pubsub-rs-proto-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pubsub.proto");
        std::fs::write(&p, text).unwrap();
        p
    }

    const APISIX_LIKE: &str = r#"syntax = "proto3";
message CmdPing { bytes state = 1; }
message CmdEcho { string text = 1; int64 times = 2; }
message EchoResp { repeated string texts = 1; }
message PongResp { bytes state = 1; }
message ErrorResp { int32 code = 1; string message = 2; }
message PubSubReq {
    int64 sequence = 1;
    oneof req {
        CmdPing cmd_ping = 32;
        CmdEcho cmd_echo = 41;
    }
}
message PubSubResp {
    int64 sequence = 1;
    oneof resp {
        ErrorResp error_resp = 31;
        PongResp pong_resp = 32;
        EchoResp echo_resp = 41;
    }
}
"#;

    #[test]
    fn a_file_adds_its_commands_and_replies_to_the_built_in_ones() {
        let s = load(&write("ok", APISIX_LIKE), &builtin()).unwrap();
        let cmds: Vec<String> = s.commands().map(|f| s.field_name(f.id).to_string()).collect();
        assert_eq!(cmds, [
            "cmd_empty",
            "cmd_ping",
            "cmd_kafka_fetch",
            "cmd_kafka_list_offset",
            "cmd_subscribe",
            "cmd_unsubscribe",
            "cmd_publish",
            "cmd_echo"
        ]);
        let echo = s.commands().find(|f| s.field_name(f.id) == "cmd_echo").unwrap();
        assert_eq!(echo.number, 41);
        assert_eq!(s.message_name(s.target(echo).unwrap()), "CmdEcho");
        let replies: Vec<String> = s.replies().map(|f| s.field_name(f.id).to_string()).collect();
        assert!(replies.contains(&"echo_resp".to_string()) && replies.contains(&"kafka_fetch_resp".to_string()));
    }

    #[test]
    fn bad_files_are_refused_with_the_file_and_line() {
        let cases = [
            ("syntax", "syntax = \"proto3\";\nmessage PubSubReq { int64 sequence = 1 }\n", "pubsub.proto:2"),
            ("no-resp", "syntax = \"proto3\";\nmessage PubSubReq { int64 sequence = 1; }\n", "no message PubSubResp"),
            (
                "renumbered",
                &APISIX_LIKE.replace("CmdPing cmd_ping = 32;", "CmdPing cmd_ping = 42;"),
                "pubsub.proto:10: field cmd_ping of PubSubReq is number 32",
            ),
            (
                "retyped",
                &APISIX_LIKE.replace("message PongResp { bytes state = 1; }", "message PongResp { int32 state = 1; }"),
                "pubsub.proto:5: field state of PongResp is number 1 with another type",
            ),
            (
                "basic",
                &APISIX_LIKE.replace("    int64 sequence = 1;\n    oneof req", "    int64 sequence = 1;\n    string token = 2;\n    oneof req"),
                "pubsub.proto:9: field token of PubSubReq: numbers 1 to 30",
            ),
            (
                "taken",
                &APISIX_LIKE.replace("CmdEcho cmd_echo = 41;", "CmdEcho cmd_echo = 33;"),
                "number 33 of PubSubReq is cmd_kafka_fetch in the built-in schema",
            ),
        ];
        let channels = [
            (
                "channel-number",
                APISIX_LIKE.replace("CmdEcho cmd_echo = 41;", "CmdEcho cmd_echo = 1001;"),
                "number 1001 of PubSubReq is cmd_subscribe in the built-in schema, not cmd_echo",
            ),
            (
                "channel-name",
                APISIX_LIKE.replace("CmdEcho cmd_echo = 41;", "CmdEcho cmd_subscribe = 41;"),
                "field cmd_subscribe of PubSubReq is number 1001",
            ),
        ];
        let cases = cases.iter().map(|(n, t, w)| (*n, t.to_string(), *w)).chain(channels.iter().map(|(n, t, w)| (*n, t.clone(), *w)));
        for (name, text, want) in cases {
            let text = text.as_str();
            let err = load(&write(name, text), &builtin()).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(err.contains("pubsub.proto"), "{name}: names the file: {err}");
        }
    }
}

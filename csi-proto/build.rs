//! Compiles `proto/csi.proto` with the pure-Rust `protox` compiler and feeds
//! the resulting descriptor set to `tonic-prost-build`, so no system `protoc`
//! is ever needed.
//!
//! Messages with a field annotated `[(csi_secret) = true]` do not get prost's
//! derived `Debug`; instead `csi_secret_debug.rs` is generated with `Debug`
//! impls that print every field except the secret ones, whose contents are
//! replaced by a redaction marker. The CSI spec forbids logging secrets, and
//! `tracing::debug!(?request)` must not be a way to leak them.

use std::fmt::Write as _;
use std::path::PathBuf;

use protox::prost_reflect::{DescriptorPool, ExtensionDescriptor, FieldDescriptor};

const PROTO: &str = "proto/csi.proto";
const PACKAGE: &str = "csi.v1";
const SECRET_OPTION: &str = "csi.v1.csi_secret";
const SECRET_DEBUG_FILE: &str = "csi_secret_debug.rs";

fn main() {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let include = manifest_dir.join("proto");
    let proto = manifest_dir.join(PROTO);

    // protox bundles google/protobuf/{descriptor,timestamp,wrappers}.proto.
    let mut compiler = protox::Compiler::new([&include])
        .unwrap_or_else(|e| panic!("invalid include path {}: {e:?}", include.display()));
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_file(&proto)
        .unwrap_or_else(|e| panic!("failed to compile {}: {e:?}", proto.display()));

    let secret_messages = SecretMessages::collect(&compiler.descriptor_pool());
    let debug_impls = secret_messages.render_debug_impls();
    std::fs::write(out_dir.join(SECRET_DEBUG_FILE), debug_impls)
        .unwrap_or_else(|e| panic!("failed to write {SECRET_DEBUG_FILE}: {e}"));

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .skip_debug(secret_messages.proto_paths())
        .compile_fds(compiler.file_descriptor_set())
        .unwrap_or_else(|e| panic!("failed to generate Rust code from {PROTO}: {e}"));
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set; build.rs must run under cargo"))
}

/// Top-level `csi.v1` messages that carry at least one secret field.
struct SecretMessages {
    messages: Vec<SecretMessage>,
}

struct SecretMessage {
    /// Proto name, which is also the Rust type name for top-level messages.
    name: String,
    /// Rust field names in declaration order, with their secrecy.
    fields: Vec<(String, FieldKind)>,
}

enum FieldKind {
    Plain,
    /// Secret map, repeated or string field: print only its length.
    SecretWithLen,
    /// Secret field of another type: print only a marker.
    Secret,
}

impl SecretMessages {
    fn collect(pool: &DescriptorPool) -> Self {
        let ext = pool
            .get_extension_by_name(SECRET_OPTION)
            .unwrap_or_else(|| panic!("{PROTO} must declare the {SECRET_OPTION} option"));

        let mut messages = Vec::new();
        for message in pool.all_messages() {
            if message.package_name() != PACKAGE || message.is_map_entry() {
                continue;
            }
            if !message.fields().any(|f| is_secret(&f, &ext)) {
                continue;
            }
            assert!(
                message.parent_message().is_none(),
                "secret field in nested message {} is not supported by build.rs",
                message.full_name()
            );

            let mut fields: Vec<(String, FieldKind)> = Vec::new();
            for field in message.fields() {
                if let Some(oneof) = field.containing_oneof() {
                    assert!(
                        !is_secret(&field, &ext),
                        "secret field {} inside a oneof is not supported by build.rs",
                        field.full_name()
                    );
                    let name = rust_ident(oneof.name());
                    if !fields.iter().any(|(n, _)| *n == name) {
                        fields.push((name, FieldKind::Plain));
                    }
                    continue;
                }
                let kind = if !is_secret(&field, &ext) {
                    FieldKind::Plain
                } else if field.is_map()
                    || field.is_list()
                    || matches!(field.kind(), protox::prost_reflect::Kind::String)
                {
                    FieldKind::SecretWithLen
                } else {
                    FieldKind::Secret
                };
                fields.push((rust_ident(field.name()), kind));
            }
            messages.push(SecretMessage {
                name: message.name().to_owned(),
                fields,
            });
        }
        assert!(
            !messages.is_empty(),
            "no {SECRET_OPTION} fields found; the redaction pass would be a no-op"
        );
        Self { messages }
    }

    fn proto_paths(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| format!(".{PACKAGE}.{}", m.name))
            .collect()
    }

    fn render_debug_impls(&self) -> String {
        let mut out = String::from(
            "// @generated by csi-proto/build.rs: Debug impls that redact csi_secret fields.\n",
        );
        for m in &self.messages {
            let _ = writeln!(out, "impl ::core::fmt::Debug for {} {{", m.name);
            let _ = writeln!(
                out,
                "    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{"
            );
            let _ = writeln!(out, "        f.debug_struct(\"{}\")", m.name);
            for (field, kind) in &m.fields {
                let label = field.trim_start_matches("r#");
                let value = match kind {
                    FieldKind::Plain => format!("&self.{field}"),
                    FieldKind::SecretWithLen => {
                        format!("&crate::redact::Redacted::with_len(self.{field}.len())")
                    }
                    FieldKind::Secret => "&crate::redact::Redacted::opaque()".to_owned(),
                };
                let _ = writeln!(out, "            .field(\"{label}\", {value})");
            }
            let _ = writeln!(out, "            .finish()\n    }}\n}}");
        }
        out
    }
}

fn is_secret(field: &FieldDescriptor, ext: &ExtensionDescriptor) -> bool {
    let options = field.options();
    options.has_extension(ext) && options.get_extension(ext).as_bool() == Some(true)
}

/// Field names in csi.proto are already snake_case; only keywords need care.
fn rust_ident(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern",
        "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
        "pub", "ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use",
        "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro", "override",
        "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_owned()
    }
}

//! Compiles `proto/csi.proto` with the pure-Rust `protox` compiler and feeds
//! the resulting descriptor set to `tonic-prost-build`, so no system `protoc`
//! is ever needed.

use std::path::PathBuf;

const PROTO: &str = "proto/csi.proto";

fn main() {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| {
            panic!("CARGO_MANIFEST_DIR is not set; build.rs must run under cargo")
        }));
    let include = manifest_dir.join("proto");
    let proto = manifest_dir.join(PROTO);

    // protox bundles google/protobuf/{descriptor,timestamp,wrappers}.proto.
    let fds = protox::compile([&proto], [&include])
        .unwrap_or_else(|e| panic!("failed to compile {}: {e:?}", proto.display()));

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("failed to generate Rust code from {PROTO}: {e}"));
}

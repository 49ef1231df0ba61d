//! Generates the prost types from `proto/*.proto`. The schemas live in the workspace's
//! top-level `proto/`, where a reader looks for them; the crate's `proto/` holds a symlink
//! to each, which `cargo package` follows (it stores the files' contents), so the published
//! crate builds on its own and there is no second copy to drift.
//!
//! The schemas are compiled by `protox`, a pure-Rust protobuf compiler, so a fresh machine
//! without `protoc` builds the crate.
//!
//! The `.proto` files keep the reference's `required` labels, but prost neither enforces them
//! nor lets us see whether a required field was present (a missing `command` would read as an
//! empty string). So the generated code treats every field as `optional`, which is the same
//! on the wire, and the domain conversions in `src/` check presence themselves.

use std::path::PathBuf;

use prost_types::field_descriptor_proto::Label;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest.join("proto");
    let files = [
        proto_dir.join("dht_rpc.proto"),
        proto_dir.join("hyperdht.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut descriptors = protox::compile(&files, [&proto_dir])?;
    for file in &mut descriptors.file {
        for message in &mut file.message_type {
            for field in &mut message.field {
                if field.label() == Label::Required {
                    field.set_label(Label::Optional);
                }
            }
        }
    }
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}

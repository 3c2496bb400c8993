//! Generates the gRPC code and the descriptor set (for reflection) from `proto/`.
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system install.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/learngreek/session/v1/session.proto",
    "proto/learngreek/deck/v1/deck.proto",
];

#[allow(unsafe_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: a build script runs on a single thread, so nothing reads the
    // environment while it changes. The code generator finds protoc through `PROTOC`.
    unsafe { env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("descriptor.bin"))
        .compile_protos(PROTOS, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

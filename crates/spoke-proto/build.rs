//! Compiles every `.proto` under the workspace `proto/` directory with protox (pure Rust,
//! no system `protoc`) and generates prost messages plus tonic clients and servers.
//!
//! The encoded file descriptor set (with source info, so comments survive) is written
//! to `$OUT_DIR/spoke_descriptor.bin` for tonic-reflection and the documentation tests.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root, &mut files)?;
    files.sort();
    for file in &files {
        // Directory-level rerun only notices added/removed entries; list each file too
        // so edits inside nested package directories trigger a rebuild.
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler.include_source_info(true).include_imports(true);
    for file in &files {
        let relative = file.strip_prefix(&proto_root)?;
        compiler.open_file(relative)?;
    }
    let fds = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("spoke_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Methods a service has not built yet answer UNIMPLEMENTED without boilerplate.
        .generate_default_stubs(true)
        // Maps as BTreeMap: encoding is deterministic, so a message's bytes (and any hash of
        // them, e.g. an idempotency check) are the same for the same content.
        .btree_map(".")
        // Services grow method by method: unimplemented methods answer UNIMPLEMENTED
        // instead of every service having to stub the whole trait.
        .generate_default_stubs(true)
        // Maps as BTreeMap: encoding is deterministic, so a message's bytes (and any hash of
        // them, e.g. an idempotency check) are the same for the same content.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}

/// Recursively collects every `*.proto` file below `dir`.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

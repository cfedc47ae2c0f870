//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into a
//! descriptor set, writes that set to `OUT_DIR` and generates the prost
//! messages plus tonic clients and servers from it.
//!
//! Client and server modules are always generated but carry
//! `#[cfg(feature = "client")]` / `#[cfg(feature = "server")]`, so a
//! messages-only build (the Wasm filter) compiles no tonic code at all.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Where the `.proto` sources live, relative to the crate root.
const PROTO_ROOT: &str = "proto";

/// File name of the encoded descriptor set in `OUT_DIR`.
const DESCRIPTOR_FILE: &str = "bulwark_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let protos = proto_files(Path::new(PROTO_ROOT))?;
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(&protos)
        .map_err(|err| format!("compiling {PROTO_ROOT}/: {err:?}"))?;

    // Encoded by protox itself, not via `prost_types`: prost_types drops
    // extension options, and the `google.api.http` bindings on every method
    // are what Envoy's transcoder needs from this file.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join(DESCRIPTOR_FILE),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        // The generated modules do not nest as the proto packages do (`bulwark.auth.v1`
        // is `crate::auth::v1`), so references across packages need explicit paths.
        // `google.api.HttpBody` is written by hand in src/lib.rs.
        .extern_path(".google.api.HttpBody", "crate::google::api::HttpBody")
        .client_mod_attribute(".", r#"#[cfg(feature = "client")]"#)
        .server_mod_attribute(".", r#"#[cfg(feature = "server")]"#)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Every `.proto` file under `dir`, sorted so the output is reproducible.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            fs::read_dir(&dir).map_err(|err| format!("reading {}: {err}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

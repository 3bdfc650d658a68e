//! Generates the Rust types, their proto3 JSON mapping and (with `grpc`) the tonic
//! stubs from `proto/`, with the pure-Rust `protox` compiler: no system `protoc`.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mkondo/v1/realtime.proto",
        "proto/mkondo/v1/admin.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("mkondo_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    #[cfg(feature = "grpc")]
    {
        // No `connect(endpoint)` constructor on the client: it would clash with the
        // `Connect` RPC. Callers build a `Channel` and use `RealtimeClient::new`.
        tonic_prost_build::configure()
            .build_transport(false)
            .file_descriptor_set_path(&descriptor_path)
            .skip_protoc_run()
            .compile_well_known_types(true)
            .extern_path(".google.protobuf", "::pbjson_types")
            .compile_protos(&files, &["proto"])?;
    }
    #[cfg(not(feature = "grpc"))]
    {
        prost_build::Config::new()
            .file_descriptor_set_path(&descriptor_path)
            .skip_protoc_run()
            .compile_well_known_types()
            .extern_path(".google.protobuf", "::pbjson_types")
            .compile_protos(&files, &["proto"])?;
    }

    let descriptor_set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        .preserve_proto_field_names()
        // Old clients must read frames from newer servers: unknown fields are skipped.
        .ignore_unknown_fields()
        .build(&[".mkondo.v1"])?;
    Ok(())
}

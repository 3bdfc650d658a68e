//! Mkondo's one protocol schema, compiled: the frame types of every transport, their
//! canonical proto3 JSON mapping, and the codec that batches frames.

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/mkondo.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/mkondo.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of every `.proto` file (imports included): what
/// gRPC server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mkondo_descriptor.bin"));

pub mod codec;
pub mod codes;
pub mod convert;

pub use codec::{CodecError, Encoding};
pub use codes::{DisconnectCode, ErrorCode, Reason};
pub use convert::ConvertError;
pub use v1::{ClientFrame, ServerFrame};

/// The well-known types (`Struct`, `Value`, `Timestamp`) the frames are built from.
pub use pbjson_types;
/// The protobuf runtime the frames implement (`prost::Message`).
pub use prost;

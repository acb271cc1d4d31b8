//! Generated protobuf messages, tonic clients and servers of every Spoke API and event.
//!
//! The `.proto` sources in the workspace `proto/` directory are the contract; this crate
//! only compiles them (see `build.rs`). Module paths follow the protobuf packages:
//! `spoke.export.v1` is [`export::v1`], `spoke.events.v1` is [`events::v1`].

/// Declares `pub mod $name::v1` holding the generated code of package `$package`
/// (e.g. `spoke.export.v1`), with the lints generated code trips allowed there only.
macro_rules! generated {
    ($name:ident, $package:literal) => {
        #[doc = concat!("Protobuf packages `spoke.", stringify!($name), ".*`.")]
        pub mod $name {
            #[doc = concat!("Generated code of protobuf package `", $package, "`.")]
            #[allow(
                clippy::all,
                clippy::pedantic,
                clippy::nursery,
                missing_docs,
                rustdoc::all,
                unused_qualifications
            )]
            pub mod v1 {
                tonic::include_proto!($package);
            }
        }
    };
}

generated!(common, "spoke.common.v1");
generated!(connection, "spoke.connection.v1");
generated!(mapping, "spoke.mapping.v1");
generated!(dedupe, "spoke.dedupe.v1");
generated!(export, "spoke.export.v1");
generated!(filtering, "spoke.filtering.v1");
generated!(events, "spoke.events.v1");

/// Encoded `google.protobuf.FileDescriptorSet` of every Spoke `.proto` file (with its
/// imports and source comments), for `tonic-reflection` and descriptor-driven tests.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/spoke_descriptor.bin"));

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

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, FileDescriptorSet};

    /// Mutating methods a caller may retry (timeouts, lost responses): each takes a
    /// client-supplied key so a retry never has a second effect.
    const RETRYABLE: &[(&str, &str)] = &[
        ("spoke.connection.v1", "RecordContribution"),
        ("spoke.mapping.v1", "SaveMapping"),
        ("spoke.mapping.v1", "SaveExportPreferences"),
        ("spoke.mapping.v1", "SaveDuplicateSettings"),
        ("spoke.mapping.v1", "SaveIntentMapping"),
        ("spoke.export.v1", "CreateExport"),
        ("spoke.export.v1", "ResolveDuplicates"),
        ("spoke.filtering.v1", "RunNow"),
        ("spoke.filtering.v1", "ClearMatches"),
    ];

    fn request(set: &FileDescriptorSet, package: &str, method: &str) -> Option<DescriptorProto> {
        let file = set.file.iter().find(|f| {
            f.package() == package
                && f.service
                    .iter()
                    .any(|s| s.method.iter().any(|m| m.name() == method))
        })?;
        let wanted = format!("{method}Request");
        file.message_type
            .iter()
            .find(|m| m.name() == wanted)
            .cloned()
    }

    #[test]
    fn retryable_requests_take_an_idempotency_key() {
        let set = FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|err| panic!("descriptor set does not decode: {err}"));
        for (package, method) in RETRYABLE {
            let Some(req) = request(&set, package, method) else {
                panic!("{package}.{method}Request not found");
            };
            let key = req.field.iter().find(|f| f.name() == "idempotency_key");
            assert!(
                key.is_some_and(|f| f.r#type() == Type::String && f.label() != Label::Repeated),
                "{package}.{method}Request needs `string idempotency_key`"
            );
        }
    }

    #[test]
    fn generated_modules_are_reachable_at_their_package_paths() {
        // A compile-time check of the public module layout other crates import.
        let _ = crate::common::v1::ObjectType::Companies;
        let _ = crate::connection::v1::GetConnectionRequest::default();
        let _ = crate::mapping::v1::GetCompiledMappingRequest::default();
        let _ = crate::dedupe::v1::CheckDuplicatesRequest::default();
        let _ = crate::export::v1::CreateExportRequest::default();
        let _ = crate::filtering::v1::RunNowRequest::default();
        let event = crate::events::v1::ConnectionEvent {
            org_id: "org-1".into(),
            kind: Some(crate::events::v1::connection_event::Kind::Deleted(
                crate::events::v1::connection_event::Deleted {},
            )),
            ..Default::default()
        };
        let decoded = crate::events::v1::ConnectionEvent::decode(event.encode_to_vec().as_slice())
            .unwrap_or_else(|err| panic!("round trip failed: {err}"));
        assert_eq!(decoded, event);
    }
}

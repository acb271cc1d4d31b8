//! Spoke's compiled field mapping and the pure `apply` function the export worker runs per
//! record: hierarchy (first non-empty source field wins), update modes (complete if missing,
//! overwrite), enumeration value maps, currency and type checks, intent topics.
//!
//! No I/O: the mapping service compiles and serves [`CompiledMapping`] (proto
//! `spoke.mapping.v1.CompiledMapping`), the export worker converts it back with
//! [`CompiledMapping::try_from`] and calls [`apply`] / [`apply_profile`] per record.

mod apply;
mod compiled;
mod convert;
mod values;

pub use apply::{
    Applied, FieldProblem, FieldSource, SkipReason, Skipped, apply, apply_profile, is_empty_value,
};
pub use compiled::{
    CompiledMapping, CompiledRow, DuplicateAction, DuplicateSettings, ExportPreferences,
    IntentDataPoint, IntentTopic, MAX_PER_EXPORT, Object, UpdateMode,
};
pub use values::{TargetKind, convert_value};

/// Errors of this crate: a proto message that cannot be a compiled mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field of the proto message is missing or out of range; names the field.
    #[error("invalid compiled mapping: {0}")]
    InvalidProto(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

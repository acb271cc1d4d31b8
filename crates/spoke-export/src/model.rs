//! The export job's domain vocabulary: states, record phases, counts, and the rule that derives a
//! job's state from its counts.

use spoke_proto::common::v1::{ExportCounts, ExportJobState, ObjectType};

/// Where a record is in the pipeline (column `records.phase`).
pub mod phase {
    /// Sent to dedupe, no check result yet.
    pub const UNCHECKED: &str = "unchecked";
    /// Waiting for the user's decision (ResolveDuplicates).
    pub const REVIEW: &str = "review";
    /// The user's decision was sent back to dedupe for a re-check.
    pub const RESOLVING: &str = "resolving";
    /// Decided; the writer will write it.
    pub const READY: &str = "ready";
    /// A create was sent to HubSpot; recovery looks the record up before creating again.
    pub const WRITING: &str = "writing";
    /// Has its outcome.
    pub const DONE: &str = "done";
}

/// Per-phase counters of a job, as stored in its row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records in the job.
    pub total: i64,
    /// Not yet checked (including resolutions being re-checked).
    pub unchecked: i64,
    /// Waiting for review.
    pub review: i64,
    /// Decided and not yet written (ready or writing).
    pub ready: i64,
    /// Created.
    pub created: i64,
    /// Updated.
    pub updated: i64,
    /// Skipped.
    pub skipped: i64,
    /// Failed.
    pub failed: i64,
}

impl Counters {
    /// Records with an outcome.
    pub fn done(&self) -> i64 {
        self.created + self.updated + self.skipped + self.failed
    }

    /// The API's view: pending is everything without an outcome that is not waiting for review.
    pub fn to_proto(self) -> ExportCounts {
        ExportCounts {
            total: self.total,
            pending: self.unchecked + self.ready,
            needs_review: self.review,
            created: self.created,
            updated: self.updated,
            skipped: self.skipped,
            failed: self.failed,
        }
    }
}

/// True for COMPLETED, COMPLETED_WITH_ERRORS, FAILED and CANCELLED.
pub fn is_terminal(state: ExportJobState) -> bool {
    matches!(
        state,
        ExportJobState::Completed
            | ExportJobState::CompletedWithErrors
            | ExportJobState::Failed
            | ExportJobState::Cancelled
    )
}

/// The state a non-terminal job is in given its counters.
///
/// Review wins over everything else because the job cannot finish without the user; a job with
/// nothing decided yet is still checking (PENDING until the first checked batch arrived, which
/// `current` tells); once every record has an outcome the job is finished.
pub fn derive_state(current: ExportJobState, c: &Counters) -> ExportJobState {
    if is_terminal(current) {
        return current;
    }
    if c.done() >= c.total {
        return if c.failed > 0 {
            ExportJobState::CompletedWithErrors
        } else {
            ExportJobState::Completed
        };
    }
    if c.review > 0 {
        return ExportJobState::AwaitingReview;
    }
    if c.ready > 0 || c.done() > 0 {
        return ExportJobState::Writing;
    }
    if c.unchecked == c.total && current == ExportJobState::Pending {
        return ExportJobState::Pending;
    }
    ExportJobState::Checking
}

/// The object types an export may carry.
pub fn exportable(object: ObjectType) -> bool {
    matches!(object, ObjectType::Companies | ObjectType::Contacts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExportJobState as S;

    fn c(total: i64, unchecked: i64, review: i64, ready: i64, ok: i64, failed: i64) -> Counters {
        Counters {
            total,
            unchecked,
            review,
            ready,
            created: ok,
            failed,
            ..Counters::default()
        }
    }

    #[test]
    fn state_follows_counts() {
        let cases = [
            (S::Pending, c(10, 10, 0, 0, 0, 0), S::Pending),
            (S::Checking, c(10, 10, 0, 0, 0, 0), S::Checking),
            (S::Pending, c(10, 5, 0, 0, 0, 0), S::Checking),
            (S::Checking, c(10, 5, 0, 5, 0, 0), S::Writing),
            (S::Writing, c(10, 5, 2, 3, 0, 0), S::AwaitingReview),
            (S::AwaitingReview, c(10, 0, 0, 0, 10, 0), S::Completed),
            (S::Writing, c(10, 0, 0, 0, 9, 1), S::CompletedWithErrors),
            (S::Writing, c(10, 0, 0, 1, 9, 0), S::Writing),
            (S::Cancelled, c(10, 0, 0, 0, 10, 0), S::Cancelled),
            (S::Failed, c(10, 3, 0, 0, 0, 0), S::Failed),
        ];
        for (current, counters, want) in cases {
            assert_eq!(
                derive_state(current, &counters),
                want,
                "{current:?} {counters:?}"
            );
        }
    }

    #[test]
    fn pending_count_excludes_review() {
        let p = c(10, 2, 3, 1, 4, 0).to_proto();
        assert_eq!((p.pending, p.needs_review, p.created), (3, 3, 4));
        assert_eq!(
            p.total,
            p.pending + p.needs_review + p.created + p.updated + p.skipped + p.failed
        );
    }
}

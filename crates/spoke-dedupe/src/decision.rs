//! The decision per record: what the export does after the duplicate check.
//!
//! Inputs: the object's duplicate settings and export preferences at the job's pinned
//! configuration version ([`Policy`], from the mapping service's compiled mapping), the user's
//! choice for the record, and the candidates found.
//!
//! | candidates | action (user choice, else admin default) | decision |
//! |---|---|---|
//! | none | — | CREATE if "create new" is allowed, else SKIP |
//! | some | UPDATE_EXISTING | UPDATE_EXISTING of the picked candidate (else the oldest) if "update existing" is allowed, else SKIP |
//! | some | CREATE_DUPLICATE | CREATE_DUPLICATE if duplicate creation is allowed, else SKIP |
//! | only same-export records | CREATE_DUPLICATE | as UPDATE_EXISTING: two records of one export never become two creates |
//! | some | SKIP | SKIP |
//! | some | NEEDS_REVIEW | NEEDS_REVIEW (the user is shown the candidates) |
//! | — | a key is being created by another export that did not finish in time | NEEDS_REVIEW |
//!
//! A choice that is neither the default nor among the admin's user options is ignored (the
//! default applies and the reason says so); the gRPC preview rejects it up front instead.
//! In a resolution batch (after `ResolveDuplicates`) a NEEDS_REVIEW choice stays NEEDS_REVIEW.

use spoke_proto::common::v1::{
    CandidateSource, CheckDecision, DuplicateAction, DuplicateCandidate,
};

/// Duplicate settings and export preferences of one object at one configuration version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Admin default when a duplicate is found.
    pub default_action: DuplicateAction,
    /// Actions users may choose instead of the default.
    pub user_options: Vec<DuplicateAction>,
    /// Records without a duplicate may be created.
    pub create_new: bool,
    /// Existing records may be updated.
    pub update_existing: bool,
    /// Duplicates may be created.
    pub allow_duplicate_creation: bool,
    /// The configuration version these settings come from.
    pub version: i64,
}

impl Default for Policy {
    /// The product defaults: update existing, users may also skip.
    fn default() -> Self {
        Self {
            default_action: DuplicateAction::UpdateExisting,
            user_options: vec![DuplicateAction::UpdateExisting, DuplicateAction::Skip],
            create_new: true,
            update_existing: true,
            allow_duplicate_creation: false,
            version: 0,
        }
    }
}

impl Policy {
    /// Whether a user may pick `action` (the default is always allowed).
    pub fn allows_choice(&self, action: DuplicateAction) -> bool {
        action == DuplicateAction::Unspecified
            || action == self.default_action
            || self.user_options.contains(&action)
    }
}

/// The decision for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub decision: CheckDecision,
    /// For UPDATE_EXISTING: the HubSpot id to update; empty when the target is an earlier record
    /// of the same export that is not written yet (its candidate names the record).
    pub target_hubspot_id: String,
    /// Why, for people.
    pub reason: String,
}

/// What else the decision must know about one record.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordContext<'a> {
    /// The user's choice (UNSPECIFIED = admin default).
    pub choice: DuplicateAction,
    /// The candidate the user picked for UPDATE_EXISTING, if any.
    pub chosen_target: &'a str,
    /// A key of the record is being created by another export whose result is not in yet.
    pub in_flight_elsewhere: Option<&'a str>,
}

/// Decides for one record; `candidates` are ordered oldest first.
pub fn decide(
    policy: &Policy,
    candidates: &[DuplicateCandidate],
    ctx: RecordContext<'_>,
) -> Decision {
    if let Some(job) = ctx.in_flight_elsewhere {
        return decision(
            CheckDecision::NeedsReview,
            "",
            format!(
                "a record with the same key is being created by export {job}; review it once that export has written it"
            ),
        );
    }
    if candidates.is_empty() {
        return if policy.create_new {
            decision(CheckDecision::Create, "", "no duplicate found".into())
        } else {
            decision(
                CheckDecision::Skip,
                "",
                "skipped: creating new records is disabled in export preferences".into(),
            )
        };
    }
    let (action, note) = if ctx.choice == DuplicateAction::Unspecified {
        (policy.default_action, String::new())
    } else if policy.allows_choice(ctx.choice) {
        (ctx.choice, String::new())
    } else {
        (
            policy.default_action,
            format!(
                " (the choice {} is not allowed by the admin; the default applied)",
                action_name(ctx.choice)
            ),
        )
    };
    let only_same_export = candidates
        .iter()
        .all(|c| c.source == CandidateSource::SameExport as i32);
    let described = describe(candidates);
    match action {
        DuplicateAction::CreateDuplicate if only_same_export => {
            update_or_skip(policy, candidates, ctx.chosen_target, &described, &note)
        }
        DuplicateAction::CreateDuplicate if policy.allow_duplicate_creation => decision(
            CheckDecision::CreateDuplicate,
            "",
            format!("creating a duplicate of {described}{note}"),
        ),
        DuplicateAction::CreateDuplicate => decision(
            CheckDecision::Skip,
            "",
            format!(
                "skipped: duplicate of {described}; creating duplicates is disabled in export preferences{note}"
            ),
        ),
        DuplicateAction::Skip => decision(
            CheckDecision::Skip,
            "",
            format!("skipped: duplicate of {described}{note}"),
        ),
        DuplicateAction::NeedsReview | DuplicateAction::Unspecified => decision(
            CheckDecision::NeedsReview,
            "",
            format!(
                "{} possible duplicate(s) found ({described}); waiting for the user's choice{note}",
                candidates.len()
            ),
        ),
        DuplicateAction::UpdateExisting => {
            update_or_skip(policy, candidates, ctx.chosen_target, &described, &note)
        }
    }
}

fn update_or_skip(
    policy: &Policy,
    candidates: &[DuplicateCandidate],
    chosen: &str,
    described: &str,
    note: &str,
) -> Decision {
    if !policy.update_existing {
        return decision(
            CheckDecision::Skip,
            "",
            format!(
                "skipped: duplicate of {described}; updating existing records is disabled in export preferences{note}"
            ),
        );
    }
    let picked = candidates
        .iter()
        .find(|c| !chosen.is_empty() && c.hubspot_id == chosen);
    let target = picked.or_else(|| candidates.first());
    match target {
        Some(c) if !c.hubspot_id.is_empty() => decision(
            CheckDecision::UpdateExisting,
            &c.hubspot_id,
            format!("updating existing HubSpot record {}{note}", c.hubspot_id),
        ),
        Some(c) => decision(
            CheckDecision::UpdateExisting,
            "",
            format!(
                "same key as record {} of this export: updating the record it creates{note}",
                c.same_export_record_id
            ),
        ),
        None => decision(CheckDecision::Create, "", "no duplicate found".into()),
    }
}

fn describe(candidates: &[DuplicateCandidate]) -> String {
    match candidates.first() {
        Some(c) if !c.hubspot_id.is_empty() && candidates.len() == 1 => {
            format!("HubSpot record {}", c.hubspot_id)
        }
        Some(c) if !c.hubspot_id.is_empty() => format!(
            "HubSpot record {} and {} more",
            c.hubspot_id,
            candidates.len() - 1
        ),
        Some(c) => format!("record {} of this export", c.same_export_record_id),
        None => "nothing".into(),
    }
}

fn decision(decision: CheckDecision, target: &str, reason: String) -> Decision {
    Decision {
        decision,
        target_hubspot_id: target.to_owned(),
        reason,
    }
}

/// Lower-case name of an action for messages and metrics.
pub fn action_name(action: DuplicateAction) -> &'static str {
    match action {
        DuplicateAction::Unspecified => "default",
        DuplicateAction::UpdateExisting => "update_existing",
        DuplicateAction::CreateDuplicate => "create_duplicate",
        DuplicateAction::Skip => "skip",
        DuplicateAction::NeedsReview => "needs_review",
    }
}

/// Lower-case name of a decision for storage and metrics.
pub fn decision_name(decision: CheckDecision) -> &'static str {
    match decision {
        CheckDecision::Unspecified => "unspecified",
        CheckDecision::Create => "create",
        CheckDecision::UpdateExisting => "update_existing",
        CheckDecision::CreateDuplicate => "create_duplicate",
        CheckDecision::Skip => "skip",
        CheckDecision::NeedsReview => "needs_review",
        CheckDecision::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(id: &str) -> DuplicateCandidate {
        DuplicateCandidate {
            hubspot_id: id.into(),
            source: CandidateSource::Hubspot as i32,
            ..Default::default()
        }
    }

    fn same(record: &str) -> DuplicateCandidate {
        DuplicateCandidate {
            source: CandidateSource::SameExport as i32,
            same_export_record_id: record.into(),
            ..Default::default()
        }
    }

    /// (name, policy, candidates, choice, chosen target, expected decision, expected target)
    type Case<'a> = (
        &'a str,
        Policy,
        Vec<DuplicateCandidate>,
        DuplicateAction,
        &'a str,
        CheckDecision,
        &'a str,
    );

    fn policy(default: DuplicateAction) -> Policy {
        Policy {
            default_action: default,
            user_options: vec![
                DuplicateAction::UpdateExisting,
                DuplicateAction::Skip,
                DuplicateAction::CreateDuplicate,
            ],
            allow_duplicate_creation: true,
            ..Policy::default()
        }
    }

    #[test]
    fn decisions_follow_settings_preferences_and_choice() {
        use CheckDecision as D;
        use DuplicateAction as A;
        let two = vec![hub("11"), hub("22")];
        let no_update = Policy {
            update_existing: false,
            ..policy(A::UpdateExisting)
        };
        let no_create = Policy {
            create_new: false,
            ..policy(A::UpdateExisting)
        };
        let no_dup = Policy {
            allow_duplicate_creation: false,
            ..policy(A::CreateDuplicate)
        };
        let narrow = Policy {
            user_options: vec![A::Skip],
            ..policy(A::UpdateExisting)
        };
        let cases: Vec<Case<'_>> = vec![
            (
                "new record",
                policy(A::UpdateExisting),
                vec![],
                A::Unspecified,
                "",
                D::Create,
                "",
            ),
            (
                "create new disabled",
                no_create,
                vec![],
                A::Unspecified,
                "",
                D::Skip,
                "",
            ),
            (
                "default update oldest",
                policy(A::UpdateExisting),
                two.clone(),
                A::Unspecified,
                "",
                D::UpdateExisting,
                "11",
            ),
            (
                "user picked a candidate",
                policy(A::UpdateExisting),
                two.clone(),
                A::UpdateExisting,
                "22",
                D::UpdateExisting,
                "22",
            ),
            (
                "picked id not a candidate",
                policy(A::UpdateExisting),
                two.clone(),
                A::UpdateExisting,
                "99",
                D::UpdateExisting,
                "11",
            ),
            (
                "update disabled",
                no_update,
                two.clone(),
                A::Unspecified,
                "",
                D::Skip,
                "",
            ),
            (
                "default skip",
                policy(A::Skip),
                two.clone(),
                A::Unspecified,
                "",
                D::Skip,
                "",
            ),
            (
                "default review",
                policy(A::NeedsReview),
                two.clone(),
                A::Unspecified,
                "",
                D::NeedsReview,
                "",
            ),
            (
                "user chooses create dup",
                policy(A::NeedsReview),
                two.clone(),
                A::CreateDuplicate,
                "",
                D::CreateDuplicate,
                "",
            ),
            (
                "user chooses skip",
                policy(A::UpdateExisting),
                two.clone(),
                A::Skip,
                "",
                D::Skip,
                "",
            ),
            (
                "create dup not allowed",
                no_dup,
                two.clone(),
                A::Unspecified,
                "",
                D::Skip,
                "",
            ),
            (
                "choice not allowed uses default",
                narrow,
                two.clone(),
                A::CreateDuplicate,
                "",
                D::UpdateExisting,
                "11",
            ),
            (
                "same export: update pending record",
                policy(A::UpdateExisting),
                vec![same("r1")],
                A::Unspecified,
                "",
                D::UpdateExisting,
                "",
            ),
            (
                "same export: never two creates",
                policy(A::CreateDuplicate),
                vec![same("r1")],
                A::Unspecified,
                "",
                D::UpdateExisting,
                "",
            ),
            (
                "same export: skip",
                policy(A::Skip),
                vec![same("r1")],
                A::Unspecified,
                "",
                D::Skip,
                "",
            ),
        ];
        for (name, policy, candidates, choice, chosen, want, target) in cases {
            let got = decide(
                &policy,
                &candidates,
                RecordContext {
                    choice,
                    chosen_target: chosen,
                    in_flight_elsewhere: None,
                },
            );
            assert_eq!(got.decision, want, "{name}: {}", got.reason);
            assert_eq!(got.target_hubspot_id, target, "{name}");
            assert!(!got.reason.is_empty(), "{name}");
        }
    }

    #[test]
    fn in_flight_create_elsewhere_needs_review() {
        let got = decide(
            &Policy::default(),
            &[],
            RecordContext {
                in_flight_elsewhere: Some("job-1"),
                ..RecordContext::default()
            },
        );
        assert_eq!(got.decision, CheckDecision::NeedsReview);
        assert!(got.reason.contains("job-1"), "{}", got.reason);
    }

    #[test]
    fn reasons_name_the_candidate_and_the_setting() {
        let p = Policy {
            update_existing: false,
            ..Policy::default()
        };
        let got = decide(&p, &[hub("7")], RecordContext::default());
        assert_eq!(
            got.reason,
            "skipped: duplicate of HubSpot record 7; updating existing records is disabled in export preferences"
        );
    }
}

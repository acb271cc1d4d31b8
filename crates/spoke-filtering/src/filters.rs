//! Filter settings and the rule that decides whether a HubSpot record passes them.
//!
//! Pure: the run hands each record's relevant properties in, the rule answers pass/drop. Settings
//! validation that needs no HubSpot access (limits, which option belongs to which object) lives
//! here too; owner and company-type existence checks need the portal and live in the service.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ObjectKind;

/// At most this many owners per object filter (the guide's "up to 10 owners").
pub const MAX_OWNERS: usize = 10;

/// Include or exclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    /// The filter is off.
    #[default]
    Off,
    /// Only listed values pass.
    Include,
    /// Listed values are dropped.
    Exclude,
}

impl Mode {
    /// From the proto enum value (unknown → off).
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => Mode::Include,
            2 => Mode::Exclude,
            _ => Mode::Off,
        }
    }

    /// To the proto enum value.
    pub fn as_i32(self) -> i32 {
        match self {
            Mode::Off => 0,
            Mode::Include => 1,
            Mode::Exclude => 2,
        }
    }
}

/// A value filter: mode plus values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValueFilter {
    /// Include/exclude/off.
    pub mode: Mode,
    /// The values (owner ids or company type values).
    pub values: Vec<String>,
}

impl ValueFilter {
    /// True when `value` (None: the record has none) passes.
    pub fn passes(&self, value: Option<&str>) -> bool {
        let listed = value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.mode {
            Mode::Off => true,
            Mode::Include => listed,
            Mode::Exclude => !listed,
        }
    }

    /// True when the filter does something.
    pub fn is_active(&self) -> bool {
        self.mode != Mode::Off
    }
}

/// How far back deals are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DealWindow {
    /// Not set.
    #[default]
    Unspecified,
    /// Created in the past 6 months.
    SixMonths,
    /// Created in the past year.
    OneYear,
    /// Created in the past 2 years.
    TwoYears,
}

impl DealWindow {
    /// From the proto enum value (unknown → unspecified).
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => DealWindow::SixMonths,
            2 => DealWindow::OneYear,
            3 => DealWindow::TwoYears,
            _ => DealWindow::Unspecified,
        }
    }

    /// To the proto enum value.
    pub fn as_i32(self) -> i32 {
        match self {
            DealWindow::Unspecified => 0,
            DealWindow::SixMonths => 1,
            DealWindow::OneYear => 2,
            DealWindow::TwoYears => 3,
        }
    }

    /// The earliest create date that passes at `now`; None when unspecified (no limit).
    pub fn cutoff(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = match self {
            DealWindow::Unspecified => return None,
            DealWindow::SixMonths => 6,
            DealWindow::OneYear => 12,
            DealWindow::TwoYears => 24,
        };
        now.checked_sub_months(Months::new(months))
    }
}

/// Filter settings of one object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectFilter {
    /// The object.
    pub object: ObjectKind,
    /// Filtering of this object is on.
    pub enabled: bool,
    /// Owner filter.
    pub owners: ValueFilter,
    /// Company type filter (companies).
    pub company_types: ValueFilter,
    /// Deal create-date window (companies: deals counted with them; deals: which deals).
    pub deal_window: DealWindow,
    /// Only companies with deals in the window pass (companies).
    pub require_deals: bool,
    /// Drop contacts who opted out of email (contacts).
    pub exclude_email_opt_outs: bool,
    /// HubSpot contact list ids (contacts).
    pub contact_list_ids: Vec<String>,
}

impl ObjectFilter {
    /// Default (disabled) settings of `object`.
    pub fn new(object: ObjectKind) -> Self {
        Self {
            object,
            ..Self::default()
        }
    }

    /// Checks limits and that every option belongs to this object; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let obj = self.object.name();
        if self.owners.values.len() > MAX_OWNERS {
            return Err(Error::InvalidArgument(format!(
                "updates.owners.values: {} owners given for {obj}; at most {MAX_OWNERS} are allowed",
                self.owners.values.len()
            )));
        }
        if self.owners.is_active() && self.owners.values.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "updates.owners.values: an include/exclude owner filter for {obj} needs at least one owner"
            )));
        }
        if self.object != ObjectKind::Companies
            && (self.company_types.is_active() || self.require_deals)
        {
            return Err(Error::InvalidArgument(format!(
                "updates.company_types: company type and require_deals filters apply to companies only, not {obj}"
            )));
        }
        if self.company_types.is_active() && self.company_types.values.is_empty() {
            return Err(Error::InvalidArgument(
                "updates.company_types.values: an include/exclude company type filter needs at least one type".into(),
            ));
        }
        if self.object == ObjectKind::Contacts && self.deal_window != DealWindow::Unspecified {
            return Err(Error::InvalidArgument(
                "updates.deal_created_window: the deal window applies to companies and deals, not contacts".into(),
            ));
        }
        if self.object != ObjectKind::Contacts
            && (self.exclude_email_opt_outs || !self.contact_list_ids.is_empty())
        {
            return Err(Error::InvalidArgument(format!(
                "updates.exclude_email_opt_outs: email opt-out and contact list filters apply to contacts only, not {obj}"
            )));
        }
        Ok(())
    }
}

/// The properties of a HubSpot record the filters read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordView<'a> {
    /// `hubspot_owner_id`.
    pub owner_id: Option<&'a str>,
    /// Company `type`.
    pub company_type: Option<&'a str>,
    /// Contact `hs_email_optout`.
    pub email_opt_out: Option<&'a str>,
    /// Record create date.
    pub created_at: Option<DateTime<Utc>>,
    /// For companies: whether it has deals passing the deal filters.
    pub has_deals: bool,
}

/// Whether a record of `filter.object` passes the filter settings at `now`.
pub fn passes(filter: &ObjectFilter, record: &RecordView<'_>, now: DateTime<Utc>) -> bool {
    if !filter.owners.passes(record.owner_id) {
        return false;
    }
    match filter.object {
        ObjectKind::Companies => {
            filter.company_types.passes(record.company_type)
                && (!filter.require_deals || record.has_deals)
        }
        ObjectKind::Contacts => {
            !(filter.exclude_email_opt_outs
                && record
                    .email_opt_out
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")))
        }
        ObjectKind::Deals => match filter.deal_window.cutoff(now) {
            None => true,
            Some(cutoff) => record.created_at.is_some_and(|c| c >= cutoff),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
    }

    fn vf(mode: Mode, values: &[&str]) -> ValueFilter {
        ValueFilter {
            mode,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn each_filter_kind_passes_or_drops() {
        let now = at("2025-06-01T00:00:00Z");
        let companies = ObjectFilter::new(ObjectKind::Companies);
        let contacts = ObjectFilter::new(ObjectKind::Contacts);
        let deals = ObjectFilter::new(ObjectKind::Deals);
        let rec = |owner: Option<&'static str>| RecordView {
            owner_id: owner,
            ..RecordView::default()
        };
        // (settings, record, expected, what)
        let cases: Vec<(ObjectFilter, RecordView<'static>, bool, &str)> = vec![
            (companies.clone(), rec(None), true, "no filters: all pass"),
            (
                ObjectFilter {
                    owners: vf(Mode::Include, &["1", "2"]),
                    ..companies.clone()
                },
                rec(Some("2")),
                true,
                "owner included",
            ),
            (
                ObjectFilter {
                    owners: vf(Mode::Include, &["1", "2"]),
                    ..companies.clone()
                },
                rec(Some("3")),
                false,
                "owner not in include list",
            ),
            (
                ObjectFilter {
                    owners: vf(Mode::Include, &["1"]),
                    ..companies.clone()
                },
                rec(None),
                false,
                "unowned fails include",
            ),
            (
                ObjectFilter {
                    owners: vf(Mode::Exclude, &["1"]),
                    ..contacts.clone()
                },
                rec(Some("1")),
                false,
                "owner excluded",
            ),
            (
                ObjectFilter {
                    owners: vf(Mode::Exclude, &["1"]),
                    ..contacts.clone()
                },
                rec(None),
                true,
                "unowned passes exclude",
            ),
            (
                ObjectFilter {
                    company_types: vf(Mode::Include, &["PARTNER"]),
                    ..companies.clone()
                },
                RecordView {
                    company_type: Some("PARTNER"),
                    ..RecordView::default()
                },
                true,
                "type included",
            ),
            (
                ObjectFilter {
                    company_types: vf(Mode::Exclude, &["VENDOR"]),
                    ..companies.clone()
                },
                RecordView {
                    company_type: Some("VENDOR"),
                    ..RecordView::default()
                },
                false,
                "type excluded",
            ),
            (
                ObjectFilter {
                    require_deals: true,
                    ..companies.clone()
                },
                RecordView {
                    has_deals: false,
                    ..RecordView::default()
                },
                false,
                "company without deals",
            ),
            (
                ObjectFilter {
                    require_deals: true,
                    ..companies.clone()
                },
                RecordView {
                    has_deals: true,
                    ..RecordView::default()
                },
                true,
                "company with deals",
            ),
            (
                ObjectFilter {
                    exclude_email_opt_outs: true,
                    ..contacts.clone()
                },
                RecordView {
                    email_opt_out: Some("true"),
                    ..RecordView::default()
                },
                false,
                "opted out",
            ),
            (
                ObjectFilter {
                    exclude_email_opt_outs: true,
                    ..contacts.clone()
                },
                RecordView {
                    email_opt_out: Some("false"),
                    ..RecordView::default()
                },
                true,
                "not opted out",
            ),
            (
                contacts.clone(),
                RecordView {
                    email_opt_out: Some("true"),
                    ..RecordView::default()
                },
                true,
                "opt-outs kept unless excluded",
            ),
            (
                ObjectFilter {
                    deal_window: DealWindow::SixMonths,
                    ..deals.clone()
                },
                RecordView {
                    created_at: Some(at("2025-01-15T00:00:00Z")),
                    ..RecordView::default()
                },
                true,
                "deal 4.5 months old in 6 months",
            ),
            (
                ObjectFilter {
                    deal_window: DealWindow::SixMonths,
                    ..deals.clone()
                },
                RecordView {
                    created_at: Some(at("2024-11-15T00:00:00Z")),
                    ..RecordView::default()
                },
                false,
                "deal 6.5 months old",
            ),
            (
                ObjectFilter {
                    deal_window: DealWindow::OneYear,
                    ..deals.clone()
                },
                RecordView {
                    created_at: Some(at("2024-11-15T00:00:00Z")),
                    ..RecordView::default()
                },
                true,
                "deal 6.5 months old in 1 year",
            ),
            (
                ObjectFilter {
                    deal_window: DealWindow::TwoYears,
                    ..deals.clone()
                },
                RecordView {
                    created_at: Some(at("2023-05-15T00:00:00Z")),
                    ..RecordView::default()
                },
                false,
                "deal 2 years + 2 weeks old",
            ),
            (
                deals.clone(),
                RecordView {
                    created_at: Some(at("2010-01-01T00:00:00Z")),
                    ..RecordView::default()
                },
                true,
                "no window: all deals",
            ),
        ];
        for (filter, record, want, what) in cases {
            assert_eq!(passes(&filter, &record, now), want, "{what}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        let cases: Vec<(ObjectFilter, Option<&str>)> = vec![
            (ObjectFilter::new(ObjectKind::Contacts), None),
            (
                ObjectFilter {
                    owners: ValueFilter {
                        mode: Mode::Include,
                        values: many[..10].to_vec(),
                    },
                    ..ObjectFilter::new(ObjectKind::Companies)
                },
                None,
            ),
            (
                ObjectFilter {
                    owners: ValueFilter {
                        mode: Mode::Include,
                        values: many.clone(),
                    },
                    ..ObjectFilter::new(ObjectKind::Companies)
                },
                Some("updates.owners.values: 11 owners"),
            ),
            (
                ObjectFilter {
                    owners: ValueFilter {
                        mode: Mode::Exclude,
                        values: vec![],
                    },
                    ..ObjectFilter::new(ObjectKind::Deals)
                },
                Some("updates.owners.values"),
            ),
            (
                ObjectFilter {
                    require_deals: true,
                    ..ObjectFilter::new(ObjectKind::Contacts)
                },
                Some("updates.company_types"),
            ),
            (
                ObjectFilter {
                    deal_window: DealWindow::OneYear,
                    ..ObjectFilter::new(ObjectKind::Contacts)
                },
                Some("updates.deal_created_window"),
            ),
            (
                ObjectFilter {
                    exclude_email_opt_outs: true,
                    ..ObjectFilter::new(ObjectKind::Companies)
                },
                Some("updates.exclude_email_opt_outs"),
            ),
        ];
        for (filter, want) in cases {
            match (filter.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(prefix)) => {
                    assert!(
                        e.to_string().starts_with(prefix),
                        "{e} should start with {prefix}"
                    )
                }
                (got, want) => panic!("{filter:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}

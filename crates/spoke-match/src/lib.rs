//! Normalization rules and match keys, the single definition shared by dedupe and filtering.
//!
//! Dedupe decides whether an exported record already exists in HubSpot; filtering links HubSpot
//! records to provider profiles. Both must agree on when two values are "the same", so every rule
//! lives here, is pure (no I/O), and is documented with examples in its module — those docs are
//! the specification operators and other engineers read:
//!
//! - [`domain`]: company domains (`HTTPS://WWW.Zoominfo.com:443/about` → `zoominfo.com`, IDN → punycode).
//! - [`email`]: contact emails (trim, lower-case, shape check, IDN domain; `+tags` and dots kept).
//! - [`names`]: person names, the *exact* company name of contact rule 2, and the *loose* company
//!   name of filtering.
//! - [`country`]: country names and codes → ISO 3166-1 alpha-2.
//! - [`keys`]: the [`MatchKey`]s built from a record's fields, in priority order, with a stable
//!   string encoding and per-field [`Rejection`] reasons.
//!
//! Every normalizer is idempotent (`normalize(normalize(x)) == normalize(x)`), never panics, and
//! takes an ASCII fast path that avoids Unicode tables — filtering runs these on millions of records.
//!
//! ```
//! use std::collections::BTreeMap;
//! use spoke_match::{ContactFields, MatchKey, contact_keys, normalize_domain};
//!
//! assert_eq!(normalize_domain(" HTTPS://WWW.Zoominfo.com:443/about?x=1 ").unwrap().as_str(), "zoominfo.com");
//!
//! let fields = BTreeMap::from([
//!     ("email".to_owned(), "not-an-email".to_owned()),
//!     ("firstname".to_owned(), "Zoë".to_owned()),
//!     ("lastname".to_owned(), "Ørsted".to_owned()),
//!     ("company".to_owned(), "ACME  Inc".to_owned()),
//! ]);
//! let keys = contact_keys(&ContactFields::from_hubspot(&fields));
//! assert_eq!(keys.keys[0].to_string(), "name_company:zoë|ørsted|acme inc");
//! assert_eq!(keys.rejections[0].to_string(), "email: has no @; an address such as name@example.com was expected");
//! let parsed: MatchKey = "name_company:zoë|ørsted|acme inc".parse().unwrap();
//! assert_eq!(parsed, keys.keys[0]);
//! ```

pub mod country;
pub mod domain;
pub mod email;
pub mod keys;
pub mod names;
mod rejection;
mod text;

pub use country::{Country, normalize_country};
pub use domain::{Domain, normalize_domain};
pub use email::{Email, email_domain, normalize_email};
pub use keys::{
    CompanyFields, ContactFields, Field, FieldRejection, KeyKind, Keys, MatchKey, company_keys,
    contact_keys,
};
pub use names::{
    CompanyName, LooseCompanyName, PersonName, company_name_exact, company_name_loose,
    normalize_person_name,
};
pub use rejection::Rejection;

/// Errors of this crate other than value rejections: decoding stored match keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not `<kind>:<value>` with the right number of parts and valid escapes.
    #[error("match key {key:?} is malformed: {reason}")]
    MalformedKey {
        /// The text that failed to parse.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The kind prefix is not one of `domain`, `email`, `name_company`, `company_country`.
    #[error("match key {key:?} has an unknown kind")]
    UnknownKind {
        /// The text that failed to parse.
        key: String,
    },
    /// A part is not in normalized form, so the key was not written by this crate.
    #[error("match key {key:?} contains a value that is not in normalized form")]
    NotNormalized {
        /// The text that failed to parse.
        key: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

//! Why a value cannot be used as (part of) a match key.
//!
//! Every normalizer returns a [`Rejection`] instead of guessing. The `Display` text is written for the
//! person who owns the data (it ends up in per-record export results and filtering reports); [`code`]
//! is a stable machine-readable identifier for metrics and APIs.
//!
//! [`code`]: Rejection::code

use thiserror::Error;

/// The reason a domain, email or name was rejected by normalization.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The field is absent or blank (reported by the key builders when a record yields no key).
    #[error("is missing")]
    Missing,
    /// Nothing left after trimming (or after dropping invisible characters).
    #[error("is empty")]
    Empty,
    /// A domain (host) contains whitespace, e.g. `acme .com` or a company name typed into the website field.
    #[error("contains spaces; a domain such as example.com was expected")]
    ContainsSpace,
    /// A domain has a single label (`localhost`, `acme`): no public company website looks like that.
    #[error("has no dot; a domain such as example.com was expected")]
    SingleLabel,
    /// A character that is not allowed at that place.
    #[error("contains the invalid character {0:?}")]
    InvalidCharacter(char),
    /// An internationalized domain that UTS-46 processing refuses (bad punycode, disallowed code point, ...).
    #[error("is not a valid internationalized domain name")]
    InvalidIdn,
    /// Two dots in a row, or a leading dot (`acme..com`, `.acme.com`).
    #[error("has an empty label (two dots in a row or a leading dot)")]
    EmptyLabel,
    /// A label starts or ends with a hyphen (`-acme.com`).
    #[error("has a label that starts or ends with a hyphen")]
    HyphenAtLabelEdge,
    /// The last label is numeric but the whole value is not an IP address (`acme.123`).
    #[error("has a numeric top-level label; a domain such as example.com was expected")]
    NumericTopLevel,
    /// An IPv4 or IPv6 address instead of a domain.
    #[error("is an IP address, not a domain")]
    IpAddress,
    /// Longer than 253 characters once converted to ASCII.
    #[error("is longer than 253 characters")]
    DomainTooLong,
    /// A label (part between dots) longer than 63 characters once converted to ASCII.
    #[error("has a label longer than 63 characters")]
    LabelTooLong,
    /// An email address was given where a domain was expected (`john@acme.com` in the website field).
    #[error("is an email address, not a domain")]
    EmailGivenForDomain,
    /// A port that is not a number (`acme.com:http`).
    #[error("has an invalid port")]
    InvalidPort,
    /// An email without `@`.
    #[error("has no @; an address such as name@example.com was expected")]
    MissingAt,
    /// An email with more than one `@` (quoted local parts are not supported).
    #[error("has more than one @")]
    MultipleAt,
    /// Nothing before the `@`.
    #[error("has nothing before the @")]
    EmptyLocalPart,
    /// A local part longer than 64 bytes (RFC 5321).
    #[error("has more than 64 characters before the @")]
    LocalPartTooLong,
    /// A local part that starts or ends with a dot or has two dots in a row.
    #[error("has a misplaced dot before the @")]
    MisplacedDot,
    /// An email longer than 254 bytes (RFC 5321 path limit).
    #[error("is longer than 254 characters")]
    EmailTooLong,
    /// The part after the `@` is not a valid domain; carries the domain's own reason.
    #[error("has an invalid domain after the @: it {0}")]
    EmailDomain(Box<Rejection>),
}

impl Rejection {
    /// Stable snake_case identifier of the reason, for metrics labels and API fields.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Empty => "empty",
            Rejection::ContainsSpace => "contains_space",
            Rejection::SingleLabel => "single_label",
            Rejection::InvalidCharacter(_) => "invalid_character",
            Rejection::InvalidIdn => "invalid_idn",
            Rejection::EmptyLabel => "empty_label",
            Rejection::HyphenAtLabelEdge => "hyphen_at_label_edge",
            Rejection::NumericTopLevel => "numeric_top_level",
            Rejection::IpAddress => "ip_address",
            Rejection::DomainTooLong => "domain_too_long",
            Rejection::LabelTooLong => "label_too_long",
            Rejection::EmailGivenForDomain => "email_given_for_domain",
            Rejection::InvalidPort => "invalid_port",
            Rejection::MissingAt => "missing_at",
            Rejection::MultipleAt => "multiple_at",
            Rejection::EmptyLocalPart => "empty_local_part",
            Rejection::LocalPartTooLong => "local_part_too_long",
            Rejection::MisplacedDot => "misplaced_dot",
            Rejection::EmailTooLong => "email_too_long",
            Rejection::EmailDomain(_) => "email_domain",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_a_sentence_after_the_field_name() {
        let cases = [
            (Rejection::Empty, "is empty"),
            (
                Rejection::InvalidCharacter('!'),
                "contains the invalid character '!'",
            ),
            (
                Rejection::EmailDomain(Box::new(Rejection::SingleLabel)),
                "has an invalid domain after the @: it has no dot; a domain such as example.com was expected",
            ),
        ];
        for (rejection, expected) in cases {
            assert_eq!(rejection.to_string(), expected);
        }
    }

    #[test]
    fn codes_are_distinct() {
        let all = [
            Rejection::Missing,
            Rejection::Empty,
            Rejection::ContainsSpace,
            Rejection::SingleLabel,
            Rejection::InvalidCharacter('x'),
            Rejection::InvalidIdn,
            Rejection::EmptyLabel,
            Rejection::HyphenAtLabelEdge,
            Rejection::NumericTopLevel,
            Rejection::IpAddress,
            Rejection::DomainTooLong,
            Rejection::LabelTooLong,
            Rejection::EmailGivenForDomain,
            Rejection::InvalidPort,
            Rejection::MissingAt,
            Rejection::MultipleAt,
            Rejection::EmptyLocalPart,
            Rejection::LocalPartTooLong,
            Rejection::MisplacedDot,
            Rejection::EmailTooLong,
            Rejection::EmailDomain(Box::new(Rejection::Empty)),
        ];
        let mut codes: Vec<_> = all.iter().map(Rejection::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
